"""Distributed training for real: XGBoost on a 2-worker Dask ``LocalCluster``, and the Kubernetes cluster spec.

The bundled Lending Club data is split into train / validation / holdout; train and validation are
written as Parquet shards that the worker processes read themselves. The single-node
``fit_booster`` on the same rows is the reference. The comparison uses the spec's params without
row and column sampling, so both sides see the same data each round and only the distributed
quantile sketch differs; with sampling, the two draw different random rows (per worker), which on
~6,000 rows is noise of the same size as the tolerance.
"""

from __future__ import annotations

import os
from pathlib import Path

import kubernetes_validate
import pandas as pd
import pytest
from distributed import get_task_stream
from sklearn.metrics import roc_auc_score

from mlpipe.compute import node_pools
from mlpipe.compute.distributed import (
    LABEL,
    TMP,
    cluster_spec,
    fit_distributed,
    local_cluster,
    partition_meta,
    read_shard,
    shards_of,
    train_cluster_spec,
    train_on_dask,
    write_shards,
)
from mlpipe.core import spec, uris
from mlpipe.data.features import labels, schema
from mlpipe.model.booster import booster_params, fit_booster, inputs, scale_pos_weight
from mlpipe.model.tabular import TabularModel
from mlpipe.store import storage
from tests.conftest import DATA_PATH, SPEC_PATH

K8S_VERSION = "1.31"
# Dask and single-node boosting differ (distributed histograms); with categories coded by frequency the
# holdout ROC AUCs differ by 0.0103 (0.7117 vs 0.7014), with text-sorted codes by less.
AUC_TOLERANCE = 0.015
NO_SAMPLING = {"subsample": 1.0, "colsample_bytree": 1.0}


@pytest.fixture(scope="module")
def pipeline() -> spec.Spec:
    return spec.with_overrides(spec.load(SPEC_PATH), {f"training.params.{k}": v for k, v in NO_SAMPLING.items()})


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """The bundled loans shuffled (seeded) into train (60%), validation (20%) and holdout (20%)."""
    data = pd.read_csv(DATA_PATH).sample(frac=1.0, random_state=11).reset_index(drop=True)
    cut = [0, int(0.6 * len(data)), int(0.8 * len(data)), len(data)]
    return {part: data.iloc[cut[i]:cut[i + 1]] for i, part in enumerate(("train", "validation", "holdout"))}


@pytest.fixture(scope="module")
def setup(pipeline, frames, tmp_path_factory):
    """Feature schema, booster params and the shards (4 train, 2 validation) under a temporary store."""
    root = tmp_path_factory.mktemp("shards")
    feature_schema = schema(frames["train"], pipeline)
    y = labels(frames["train"], pipeline)
    params = booster_params(pipeline.training, scale_pos_weight(len(y), int(y.sum()), "auto"), "cpu")
    shards = {part: write_shards(frames[part], str(root / part), count)
              for part, count in (("train", 4), ("validation", 2))}
    return feature_schema, params, shards


@pytest.fixture(scope="module")
def client():
    with local_cluster(2) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def trained(client, pipeline, setup):
    """The booster trained on the cluster, its history and seconds, and the workers that read the shards."""
    feature_schema, params, shards = setup
    with get_task_stream(client) as stream:
        booster, history, seconds = train_on_dask(client, params, shards["train"], shards["validation"],
                                                  feature_schema, pipeline)
    readers = [task["worker"] for task in stream.data if task["key"][0].startswith("read-shard")]
    return booster, history, seconds, readers


def auc_of(model: TabularModel, frame: pd.DataFrame, pipeline: spec.Spec) -> float:
    return float(roc_auc_score(labels(frame, pipeline), model.scores(frame)))


def test_write_shards_splits_rows_in_order(frames, tmp_path):
    frame = frames["validation"]
    uris = write_shards(frame, str(tmp_path / "v"), 3)
    assert [uri.rsplit("/", 1)[-1] for uri in uris] == ["part-00000.parquet", "part-00001.parquet",
                                                        "part-00002.parquet"]
    back = pd.concat([storage.read_parquet(uri) for uri in uris], ignore_index=True)
    pd.testing.assert_frame_equal(back, frame.reset_index(drop=True))


def test_shard_is_encoded_like_single_node(pipeline, frames, setup):
    feature_schema, _, shards = setup
    part = read_shard(shards["train"][1], feature_schema, pipeline)
    rows = frames["train"].iloc[len(part):2 * len(part)]
    expected, y = inputs(rows, feature_schema, pipeline, "train")
    pd.testing.assert_frame_equal(part.drop(columns=LABEL).reset_index(drop=True), expected.reset_index(drop=True))
    assert part[LABEL].tolist() == y.tolist()
    pd.testing.assert_series_equal(part.dtypes, partition_meta(feature_schema).dtypes)


