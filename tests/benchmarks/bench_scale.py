"""Benchmark: the training pipeline at 10k / 100k / 1M / 10M rows, time and peak memory of every step.

    python tests/benchmarks/bench_scale.py [--rows 10000,100000,1000000,10000000] [--rounds 100]

For each size, ``mlpipe synth`` writes that many synthetic loans (seeded; Parquet parts) into a
throwaway store, and the training DAG's steps run on them one after another, each as
``python -m mlpipe step <name>`` in a process of its own, exactly as the DAG's tasks run them:
ingest, validate, split, validate_split, train, analyze, register (tuning is off: its trials
work on a sample of at most ``tuning.sample_rows`` rows whatever the data's size, so it does not
scale with it). The booster trains ``--rounds`` rounds (eta 0.3, depth 6; early stopping set to
the same count, so every size boosts the same rounds).

Printed, per size: wall seconds and peak RSS (the process's own VmHWM) of each step, the DAG's
total (the steps' sum: they run one after another), the float32 feature matrix's size
(rows x features x 4 bytes) and the analysis ROC AUC. Then the bars:

- time from 1M to 10M rows: at most 12x for 10x the rows;
- peak RSS of every step at the largest size: at most 2.5x its float32 feature matrix;
- training at the largest size against raw ``xgboost.train`` on an in-memory ``QuantileDMatrix``
  of the same split, same params and rounds, in a process of its own (read + encode + build +
  boost, as our step's wall time also includes its imports, reads and writes): at most 1.15x;
- the analysis ROC AUC at the largest size at least that at the next largest.

With ``--tasks`` (the default), the same steps then run at :data:`TASK_ROWS` rows on the same synthetic
loans for a regression model (``int_rate``, without ``sub_grade``, which prices it) and a multiclass one
(``verification_status``, 3 classes), each with its own reference profile: their time and peak RSS per step
against the binary row at that size, and their analysis headline metric against their baseline's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench_monitor import CLI, PEAK, run_peak
from bench_score import ROOT, SPEC, measured

STEPS = ("ingest", "validate", "split", "validate_split", "train", "analyze", "register")
TIME_AIM, MEMORY_AIM, TRAIN_AIM = 12.0, 2.5, 1.15
TASK_ROWS = 1_000_000
# The spec of each other task on the synthetic loans: dotted-key overrides of the reference spec.
TASK_SPECS = {
    "regression": {"model_name": "loan_rate", "target": {"column": "int_rate", "task": "regression"},
                   "features.exclude": ["sub_grade", "Class"],
                   "training.params.objective": "reg:squarederror", "training.params.eval_metric": [],
                   "thresholds.min_roc_auc": 0.5, "thresholds.fairness": None, "validation.positive_rate": None},
    "multiclass": {"model_name": "loan_verification", "features.exclude": ["Class"],
                   "target": {"column": "verification_status", "task": "multiclass"},
                   "training.params.objective": "multi:softprob", "training.params.eval_metric": [],
                   "slices": ["term", "emp_length"], "thresholds.min_roc_auc": 0.5, "thresholds.fairness": None,
                   "validation.positive_rate": None},
}
RAW = PEAK + """
import json, sys, time
import xgboost as xgb
from mlpipe.core import uris
from mlpipe.core.results import Split, Train
from mlpipe.data import datasets, features
from mlpipe.store import storage
from mlpipe.store.runs import Run
from mlpipe.model.booster import booster_params
run = Run(sys.argv[1])
trained, parts = run.result(Train), run.result(Split)
params = booster_params(run.spec.training, trained.scale_pos_weight, trained.device)
schema = storage.read_json(uris.join(trained.model_folder, "feature_schema.json"))
frames = {part: datasets.read(parts.folder(part)) for part in ("train", "validation")}
dtrain = xgb.QuantileDMatrix(features.matrix(frames["train"], schema), label=features.labels(frames["train"], run.spec),
                             enable_categorical=True)
