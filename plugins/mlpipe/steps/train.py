"""train: the XGBoost model (tuned round count, or early-stopped on validation) and a logistic-regression baseline.

Reads the split step's ``train`` and ``validation`` sets (never ``analysis``) and writes:

- ``<run>/train/model/``: the :class:`~mlpipe.model.tabular.TabularModel` (booster + feature schema);
- ``<run>/train/baseline/``: the baseline (:mod:`mlpipe.model.baseline`), for the analyze step (:func:`load_baseline`);
- ``<run>/train/reference.parquet``: the drift reference for monitoring (:mod:`mlpipe.model.reference`).

It starts the pipeline run's MLflow run (named after the run id; tagged with the
pipeline, run folder, data version and git commit) and logs there: the booster
params and training settings, the validation metrics of every boosting round
(``round/validation_<metric>`` by step), the final validation metrics of model
and baseline, the training and validation datasets, and the pyfunc model
(:mod:`mlpipe.model.pyfunc`).

When the ``tune`` step found params in this run, they are merged over ``training.params``
(MLflow param ``tuned``, tag ``mlpipe.tuning_run_id``); when tuning was skipped, disabled or not
part of the run, the spec's params are used as they are.

Memory grows with the data only as XGBoost's quantized matrices do: one pass over the train split's
categorical and target columns gives the feature schema and class counts (the validation split's: its
target column alone); XGBoost builds its matrices from the splits batch by batch
(:func:`~mlpipe.model.booster.batch_iterator`: the encoded batches kept in memory while it builds them;
above ``training.external_memory_rows`` train rows, read again on each pass and the matrix kept on
disk); the baseline and the drift reference use one seeded sample (:func:`train_sample`), the
baseline's choice of ``C`` and class weighting a seeded subsample of it and a seeded sample of as
many validation rows (both weightings searched at once, in worker processes); each phase's seconds
are logged; the model's validation metrics are XGBoost's at the round it keeps, the baseline's come
from the validation rows it was chosen on (:func:`validation_metrics`).
With ``training.distributed`` the booster trains on Dask instead (:func:`uses_dask`).

Every round is evaluated on the validation set with ``logloss`` and ``auc`` plus any
other ``eval_metric`` of the spec; as in XGBoost, the *last* metric listed decides
early stopping (``auc`` unless the spec lists another last).

How many rounds the booster gets (:func:`round_plan`; the result's and MLflow's ``round_rule``
says which rule chose them): after tuning, the best trial's round count from cross-validation
(``best_rounds`` of the tune step: early stopping on the mean of 4 folds, each about the size of
the train split); the validation split, whose ~100 positives make its AUC curve noisy, is then
only scored and logged. Without tuning, early stopping on validation, with a patience of
``max(training.early_stopping_rounds, floor)`` rounds past the best one. Either way the model
keeps at least a floor of ``ceil(1 / eta)`` rounds: with fewer, the trees' shrunken steps do not
add up to one full boosting step (a tuned eta of 0.011 once early-stopped at 2 trees).

The device is ``training.device`` unless ``$MLPIPE_DEVICE`` says otherwise; when
``cuda`` is asked for and no GPU is usable, training runs on the CPU, with one
warning, and the result and MLflow record the device actually used.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlpipe.compute.distributed import fit_distributed
from mlpipe.core.errors import Refused
from mlpipe.core.results import Ingest, Split, Train, Tune
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.model import reference
from mlpipe.model.baseline import Baseline, fit_baseline
from mlpipe.model.booster import (
    TRAIN,
    VALIDATION,
    Rounds,
    boost_on_splits,
    booster_params,
    inputs,
    plain_stopping,
    requested_device,
    require_learnable,
    resolve_device,
    round_plan,
    scale_pos_weight,
    scan,
    target_tally,
    tuned_training,
)
from mlpipe.model.tabular import TabularModel
from mlpipe.registry import tracking
from mlpipe.store.runs import Run, StepNotFinished

if TYPE_CHECKING:
    import pandas as pd

    from mlpipe.core.spec import Distributed, Spec, Training

log = logging.getLogger(__name__)

STEP = "train"
TUNING_RUN_TAG = "mlpipe.tuning_run_id"
EXAMPLE_ROWS = 5
BASELINE_PARAMS = ("C", "class_weight", "alpha")  # the baseline's settings logged as MLflow params
LOGGED_ROWS = 10_000  # rows of each split logged to MLflow as the run's datasets: train's from its seeded sample,
# validation's first rows


@dataclass
class Fit:
    """What training produced, for the artifact store, MLflow and the step result."""

    model: TabularModel
    baseline: Baseline
    params: dict[str, Any]
    history: dict[str, list[float]]
    seconds: float
    validation: dict[str, float]
    rows: dict[str, int]
    external_memory: bool
    plan: Rounds

    @property
    def best_iteration(self) -> int:
        return self.model.booster.best_iteration

    @property
    def num_trees(self) -> int:
        """Trees the model predicts with: one per boosting round up to the best iteration."""
        return self.best_iteration + 1


@contextmanager
def timed(phase: str) -> Iterator[None]:
    """Log the seconds ``phase`` of the step took: where a train step's time goes, besides boosting."""
    started = time.perf_counter()
    yield
    log.info("%s: %.1fs", phase, time.perf_counter() - started)


