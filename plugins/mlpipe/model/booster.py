"""The XGBoost booster: device, class weighting, params, round plans with early stopping, and fitting it
on the split's train and validation sets batch by batch (quantized matrices built from the parts).

Used by the train and tune steps alike, so a tuning trial boosts exactly as training does.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from mlpipe.core import settings
from mlpipe.core.errors import Refused
from mlpipe.core.tasks import RULES, TRANSFORMS, Task, learned
from mlpipe.data import datasets
from mlpipe.data.features import class_names, count_levels, labels, matrix, schema_of
from mlpipe.model.transformed import evaluation

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from mlpipe.core.spec import Spec, Training

log = logging.getLogger(__name__)

TRAIN, VALIDATION = "train", "validation"
DEVICES = settings.DEVICES
CUDA_FALLBACK = "device 'cuda' was requested but no usable GPU was found: training on cpu instead"
RESERVED_PARAMS = {"device": "training.device (or $MLPIPE_DEVICE)",
                   "scale_pos_weight": "training.scale_pos_weight"}
MAXIMIZED_METRICS = ("auc", "aucpr", "map", "ndcg", "pre")  # XGBoost's metrics where higher is better
TUNED_RULE = "tuned"  # round_rule: the best tuning trial's round count
STOPPED_RULE = "early_stopping"  # round_rule: early stopping on validation, with a floor


def requested_device(spec: Spec) -> str:
    """``$MLPIPE_DEVICE`` when set, else ``training.device``."""
    device = settings.device() or spec.training.device
    if device not in DEVICES:
        raise Refused(f"${settings.DEVICE}={device!r}: expected one of {', '.join(DEVICES)}")
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


def booster_params(training: Training, pos_weight: float | None, device: str, task: Task = Task.BINARY,
                   num_class: int | None = None) -> dict[str, Any]:
    """The params of ``xgboost.train``: the spec's, with the task's objective (unless the spec names one) and
    round metrics (:data:`mlpipe.core.tasks.RULES`), the class weight (binary: ``pos_weight``), the number of
    classes (multiclass: ``num_class``) and the device."""
    params = dict(training.params)
    for key, setting in RESERVED_PARAMS.items():
        if key in params:
            raise Refused(f"training.params.{key}: set it with {setting}, not in training.params")
    method = params.setdefault("tree_method", "hist")
    if method != "hist":
        raise Refused(f"training.params.tree_method: only 'hist' is supported "
                        f"(native categorical features on cpu and cuda), got {method!r}")
    rules = RULES[task]
    params.setdefault("objective", rules.objective)
    given = params.get("eval_metric") or []
    given = [given] if isinstance(given, str) else list(given)
    metrics = [*(m for m in rules.round_metrics if m not in given), *given]
    weighting = {"scale_pos_weight": pos_weight} if task == Task.BINARY else {}
    classes = {"num_class": num_class} if task == Task.MULTICLASS else {}
    return {**params, "eval_metric": metrics, **weighting, **classes, "device": device}


def require_learnable(tally: Tally, spec: Spec, part: str) -> None:
    """A split must hold both classes (binary), two classes or more (multiclass), two values or more (regression),
    all of them values its ``target.transform`` takes."""
    column, task = spec.target.column, spec.target.task
    if task == Task.BINARY and tally.positives in (0, tally.rows):
        raise Refused(f"the {part} split needs both classes of target.column {column!r}: "
                        f"{tally.positives} of its {tally.rows} rows are the positive class "
                        f"{spec.target.positive_text}")
    if task == Task.MULTICLASS and len(tally.classes) < 2:
        raise Refused(f"the {part} split needs two classes or more of target.column {column!r} for a multiclass "
                      f"model; its {tally.rows} rows hold {sorted(tally.classes) or 'none'}")
    if task == Task.REGRESSION and not tally.low < tally.high:
        raise Refused(f"the {part} split needs two values or more of target.column {column!r} for a regression "
                      f"model; its {tally.rows} rows hold {'only ' + repr(tally.low) if tally.rows else 'none'}")
    transform = spec.target.transform
    if transform is not None and tally.low <= (floor := TRANSFORMS[transform].above):
        raise Refused(f"target.transform {transform}: every value of target.column {column!r} must be above "
                      f"{floor:g}; the {part} split holds {tally.low:g}")


def inputs(frame: pd.DataFrame, feature_schema: dict[str, Any], spec: Spec,
           part: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature matrix and labels of one split in memory (:func:`learned_labels`), which must be learnable
    (:func:`require_learnable`)."""
    tally = Tally()
    tally.add(frame, spec)
    require_learnable(tally, spec, part)
    return matrix(frame, feature_schema), learned_labels(frame, feature_schema, spec)