dvalid = xgb.QuantileDMatrix(features.matrix(frames["validation"], schema),
                             label=features.labels(frames["validation"], run.spec), enable_categorical=True, ref=dtrain)
started = time.perf_counter()
booster = xgb.train(params, dtrain, num_boost_round=run.spec.training.num_boost_round, evals=[(dvalid, "validation")],
                    early_stopping_rounds=run.spec.training.early_stopping_rounds, verbose_eval=False)
print("boosting-seconds", time.perf_counter() - started, "rounds", booster.num_boosted_rounds())
"""


def environment(root: Path) -> dict[str, str]:
    """A throwaway store and SQLite MLflow under ``root``, for this process and its children."""
    env = {**os.environ, "MLPIPE_STORE": (root / "store").as_uri(), "MLPIPE_PII_KEY": "bench-key",
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "MLPIPE_MLFLOW_ARTIFACTS": (root / "art").as_uri(),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "PYTHONPATH": str(ROOT / "plugins")}
    os.environ.update(env)
    return env


def pipeline_at(rows: int, root: Path, env: dict[str, str], rounds: int, task: str = "binary") -> dict:
    """Synthesize ``rows`` loans (once per size) and run the steps on them with the reference spec or ``task``'s
    (:data:`TASK_SPECS`, profiled first); seconds and MiB per step, and what came out."""
    from mlpipe.core import spec, uris
    from mlpipe.core.results import Analyze, Train
    from mlpipe.core.tasks import RULES, Task
    from mlpipe.data.profile import write_profile
    from mlpipe.store import runs, storage
    from mlpipe.store.runs import Run

    data = root / "data" / str(rows)
    if not data.exists():
        run_peak([sys.executable, "-c", CLI, "synth", "--rows", str(rows), "--output", data.as_uri(), "--seed", "7"],
                 env)
    overrides = {"data.source": data.as_uri(), "tuning.enabled": False, "training.num_boost_round": rounds,
                 "training.early_stopping_rounds": rounds,
                 "training.params.eta": 0.3, "training.params.max_depth": 6,
                 "training.params.min_child_weight": 1, "training.params.max_cat_threshold": 32,
                 **TASK_SPECS.get(task, {})}
    pipeline = spec.with_overrides(spec.load(SPEC), overrides)
    if task != "binary":  # the task's own reference profile: its target's classes or range
        profile = write_profile(pipeline, (root / f"{task}.profile.json").as_uri())
        pipeline = spec.with_overrides(pipeline, {"validation.profile": profile})
    uri = runs.start(pipeline, f"scale_{task}_{rows}")
    measured = {step: run_peak([sys.executable, "-c", CLI, "step", step, "--run", uri], env) for step in STEPS}
    run = Run(uri)
    model = run.result(Train).model_folder
    columns = len(storage.read_json(uris.join(model, "feature_schema.json"))["columns"])
    metrics, headline = run.result(Analyze).metrics, RULES[Task(task)].headline
    return {"rows": rows, "steps": measured, "uri": uri, "features": columns, "task": task, "metric": headline,
            "matrix_mib": rows * columns * 4 / 2**20, "roc_auc": metrics.get("roc_auc"),
            "headline": metrics[headline], "baseline": metrics[f"baseline_{headline}"]}


def raw_training(result: dict, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds and peak MiB of raw ``xgboost.train`` on the run's split, and its boosting figures."""
    out, wall, _ = measured([sys.executable, "-c", RAW, result["uri"]], env)
    boosting, peak = out.split("boosting-seconds", 1)[1].split("peak-rss-kib")
    return wall, int(peak.split()[0]) / 1024, boosting.strip()