def test_every_shard_is_read_on_the_workers(client, trained):
    *_, readers = trained
    assert len(readers) == 4 + 2  # one task per shard, train and validation
    assert set(readers) == set(client.scheduler_info()["workers"])  # both workers read their own shards


def test_dask_training_matches_single_node(pipeline, frames, setup, trained):
    feature_schema, params, _ = setup
    booster, history, seconds, _ = trained
    single, single_history, _ = fit_booster(params, inputs(frames["train"], feature_schema, pipeline, "train"),
                                            inputs(frames["validation"], feature_schema, pipeline, "validation"),
                                            pipeline.training)
    dask_model, single_model = TabularModel(booster, feature_schema), TabularModel(single, feature_schema)
    for part in ("validation", "holdout"):
        ours, reference = (auc_of(m, frames[part], pipeline) for m in (dask_model, single_model))
        assert abs(ours - reference) <= AUC_TOLERANCE, (part, ours, reference)
    assert list(history) == list(single_history) == ["logloss", "auc"]
    assert all(len(values) == booster.num_boosted_rounds() for values in history.values())
    assert seconds > 0


def test_booster_is_a_plain_model(pipeline, frames, setup, trained, tmp_path):
    """Early stopping is recorded on the booster, and it saves, loads and scores like any TabularModel."""
    feature_schema, *_ = setup
    booster, history, *_ = trained
    best = booster.best_iteration
    assert booster.num_boosted_rounds() == best + 1 + pipeline.training.early_stopping_rounds
    assert max(history["auc"]) == history["auc"][best]
    model = TabularModel.load(TabularModel(booster, feature_schema).save(uris.normalize(tmp_path / "m")))
    assert model.tree_range() == (0, best + 1)
    holdout = frames["holdout"]
    assert model.scores(holdout) == pytest.approx(TabularModel(booster, feature_schema).scores(holdout))
    assert list(model.contributions(holdout.head(3)).columns) == [*feature_schema["columns"], "bias"]


def test_workers_read_shards_from_s3(client, pipeline, frames, setup, s3_bucket):
    """Shards on S3 are read by the workers through mlpipe.store.storage (their env points at the same endpoint)."""
    feature_schema, params, _ = setup
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    client.run(lambda: os.environ.update(aws))  # a closure: it runs on each worker, on the worker's os.environ
    shards = {part: write_shards(frames[part], f"s3://{s3_bucket}/{part}", 2) for part in ("train", "validation")}
    short = pipeline.training.model_copy(update={"num_boost_round": 5})
    booster, history, _ = train_on_dask(client, params, shards["train"], shards["validation"], feature_schema,
                                        pipeline.model_copy(update={"training": short}))
    assert booster.num_boosted_rounds() == 5 and len(history["auc"]) == 5


def test_no_shards_is_an_error(client, pipeline, setup):
    feature_schema, params, _ = setup
    with pytest.raises(ValueError, match="no shards"):
        train_on_dask(client, params, [], ["file:///v.parquet"], feature_schema, pipeline)


def pods(manifest: dict) -> dict[str, dict]:
    """The DaskCluster's pod specs as Pod manifests, by component."""
    return {component: {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"x-{component}"},
                        "spec": manifest["spec"][component]["spec"]}
            for component in ("scheduler", "worker")}


