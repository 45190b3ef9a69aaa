"""Benchmark: does the tuning step's search (seeded TPE + median pruning) earn its keep?

Run: ``python tests/benchmarks/bench_tune.py [--seeds 3] [--random-trials 50]`` (several minutes).

On the bundled data, split as the pipeline splits it, every trial of every search is scored by the
step's own objective (:class:`mlpipe.steps.tune.Objective` with the shipped spec: ``tuning.cv_folds``-fold
stratified cross-validation over train + validation, early stopping and pruning on the folds' mean AUC;
the analysis set is never read by any search):

1. Search efficiency, per seed: random search runs ``--random-trials`` trials (no pruning); its best
   objective value is the target. TPE with pruning (the step's sampler and pruner) runs until a trial
   reaches the target, at most ``--random-trials`` trials. Neither search is warm-started. Printed:
   trials-to-reach per seed ("never" when no trial reaches it; it then counts as ``--random-trials`` + 1
   in the mean) and the mean (bar: <= 25).
2. Does tuning help on unseen data, per seed: TPE run as ``tune_prepare`` sets it up without a champion
   (trial 0 is the spec's own params, then the step's sampler and pruner) for the spec's budget
   (``tuning.trials``); the model ``train`` makes with its best params against the model of the untuned
   spec params, both trained on train and early-stopped on validation: ROC AUC on the ANALYSIS set
   (bar: the mean over seeds of tuned beats untuned).
3. Storage: two worker processes reporting every round to one study, SQLite vs the journal file
   (why the step's local default is the journal).

Studies of parts 1-2 are in memory (the sampler and pruner are what is measured); part 3 uses files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from multiprocessing import Process
from pathlib import Path

import optuna
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))

from mlpipe.core import spec, uris  # noqa: E402
from mlpipe.core.results import Split  # noqa: E402
from mlpipe.data import datasets  # noqa: E402
from mlpipe.data.features import labels  # noqa: E402
from mlpipe.model.booster import tuned_training  # noqa: E402
from mlpipe.steps import run_step  # noqa: E402
from mlpipe.steps.train import fit_models  # noqa: E402
from mlpipe.steps.tune import (  # noqa: E402
    Objective,
    fold_count,
    objective_name,
    open_storage,
    pruner,
    sampler,
    spec_params,
)
from mlpipe.store import runs  # noqa: E402
from mlpipe.store.runs import Run  # noqa: E402

SPEC = ROOT / "dags" / "pipelines" / "loan_default.yaml"
REPORTS, STORAGE_TRIALS = 150, 5


def split_run(folder: Path) -> Run:
    os.environ.update({"MLPIPE_STORE": uris.normalize(folder / "store"), "MLPIPE_PII_KEY": "bench-key",
                       "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"})
    uri = runs.start(spec.load(SPEC), "bench_tune")
    for step in ("ingest", "split"):
        run_step(step, uri)
    return Run(uri)


def search(objective: Objective, study_sampler, study_pruner, trials: int, stop_at: float | None = None,
           first: dict | None = None):
    """An in-memory study of up to ``trials`` trials (``first`` enqueued as trial 0), stopped at ``stop_at``."""
    study = optuna.create_study(direction="maximize", sampler=study_sampler, pruner=study_pruner)
    if first:
        study.enqueue_trial(first)

    def reached(current: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if stop_at is not None and trial.state == optuna.trial.TrialState.COMPLETE and trial.value >= stop_at:
            current.stop()

    study.optimize(objective, n_trials=trials, callbacks=[reached])
    return study


def best(study: optuna.Study) -> optuna.trial.FrozenTrial:
    return max((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)


def analysis_auc(run: Run, params: dict) -> float:
    """ROC AUC on the analysis set of a model trained (as ``train`` does) with ``params`` merged in."""
    split = run.result(Split)
    parts = {part: split.folder(part) for part in ("train", "validation", "analysis")}
    frames = {part: datasets.read(parts[part]) for part in ("train", "validation", "analysis")}
    tuned = run.spec.model_copy(update={"training": tuned_training(run.spec.training, params)})
    fit = fit_models(tuned, parts, frames["train"])
    return float(roc_auc_score(labels(frames["analysis"], run.spec), fit.model.scores(frames["analysis"])))


def reporting_worker(url: str, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=open_storage(url), pruner=pruner())

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        for step in range(REPORTS):
            trial.report(x, step)
            trial.should_prune()
        return x

    study.optimize(objective, n_trials=STORAGE_TRIALS)


def storage_seconds(url: str) -> float:
    """Wall time of two worker processes each running trials that report every one of REPORTS rounds."""
    name = f"bench-{time.time_ns()}"
    optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")
    started = time.perf_counter()
    workers = [Process(target=reporting_worker, args=(url, name)) for _ in range(2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--random-trials", type=int, default=50)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    run = split_run(folder)
    objective = Objective(run, shard=0)
    budget = run.spec.tuning.trials
    default_auc = analysis_auc(run, {})
    untuned = search(objective, sampler(0), pruner(), 1, first=spec_params(run.spec)).best_value
    print(f"objective: {objective_name(fold_count(run))}; the untuned spec params score {untuned:.4f}")
    print(f"{'seed':>4} {'random best':>11} {'TPE reach':>9} {'pruned':>6} {'TPE best@' + str(budget):>11} "
          f"{'analysis AUC tuned':>18} {'untuned':>8} {'secs':>6}")
    reach_counts, tuned_aucs = [], []
    for seed in range(args.seeds):
        started = time.perf_counter()
        random = search(objective, optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner(),
                        args.random_trials)
        target = random.best_value
        tpe = search(objective, sampler(seed), pruner(), args.random_trials, stop_at=target)
        reach = next((t.number + 1 for t in tpe.trials
                      if t.state == optuna.trial.TrialState.COMPLETE and t.value >= target), None)
        reach_counts.append(reach or args.random_trials + 1)
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in tpe.trials)
        tuned = best(search(objective, sampler(seed), pruner(), budget, first=spec_params(run.spec)))
        tuned_aucs.append(analysis_auc(run, tuned.params))
        print(f"{seed:>4} {target:>11.4f} {reach or 'never':>9} {pruned:>6} {tuned.value:>11.4f} "
              f"{tuned_aucs[-1]:>18.4f} {default_auc:>8.4f} {time.perf_counter() - started:>6.0f}")
    mean_reach = statistics.mean(reach_counts)
    print(f"\nTPE+pruning trials to reach random search's best of {args.random_trials}: "
          f"mean {mean_reach:.1f} (bar <= 25: {'PASS' if mean_reach <= 25 else 'FAIL'}; 'never' counts as "
          f"{args.random_trials + 1})")
    mean_tuned = statistics.mean(tuned_aucs)
    print(f"analysis ROC AUC, tuned (best of {budget} trials) vs untuned spec defaults: mean {mean_tuned:.4f} vs "
          f"{default_auc:.4f} (lift {mean_tuned - default_auc:+.4f}; "
          f"{'PASS' if mean_tuned > default_auc else 'FAIL'})")
    sqlite = storage_seconds(f"sqlite:///{folder / 'optuna.db'}")
    journal = storage_seconds(f"journal://{folder / 'optuna.journal'}")
    print(f"storage, 2 workers x {STORAGE_TRIALS} trials x {REPORTS} reported rounds: SQLite {sqlite:.2f}s, "
          f"journal file {journal:.2f}s (SQLite / journal = {sqlite / journal:.1f}x)")


if __name__ == "__main__":
    main()