def table(results: list[dict]) -> None:
    """Print the scaling table: a row per step and the DAG total, a column pair per size."""
    head = "step".ljust(16) + "".join(f"{r['rows']:>14,} rows".rjust(26) for r in results)
    print(head)
    for step in STEPS:
        print(step.ljust(16) + "".join(f"{r['steps'][step][0]:9.1f} s {r['steps'][step][1]:9.0f} MiB".rjust(26)
                                       for r in results))
    print("DAG (sum)".ljust(16) + "".join(f"{total(r):9.1f} s".rjust(26) for r in results))
    print("f32 matrix".ljust(16) + "".join(f"{r['matrix_mib']:9.0f} MiB".rjust(26) for r in results))
    print("analysis AUC".ljust(16) + "".join(f"{r['roc_auc']:9.4f}".rjust(26) for r in results))


def total(result: dict) -> float:
    return sum(seconds for seconds, _ in result["steps"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000,1000000,10000000")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--tasks", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also a regression and a multiclass pipeline at {TASK_ROWS:,} rows")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.rows.split(","))
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-scale-") as folder:
        env = environment(Path(folder))
        results = []
        for rows in sizes:
            results.append(pipeline_at(rows, Path(folder), env, args.rounds))
            print(f"{rows:,} rows: DAG {total(results[-1]):.1f} s, analysis ROC AUC {results[-1]['roc_auc']:.4f}",
                  flush=True)
        table(results)
        largest = results[-1]
        raw_wall, raw_rss, boosting = raw_training(largest, env)
        ours_wall, ours_rss = largest["steps"]["train"]
        print(f"\ntraining at {largest['rows']:,} rows: ours {ours_wall:.1f} s / {ours_rss:.0f} MiB, raw "
              f"xgboost.train on an in-memory QuantileDMatrix {raw_wall:.1f} s / {raw_rss:.0f} MiB "
              f"(boosting {boosting}): {ours_wall / raw_wall:.2f}x time (aim <= {TRAIN_AIM}x), "
              f"{ours_rss / raw_rss:.2f}x memory")
        worst = max(rss for _, rss in largest["steps"].values())
        print(f"peak RSS at {largest['rows']:,} rows: {worst:.0f} MiB = {worst / largest['matrix_mib']:.2f}x the "
              f"float32 feature matrix (aim <= {MEMORY_AIM}x)")
        if len(results) > 1:
            before = results[-2]
            growth = total(largest) / total(before)
            print(f"DAG time {before['rows']:,} -> {largest['rows']:,} rows: {growth:.2f}x for "
                  f"{largest['rows'] / before['rows']:.0f}x the rows (aim <= {TIME_AIM}x); analysis ROC AUC "
                  f"{before['roc_auc']:.4f} -> {largest['roc_auc']:.4f} (aim: not lower)")
        if args.tasks:
            binary = next((r for r in results if r["rows"] == TASK_ROWS), None) or pipeline_at(
                TASK_ROWS, Path(folder), env, args.rounds)
            tasks(binary, [pipeline_at(TASK_ROWS, Path(folder), env, args.rounds, task) for task in TASK_SPECS])


def tasks(binary: dict, others: list[dict]) -> None:
    """Print each task's steps at :data:`TASK_ROWS` rows against the binary pipeline's, and its headline metric."""
    print(f"\nevery task at {TASK_ROWS:,} rows (time and peak RSS; ratio to binary)")
    print("step".ljust(16) + "".join(f"{r['task']:>26}" for r in (binary, *others)))
    for step in (*STEPS, "DAG (sum)"):
        cells = []
        for result in (binary, *others):
            seconds = total(result) if step == "DAG (sum)" else result["steps"][step][0]
            rss = max(m for _, m in result["steps"].values()) if step == "DAG (sum)" else result["steps"][step][1]
            base = total(binary) if step == "DAG (sum)" else binary["steps"][step][0]
            cells.append(f"{seconds:7.1f} s {rss:6.0f} MiB {seconds / base:4.2f}x".rjust(26))
        print(step.ljust(16) + "".join(cells))
    for result in (binary, *others):
        print(f"{result['task']}: analysis {result['metric']} {result['headline']:.4f}, baseline "
              f"{result['baseline']:.4f}")


if __name__ == "__main__":
    main()
