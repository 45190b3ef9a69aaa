"""The train step for real: ingest + split + train on the bundled Lending Club data, MLflow on SQLite.

One module-scoped run (asking for CUDA, so on a CPU-only machine it also exercises the
fallback) is shared by the tests that inspect its outputs; the rest are small unit tests.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from mlpipe.core import spec
from mlpipe.core.errors import Refused
from mlpipe.core.results import Ingest, Split, Train
from mlpipe.core.tasks import Task
from mlpipe.data import datasets
from mlpipe.data.features import count_levels, labels, matrix, ordered_levels, schema
from mlpipe.model.baseline import load_baseline
from mlpipe.model.booster import booster_params, cuda_usable, requested_device, resolve_device, scale_pos_weight
from mlpipe.model.tabular import TabularModel
from mlpipe.registry import tracking
from mlpipe.steps import run_step
from mlpipe.steps.train import fit_models
from mlpipe.store import runs, storage
from mlpipe.store.runs import Run

SPEC = Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "loan_default.yaml"
FALLBACK = "no usable GPU"
RESULT_KEYS = {"step", "run", "seconds", "mlflow_run_id", "model_uri", "model_folder", "baseline", "reference",
               "device", "best_iteration", "num_trees", "scale_pos_weight", "validation", "train_seconds",
               "data_version", "tuned", "rows", "external_memory", "round_rule", "rounds",
               "baseline_settings"}


@dataclass
class Trained:
    run: Run
    result: dict
    fallback_warnings: list[str]

    def frame(self, part: str):
        return datasets.read(self.run.result(Split).folder(part))

    def mlflow_run(self):
        return MlflowClient().get_run(self.result["mlflow_run_id"])


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    records = _Records()
    logger = logging.getLogger("mlpipe.model.booster")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLPIPE_STORE", str(root / "store"))
        env.setenv("MLPIPE_PII_KEY", "test-key")
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        env.setenv("MLPIPE_MLFLOW_ARTIFACTS", (root / "artifacts").as_uri())
        env.setenv("MLPIPE_DEVICE", "cuda")
        uri = runs.start(spec.load(SPEC), "test_train")
        for step in ("ingest", "split"):
            run_step(step, uri)
        logger.addHandler(records)
        try:
            result = run_step("train", uri)
        finally:
            logger.removeHandler(records)
        yield Trained(Run(uri), result, [m for m in records.messages if FALLBACK in m])


def test_result_lists_the_outputs(trained):
    result = trained.result
    assert set(result) == RESULT_KEYS
    assert result["model_uri"] == f"runs:/{result['mlflow_run_id']}/model"
    assert result["model_folder"] == trained.run.path("train", "model")
    assert result["baseline"] == trained.run.path("train", "baseline")
    assert result["data_version"] == trained.run.result(Ingest).data_version
    assert result["num_trees"] == result["best_iteration"] + 1
    assert 0 < result["train_seconds"] < result["seconds"]
    assert set(result["validation"]) == {"roc_auc", "logloss", "baseline_roc_auc"}


def test_the_drift_reference_is_the_train_split_with_the_models_scores(trained):
    from mlpipe.model import reference

    kept = reference.load(trained.run.uri)
    model = TabularModel.load(trained.result["model_folder"])
    train = datasets.read(trained.run.result(Split).train)
    assert list(kept.columns) == [*model.schema["columns"], reference.SCORE]
    assert len(kept) == len(train)  # fewer rows than monitoring.reference_rows: all of them
    assert np.allclose(kept[reference.SCORE], model.scores(train[model.schema["columns"]]), atol=1e-6)


def test_scale_pos_weight_auto_is_negatives_over_positives_of_the_train_split(trained):
    target = trained.frame("train")["Class"]
    expected = (target == "good").sum() / (target == "bad").sum()
    assert trained.result["scale_pos_weight"] == pytest.approx(expected, rel=1e-12)


def test_cuda_request_falls_back_to_cpu_once_and_records_it(trained):
    expected = "cuda" if cuda_usable() else "cpu"
    assert trained.result["device"] == expected
    assert trained.mlflow_run().data.params["device"] == expected
    assert len(trained.fallback_warnings) == (0 if cuda_usable() else 1)


def test_early_stopping_watched_the_validation_set(trained):
    result = trained.result
    points = MlflowClient().get_metric_history(result["mlflow_run_id"], "round/validation_auc")
    auc = [m.value for m in sorted(points, key=lambda m: m.step)]
    rounds = len(auc)
    assert result["best_iteration"] < rounds < trained.run.spec.training.num_boost_round
    assert rounds == result["best_iteration"] + trained.run.spec.training.early_stopping_rounds + 1
    assert auc[result["best_iteration"]] == max(auc)
    # The AUC early stopping watched is the model's AUC on the validation split.
    validation = trained.frame("validation")
    model = TabularModel.load(result["model_folder"])
    observed = roc_auc_score(labels(validation, trained.run.spec), model.scores(validation))
    assert auc[result["best_iteration"]] == pytest.approx(observed, abs=1e-6)
    assert result["validation"]["roc_auc"] == pytest.approx(observed, abs=1e-6)


def test_mlflow_run_has_params_tags_metrics_and_datasets(trained):
    result, mlflow_run = trained.result, trained.mlflow_run()
    params, tags, metrics = mlflow_run.data.params, mlflow_run.data.tags, mlflow_run.data.metrics
    assert mlflow_run.info.run_name == trained.run.run_id
    assert mlflow_run.info.status == "FINISHED"
    for key, value in trained.run.spec.training.params.items():
        assert params[key] == str(value), key
    assert float(params["scale_pos_weight"]) == pytest.approx(result["scale_pos_weight"])
    assert params["best_iteration"] == str(result["best_iteration"])
    assert params["num_boost_round"] == "2000"
    assert tags[tracking.DATA_VERSION_TAG] == result["data_version"]
    assert tags[tracking.RUN_URI_TAG] == trained.run.uri
    assert tags[tracking.PIPELINE_TAG] == "loan_default"
    assert tags.get(tracking.GIT_COMMIT_TAG) == tracking.git_commit()
    rounds = int(params["rounds_trained"])
    for name in ("round/validation_auc", "round/validation_logloss"):
        points = MlflowClient().get_metric_history(result["mlflow_run_id"], name)
        assert sorted(p.step for p in points) == list(range(rounds))
    assert metrics["validation_roc_auc"] == pytest.approx(result["validation"]["roc_auc"])
    assert metrics["validation_baseline_roc_auc"] == pytest.approx(result["validation"]["baseline_roc_auc"])
    inputs = {d.tags[0].value: d.dataset for d in mlflow_run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    snapshot = trained.run.result(Ingest).snapshot
    for context, dataset in inputs.items():
        assert result["data_version"] in dataset.name, context
        assert json.loads(dataset.source)["uri"] == snapshot


def test_pyfunc_model_loads_and_predicts_in_a_fresh_process(trained, tmp_path):
    out = tmp_path / "scores.json"
    script = f"""
