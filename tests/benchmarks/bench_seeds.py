"""Benchmark: the model and the linear baseline on the analysis set, across split seeds.

    python tests/benchmarks/bench_seeds.py [--spec dags/pipelines/loan_default.yaml] [--seeds 42,1,2,3,4]
                                           [--no-tuning] [--record]

The bundled book's analysis set holds ~100 bad loans, so one split's ROC AUC, and the model's lift
over the baseline, move by a few hundredths from seed to seed: a change to training is judged on
the mean and range over several splits, not on one. For each split seed (``split.seed``, as
``mlpipe start --set split.seed=N`` overrides it) this runs the training steps, start → ingest →
validate → split → validate_split → tune_prepare / tune_trials / tune → train → analyze, by
:func:`mlpipe.steps.run_step` (no Airflow), each seed in its own temporary store, SQLite MLflow
and Optuna journal. Tuning runs as the spec says (``--no-tuning`` sets ``tuning.enabled`` false);
the tuning workers' shards run one after the other, so a seed's study, hence its figures, are
the same from run to run. It prints one line per seed (the analysis set's headline metric of the task,
``target.task``: ROC AUC, log loss or RMSE, of the model and of the baseline, the lift (positive: the model is
better), the booster's best iteration and trees, the baseline's chosen settings when the train step reports
them) and the mean and range of each figure. ``--record`` keeps the figures as the pipeline's noise band in the
artifact store (``$MLPIPE_STORE``, :mod:`mlpipe.registry.noise_band`): the model card of every version registered
after that quotes it.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[2] / "dags" / "pipelines" / "loan_default.yaml"
SEEDS = (42, 1, 2, 3, 4)
STEPS = ("ingest", "validate", "split", "validate_split", "tune_prepare", "tune_trials", "tune", "train", "analyze")
# name, format of a seed's value, format of the mean
FIGURES = (("model", "{:.4f}", "{:.4f}"), ("baseline", "{:.4f}", "{:.4f}"), ("lift", "{:+.4f}", "{:+.4f}"),
           ("best_iter", "{:.0f}", "{:.1f}"), ("trees", "{:.0f}", "{:.1f}"))


def isolate(root: Path) -> None:
    """Point the artifact store, MLflow and the Optuna journal into ``root`` (nothing touches ``.state``)."""
    os.environ.update({"MLPIPE_STORE": str(root / "store"), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                       "MLPIPE_MLFLOW_ARTIFACTS": (root / "artifacts").as_uri(),
                       "MLPIPE_OPTUNA_DIR": str(root / "optuna"), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    os.environ.pop("MLPIPE_OPTUNA_STORAGE", None)
    os.environ.setdefault("MLPIPE_PII_KEY", "bench-key")


def one_seed(spec_path: Path, seed: int, tuning: bool) -> dict[str, Any]:
    """Run the training steps on split ``seed`` in a fresh temporary environment; return its figures."""
    from mlpipe.core import spec
    from mlpipe.steps import run_step
    from mlpipe.store import runs

    overrides: dict[str, Any] = {"split.seed": seed}
    if not tuning:
        overrides["tuning.enabled"] = False
    resolved = spec.with_overrides(spec.load(spec_path), overrides)
    with tempfile.TemporaryDirectory(prefix=f"bench-seeds-{seed}-") as root:
        isolate(Path(root))
        uri = runs.start(resolved, f"bench_seed_{seed}")
        results = {}
        for step in STEPS:
            if step == "tune_trials":
                for shard in range(resolved.tuning.workers):
                    run_step(step, uri, shard)
            else:
                results[step] = run_step(step, uri)
    from mlpipe.core.tasks import RULES

    train, analysis = results["train"], results["analyze"]["metrics"]
    headline = RULES[resolved.target.task].headline
    return {"model": analysis[headline], "baseline": analysis[f"baseline_{headline}"], "lift": analysis["lift"],
            "best_iter": train["best_iteration"], "trees": train["num_trees"], "tuned": train.get("tuned", False),
            "baseline_settings": train.get("baseline_settings")}


def package() -> Path:
    """Where the ``mlpipe`` package measured was imported from."""
    import mlpipe

    return Path(mlpipe.__file__).resolve().parent


def commit() -> str:
    """The commit of the measured package's checkout (``-dirty`` with changes), or ``unknown``."""
    return subprocess.run(["git", "-C", str(package()), "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip() or "unknown"


def record(spec_path: Path, rows: dict[int, dict[str, Any]], store: str) -> str:
    """Keep the seeds' figures as the pipeline's noise band in ``store``; return its URI."""
    from datetime import UTC, datetime

    from mlpipe.core import spec
    from mlpipe.core.tasks import RULES
    from mlpipe.registry.noise_band import NoiseBand, record

    pipeline = spec.load(spec_path)
    band = NoiseBand(metric=RULES[pipeline.target.task].headline, seeds=list(rows),
                     **{name: [row[name] for row in rows.values()] for name in ("model", "baseline", "lift")},
                     tuned=all(row["tuned"] for row in rows.values()), source=pipeline.data.source, commit=commit(),
                     measured_at=datetime.now(UTC))
    return record(pipeline.name, band, store)


def settings(chosen: dict[str, Any] | None) -> str:
    """The baseline's chosen settings (``C`` and class weighting, ``alpha``), ``-`` when the train step does not
    report them."""
    shown = {key: chosen[key] for key in ("C", "class_weight", "alpha") if key in (chosen or {})}
    return ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in shown.items()) or "-"


def report(rows: dict[int, dict[str, Any]]) -> None:
    """One line per seed, then the mean, min, max and range (max - min) of each figure."""
    print(f"{'seed':>6}" + "".join(f"{name:>11}" for name, *_ in FIGURES) + "  tuned  baseline settings")
    for seed, row in rows.items():
        figures = "".join(f"{form.format(row[name]):>11}" for name, form, _ in FIGURES)
        print(f"{seed:>6}{figures}  {row['tuned']!s:>5}  {settings(row['baseline_settings'])}")
    values = {name: [row[name] for row in rows.values()] for name, *_ in FIGURES}
    summaries = (("mean", statistics.fmean, 2), ("min", min, 1), ("max", max, 1),
                 ("range", lambda v: max(v) - min(v), 2))
    for label, summary, form in summaries:
        print(f"{label:>6}" + "".join(f"{figure[form].format(summary(values[figure[0]])):>11}"
                                      for figure in FIGURES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help="the pipeline spec (default: the bundled one)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)),
                        help="comma-separated split seeds (default: %(default)s)")
    parser.add_argument("--no-tuning", action="store_true", help="set tuning.enabled false (the spec's params)")
    parser.add_argument("--record", action="store_true",
                        help="keep the figures as the noise band in $MLPIPE_STORE (model cards quote it)")
    args = parser.parse_args()
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    logging.basicConfig(level=logging.WARNING)
    for chatty in ("great_expectations", "mlflow"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    from mlpipe.store.runs import store_uri

    store = store_uri()  # before each seed points $MLPIPE_STORE at its own temporary store
    print(f"mlpipe from {package()} (commit {commit()})")
    print(f"spec {args.spec}, tuning {'off' if args.no_tuning else 'as the spec says'}")
    rows = {}
    for seed in seeds:
        rows[seed] = one_seed(args.spec, seed, tuning=not args.no_tuning)
        print(f"  seed {seed} done", flush=True)
    report(rows)
    if args.record:
        print(f"recorded the noise band: {record(args.spec, rows, store)}")


if __name__ == "__main__":
    main()