# The validation metrics of each task: the name the model's metric is recorded under, and XGBoost's metric it is.
VALIDATION_METRICS = {Task.BINARY: {"roc_auc": "auc", "logloss": "logloss"},
                      Task.MULTICLASS: {"log_loss": "mlogloss", "error": "merror"},
                      Task.REGRESSION: {"rmse": "rmse", "mae": "mae"}}


def validation_metrics(task: Task, history: dict[str, list[float]], best_iteration: int,
                       baseline: Baseline) -> dict[str, float]:
    """The model's metrics on the validation split (:data:`VALIDATION_METRICS`: binary, ROC AUC and log loss), and
    the baseline's headline metric (binary: ``baseline_roc_auc``).

    The model's are XGBoost's own, from evaluating every round on the validation split (``history``) at the round
    the model keeps: the scores of the saved model, without another pass over the split (tested equal to
    scikit-learn's on them; at 2M validation rows the pass cost ~3 s). The baseline's is measured on the
    validation rows it was chosen on: all of them up to ``training.baseline_rows``, else a seeded
    sample of as many (scoring all of 2M rows cost ~5 s for a figure 0.0014 apart, 0.7775 against 0.7760).
    """
    headline = RULES[task].headline
    measured = {name: round(float(history[metric][best_iteration]), 6)
                for name, metric in VALIDATION_METRICS[task].items()}
    return {**measured, f"baseline_{headline}": baseline.settings[f"validation_{headline}"]}


def tuning_result(run: Run) -> Tune | None:
    """The tune step's result when it found params in this run; ``None`` when tuning was skipped or not run."""
    try:
        result = run.result(Tune)
    except StepNotFinished:
        return None
    return result if result.best_params else None


def mlflow_params(fit: Fit, training: Training, tuned: bool) -> dict[str, Any]:
    """Every booster param plus the training settings and the outcome of early stopping."""
    return {**fit.params, "tuned": tuned, "num_boost_round": training.num_boost_round,
            "early_stopping_rounds": training.early_stopping_rounds, "best_iteration": fit.best_iteration,
            "round_rule": fit.plan.rule, "round_floor": fit.plan.floor, "round_patience": fit.plan.patience,
            "rounds_trained": fit.model.booster.num_boosted_rounds(),
            "baseline": fit.baseline.settings["kind"],
            **{f"baseline_{key}": value for key, value in fit.baseline.settings.items() if key in BASELINE_PARAMS}}