@pytest.mark.parametrize("pool", ["gpu", "cpu"])
def test_cluster_spec_places_workers_on_the_train_pool(pipeline, pool, tmp_path):
    pools = node_pools.load()
    placed = spec.with_overrides(pipeline, {"kubernetes.steps.train": {"pool": pool,
                                                                       "resources": {"limits": {"memory": "12Gi"}}}})
    manifest = train_cluster_spec(placed, "loan-default-train", n_workers=3, task_pods=pools)
    assert (manifest["apiVersion"], manifest["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    assert manifest["metadata"]["namespace"] == pools.namespace
    assert manifest["metadata"]["labels"]["mlpipe.io/pipeline"] == "loan_default"
    assert manifest["spec"]["worker"]["replicas"] == 3
    assert manifest["spec"]["idleTimeout"] > 0
    service = manifest["spec"]["scheduler"]["service"]
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                                  "spec": service}, K8S_VERSION, strict=True)
    rendered = pods(manifest)
    for pod in rendered.values():
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    worker_pod, scheduler_pod = rendered["worker"]["spec"], rendered["scheduler"]["spec"]
    expected, cpu = pools.pools[pool], pools.pools[pools.cpu_pool]
    [worker], [scheduler] = worker_pod["containers"], scheduler_pod["containers"]
    assert worker["image"] == scheduler["image"] == expected.image  # one image: the same versions everywhere
    assert worker_pod["nodeSelector"] == expected.node_selector and worker_pod["tolerations"] == expected.tolerations
    assert scheduler_pod["nodeSelector"] == cpu.node_selector and scheduler_pod["tolerations"] == cpu.tolerations
    assert worker["resources"]["limits"] == {**{k: str(v) for k, v in expected.resources.limits.items()},
                                             "memory": "12Gi"}
    assert "nvidia.com/gpu" not in scheduler["resources"]["limits"]
    assert worker["command"] == scheduler["command"] == ["dask"]
    assert worker["args"][:1] == ["worker"] and scheduler["args"][:1] == ["scheduler"]
    threads = worker["args"][worker["args"].index("--nthreads") + 1]
    assert threads == str(int(expected.resources.limits["cpu"]))
    assert {"name": "MLPIPE_DEVICE", "value": expected.env["MLPIPE_DEVICE"]} in worker["env"]
    for pod in (worker_pod, scheduler_pod):
        [container] = pod["containers"]
        assert {"secretRef": {"name": "mlpipe-task-credentials"}} in container["envFrom"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": TMP} in container["volumeMounts"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["serviceAccountName"] == pools.service_account


def test_cluster_spec_cpu_threads_from_millicores(pipeline):
    pools = node_pools.load()
    cpu = node_pools.placement(pools, pipeline, "ingest")
    half = cpu.model_copy(update={"resources": spec.PodResources(limits={"cpu": "2500m"})})
    manifest = cluster_spec("c", pools, half, cpu, n_workers=1)
    args = manifest["spec"]["worker"]["spec"]["containers"][0]["args"]
    assert args[args.index("--nthreads") + 1] == "2"


def test_module_is_import_light():
    import subprocess
    import sys

    code = ("import sys, mlpipe.compute.distributed; "
            "print([m for m in ('dask', 'distributed', 'xgboost', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)
    assert out.stdout.strip() == "[]"


def test_fit_distributed_shards_a_split_of_few_parts_and_trains_on_a_running_scheduler(client, pipeline, frames,
                                                                                      setup, tmp_path):
    feature_schema, params, _ = setup
    short = pipeline.model_copy(update={"training": pipeline.training.model_copy(update={"num_boost_round": 3})})
    parts = {part: storage.write_parquet(frames[part], uris.normalize(tmp_path / f"{part}.parquet"))
             for part in ("train", "validation")}  # one part each: fewer than 2 workers x 2 shards
    folder = uris.normalize(tmp_path / "run" / "train" / "shards")
    booster, history, _ = fit_distributed(short, params, parts, feature_schema, folder, workers=2,
                                          scheduler_address=client.scheduler.address)
    assert booster.num_boosted_rounds() == 3 and len(history["logloss"]) == 3
    assert storage.children(uris.join(folder, "train")) == [f"part-{i:05d}.parquet" for i in range(4)]
    assert len(storage.children(uris.join(folder, "validation"))) == 4


def test_a_split_of_enough_parts_is_its_own_shards(pipeline, frames, tmp_path):
    folder = uris.normalize(tmp_path / "split")
    written = write_shards(frames["train"], folder, 5)
    assert shards_of(folder, uris.normalize(tmp_path / "shards"), 4) == written
    assert not (tmp_path / "shards").exists()


def test_the_train_step_goes_to_dask_above_a_row_count(client, start_run):
    from mlpipe.steps import run_step
    from mlpipe.store.runs import Run

    options = {"training.num_boost_round": 5, "training.distributed.scheduler_address": client.scheduler.address}
    small = start_run("below", **options, **{"training.distributed.above_rows": 10_000})
    large = start_run("above", **options, **{"training.distributed.above_rows": 5_000})  # train split: 5,915 rows
    for uri in (small, large):
        for step in ("ingest", "split", "train"):
            run_step(step, uri)
    assert not storage.children(Run(small).path("train", "shards"))  # trained in this process
    assert len(storage.children(Run(large).path("train", "shards", "train"))) == 4


def test_the_train_step_trains_on_dask_when_the_spec_says_so(client, start_run):
    from mlpipe.steps import run_step
    from mlpipe.store.runs import Run

    uri = start_run("dask_run", **{"training.distributed.enabled": True, "training.num_boost_round": 20,
                                   "training.distributed.scheduler_address": client.scheduler.address})
    for step in ("ingest", "split"):
        run_step(step, uri)
    result = run_step("train", uri)
    shards = Run(uri).path("train", "shards", "train")
    assert len(storage.children(shards)) == 4  # 2 workers x 2 shards, read by the workers
    model = TabularModel.load(result["model_folder"])
    assert model.booster.num_boosted_rounds() <= 20 and 0.6 < result["validation"]["roc_auc"] <= 1
