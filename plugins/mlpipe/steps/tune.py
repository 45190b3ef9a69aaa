"""tune: Bayesian hyperparameter search (Optuna TPE, seeded) by parallel workers, never on the analysis set.

Three steps share one Optuna study, kept in a storage every worker reaches:
``$MLPIPE_OPTUNA_STORAGE``, an RDB URL (``postgresql://...`` on Kubernetes, ``sqlite:///...``)
or ``journal:///<path>`` (Optuna's journal file), by default the journal file
``$MLPIPE_OPTUNA_DIR/optuna.journal`` (``$MLPIPE_OPTUNA_DIR`` defaults to ``<tmp>/mlpipe-optuna``).
The local default is a journal file, not SQLite: every boosting round of every trial is
reported for pruning, and with two workers SQLite's locking made those reports about 8x
slower than the journal's (``tests/benchmarks/bench_tune.py`` measures it).

- ``tune_prepare``: creates the study ``<pipeline>-<run id>`` (retry-safe), the MLflow
  parent run ``tuning``, and records the first trial's params (warm start): the champion's params, or
  without a champion the spec's own ``training.params``, so the search starts from the untuned model;
- ``tune_trials`` (sharded, one task per worker): runs trials until the study holds the trial
  budget; every trial is scored on held-out rows, never the analysis set: with
  ``tuning.cv_folds`` = k, by k-fold cross-validation over ``train`` + ``validation`` (stratified by
  class; a regression target's folds are plain, :func:`fold_splitter`), the folds' mean of the task's
  metric, otherwise by boosting on ``train`` and scoring ``validation``. Early stopping and pruning of
  bad trials (on each round's metric) watch the same held-out rows;
  the boosting round a trial's early stopping chose is kept (``best_iteration``).
  Each trial is logged as an MLflow child run of ``tuning``;
- ``tune``: picks the best trial; ``train`` merges its params over ``training.params`` and
  boosts as many rounds as that trial's cross-validation chose (``best_rounds``), instead of
  trusting early stopping on the small validation split.

What a trial optimizes follows the target's task (:data:`GOALS`: the task's last round metric, its headline
metric too), and so do the study's direction, the pruner's median and the best trial:

- ``binary``: ROC AUC (XGBoost's ``auc``), maximized; MLflow ``validation_roc_auc``;
- ``multiclass``: log loss (``mlogloss``), minimized; MLflow ``validation_log_loss``;
- ``regression``: RMSE (``rmse``), minimized; MLflow ``validation_rmse``.

A trial encodes the target as ``train`` will (:func:`trial_schema`): a multiclass target's class indices are
the model's. ``tuning.enabled: auto`` counts the train split's rarest class (a regression target's: all
its rows).

The same data and seed give the same trials whatever the timing of the workers (two clones
reach the same params). Trials go in *rounds* of ``tuning.workers`` trials, numbered in the
order workers claim them (the study's trial number): the params of every trial of a round are
asked, together, from a TPE sampler seeded by ``tuning.seed`` and the round, given the trials of
the earlier rounds only (:func:`round_params`); a trial first waits until those have finished.
Pruning also compares a trial with the earlier rounds' trials only (:func:`round_pruner`). A
worker may run any trial, so workers that Airflow runs one after the other reach the same
trials too. Only a time limit or a crashed worker (its running trial is failed and replaced on retry)
makes the trials depend on timing.

Trials see seeded samples of at most ``tuning.sample_rows`` train and validation rows (all of
them on a small book): the search's cost does not grow with the data, and ``train`` then trains
on every row with the params found.

Cross-validation costs k boosters a trial but scores every train + validation row: on a small
book, the validation split alone holds too few positives for its AUC to rank params reliably.

The study ends with exactly the budget of finished trials however the workers interleave; a
retried worker fails its stale running trial and only runs what the budget still lacks. The
time limit (``tuning.timeout_minutes``) is one deadline for all workers, counted from
``tune_prepare``. Skipped (``skip_tuning`` trigger option or ``tuning.enabled: false``): no study
is made and ``train`` uses the spec's params.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe.core import settings
from mlpipe.core.errors import Refused
from mlpipe.core.results import Ingest, Split, Tune, TunePrepare, TuneTrials
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.data.features import schema
from mlpipe.model.booster import (
    TRAIN,
    VALIDATION,
    Tally,
    booster_params,
    fit_booster,
    inputs,
    requested_device,
    resolve_device,
    scale_pos_weight,
    target_schema,
    target_tally,
    tuned_training,
)
from mlpipe.model.transformed import evaluation
from mlpipe.registry import tracking
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import numpy as np
    import optuna
    import pandas as pd
    import sklearn.model_selection
    import xgboost as xgb

    from mlpipe.core.spec import SearchRange, Spec, Training, Tuning

log = logging.getLogger(__name__)

JOURNAL = "journal://"
CV_HELD_OUT = "test"  # xgboost.cv's name for each fold's held-out rows
DEADLINE_ATTR, SHARD_ATTR, WARM_START_ATTR = "mlpipe.deadline", "mlpipe.shard", "mlpipe.warm_start"
SURPLUS_ATTR = "mlpipe.surplus"  # a trial claimed past the budget by workers racing for the last one: not run
PARENT_RUN_NAME = "tuning"
PARENT_TAG, TRIAL_STATE_TAG = "mlflow.parentRunId", "mlpipe.trial_state"
CHAMPION = "champion"
SPEC_WARM_START = "spec"  # trial 0 without a champion: the spec's own params
# XGBoost's defaults of the params SageMaker's XGBoost tuning exposes (what training.params leaves unset).
XGBOOST_DEFAULTS = {"eta": 0.3, "max_depth": 6, "min_child_weight": 1, "subsample": 1, "colsample_bytree": 1,
                    "colsample_bylevel": 1, "gamma": 0, "lambda": 1, "alpha": 0, "max_delta_step": 0}
# TPE: random trials before modelling; pruning: a trial is compared with the median of the
# finished ones only after PRUNE_STARTUP trials and PRUNE_WARMUP boosting rounds.
TPE_STARTUP = 10
PRUNE_STARTUP, PRUNE_WARMUP = 4, 30
# How long a trial waits for the earlier rounds' trials (a crashed worker's are failed by its retry).
ROUND_WAIT_SECONDS, POLL_SECONDS = 1800, 0.2


@dataclass(frozen=True)
class Goal:
    """What a trial's value is for a target task: the held-out ``metric`` (XGBoost's name), whether higher is better,
    its name for people (``label``) and in MLflow (``validation_<logged>``)."""

    metric: str
    maximize: bool
    label: str
    logged: str

    @property
    def direction(self) -> str:
        """The Optuna study's direction."""
        return "maximize" if self.maximize else "minimize"

    def worse(self, value: float, than: float) -> bool:
        """Whether ``value`` scores worse than ``than``."""
        return value < than if self.maximize else value > than