def mlflow_metrics(fit: Fit) -> list[tuple[str, float, int]]:
    """Per-round validation metrics (one point per round) and the final validation metrics."""
    rounds = [(f"round/validation_{name}", value, step)
              for name, values in fit.history.items() for step, value in enumerate(values)]
    final = [(f"validation_{name}", value, fit.best_iteration) for name, value in fit.validation.items()]
    return rounds + final


def log_run(run: Run, ingested: Ingest, frames: dict[str, pd.DataFrame], fit: Fit, tuning: Tune | None) -> str:
    """Record the training in a new MLflow run for this pipeline run; return its id.

    ``frames`` are the rows logged as the run's training and validation datasets (at most
    :data:`LOGGED_ROWS` of each: their digests and schemas, with the ingest snapshot as their source).

    ``tuning`` is the tune step's result when its params were used (tagged with its MLflow run).
    """
    import mlflow
    import mlflow.data

    from mlpipe.model import pyfunc

    spec = run.spec
    version = ingested.data_version
    tags = tracking.run_tags(spec.name, run.uri, version, run.options.get("notes", ""))
    if tuning:
        tags[TUNING_RUN_TAG] = tuning.tuning_run_id
    with mlflow.start_run(experiment_id=tracking.experiment_id(spec.name), run_name=run.run_id,
                          tags=tags) as active:
        run_id = active.info.run_id
        tracking.log_batch(run_id, mlflow_params(fit, spec.training, bool(tuning)), mlflow_metrics(fit))
        for part, context in ((TRAIN, "training"), (VALIDATION, "validation")):
            with warnings.catch_warnings():  # MLflow's hints on source resolution and integer columns
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(frames[part], source=ingested.snapshot,
                                                  name=f"{spec.name}-{part}@{version}",
                                                  targets=spec.target.column)
                tracking.log_input(dataset, context=context)
        example = frames[TRAIN][fit.model.schema["columns"]].head(EXAMPLE_ROWS)
        pyfunc.log_model(fit.model, example, name="model")
    return run_id


def uses_dask(settings: Distributed, train_rows: int) -> bool:
    """Whether the booster trains on Dask: asked for, or a train split above ``distributed.above_rows``."""
    return settings.enabled or (settings.above_rows is not None and train_rows > settings.above_rows)


def fit_models(spec: Spec, parts: dict[str, str], sample: pd.DataFrame, shards_folder: str | None = None,
               tuned_rounds: int | None = None) -> Fit:
    """Train the booster and the baseline on the train split; measure on validation.

    The booster boosts ``tuned_rounds`` rounds when given, else it stops early on validation (:func:`round_plan`).

    The booster trains on quantized matrices built batch by batch (:func:`boost_on_splits`), or on
    Dask (:func:`mlpipe.compute.distributed.fit_distributed`, shards under ``shards_folder``) when
    :func:`uses_dask`; the baseline on at most ``training.baseline_rows`` rows of ``sample`` (a
    seeded sample of the train split, :func:`train_sample`), its class weighting chosen on a seeded
    sample of at most as many validation rows (:func:`mlpipe.model.baseline.fit_baseline`).
    """
    with timed("scanning the train split (feature schema, target) and the validation split's target"):
        scanned = scan(parts[TRAIN], spec)
        tallies = {TRAIN: scanned.tally, VALIDATION: target_tally(parts[VALIDATION], spec)}
    for part, tally in tallies.items():
        require_learnable(tally, spec, part)
    feature_schema, rows, task = scanned.schema, scanned.tally.rows, spec.target.task
    pos_weight = (scale_pos_weight(rows, scanned.tally.positives, spec.training.scale_pos_weight)
                  if task == Task.BINARY else None)
    params = booster_params(spec.training, pos_weight, resolve_device(requested_device(spec)), task,
                            len(feature_schema.get("classes", ())))
    plan = round_plan(spec.training, params, tuned_rounds)
    settings = spec.training.distributed
    external = spec.training.external_memory_rows is not None and rows > spec.training.external_memory_rows
    if uses_dask(settings, rows):
        if task != Task.BINARY:
            raise Refused(f"training.distributed: Dask training is for binary targets so far; this one is {task}")
        if shards_folder is None:
            raise Refused("training.distributed: the Dask workers need a folder for the shards")
        booster, history, seconds = fit_distributed(spec, params, parts, feature_schema, shards_folder,
                                                    settings.workers, settings.scheduler_address,
                                                    settings.kubernetes)
        plan = plain_stopping(spec.training)  # Dask stops early its own way: no floor, no tuned round count
        external = False
    else:
        with timed("building the quantized matrices and boosting"):
            booster, history, seconds = boost_on_splits(params, parts, feature_schema, spec, external, plan)
    model = TabularModel(booster, feature_schema)
    if len(sample) > spec.training.baseline_rows:
        sample = sample.sample(n=spec.training.baseline_rows, random_state=spec.split.seed)
    with timed("fitting the baseline"):
        held_out = datasets.sample(parts[VALIDATION], spec.training.baseline_rows, spec.split.seed)
        baseline = fit_baseline(task, inputs(sample, feature_schema, spec, TRAIN),
                                inputs(held_out, feature_schema, spec, VALIDATION), feature_schema, spec.split.seed)
    measured = validation_metrics(task, history, booster.best_iteration, baseline)
    headline = RULES[task].headline
    log.info("trained on %s in %.2fs (%d rows%s): %d trees (of %d rounds; %s), validation %s %.4f "
             "(baseline %.4f)", params["device"], seconds, rows, ", external memory" if external else "",
             booster.best_iteration + 1, booster.num_boosted_rounds(), plan.describe(), headline,
             measured[headline], measured[f"baseline_{headline}"])
    return Fit(model, baseline, params, history, seconds, measured,
               {part: tally.rows for part, tally in tallies.items()}, external, plan)


