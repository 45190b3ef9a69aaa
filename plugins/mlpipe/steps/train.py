"""train: the XGBoost model (tuned round count, or early-stopped on validation) and a logistic-regression baseline.

Reads the split step's ``train`` and ``validation`` sets (never ``analysis``) and writes:

- ``<run>/train/model/``: the :class:`~mlpipe.model.TabularModel` (booster + feature schema);
- ``<run>/train/baseline/``: the baseline (:mod:`mlpipe.baseline`), for the analyze step (:func:`load_baseline`);
- ``<run>/train/reference.parquet``: the drift reference for monitoring (:mod:`mlpipe.reference`).

It starts the pipeline run's MLflow run (named after the run id; tagged with the
pipeline, run folder, data version and git commit) and logs there: the booster
params and training settings, the validation metrics of every boosting round
(``round/validation_<metric>`` by step), the final validation metrics of model
and baseline, the training and validation datasets, and the pyfunc model
(:mod:`mlpipe.serving_model`).

When the ``tune`` step found params in this run, they are merged over ``training.params``
(MLflow param ``tuned``, tag ``mlpipe.tuning_run_id``); when tuning was skipped, disabled or not
part of the run, the spec's params are used as they are.

Memory does not grow with the data: one pass over the train split's categorical and target
columns gives the feature schema and class counts; XGBoost builds its quantized matrices from
the splits batch by batch (:func:`batch_iterator`; on disk above ``training.external_memory_rows``
train rows); the baseline and the drift reference use one seeded sample (:func:`train_sample`),
the baseline's choice of class weighting a seeded sample of as many validation rows;
the validation metrics come from one batched pass (:func:`mlpipe.evaluation.evaluate`). With
``training.distributed`` the booster trains on Dask instead (:func:`uses_dask`).

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
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from mlpipe import datasets, reference, tracking
from mlpipe.baseline import Baseline, fit_baseline
from mlpipe.evaluation import evaluate
from mlpipe.features import count_levels, labels, matrix, schema_of
from mlpipe.model import TabularModel
from mlpipe.runs import Run, StepNotFinished
from mlpipe.steps import StepError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from mlpipe.spec import Distributed, Spec, Training

log = logging.getLogger(__name__)

STEP = "train"
TRAIN, VALIDATION = "train", "validation"
DEVICE_ENV = "MLPIPE_DEVICE"
DEVICES = ("cpu", "cuda")
CUDA_FALLBACK = "device 'cuda' was requested but no usable GPU was found: training on cpu instead"
ROUND_METRICS = ("logloss", "auc")
RESERVED_PARAMS = {"device": "training.device (or $MLPIPE_DEVICE)",
                   "scale_pos_weight": "training.scale_pos_weight"}
TUNING_RUN_TAG = "mlpipe.tuning_run_id"
EXAMPLE_ROWS = 5
MAXIMIZED_METRICS = ("auc", "aucpr", "map", "ndcg", "pre")  # XGBoost's metrics where higher is better
TUNED_RULE = "tuned"  # round_rule: the best tuning trial's round count
STOPPED_RULE = "early_stopping"  # round_rule: early stopping on validation, with a floor
LOGGED_ROWS = 10_000  # rows of each split logged to MLflow as the run's datasets: train's from its seeded sample,
# validation's first rows


def load_baseline(run: Run) -> Baseline:
    """The baseline trained in ``run``; its ``scores(frame)`` gives the positive-class probability per row."""
    return Baseline.load(run.result(STEP)["baseline"])


def requested_device(spec: Spec) -> str:
    """``$MLPIPE_DEVICE`` when set, else ``training.device``."""
    device = os.environ.get(DEVICE_ENV) or spec.training.device
    if device not in DEVICES:
        raise StepError(f"${DEVICE_ENV}={device!r}: expected one of {', '.join(DEVICES)}")
    return device


@cache
def cuda_usable() -> bool:
    """Whether XGBoost can train on a GPU here (a CUDA build and a visible device), probed once."""
    import json

    import numpy as np
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA"):
        return False
    probe = xgb.DMatrix(np.array([[0.0], [1.0]], dtype="float32"), label=np.array([0.0, 1.0]))
    with xgb.config_context(verbosity=0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            booster = xgb.train({"device": "cuda", "tree_method": "hist"}, probe, num_boost_round=1)
        except xgb.core.XGBoostError:
            return False
    # Without a usable GPU, XGBoost trains on the CPU anyway and says so only in a warning.
    return json.loads(booster.save_config())["learner"]["generic_param"]["device"].startswith("cuda")


def resolve_device(requested: str) -> str:
    """The device to train on: ``requested``, or ``cpu`` (with one warning) when CUDA is not usable."""
    if requested == "cuda" and not cuda_usable():
        log.warning(CUDA_FALLBACK)
        return "cpu"
    return requested


def scale_pos_weight(rows: int, positives: int, setting: str | float) -> float:
    """``training.scale_pos_weight``; ``"auto"`` is negatives / positives of the training labels."""
    return float(setting) if setting != "auto" else (rows - positives) / positives


def booster_params(training: Training, pos_weight: float, device: str) -> dict[str, Any]:
    """The params of ``xgboost.train``: the spec's, with the evaluation metrics, class weight and device."""
    params = dict(training.params)
    for key, setting in RESERVED_PARAMS.items():
        if key in params:
            raise StepError(f"training.params.{key}: set it with {setting}, not in training.params")
    method = params.setdefault("tree_method", "hist")
    if method != "hist":
        raise StepError(f"training.params.tree_method: only 'hist' is supported "
                        f"(native categorical features on cpu and cuda), got {method!r}")
    given = params.get("eval_metric") or []
    given = [given] if isinstance(given, str) else list(given)
    metrics = [*(m for m in ROUND_METRICS if m not in given), *given]
    return {**params, "eval_metric": metrics, "scale_pos_weight": pos_weight, "device": device}