# A task's goal is its last round metric (:data:`RULES`: what early stopping watches unless the spec lists another
# last), its headline metric too: binary AUC (maximized), multiclass mlogloss and regression RMSE (minimized).
GOALS = {task: Goal(rules.round_metrics[-1], rules.higher_is_better, rules.label, rules.headline)
         for task, rules in RULES.items()}


def storage_url() -> str:
    """The Optuna storage shared by the workers: ``$MLPIPE_OPTUNA_STORAGE`` or the local journal file."""
    if url := settings.optuna_storage():
        return url
    return f"{JOURNAL}{settings.optuna_dir().resolve() / 'optuna.journal'}"


def redacted(url: str) -> str:
    """``url`` with any password masked, fit for results and logs."""
    from sqlalchemy.engine import make_url

    return url if url.startswith(JOURNAL) else make_url(url).render_as_string(hide_password=True)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage at ``url``: a journal file, or an RDB (SQLite waits for a busy database, up to a minute)."""
    import optuna

    if url.startswith(JOURNAL):
        path = Path(url.removeprefix(JOURNAL))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def study_name(run: Run) -> str:
    return f"{run.spec.name}-{run.run_id}"


def skip_reason(run: Run) -> str | None:
    """Why this run does not tune (trigger option or spec), or ``None`` when it does."""
    if run.options.get("skip_tuning"):
        return "skip_tuning was set when the run was triggered"
    split = run.result(Split)
    rows = split.rows[TRAIN]
    return run.spec.tuning.skip_reason(rows, rarest_class_rows(run, rows))


def rarest_class_rows(run: Run, rows: int) -> int | None:
    """How many of the train split's ``rows`` rows its rarest class holds: binary, from the split's positive rate;
    multiclass, counted from its target column (a class of the model that train lacks holds none); ``None`` for a
    regression target, which has no classes."""
    task = run.spec.target.task
    if task == Task.BINARY:
        rate = run.result(Split).positive_rate[TRAIN]
        return round(rows * min(rate, 1 - rate))
    if task == Task.REGRESSION:
        return None
    tally = target_tally(run.result(Split).folder(TRAIN), run.spec)
    return min(tally.classes.get(name, 0) for name in tally.class_names(run.spec))


def trials_budget(run: Run) -> int:
    """The ``tuning_trials`` trigger option when it is a whole number > 0; ``tuning.trials`` when it is 0 or unset."""
    override = run.options.get("tuning_trials")
    if isinstance(override, bool) or not isinstance(override, int | None) or (override or 0) < 0:
        raise Refused(f"trigger option tuning_trials: expected a whole number >= 0 (0: the spec's "
                        f"tuning.trials), got {override!r}")
    return override or run.spec.tuning.trials


def suggest(trial: optuna.Trial, space: dict[str, SearchRange]) -> dict[str, Any]:
    """One value per search-space key, sampled by the study's sampler (or fixed by an enqueued trial)."""
    return {key: (trial.suggest_int(key, int(r.low), int(r.high), log=r.log) if r.integer
                  else trial.suggest_float(key, r.low, r.high, log=r.log))
            for key, r in space.items()}