def learned_labels(frame: pd.DataFrame, feature_schema: dict[str, Any], spec: Spec) -> np.ndarray:
    """The labels (:func:`~mlpipe.data.features.labels`) as the booster learns them: a regression target through the
    schema's ``transform``."""
    return learned(feature_schema.get("transform"), labels(frame, spec, feature_schema.get("classes")))


@dataclass
class Tally:
    """What a pass over a split's target column counts: its rows; per class, as text, its rows (binary: ``"1"``
    for the positive class, ``"0"`` for the others); a regression target's lowest and highest value."""

    rows: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    low: float = math.inf
    high: float = -math.inf

    @property
    def positives(self) -> int:
        return self.classes.get("1", 0)

    def add(self, frame: pd.DataFrame, spec: Spec) -> None:
        """Count one batch of the split in."""
        self.rows += len(frame)
        task = spec.target.task
        if task == Task.REGRESSION:
            y = labels(frame, spec)
            if len(y):
                self.low, self.high = min(self.low, float(y.min())), max(self.high, float(y.max()))
            return
        if task == Task.BINARY:
            positives = int(labels(frame, spec).sum())
            found = {"1": positives, "0": len(frame) - positives}
        else:
            if spec.target.classes is not None:
                labels(frame, spec)  # refuses a class the spec does not list
            found = count_levels(frame[spec.target.column])
            if (missing := len(frame) - sum(found.values())) > 0:
                raise Refused(f"target.column {spec.target.column!r}: {missing} rows have no value")
        for name, rows in found.items():
            self.classes[name] = self.classes.get(name, 0) + rows

    def class_names(self, spec: Spec) -> list[str]:
        """A multiclass model's classes: ``target.classes``, else the ones counted, ordered by their text."""
        return class_names(spec) if spec.target.classes is not None else sorted(self.classes)


@dataclass
class Scanned:
    """What one pass over the train split's categorical and target columns finds."""

    schema: dict[str, Any]
    tally: Tally


def scan(uri: str, spec: Spec) -> Scanned:
    """The feature schema (with a multiclass target's classes) and the target :class:`Tally` of a split, reading
    only its categorical and target columns."""
    names = datasets.column_names(uri)
    categorical = [c for c in spec.feature_columns(names) if c in spec.features.categorical]
    levels: dict[str, dict[str, int]] = {c: {} for c in categorical}
    tally = Tally()
    for frame in datasets.batches(uri, spec.data.batch_rows, columns=[*categorical, spec.target.column]):
        for column in categorical:
            count_levels(frame[column], levels[column])
        tally.add(frame, spec)
    return Scanned({**schema_of(names, levels, spec), **target_schema(spec, tally)}, tally)


def target_schema(spec: Spec, tally: Tally) -> dict[str, Any]:
    """The feature schema's part about the target (none for binary): the task and a multiclass target's classes
    (:meth:`Tally.class_names` of the train split's ``tally``), how the model's outputs are laid out; a regression
    target's ``transform``, which every prediction undoes."""
    if spec.target.task == Task.BINARY:
        return {}
    found: dict[str, Any] = {"task": str(spec.target.task)}
    if spec.target.task == Task.MULTICLASS:
        found["classes"] = tally.class_names(spec)
    if spec.target.transform is not None:
        found["transform"] = str(spec.target.transform)
    return found