def require_both_classes(positives: int, rows: int, spec: Spec, part: str) -> None:
    """A split must hold both classes of the target."""
    if positives in (0, rows):
        raise StepError(f"the {part} split needs both classes of target.column {spec.target.column!r}: "
                        f"{positives} of its {rows} rows are the positive class "
                        f"{spec.target.positive_text}")


def inputs(frame: pd.DataFrame, feature_schema: dict[str, Any], spec: Spec,
           part: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature matrix and 0/1 labels of one split (in memory), which must hold both classes."""
    y = labels(frame, spec)
    require_both_classes(int(y.sum()), len(y), spec, part)
    return matrix(frame, feature_schema), y


@dataclass
class Scanned:
    """What one pass over the train split's categorical and target columns finds."""

    schema: dict[str, Any]
    rows: int
    positives: int


def scan(uri: str, spec: Spec) -> Scanned:
    """The feature schema, rows and positives of a split, reading only its categorical and target columns."""
    names = datasets.column_names(uri)
    categorical = [c for c in spec.feature_columns(names) if c in spec.features.categorical]
    levels: dict[str, dict[str, int]] = {c: {} for c in categorical}
    rows = positives = 0
    for frame in datasets.batches(uri, spec.data.batch_rows, columns=[*categorical, spec.target.column]):
        for column in categorical:
            count_levels(frame[column], levels[column])
        y = labels(frame, spec)
        rows, positives = rows + len(y), positives + int(y.sum())
    return Scanned(schema_of(names, levels, spec), rows, positives)


def batch_iterator(uri: str, feature_schema: dict[str, Any], spec: Spec, cache_prefix: str | None = None):
    """An ``xgboost.DataIter`` over a split: each batch of ``data.batch_rows`` rows as model inputs and labels.

    XGBoost pulls the batches itself, twice (sketching the quantiles, then quantizing); only the
    quantized matrix stays, in memory, or on disk under ``cache_prefix`` (external memory).
    """
    import xgboost as xgb

    class Batches(xgb.DataIter):
        def __init__(self) -> None:
            super().__init__(cache_prefix=cache_prefix, release_data=True)
            self.frames = None

        def next(self, input_data) -> bool:
            if self.frames is None:
                self.frames = datasets.batches(uri, spec.data.batch_rows)
            frame = next(self.frames, None)
            if frame is None:
                return False
            input_data(data=matrix(frame, feature_schema), label=labels(frame, spec))
            return True

        def reset(self) -> None:
            self.frames = None

    return Batches()


def boost_on_splits(params: dict[str, Any], parts: dict[str, str], feature_schema: dict[str, Any], spec: Spec,
                    external: bool, plan: Rounds) -> tuple[xgb.Booster, dict[str, list[float]], float]:
    """:func:`boost` on quantized train and validation matrices built batch by batch from the splits' parts.

    ``external``: the train matrix is an ``ExtMemQuantileDMatrix`` whose pages live in a temporary
    folder instead of memory; the matrices are freed (XGBoost removes its pages) before the folder is.
    """
    import xgboost as xgb

    with tempfile.TemporaryDirectory(prefix="mlpipe-xgb-cache-") as cache:
        if external:
            dtrain = xgb.ExtMemQuantileDMatrix(batch_iterator(parts[TRAIN], feature_schema, spec,
                                                              os.path.join(cache, "train")), enable_categorical=True)
        else:
            dtrain = xgb.QuantileDMatrix(batch_iterator(parts[TRAIN], feature_schema, spec), enable_categorical=True)
        dvalid = xgb.QuantileDMatrix(batch_iterator(parts[VALIDATION], feature_schema, spec),
                                     enable_categorical=True, ref=dtrain)
        boosted = boost(params, dtrain, dvalid, plan)
        del dtrain, dvalid
        return boosted


def fit_booster(params: dict[str, Any], train: tuple[pd.DataFrame, np.ndarray],
                validation: tuple[pd.DataFrame, np.ndarray], training: Training,
                callbacks: list[xgb.callback.TrainingCallback] | None = None,
                ) -> tuple[xgb.Booster, dict[str, list[float]], float]:
    """Boost on in-memory inputs (tuning's samples) with early stopping on ``validation``; see :func:`boost`."""
    import xgboost as xgb

    dtrain = xgb.QuantileDMatrix(train[0], label=train[1], enable_categorical=True)
    dvalid = xgb.QuantileDMatrix(validation[0], label=validation[1], enable_categorical=True, ref=dtrain)
    return boost(params, dtrain, dvalid, plain_stopping(training), callbacks)


@dataclass(frozen=True)
class Rounds:
    """How many boosting rounds: at most ``limit``; the best round on validation at or after round ``floor``
    (1-based), stopping ``patience`` rounds past it. ``rule`` says which rule chose them."""

    limit: int
    floor: int
    patience: int
    rule: str

    def describe(self) -> str:
        if self.rule == TUNED_RULE:
            return f"{self.limit} rounds: the best tuning trial's cross-validated round count (at least 1 / eta)"
        return (f"early stopping on validation: at least {self.floor} rounds, patience {self.patience}, "
                f"at most {self.limit}")


def round_plan(training: Training, params: dict[str, Any], tuned_rounds: int | None = None) -> Rounds:
    """The tuned round count when there is one, else early stopping with a floor (see the module).

    Either way the model keeps at least ``ceil(1 / eta)`` rounds (at most ``training.num_boost_round``).
    """
    floor = min(training.num_boost_round, math.ceil(1 / float(params.get("eta", params.get("learning_rate", 0.3)))))
    if tuned_rounds is not None:
        rounds = max(tuned_rounds, floor)
        return Rounds(limit=rounds, floor=rounds, patience=0, rule=TUNED_RULE)
    return Rounds(limit=training.num_boost_round, floor=floor,
                  patience=max(training.early_stopping_rounds, floor), rule=STOPPED_RULE)


def plain_stopping(training: Training) -> Rounds:
    """XGBoost's own early stopping on validation, no floor: tuning's trials scored on the validation split
    (``train`` floors their round count) and Dask training."""
    return Rounds(training.num_boost_round, 1, training.early_stopping_rounds, STOPPED_RULE)


def stopping(plan: Rounds, metric: str) -> xgb.callback.TrainingCallback:
    """Early stopping on the validation ``metric`` that never picks a round before ``plan.floor``.

    It sets the booster's ``best_iteration`` (the trees predictions use, :meth:`TabularModel.tree_range`)
    like XGBoost's own early stopping; with the tuned rule that is the last round.
    """
    import xgboost as xgb

    maximize = metric.split("@")[0] in MAXIMIZED_METRICS

    class FlooredStopping(xgb.callback.TrainingCallback):
        def __init__(self) -> None:
            super().__init__()
            self.best: tuple[int, float] | None = None

        def after_iteration(self, model, epoch: int, evals_log) -> bool:
            score = evals_log[VALIDATION][metric][-1]
            if epoch + 1 >= plan.floor and (self.best is None or (
                    score > self.best[1] if maximize else score < self.best[1])):
                self.best = (epoch, score)
            return self.best is not None and epoch - self.best[0] >= plan.patience

        def after_training(self, model):
            model.set_attr(best_iteration=str(self.best[0]), best_score=str(self.best[1]))
            return model

    return FlooredStopping()


def boost(params: dict[str, Any], dtrain: xgb.DMatrix, dvalid: xgb.DMatrix, plan: Rounds,
          callbacks: list[xgb.callback.TrainingCallback] | None = None,
          ) -> tuple[xgb.Booster, dict[str, list[float]], float]:
    """Boost the rounds of ``plan``, evaluating every round on ``dvalid``; return the booster, per-round metrics,
    seconds.

    ``callbacks`` see every round's validation metrics (keys ``validation-<metric>``), e.g. a tuning pruner.
    """
    import xgboost as xgb

    history: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    booster = xgb.train(params, dtrain, num_boost_round=plan.limit, evals=[(dvalid, VALIDATION)],
                        evals_result=history, verbose_eval=False,
                        callbacks=[*(callbacks or []), stopping(plan, params["eval_metric"][-1])])
    return booster, history[VALIDATION], time.perf_counter() - started


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


def validation_metrics(model: TabularModel, baseline: Baseline, uri: str, spec: Spec) -> dict[str, float]:
    """ROC AUC and log loss of the model, ROC AUC of the baseline, on the validation split (one batched pass)."""
    from sklearn.metrics import log_loss, roc_auc_score

    scored = evaluate(uri, spec, {"model": model.scores, "baseline": baseline.scores})
    return {"roc_auc": round(float(roc_auc_score(scored.y, scored.scores["model"])), 6),
            "logloss": round(float(log_loss(scored.y, scored.scores["model"].astype("float64"))), 6),
            "baseline_roc_auc": round(float(roc_auc_score(scored.y, scored.scores["baseline"])), 6)}


def tuned_training(training: Training, values: dict[str, Any]) -> Training:
    """``training`` with ``values`` (tuned or sampled hyperparameters) merged over its params."""
    return training.model_copy(update={"params": {**training.params, **values}})


def tuning_result(run: Run) -> dict[str, Any] | None:
    """The tune step's result when it found params in this run; ``None`` when tuning was skipped or not run."""
    try:
        result = run.result("tune")
    except StepNotFinished:
        return None
    return result if result.get("best_params") else None


def mlflow_params(fit: Fit, training: Training, tuned: bool) -> dict[str, Any]:
    """Every booster param plus the training settings and the outcome of early stopping."""
    return {**fit.params, "tuned": tuned, "num_boost_round": training.num_boost_round,
            "early_stopping_rounds": training.early_stopping_rounds, "best_iteration": fit.best_iteration,
            "round_rule": fit.plan.rule, "round_floor": fit.plan.floor, "round_patience": fit.plan.patience,
            "rounds_trained": fit.model.booster.num_boosted_rounds(),
            "baseline": "logistic_regression", "baseline_C": fit.baseline.settings["C"],
            "baseline_class_weight": fit.baseline.settings["class_weight"]}


def mlflow_metrics(fit: Fit) -> list[tuple[str, float, int]]:
    """Per-round validation metrics (one point per round) and the final validation metrics."""
    rounds = [(f"round/validation_{name}", value, step)
              for name, values in fit.history.items() for step, value in enumerate(values)]
    final = [(f"validation_{name}", value, fit.best_iteration) for name, value in fit.validation.items()]
    return rounds + final


def log_run(run: Run, ingested: dict[str, Any], frames: dict[str, pd.DataFrame], fit: Fit,
            tuning: dict[str, Any] | None) -> str:
    """Record the training in a new MLflow run for this pipeline run; return its id.

    ``frames`` are the rows logged as the run's training and validation datasets (at most
    :data:`LOGGED_ROWS` of each: their digests and schemas, with the ingest snapshot as their source).

    ``tuning`` is the tune step's result when its params were used (tagged with its MLflow run).
    """
    import mlflow
    import mlflow.data

    from mlpipe import serving_model

    spec = run.spec
    version = ingested["data_version"]
    tags = tracking.run_tags(spec.name, run.uri, version, run.options.get("notes", ""))
    if tuning:
        tags[TUNING_RUN_TAG] = tuning["tuning_run_id"]
    with mlflow.start_run(experiment_id=tracking.experiment_id(spec.name), run_name=run.run_id,
                          tags=tags) as active:
        run_id = active.info.run_id
        tracking.log_batch(run_id, mlflow_params(fit, spec.training, bool(tuning)), mlflow_metrics(fit))
        for part, context in ((TRAIN, "training"), (VALIDATION, "validation")):
            with warnings.catch_warnings():  # MLflow's hints on source resolution and integer columns
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(frames[part], source=ingested["snapshot"],
                                                  name=f"{spec.name}-{part}@{version}",
                                                  targets=spec.target.column)
                tracking.log_input(dataset, context=context)
        example = frames[TRAIN][fit.model.schema["columns"]].head(EXAMPLE_ROWS)
        serving_model.log_model(fit.model, example, name="model")
    return run_id


def uses_dask(settings: Distributed, train_rows: int) -> bool:
    """Whether the booster trains on Dask: asked for, or a train split above ``distributed.above_rows``."""
    return settings.enabled or (settings.above_rows is not None and train_rows > settings.above_rows)


def fit_models(spec: Spec, parts: dict[str, str], sample: pd.DataFrame, shards_folder: str | None = None,
               tuned_rounds: int | None = None) -> Fit:
    """Train the booster and the baseline on the train split; measure on validation.

    The booster boosts ``tuned_rounds`` rounds when given, else it stops early on validation (:func:`round_plan`).

    The booster trains on quantized matrices built batch by batch (:func:`boost_on_splits`), or on
    Dask (:func:`mlpipe.distributed.fit_distributed`, shards under ``shards_folder``) when
    :func:`uses_dask`; the baseline on at most ``training.baseline_rows`` rows of ``sample`` (a
    seeded sample of the train split, :func:`train_sample`), its class weighting chosen on a seeded
    sample of at most as many validation rows (:func:`mlpipe.baseline.fit_baseline`).
    """
    scanned = {part: scan(parts[part], spec) for part in (TRAIN, VALIDATION)}
    for part, found in scanned.items():
        require_both_classes(found.positives, found.rows, spec, part)
    feature_schema, rows = scanned[TRAIN].schema, scanned[TRAIN].rows
    pos_weight = scale_pos_weight(rows, scanned[TRAIN].positives, spec.training.scale_pos_weight)
    params = booster_params(spec.training, pos_weight, resolve_device(requested_device(spec)))
    plan = round_plan(spec.training, params, tuned_rounds)
    settings = spec.training.distributed
    external = spec.training.external_memory_rows is not None and rows > spec.training.external_memory_rows
    if uses_dask(settings, rows):
        from mlpipe.distributed import fit_distributed

        if shards_folder is None:
            raise StepError("training.distributed: the Dask workers need a folder for the shards")
        booster, history, seconds = fit_distributed(spec, params, parts, feature_schema, shards_folder,
                                                    settings.workers, settings.scheduler_address,
                                                    settings.kubernetes)
        plan = plain_stopping(spec.training)  # Dask stops early its own way: no floor, no tuned round count
        external = False
    else:
        booster, history, seconds = boost_on_splits(params, parts, feature_schema, spec, external, plan)
    model = TabularModel(booster, feature_schema)
    if len(sample) > spec.training.baseline_rows:
        sample = sample.sample(n=spec.training.baseline_rows, random_state=spec.split.seed)
    held_out = datasets.sample(parts[VALIDATION], spec.training.baseline_rows, spec.split.seed)
    baseline = fit_baseline(inputs(sample, feature_schema, spec, TRAIN),
                            inputs(held_out, feature_schema, spec, VALIDATION), feature_schema, spec.split.seed)
    measured = validation_metrics(model, baseline, parts[VALIDATION], spec)
    log.info("trained on %s in %.2fs (%d rows%s): %d trees (of %d rounds; %s), validation ROC AUC %.4f "
             "(baseline %.4f)", params["device"], seconds, rows, ", external memory" if external else "",
             booster.best_iteration + 1, booster.num_boosted_rounds(), plan.describe(), measured["roc_auc"],
             measured["baseline_roc_auc"])
    return Fit(model, baseline, params, history, seconds, measured,
               {part: found.rows for part, found in scanned.items()}, external, plan)


def train_sample(uri: str, spec: Spec) -> pd.DataFrame:
    """One seeded sample of the train split for the baseline and the drift reference (one pass, not two)."""
    return datasets.sample(uri, max(spec.training.baseline_rows, spec.monitoring.reference_rows), spec.split.seed)


def train(run: Run) -> dict[str, Any]:
    ingested, split = run.result("ingest"), run.result("split")
    parts = {part: split[part] for part in (TRAIN, VALIDATION)}
    spec, tuning = run.spec, tuning_result(run)
    if tuning:
        spec = spec.model_copy(update={"training": tuned_training(spec.training, tuning["best_params"])})
    sample = train_sample(parts[TRAIN], spec)
    trained = fit_models(spec, parts, sample, shards_folder=run.path(STEP, "shards"),
                         tuned_rounds=tuning["best_rounds"] if tuning else None)
    model_folder = trained.model.save(run.path(STEP, "model"))
    baseline_folder = trained.baseline.save(run.path(STEP, "baseline"))
    reference_uri = reference.write(sample, trained.model, spec.monitoring.reference_rows, spec.split.seed,
                                    run.path(STEP, "reference.parquet"))
    logged = {TRAIN: sample.head(LOGGED_ROWS), VALIDATION: next(datasets.batches(parts[VALIDATION], LOGGED_ROWS))}
    mlflow_run_id = log_run(run, ingested, logged, trained, tuning)
    return {"mlflow_run_id": mlflow_run_id, "model_uri": f"runs:/{mlflow_run_id}/model",
            "model_folder": model_folder, "baseline": baseline_folder, "reference": reference_uri,
            "device": trained.params["device"], "rows": trained.rows, "external_memory": trained.external_memory,
            "best_iteration": trained.best_iteration, "num_trees": trained.num_trees,
            "round_rule": trained.plan.rule, "rounds": trained.plan.describe(),
            "scale_pos_weight": trained.params["scale_pos_weight"], "validation": trained.validation,
            "train_seconds": round(trained.seconds, 4), "data_version": ingested["data_version"],
            "tuned": bool(tuning), "baseline_settings": trained.baseline.settings}