def check_search_space(spec: Spec) -> None:
    """Fail before any trial when a search-space key is one the training params may not set (whatever the task;
    the class weight and class count are stand-ins)."""
    lows = {key: r.low for key, r in spec.tuning.search_space.items()}
    try:
        booster_params(tuned_training(spec.training, lows), 1.0, "cpu", spec.target.task, num_class=2)
    except Refused as error:
        raise Refused(f"tuning.search_space: {error}") from None


def sampler(seed: int) -> optuna.samplers.BaseSampler:
    """Seeded multivariate TPE; ``constant_liar`` keeps the trials of one round from proposing the same point."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP, multivariate=True,
                                      constant_liar=True)


def pruner() -> optuna.pruners.BasePruner:
    """Median stopping for a study that one process runs alone (the tuning benchmark's); workers use
    :func:`round_pruner`."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP, n_warmup_steps=PRUNE_WARMUP)


def round_seed(seed: int, round_number: int) -> int:
    """The sampler's seed for one round of trials: ``tuning.seed`` and the round, mixed."""
    import numpy as np

    return int(np.random.SeedSequence([seed, round_number]).generate_state(1)[0])


def round_params(history: list[optuna.trial.FrozenTrial], space: dict[str, SearchRange], seed: int,
                 round_number: int, size: int, warm_start: dict[str, Any], direction: str) -> list[dict[str, Any]]:
    """The params of the ``size`` trials of round ``round_number``, given the finished trials of the rounds before.

    Asked together from a TPE sampler seeded by ``seed`` and the round, in an in-memory study holding
    ``history`` (in trial order; ``direction``, the study's): the same history gives the same params, whichever
    worker asks and whenever. Round 0's first trial is the warm start.
    """
    import optuna

    memory = optuna.create_study(direction=direction, sampler=sampler(round_seed(seed, round_number)))
    memory.add_trials(history)
    if round_number == 0:
        memory.enqueue_trial(warm_start)
    return [suggest(memory.ask(), space) for _ in range(size)]


def fixed_sampler(params: dict[str, Any]) -> optuna.samplers.BaseSampler:
    """A sampler that samples nothing: the trial gets ``params`` (what :func:`round_params` chose for it)."""
    import optuna

    class Fixed(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, param_name, param_distribution):
            return params[param_name]

    return Fixed()


def round_pruner(history: list[optuna.trial.FrozenTrial], goal: Goal) -> optuna.pruners.BasePruner:
    """Median stopping on each boosting round's held-out metric (``goal``'s: a trial ``worse`` than the median is
    pruned), against the complete trials of ``history`` only.

    Like Optuna's ``MedianPruner`` (after :data:`PRUNE_STARTUP` complete trials and :data:`PRUNE_WARMUP`
    rounds), but blind to the trials running beside it: whether a trial is pruned does not depend on
    which of them finished first.
    """
    import optuna
    from optuna.trial import TrialState

    curves = [t.intermediate_values for t in history if t.state == TrialState.COMPLETE]

    class Median(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            step = trial.last_step
            if step is None or step < PRUNE_WARMUP or len(curves) < PRUNE_STARTUP:
                return False
            seen = [curve[step] for curve in curves if step in curve]
            return bool(seen) and goal.worse(trial.intermediate_values[step], statistics.median(seen))

    return Median()


def load_study(prepared: TunePrepare) -> optuna.Study:
    """The run's shared study (each claimed trial gets its :func:`fixed_sampler` and :func:`round_pruner`)."""
    import optuna

    return optuna.load_study(study_name=prepared.study, storage=open_storage(storage_url()),
                             sampler=fixed_sampler({}))


def fold_count(run: Run) -> int | None:
    """The cross-validation folds that score this run's trials (``tuning.cv_folds`` for its split's size);
    ``None``: the validation split scores them."""
    rows = run.result(Split).rows
    return run.spec.tuning.folds(rows[TRAIN] + rows[VALIDATION])


def objective_name(folds: int | None, goal: Goal = GOALS[Task.BINARY]) -> str:
    """What a trial's value is (``goal``'s metric, binary's by default), for results and the MLflow tuning run."""
    if folds:
        return f"{folds}-fold cross-validated {goal.label} on train + validation"
    return f"validation {goal.label} (trained on train)"


def in_space(value: str | float, search_range: SearchRange) -> int | float:
    """A logged param value as a number of ``search_range``, clipped into it."""
    number = min(max(float(value), search_range.low), search_range.high)
    return round(number) if search_range.integer else number


def champion_params(spec: Spec) -> tuple[int | None, dict[str, Any]]:
    """The champion's version and its search-space params (from its MLflow run), if there is a champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(spec.registered_model, CHAMPION)
    except MlflowException:
        return None, {}
    logged = client.get_run(version.run_id).data.params
    space = spec.tuning.search_space
    return int(version.version), {key: in_space(logged[key], r) for key, r in space.items() if key in logged}


def spec_params(spec: Spec) -> dict[str, Any]:
    """The untuned model's search-space params: ``training.params``, else XGBoost's defaults, clipped into range."""
    given = {**XGBOOST_DEFAULTS, **spec.training.params}
    return {key: in_space(given[key], r) for key, r in spec.tuning.search_space.items() if key in given}


def start_parent_run(run: Run) -> str:
    """The MLflow run ``tuning`` that the trials are children of; returns its id."""
    from mlflow import MlflowClient

    spec = run.spec
    data_version = run.result(Ingest).data_version
    parent = MlflowClient().create_run(tracking.experiment_id(spec.name), run_name=PARENT_RUN_NAME,
                                       tags=tracking.run_tags(spec.name, run.uri, data_version))
    return parent.info.run_id


def create_study(run: Run, url: str, budget: int) -> tuple[optuna.Study, bool]:
    """The run's study (created, or loaded on a retry) and whether it was new (has no trials yet)."""
    import optuna

    study = optuna.create_study(study_name=study_name(run), storage=open_storage(url),
                                direction=GOALS[run.spec.target.task].direction,
                                sampler=sampler(run.spec.tuning.seed), load_if_exists=True)
    new = not study.get_trials(deepcopy=False)
    if new:
        minutes = run.spec.tuning.timeout_minutes
        study.set_user_attr(DEADLINE_ATTR, time.time() + minutes * 60 if minutes else None)
        study.set_user_attr("budget", budget)
        study.set_user_attr("tuning_run_id", start_parent_run(run))
    return study, new


def tune_prepare(run: Run) -> TunePrepare:
    """Create the study (and its MLflow parent run) that ``tune_trials`` workers share."""
    if reason := skip_reason(run):
        log.info("tuning skipped: %s", reason)
        return TunePrepare(skipped=True, reason=reason)
    spec = run.spec
    check_search_space(spec)
    budget, url = trials_budget(run), storage_url()
    study, new = create_study(run, url, budget)
    version, params = champion_params(spec)
    warm_start, first = (version, params) if params else (SPEC_WARM_START, spec_params(spec))
    if new:
        study.set_user_attr(WARM_START_ATTR, {"params": first, "source": warm_start})
        log.info("warm start: trial 0 is the params of %s: %s",
                 f"champion version {version}" if params else "the spec", first)
    return TunePrepare(study=study.study_name, storage=redacted(url), trials_budget=budget,
                       workers=spec.tuning.workers, warm_start=warm_start,
                       tuning_run_id=study.user_attrs["tuning_run_id"], skipped=False)


@dataclass
class Folds:
    """k-fold cross-validation over train + validation: the pooled rows and each fold's indices."""

    data: xgb.DMatrix
    indices: list[tuple[np.ndarray, np.ndarray]]


def cv_folds(train: tuple[pd.DataFrame, np.ndarray], validation: tuple[pd.DataFrame, np.ndarray],
             tuning: Tuning, folds: int, task: Task) -> Folds:
    """``folds`` folds (shuffled with ``tuning.seed``, dealt by :func:`fold_splitter`) of the train and validation
    rows."""
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    features = pd.concat([train[0], validation[0]], ignore_index=True)
    y = np.concatenate([train[1], validation[1]])
    splitter = fold_splitter(y, tuning.seed, folds, task)
    return Folds(xgb.DMatrix(features, label=y, enable_categorical=True), list(splitter.split(features, y)))


def fold_splitter(y: np.ndarray, seed: int, folds: int, task: Task) -> sklearn.model_selection.BaseCrossValidator:
    """How ``folds`` shuffled folds deal the rows of labels ``y``.

    Binary and multiclass: stratified by class, so that each fold keeps every class's share (which needs
    ``folds`` rows of each). Regression: plain folds, the target having no classes. Stratifying by its decile
    would barely even out shuffled folds of the hundreds of rows tuning needs, and a target with many equal
    values (counts, a floor of zeros) has no ten distinct deciles to stratify by.
    """
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    if task == Task.REGRESSION:
        return KFold(folds, shuffle=True, random_state=seed)
    counts = np.bincount(y.astype(int))
    counts = counts[counts > 0]
    if (rarest := int(counts.min())) < folds:
        raise Refused(f"tuning.cv_folds: {folds} stratified folds need at least {folds} rows of each class in "
                      f"train + validation; the {'rarer' if len(counts) == 2 else 'rarest'} class has {rarest}")
    return StratifiedKFold(folds, shuffle=True, random_state=seed)


def cross_validate(params: dict[str, Any], folds: Folds, training: Training,
                   callbacks: list[xgb.callback.TrainingCallback], goal: Goal,
                   transform: str | None = None) -> tuple[float, int]:
    """The folds' mean held-out ``goal`` metric (binary: AUC) at the best round (early stopping on the folds'
    mean), and that round; a target learned through ``transform`` has its metrics measured in its units
    (:func:`mlpipe.model.transformed.evaluation`).

    The folds stop together, on their mean: that round (0-based) is what ``train`` boosts to after
    tuning, each fold having trained on about as many rows as the train split.
    """
    import numpy as np
    import xgboost as xgb

    stopper = xgb.callback.EarlyStopping(rounds=training.early_stopping_rounds)
    given, custom_metric = evaluation(params, transform)
    history = xgb.cv(given, folds.data, num_boost_round=training.num_boost_round, folds=folds.indices,
                     callbacks=[*callbacks, stopper], as_pandas=False, verbose_eval=False,
                     custom_metric=custom_metric)
    stopping = history[f"{CV_HELD_OUT}-{params['eval_metric'][-1]}-mean"]
    best = int(np.argmax(stopping) if stopper.maximize else np.argmin(stopping))
    return history[f"{CV_HELD_OUT}-{goal.metric}-mean"][best], best


def worker_threads(workers: int) -> int:
    """CPU threads for one worker's boosting: the cores this process may use, shared by ``workers``.

    XGBoost takes every core by default; parallel workers on one machine then oversubscribe it and
    their threads wait on each other (on the 2-core development machine, busy: one 4-fold trial took
    1.3-2.5 s with one thread, 72-145 s with two). ``nthread`` in ``training.params`` overrides this.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // workers)


def trial_schema(train: pd.DataFrame, split: Split, spec: Spec) -> dict[str, Any]:
    """The feature schema that encodes a trial's rows: the train sample's features and the target's part of the
    schema the train step will use (:func:`~mlpipe.model.booster.target_schema`): a multiclass target's classes
    are counted over the whole train split, not the sample, so that a trial's class indices are the model's."""
    counted = target_tally(split.folder(TRAIN), spec) if spec.target.task == Task.MULTICLASS else Tally()
    return {**schema(train, spec), **target_schema(spec, counted)}


class Objective:
    """One trial: boost with the sampled params; early-stop, prune and score on held-out rows (see the module)."""

    def __init__(self, run: Run, shard: int) -> None:
        spec = run.spec
        parts = run.result(Split)
        frames = {part: datasets.sample(parts.folder(part), spec.tuning.sample_rows, spec.tuning.seed)
                  for part in (TRAIN, VALIDATION)}
        task, self.goal = spec.target.task, GOALS[spec.target.task]
        feature_schema = trial_schema(frames[TRAIN], parts, spec)
        self.train, self.validation = (inputs(frames[part], feature_schema, spec, part)
                                       for part in (TRAIN, VALIDATION))
        folds = fold_count(run)
        self.folds = cv_folds(self.train, self.validation, spec.tuning, folds, task) if folds else None
        self.pos_weight = scale_pos_weight(len(self.train[1]), int(self.train[1].sum()),
                                           spec.training.scale_pos_weight) if task == Task.BINARY else None
        self.num_class, self.transform = len(feature_schema.get("classes", ())), feature_schema.get("transform")
        self.device = resolve_device(requested_device(spec))
        self.threads = worker_threads(spec.tuning.workers)
        self.spec, self.shard = spec, shard

    def __call__(self, trial: optuna.Trial) -> float:
        from optuna_integration import XGBoostPruningCallback

        training = tuned_training(self.spec.training, suggest(trial, self.spec.tuning.search_space))
        params = {"nthread": self.threads, **booster_params(training, self.pos_weight, self.device,
                                                             self.spec.target.task, self.num_class)}
        metric = self.goal.metric
        if self.folds:
            pruning = XGBoostPruningCallback(trial, f"{CV_HELD_OUT}-{metric}")
            value, best_iteration = cross_validate(params, self.folds, training, [pruning], self.goal, self.transform)
        else:
            pruning = XGBoostPruningCallback(trial, f"{VALIDATION}-{metric}")
            booster, history, _ = fit_booster(params, self.train, self.validation, training, [pruning],
                                              self.transform)
            value, best_iteration = history[metric][booster.best_iteration], booster.best_iteration
        trial.set_user_attr("best_iteration", best_iteration)
        return value


def log_trial(parent_run_id: str, experiment_id: str, trial: optuna.trial.FrozenTrial, goal: Goal) -> None:
    """Record a finished trial as an MLflow child run of the tuning run: params, state, its held-out value
    (``validation_<goal.logged>``: binary ``validation_roc_auc``)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    child = client.create_run(experiment_id, run_name=f"trial-{trial.number}",
                              tags={PARENT_TAG: parent_run_id, TRIAL_STATE_TAG: trial.state.name,
                                    SHARD_ATTR: str(trial.user_attrs.get(SHARD_ATTR))})
    value = trial.value if trial.value is not None else trial.intermediate_values.get(trial.last_step)
    metrics = [] if value is None else [(f"validation_{goal.logged}", value, trial.last_step or 0)]
    tracking.log_batch(child.info.run_id, {**trial.params, "trial": trial.number}, metrics)
    client.set_terminated(child.info.run_id)


def fail_stale(study: optuna.Study, shard: int) -> None:
    """Fail this worker's trials left running by an earlier attempt (the budget then asks for others)."""
    from optuna.trial import TrialState

    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if stale.user_attrs.get(SHARD_ATTR) == shard:
            study.tell(stale.number, state=TrialState.FAIL)


def counted(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count towards the budget: finished or running, not failed."""
    from optuna.trial import TrialState

    return sum(t.state != TrialState.FAIL for t in trials)


def earlier_rounds(study: optuna.Study, first: int, waited_for: str) -> list[optuna.trial.FrozenTrial]:
    """The finished, not failed, trials numbered below ``first``, once every one of them has finished."""
    from optuna.trial import TrialState

    started = time.monotonic()
    while True:
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < first]
        if all(t.state.is_finished() for t in earlier):
            return [t for t in earlier if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        if time.monotonic() - started > ROUND_WAIT_SECONDS:
            running = [t.number for t in earlier if not t.state.is_finished()]
            raise Refused(f"tune_trials: {waited_for} waited {ROUND_WAIT_SECONDS} s for trials {running} of "
                            f"the earlier rounds (their worker may have crashed: its retry fails them)")
        time.sleep(POLL_SECONDS)


def run_trial(study: optuna.Study, trial: optuna.Trial, objective: Objective,
              history: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    """Run one claimed trial: pruned against ``history`` (:func:`round_pruner`), told its outcome."""
    import optuna
    from optuna.trial import TrialState

    study.pruner = round_pruner(history, objective.goal)
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED)
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    return study.tell(trial, value)


def tune_trials(run: Run, shard: int) -> TuneTrials:
    """Worker ``shard``: claim and run trials until the study holds the budget (or the shared deadline passes).

    Trial ``n`` belongs to round ``n // workers``; its params come from :func:`round_params` once the
    earlier rounds have finished, so they do not depend on which worker runs it, or when.
    """
    import optuna
    from optuna.trial import TrialState

    prepared = run.result(TunePrepare)
    if prepared.skipped:
        return TuneTrials(shard=shard, trials_run=0, best_value_seen=None, skipped=True)
    workers, budget = prepared.workers, prepared.trials_budget
    if not 0 <= shard < workers:
        raise Refused(f"tune_trials: shard {shard} is not one of the {workers} workers (0-based)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per in-memory study of round_params
    study = load_study(prepared)
    fail_stale(study, shard)
    deadline, warm_start = study.user_attrs[DEADLINE_ATTR], study.user_attrs[WARM_START_ATTR]["params"]
    experiment, space, objective = tracking.experiment_id(run.spec.name), run.spec.tuning.search_space, None
    goal = GOALS[run.spec.target.task]
    seen: list[optuna.trial.FrozenTrial] = []
    while counted(study.get_trials(deepcopy=False)) < budget and (deadline is None or time.time() < deadline):
        objective = objective or Objective(run, shard)
        trial = study.ask()
        trial.set_user_attr(SHARD_ATTR, shard)
        if trial.number >= budget + sum(t.state == TrialState.FAIL for t in study.get_trials(deepcopy=False)):
            trial.set_user_attr(SURPLUS_ATTR, True)  # another worker claimed the last trial meanwhile
            study.tell(trial, state=TrialState.FAIL)
            break
        round_number, index = divmod(trial.number, workers)
        history = earlier_rounds(study, round_number * workers, f"trial {trial.number}")
        study.sampler = fixed_sampler(round_params(history, space, run.spec.tuning.seed, round_number, index + 1,
                                                   warm_start, goal.direction)[index])
        if trial.number == 0:
            trial.set_user_attr("warm_start", study.user_attrs[WARM_START_ATTR]["source"])
        finished = run_trial(study, trial, objective, history)
        log_trial(prepared.tuning_run_id, experiment, finished, goal)
        seen.append(finished)
    values = [t.value for t in seen if t.state == TrialState.COMPLETE]
    best = (max if goal.maximize else min)(values, default=None)
    return TuneTrials(shard=shard, trials_run=len(seen), best_value_seen=best, skipped=False)


def tune_select(run: Run) -> Tune:
    """The best trial's params for ``train``; counts of trial outcomes; best logged to the tuning run."""
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    prepared = run.result(TunePrepare)
    if prepared.skipped:
        return Tune(skipped=True, reason=prepared.reason, best_params={})
    trials = [t for t in load_study(prepared).get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_ATTR)]
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise Refused(f"tuning study {prepared.study}: no trial completed ({counts}); "
                        f"raise the budget (tuning.trials, tuning.timeout_minutes) or skip tuning")
    goal = GOALS[run.spec.target.task]
    best = max(complete, key=lambda t: (t.value if goal.maximize else -t.value, -t.number))  # the first of equals
    parent, objective = prepared.tuning_run_id, objective_name(fold_count(run), goal)
    tracking.log_batch(parent, {**{f"best_{key}": value for key, value in best.params.items()},
                                "objective": objective},
                       [(f"best_validation_{goal.logged}", best.value, best.number)])
    MlflowClient().set_terminated(parent)
    rounds = best.user_attrs["best_iteration"] + 1
    log.info("best of %d trials: #%d, %s %.4f at %d boosting rounds, params %s", len(trials), best.number,
             objective, best.value, rounds, best.params)
    return Tune(best_params=best.params, best_value=best.value, best_trial=best.number, best_rounds=rounds,
                objective=objective,
                trials={"complete": counts["complete"], "pruned": counts["pruned"], "failed": counts["fail"]},
                tuning_run_id=parent, skipped=False)