def train_sample(uri: str, spec: Spec) -> pd.DataFrame:
    """One seeded sample of the train split for the baseline and the drift reference (one pass, not two)."""
    return datasets.sample(uri, max(spec.training.baseline_rows, spec.monitoring.reference_rows), spec.split.seed)


def train(run: Run) -> Train:
    ingested, split = run.result(Ingest), run.result(Split)
    parts = {part: split.folder(part) for part in (TRAIN, VALIDATION)}
    spec, tuning = run.spec, tuning_result(run)
    if tuning:
        spec = spec.model_copy(update={"training": tuned_training(spec.training, tuning.best_params)})
    with timed("sampling the train split"):
        sample = train_sample(parts[TRAIN], spec)
    trained = fit_models(spec, parts, sample, shards_folder=run.path(STEP, "shards"),
                         tuned_rounds=tuning.best_rounds if tuning else None)
    with timed("saving the model, the baseline and the drift reference"):
        model_folder = trained.model.save(run.path(STEP, "model"))
        baseline_folder = trained.baseline.save(run.path(STEP, "baseline"))
        reference_uri = reference.write(sample, trained.model, spec.monitoring.reference_rows, spec.split.seed,
                                        run.path(STEP, "reference.parquet"))
    with timed("logging to MLflow"):
        logged = {TRAIN: sample.head(LOGGED_ROWS),
                  VALIDATION: next(datasets.batches(parts[VALIDATION], LOGGED_ROWS))}
        mlflow_run_id = log_run(run, ingested, logged, trained, tuning)
    return Train(mlflow_run_id=mlflow_run_id, model_uri=f"runs:/{mlflow_run_id}/model",
                 model_folder=model_folder, baseline=baseline_folder, reference=reference_uri,
                 device=trained.params["device"], rows=trained.rows, external_memory=trained.external_memory,
                 best_iteration=trained.best_iteration, num_trees=trained.num_trees,
                 round_rule=trained.plan.rule, rounds=trained.plan.describe(),
                 scale_pos_weight=trained.params.get("scale_pos_weight"), validation=trained.validation,
                 train_seconds=round(trained.seconds, 4), data_version=ingested.data_version,
                 tuned=bool(tuning), baseline_settings=trained.baseline.settings)
