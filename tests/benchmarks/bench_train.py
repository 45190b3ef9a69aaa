"""Benchmark: the train step's boosting against a bare ``xgboost.train`` on the same data and params.

    python tests/benchmarks/bench_train.py [--repeats 7]

Both sides train the bundled spec on the same split (one ingest + split, in a temporary
store with a temporary SQLite MLflow), with the step's resolved booster params, the same
validation set for early stopping and so the same number of rounds (checked). Ours and
raw alternate (which goes first alternates too); medians and minimums are reported
(XGBoost's OpenMP threads are very sensitive to other load on the machine).

- ``xgboost.train``: the step's ``train_seconds`` against a timed bare ``xgboost.train``.
  DMatrix construction is EXCLUDED on both sides (each builds the same QuantileDMatrix
  pair outside the timed call). Target: ours <= 1.15x raw.
- whole step: ``run_step("train")`` (read, fit, baseline, save, MLflow run + model)
  against the bare path read parquet -> feature matrix -> QuantileDMatrix -> train,
  for information: it shows what the bookkeeping around the boosting costs.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

SPEC = Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "loan_default.yaml"
TARGET = 1.15


def prepare(root: Path) -> str:
    """Point the store and MLflow into ``root`` and run ingest + split once; return the run URI."""
    from mlpipe.core import spec
    from mlpipe.steps import run_step
    from mlpipe.store import runs

    os.environ.update({"MLPIPE_STORE": str(root / "store"), "MLPIPE_PII_KEY": "bench-key",
                       "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                       "MLPIPE_MLFLOW_ARTIFACTS": (root / "artifacts").as_uri(),
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    uri = runs.start(spec.load(SPEC), "bench")
    for step in ("ingest", "split"):
        run_step(step, uri)
    return uri


def ours(uri: str) -> tuple[int, float, float]:
    """Rounds trained, seconds in ``xgboost.train`` (as the step reports) and of the whole step."""
    from mlpipe.model.tabular import TabularModel
    from mlpipe.steps import run_step

    started = time.perf_counter()
    result = run_step("train", uri)
    whole = time.perf_counter() - started
    rounds = TabularModel.load(result["model_folder"]).booster.num_boosted_rounds()
    return rounds, result["train_seconds"], whole


def raw(uri: str) -> tuple[int, float, float]:
    """The same training with nothing around it: rounds, seconds of ``xgboost.train``, of the whole path."""
    import xgboost as xgb

    from mlpipe.core.results import Split
    from mlpipe.data import datasets, features
    from mlpipe.model.booster import booster_params, requested_device, resolve_device, scale_pos_weight
    from mlpipe.store.runs import Run

    started = time.perf_counter()
    run = Run(uri)
    spec, parts = run.spec, run.result(Split)
    train, validation = (datasets.read(parts.folder(part)) for part in ("train", "validation"))
    schema = features.schema(train, spec)
    y_train, y_valid = features.labels(train, spec), features.labels(validation, spec)
    params = booster_params(spec.training, scale_pos_weight(len(y_train), int(y_train.sum()),
                                                            spec.training.scale_pos_weight),
                            resolve_device(requested_device(spec)))
    dtrain = xgb.QuantileDMatrix(features.matrix(train, schema), label=y_train, enable_categorical=True)
    dvalid = xgb.QuantileDMatrix(features.matrix(validation, schema), label=y_valid, enable_categorical=True,
                                 ref=dtrain)
    boosting = time.perf_counter()
    booster = xgb.train(params, dtrain, num_boost_round=spec.training.num_boost_round,
                        evals=[(dvalid, "validation")],
                        early_stopping_rounds=spec.training.early_stopping_rounds, verbose_eval=False)
    done = time.perf_counter()
    return booster.num_boosted_rounds(), done - boosting, done - started


def report(samples: dict[str, list[tuple[int, float, float]]]) -> None:
    """Print medians (and minimums, the runs least disturbed by other load) with their ratios."""
    rounds = {side: {s[0] for s in runs} for side, runs in samples.items()}
    if rounds["ours"] != rounds["raw"] or len(rounds["ours"]) != 1:
        raise SystemExit(f"rounds differ, the comparison is not fair: {rounds}")
    print(f"\nrepeats: {len(samples['ours'])}, rounds trained: {rounds['ours'].pop()} (both)")
    print(f"{'measure':<44}{'stat':>7}{'ours s':>9}{'raw s':>9}{'ratio':>8}")
    rows = (("xgboost.train (DMatrix excluded, both)", 1, f"target <= {TARGET}x"),
            ("whole step vs read+matrix+DMatrix+train", 2, "info"))
    for label, index, note in rows:
        for stat, summary in (("median", statistics.median), ("min", min)):
            ours_s, raw_s = (summary(s[index] for s in samples[side]) for side in ("ours", "raw"))
            print(f"{label:<44}{stat:>7}{ours_s:>9.3f}{raw_s:>9.3f}{ours_s / raw_s:>7.2f}x  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as root:
        uri = prepare(Path(root))
        ours(uri)  # warm-up: imports, the MLflow database, caches
        raw(uri)
        samples: dict[str, list[tuple[int, float, float]]] = {"ours": [], "raw": []}
        for repeat in range(args.repeats):
            order = (("ours", ours), ("raw", raw))
            for side, measure in order if repeat % 2 == 0 else reversed(order):
                samples[side].append(measure(uri))
        report(samples)


if __name__ == "__main__":
    main()