def target_tally(uri: str, spec: Spec) -> Tally:
    """The target :class:`Tally` of a split, reading only its target column."""
    tally = Tally()
    for frame in datasets.batches(uri, spec.data.batch_rows, columns=[spec.target.column]):
        tally.add(frame, spec)
    return tally


def batch_iterator(uri: str, feature_schema: dict[str, Any], spec: Spec, cache_prefix: str | None = None):
    """An ``xgboost.DataIter`` over a split: each batch of ``data.batch_rows`` rows as model inputs and labels.

    XGBoost pulls the batches itself, four times for an in-memory matrix (sketching the quantiles,
    then quantizing), and three for a matrix that refers to another's quantiles. In memory (no
    ``cache_prefix``) the batches are read and encoded once and kept, as model inputs, until the
    matrix is built: they are smaller than the data as read, and the matrix is in memory anyway
    (measured at 6M train rows: 18.9 s -> ~9 s to build it). Under ``cache_prefix`` (external
    memory) each pass reads the split again, and only the quantized pages stay, on disk.
    """
    import xgboost as xgb

    class Batches(xgb.DataIter):
        def __init__(self) -> None:
            super().__init__(cache_prefix=cache_prefix, release_data=True)
            self.kept: list[tuple[pd.DataFrame, np.ndarray]] | None = None  # after a whole pass, in memory
            self.batches: Iterator[tuple[pd.DataFrame, np.ndarray]] | None = None

        def encoded(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
            passing = []
            for frame in datasets.batches(uri, spec.data.batch_rows):
                batch = matrix(frame, feature_schema), learned_labels(frame, feature_schema, spec)
                if cache_prefix is None:
                    passing.append(batch)
                yield batch
            if cache_prefix is None:
                self.kept = passing

        def next(self, input_data) -> bool:
            if self.batches is None:
                self.batches = iter(self.kept) if self.kept is not None else self.encoded()
            batch = next(self.batches, None)
            if batch is None:
                return False
            input_data(data=batch[0], label=batch[1])
            return True

        def reset(self) -> None:
            self.batches = None

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
        boosted = boost(params, dtrain, dvalid, plan, transform=feature_schema.get("transform"))
        del dtrain, dvalid
        return boosted


def fit_booster(params: dict[str, Any], train: tuple[pd.DataFrame, np.ndarray],
                validation: tuple[pd.DataFrame, np.ndarray], training: Training,
                callbacks: list[xgb.callback.TrainingCallback] | None = None, transform: str | None = None,
                ) -> tuple[xgb.Booster, dict[str, list[float]], float]:
    """Boost on in-memory inputs (tuning's samples) with early stopping on ``validation``; see :func:`boost`."""
    import xgboost as xgb

    dtrain = xgb.QuantileDMatrix(train[0], label=train[1], enable_categorical=True)
    dvalid = xgb.QuantileDMatrix(validation[0], label=validation[1], enable_categorical=True, ref=dtrain)
    return boost(params, dtrain, dvalid, plain_stopping(training), callbacks, transform)


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
          callbacks: list[xgb.callback.TrainingCallback] | None = None, transform: str | None = None,
          ) -> tuple[xgb.Booster, dict[str, list[float]], float]:
    """Boost the rounds of ``plan``, evaluating every round on ``dvalid``; return the booster, per-round metrics,
    seconds.

    ``callbacks`` see every round's validation metrics (keys ``validation-<metric>``), e.g. a tuning pruner; a
    target learned through ``transform`` has them measured in its units (:func:`mlpipe.model.transformed.evaluation`).
    """
    import xgboost as xgb

    history: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    given, custom_metric = evaluation(params, transform)
    booster = xgb.train(given, dtrain, num_boost_round=plan.limit, evals=[(dvalid, VALIDATION)],
                        evals_result=history, verbose_eval=False, custom_metric=custom_metric,
                        callbacks=[*(callbacks or []), stopping(plan, params["eval_metric"][-1])])
    return booster, history[VALIDATION], time.perf_counter() - started


def tuned_training(training: Training, values: dict[str, Any]) -> Training:
    """``training`` with ``values`` (tuned or sampled hyperparameters) merged over its params."""
    return training.model_copy(update={"params": {**training.params, **values}})