import json, mlflow.pyfunc
from mlpipe.data import datasets
from mlpipe.model.pyfunc import as_inputs
loaded = mlflow.pyfunc.load_model({trained.result['model_uri']!r})
model = loaded.unwrap_python_model().model
frame = datasets.read({trained.run.result(Split).analysis!r})
scores = loaded.predict(as_inputs(frame, model.schema))
inputs = [c.name for c in loaded.metadata.get_input_schema().inputs]
outputs = [c.name for c in loaded.metadata.get_output_schema().inputs]
contributions = model.contributions(frame.head(3))
json.dump({{"scores": scores.tolist(), "name": scores.name, "model": type(model).__name__,
           "inputs": inputs, "outputs": outputs, "contribution_columns": list(contributions.columns)}},
          open({str(out)!r}, "w"))
"""
    subprocess.run([sys.executable, "-c", script], check=True, env=dict(os.environ), timeout=120)
    got = json.loads(out.read_text())
    model = TabularModel.load(trained.result["model_folder"])
    expected = model.scores(trained.frame("analysis"))
    np.testing.assert_allclose(got["scores"], expected, rtol=0, atol=1e-7)
    assert got["name"] == "score"
    assert got["model"] == "TabularModel"
    assert got["inputs"] == model.schema["columns"]
    assert got["outputs"] == ["score"]
    assert got["contribution_columns"] == [*model.schema["columns"], "bias"]


def test_model_meets_the_quality_bar_on_the_analysis_set(trained):
    analysis = trained.frame("analysis")
    y = labels(analysis, trained.run.spec)
    model_auc = roc_auc_score(y, TabularModel.load(trained.result["model_folder"]).scores(analysis))
    baseline_auc = roc_auc_score(y, load_baseline(trained.run).scores(analysis))
    bars = trained.run.spec.thresholds  # the shipped spec's promotion bars (its comments give the measured figures)
    assert model_auc >= bars.min_roc_auc
    assert model_auc - baseline_auc >= bars.min_lift_over_baseline


def test_saved_baseline_scores_like_the_one_measured(trained):
    validation = trained.frame("validation")
    baseline = load_baseline(trained.run)
    auc = roc_auc_score(labels(validation, trained.run.spec), baseline.scores(validation))
    assert auc == pytest.approx(trained.result["validation"]["baseline_roc_auc"], abs=1e-6)
    # Unseen levels and missing values are scored, not rejected.
    odd = validation.head(3).assign(sub_grade="Z9", addr_state=None, revol_util=np.nan)
    scores = baseline.scores(odd)
    assert scores.shape == (3,)
    assert np.isfinite(scores).all()
    assert ((scores > 0) & (scores < 1)).all()


def test_baseline_weightings_searched_in_worker_processes_match_a_search_in_process(trained):
    from sklearn.model_selection import StratifiedKFold

    from mlpipe.model.baseline import CV_FOLDS, WEIGHTINGS, fit_baseline, preprocessing, weighted_search

    feature_schema = TabularModel.load(trained.result["model_folder"]).schema
    train, validation = ((matrix(frame, feature_schema), labels(frame, trained.run.spec))
                         for frame in (trained.frame("train"), trained.frame("validation")))
    fitted = fit_baseline(Task.BINARY, train, validation, feature_schema, seed=7)
    features = preprocessing(feature_schema)
    preprocessed = (features.fit_transform(train[0]), train[1]), (features.transform(validation[0]), validation[1])
    folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=7)
    in_process = {name: weighted_search(weight, *preprocessed, folds) for name, weight in WEIGHTINGS.items()}
    assert fitted.settings["candidates"] == in_process


def test_single_class_training_split_fails_cleanly(trained):
    source, uri = trained.run, runs.start(trained.run.spec, "one_class")
    run = Run(uri)
    storage.write_json(run.path("ingest", runs.RESULT), source.result("ingest"))
    split = source.result("split")
    train = trained.frame("train")
    negatives = train[labels(train, run.spec) == 0]
    split["train"] = storage.write_parquet(negatives, run.path("split", "train.parquet"))
    storage.write_json(run.path("split", runs.RESULT), split)
    experiment = tracking.experiment_id(run.spec.name)
    before = len(MlflowClient().search_runs([experiment]))
    with pytest.raises(Refused, match=r"the train split needs both classes of target.column 'Class': "
                                        r"0 of its \d+ rows are the positive class 'bad'"):
        run_step("train", uri)
    assert storage.children(run.path("train")) == [runs.ERROR]  # how it failed, nothing else
    assert len(MlflowClient().search_runs([experiment])) == before


def test_fallback_warns_once_when_cuda_is_not_usable(caplog):
    if cuda_usable():
        pytest.skip("a GPU is usable here")
    with caplog.at_level(logging.WARNING, logger="mlpipe.model.booster"):
        assert resolve_device("cuda") == "cpu"
        assert resolve_device("cpu") == "cpu"
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "'cuda' was requested but no usable GPU was found: training on cpu" in caplog.text


def test_device_env_overrides_the_spec_and_is_checked(monkeypatch):
    loaded = spec.load(SPEC)
    monkeypatch.delenv("MLPIPE_DEVICE", raising=False)
    assert requested_device(loaded) == "cpu"
    monkeypatch.setenv("MLPIPE_DEVICE", "cuda")
    assert requested_device(loaded) == "cuda"
    monkeypatch.setenv("MLPIPE_DEVICE", "tpu")
    with pytest.raises(Refused, match=r"\$MLPIPE_DEVICE='tpu': expected one of cpu, cuda"):
        requested_device(loaded)


def _training(**fields):
    document = {"name": "t", "data": {"source": "x.csv"}, "target": {"column": "y", "positive_class": 1},
                "training": fields}
    return spec.parse(document).training


def test_booster_params_add_round_metrics_weight_and_device():
    params = booster_params(_training(params={"eval_metric": "aucpr", "eta": 0.1}), 3.0, "cpu")
    assert params == {**spec.DEFAULT_PARAMS, "objective": "binary:logistic", "eval_metric": ["logloss", "auc", "aucpr"],
                      "eta": 0.1, "scale_pos_weight": 3.0, "device": "cpu"}  # the spec's params over the defaults
    # The spec's last metric still decides early stopping.
    params = booster_params(_training(params={"eval_metric": ["auc", "logloss"]}), 1.0, "cpu")
    assert params["eval_metric"] == ["auc", "logloss"]


@pytest.mark.parametrize(("params", "message"), [
    ({"device": "cuda"}, "training.params.device: set it with training.device"),
    ({"scale_pos_weight": 2}, "training.params.scale_pos_weight: set it with training.scale_pos_weight"),
    ({"tree_method": "exact"}, "training.params.tree_method: only 'hist' is supported"),
])
def test_booster_params_reject_settings_that_belong_elsewhere(params, message):
    with pytest.raises(Refused, match=message):
        booster_params(_training(params=params), 1.0, "cpu")


def test_many_batches_and_external_memory_train_the_same_model(trained):
    parts = {part: trained.run.result(Split).folder(part) for part in ("train", "validation")}
    sample = trained.frame("train")
    fits = {name: fit_models(spec.with_overrides(trained.run.spec, overrides), parts, sample) for name, overrides in (
        ("one batch", {}), ("700-row batches", {"data.batch_rows": 700}),
        ("external memory", {"data.batch_rows": 700, "training.external_memory_rows": 1_000}))}
    assert [fit.external_memory for fit in fits.values()] == [False, False, True]
    assert {fit.rows["train"] for fit in fits.values()} == {len(trained.frame("train"))}
    one = fits["one batch"].validation["roc_auc"]
    for name, fit in fits.items():  # quantiles sketched over 9 batches differ a little from one sketch
        assert fit.validation["roc_auc"] == pytest.approx(one, abs=0.01), name
        assert fit.model.schema == fits["one batch"].model.schema, name


# --- how many rounds the final model gets --------------------------------------------------------------------

# The tuned params of a run whose final model early-stopped at iteration 1 (2 trees) on the validation split.
SLOW_TUNED = {"eta": 0.0114, "max_depth": 4, "min_child_weight": 31.04, "subsample": 0.84, "colsample_bytree": 0.5,
              "colsample_bylevel": 0.87, "gamma": 0.0146, "lambda": 17.49, "alpha": 0.0618, "max_delta_step": 9.64}


def unlucky_validation_run(trained, run_id: str, **overrides) -> str:
    """A clone of the trained run whose validation split is tiny and unlucky: its 10 bad loans are those with
    the lowest interest rates, its 190 good ones those with the highest, so the validation AUC falls as the
    model learns and early stopping on it stops at once."""
    uri = runs.start(spec.with_overrides(trained.run.spec, overrides), run_id)
    run = Run(uri)
    storage.write_json(run.path("ingest", runs.RESULT), trained.run.result("ingest"))
    split = trained.run.result("split")
    validation = trained.frame("validation").sort_values("int_rate", kind="stable")
    bad = labels(validation, run.spec) == 1
    unlucky = pd.concat([validation[bad].head(10), validation[~bad].tail(190)])
    split["validation"] = storage.write_parquet(unlucky, run.path("split", "validation.parquet"))
    storage.write_json(run.path("split", runs.RESULT), split)
    return uri


def validation_stopping_round(uri: str) -> int:
    """Where XGBoost's own early stopping on the validation split stops (0-based), the spec's patience."""
    run = Run(uri)
    train, validation = (datasets.read(run.result(Split).folder(part)) for part in ("train", "validation"))
    feature_schema = schema(train, run.spec)
    y = labels(train, run.spec)
    params = booster_params(run.spec.training, scale_pos_weight(len(y), int(y.sum()), "auto"), "cpu")
    data = {part: xgb.DMatrix(matrix(frame, feature_schema), label=labels(frame, run.spec), enable_categorical=True)
            for part, frame in (("train", train), ("validation", validation))}
    booster = xgb.train(params, data["train"], num_boost_round=run.spec.training.num_boost_round,
                        evals=[(data["validation"], "validation")], verbose_eval=False,
                        early_stopping_rounds=run.spec.training.early_stopping_rounds)
    return booster.best_iteration


def test_after_tuning_the_final_model_boosts_the_tuned_round_count_not_a_noisy_early_stop(trained):
    tuned_spec = {f"training.params.{key}": value for key, value in SLOW_TUNED.items()}
    uri = unlucky_validation_run(trained, "tuned_rounds", **tuned_spec)
    assert validation_stopping_round(uri) <= 3  # what early stopping on this validation split would keep
    storage.write_json(Run(uri).path("tune", runs.RESULT), {"best_params": SLOW_TUNED, "best_rounds": 150,
                                                            "tuning_run_id": "tuning-run", "skipped": False})
    result = run_step("train", uri)
    assert (result["tuned"], result["round_rule"], result["num_trees"]) == (True, "tuned", 150)
    assert result["rounds"] == "150 rounds: the best tuning trial's cross-validated round count (at least 1 / eta)"
    model = TabularModel.load(result["model_folder"])
    assert model.booster.num_boosted_rounds() == 150 and model.tree_range() == (0, 150)
    # The validation split is still scored every round and at the end.
    mlflow_run = MlflowClient().get_run(result["mlflow_run_id"])
    assert mlflow_run.data.params["round_rule"] == "tuned"
    points = MlflowClient().get_metric_history(result["mlflow_run_id"], "round/validation_auc")
    assert sorted(p.step for p in points) == list(range(150))
    validation = datasets.read(Run(uri).result(Split).validation)
    observed = roc_auc_score(labels(validation, Run(uri).spec), model.scores(validation))
    assert result["validation"]["roc_auc"] == pytest.approx(observed, abs=1e-6)


def test_without_tuning_early_stopping_keeps_a_floor_of_rounds(trained):
    uri = unlucky_validation_run(trained, "floored", **{"training.params.eta": 0.05})
    assert validation_stopping_round(uri) <= 3
    result = run_step("train", uri)
    floor = math.ceil(1 / 0.05)
    assert (result["tuned"], result["round_rule"]) == (False, "early_stopping")
    assert result["rounds"] == f"early stopping on validation: at least {floor} rounds, patience 100, at most 2000"
    assert result["num_trees"] >= floor
    params = MlflowClient().get_run(result["mlflow_run_id"]).data.params
    assert (params["round_rule"], params["round_floor"], params["round_patience"]) == ("early_stopping", "20", "100")
    assert int(params["rounds_trained"]) == result["num_trees"] + 100


# --- the same model whatever the PII key -------------------------------------------------------------------------

def test_category_levels_are_ordered_by_rows_then_first_appearance_in_any_batches():
    values = pd.Series(["b", "a", None, "c", "a", "d", "c", "a", "b"])
    assert count_levels(values) == {"b": 2, "a": 3, "c": 2, "d": 1}
    assert ordered_levels(count_levels(values)) == ["a", "b", "c", "d"]
    batched = count_levels(values[4:], count_levels(values[:4]))
    assert list(batched.items()) == list(count_levels(values).items())
    assert ordered_levels(count_levels(pd.Series(["z", "y", "y", "x"]))) == ["y", "z", "x"]  # not by text


def test_two_pii_keys_train_the_same_model(trained, monkeypatch):
    scores = []
    for key in ("key-one", "key-two"):
        monkeypatch.setenv("MLPIPE_PII_KEY", key)
        uri = runs.start(spec.with_overrides(trained.run.spec, {"training.num_boost_round": 80}), f"pii_{key}")
        for step in ("ingest", "split", "train"):
            run_step(step, uri)
        analysis = datasets.read(Run(uri).result(Split).analysis)
        model = TabularModel.load(Run(uri).result(Train).model_folder)
        scores.append(model.scores(analysis))
        hashed = model.schema["categorical"]["addr_state"]
        assert "CA" not in hashed and len(hashed) > 40
    np.testing.assert_array_equal(scores[0], scores[1])
