"""Pipeline specs: what model to build, loaded from ``dags/pipelines/<name>.yaml``.

A spec is validated when it is loaded (by the DAG factory at parse time and by
every step), and any problem is reported as one :class:`SpecError` whose lines
each name the field (``target.column``, ``split.analysis``...) and what was
expected. Unknown keys are errors, so a typo never silently falls back to a
default. This module is import-light (pydantic + yaml): the DAG side uses it.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mlpipe.core import uris
from mlpipe.core.assets import MonitoringTrigger, ScoringTrigger, TrainingTrigger
from mlpipe.core.errors import Refused
from mlpipe.core.tasks import RULES, TRANSFORMABLE, Task, Transform

NAME = r"^[a-z][a-z0-9_]{0,62}$"


class SpecError(Refused, ValueError):
    """An invalid pipeline spec; the message names the file, the field and the problem."""


PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")


def _schedule(value: str | None) -> str | None:
    """A cron expression (``0 3 * * *``) or one of Airflow's :data:`PRESETS`; ``None``: manual runs only."""
    from croniter import croniter

    if value is None or value in PRESETS or (not value.startswith("@") and croniter.is_valid(value)):
        return value
    raise ValueError(f"{value!r} is neither a cron expression (e.g. '0 3 * * *') nor one of {', '.join(PRESETS)}")


def _iso_date(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date such as 2026-01-01") from None
    return value


Schedule = Annotated[str | None, AfterValidator(_schedule)]
# Presets that are no recurring time: a DAG that runs on assets "or" them has no time part to combine.
NOT_RECURRING = ("@once", "@continuous")


def _on_assets(value: list[str], info: ValidationInfo) -> list[str]:
    """The assets whose events run a DAG (any one of them); with the section's ``schedule`` (validated before this
    field), whichever comes first: a cron expression or a recurring preset, not ``@once`` / ``@continuous``."""
    if len(set(value)) < len(value):
        raise ValueError(f"lists an asset twice: {value}")
    if value and (schedule := info.data.get("schedule")) in NOT_RECURRING:
        raise ValueError(f"cannot be combined with schedule {schedule!r}: runs on assets go with a cron expression "
                         "or a recurring preset such as '@daily' (or no schedule)")
    return value


# The assets (:mod:`mlpipe.core.assets`) whose new events run the training, scoring and monitoring DAG.
TrainingAssets = Annotated[list[TrainingTrigger], AfterValidator(_on_assets)]
ScoringAssets = Annotated[list[ScoringTrigger], AfterValidator(_on_assets)]
MonitoringAssets = Annotated[list[MonitoringTrigger], AfterValidator(_on_assets)]
ON_ASSETS = "Assets whose new events run this DAG (any one), besides the schedule if any; [] (default): none."


class _Section(BaseModel):
    # NaN and infinity are never a meaningful setting (a threshold of .nan would compare false forever).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Data(_Section):
    source: str = Field(description="CSV or Parquet URI (file://, s3://) or a path relative to the spec file.")
    format: Literal["csv", "parquet"] | None = Field(None, description="Inferred from the suffix when absent.")
    batch_rows: Annotated[int, Field(gt=0)] = Field(
        250_000, description="Rows read, checked and written at a time by ingest, validate and split (one part "
                             "of their outputs): memory holds one batch, whatever the size of the data."
    )


Label = str | int | bool


def _said(text: str) -> str:
    if not text.strip():
        raise ValueError("the text of a reason is shown to a declined applicant: it cannot be blank")
    return text


ReasonText = Annotated[str, AfterValidator(_said)]
REASON_COUNT = 4  # principal reasons of a decline: Regulation B's commentary finds more than four seldom helpful


class Target(_Section):
    """The column a model predicts, and the task: ``binary`` (with ``positive_class``), ``multiclass`` or
    ``regression`` (:mod:`mlpipe.core.tasks`)."""

    column: str
    task: Task = Field(Task.BINARY, description="binary (needs positive_class), multiclass or regression; "
                                                "binary when absent.")
    positive_class: Label | Annotated[list[Label], Field(min_length=1)] | None = Field(
        None, description="binary: the value of `column` that is the positive (rare) class, or a list of values "
                          "that all count as positive (e.g. [charged_off, late, in_grace_period])."
    )
    classes: Annotated[list[Label], Field(min_length=2)] | None = Field(
        None, description="multiclass: every class of `column`, in the order the model's probabilities take; "
                          "absent: the train split's classes, ordered by their text."
    )
    transform: Transform | None = Field(
        None, description="regression: learn log(target) (`log`: a target above 0) or log(1 + target) (`log1p`: 0 "
                          "or more); every prediction and metric is back in the target's units."
    )

    @model_validator(mode="after")
    def _fits_the_task(self) -> Target:
        if self.task == Task.BINARY and self.positive_class is None:
            raise ValueError("a binary target needs positive_class (or set task: multiclass or regression)")
        if self.task != Task.BINARY and self.positive_class is not None:
            raise ValueError(f"positive_class is for binary targets; this one is {self.task}")
        if self.classes is not None and self.task != Task.MULTICLASS:
            raise ValueError(f"classes is for multiclass targets; this one is {self.task}")
        if self.transform is not None and self.task != Task.REGRESSION:
            raise ValueError(f"transform is for regression targets; this one is {self.task}")
        if self.classes is not None and len(texts := [str(c) for c in self.classes]) > len(set(texts)):
            raise ValueError(f"classes lists a class twice: {self.classes}")
        return self

    @property
    def positive_values(self) -> list[str]:
        """The positive class's values as text: how they are compared with the target column's values."""
        values = self.positive_class if isinstance(self.positive_class, list) else [self.positive_class]
        return [str(value) for value in values]

    @property
    def positive_text(self) -> str:
        """The positive class for messages: ``'bad'`` or ``['late', 'charged_off']``."""
        values = self.positive_values
        return repr(values[0]) if len(values) == 1 else repr(values)


class Features(_Section):
    """Which columns are the model's inputs, and which of them are categories.

    A feature's kind is inferred from the data unless listed here: text and true/false columns are
    categorical, numbers numeric (:mod:`mlpipe.data.columns`); the reference profile records each kind.
    """

    include: Literal["all"] | list[str] = Field("all", description='"all" (every non-target column) or a list.')
    exclude: list[str] = []
    categorical: list[str] = Field(default_factory=list, description="Categorical whatever the data holds "
                                                                    "(e.g. integer codes).")
    numeric: list[str] = Field(default_factory=list, description="Numeric whatever the data holds.")
    max_code_levels: Annotated[int, Field(ge=0)] = Field(
        0, description="Integer columns with at most this many distinct values are categorical (codes such as "
                       "a grade 1-7); 0: integers stay numeric."
    )

    @model_validator(mode="after")
    def _one_kind_each(self) -> Features:
        if both := sorted(set(self.categorical) & set(self.numeric)):
            raise ValueError(f"{both} are listed both in categorical and in numeric")
        return self


class PiiRule(_Section):
    column: str
    action: Literal["hash", "drop"] = Field(
        description="hash: keyed HMAC-SHA256 (key from $MLPIPE_PII_KEY); drop: removed at ingest."
    )


class Split(_Section):
    validation: Annotated[float, Field(gt=0, lt=1)] = 0.2
    analysis: Annotated[float, Field(gt=0, lt=1)] = 0.2
    seed: int = 42

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Split:
        if self.validation + self.analysis >= 0.9:
            raise ValueError("validation + analysis must leave at least 10% of rows for training")
        return self


class Validation(_Section):
    profile: str | None = Field(None, description="Reference profile JSON (from `mlpipe profile`), spec-relative; "
                                                  "default: <spec name>.profile.json beside the spec.")
    positive_rate: tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]] | None = Field(
        None, description="[low, high] share of positive rows a healthy extract has; unset: half to one and a half "
                          "times the reference profile's rate."
    )
    split_rate_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_null_increase: Annotated[float, Field(ge=0, le=1)] = 0.05
    range_margin: Annotated[float, Field(ge=0)] = 0.1
    new_category_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01

    @model_validator(mode="after")
    def _ordered_rate(self) -> Validation:
        if self.positive_rate is not None and self.positive_rate[0] > self.positive_rate[1]:
            low, high = self.positive_rate
            raise ValueError(f"positive_rate must be [low, high] with low <= high, got [{low}, {high}]")
        return self

    def positive_rate_band(self, reference_rate: float | None) -> tuple[float, float]:
        """``positive_rate`` when set; else half to one and a half times the reference profile's rate
        (any rate without a profile)."""
        if self.positive_rate is not None:
            return self.positive_rate
        if reference_rate is None:
            return 0.0, 1.0
        return round(reference_rate / 2, 6), round(min(1.0, reference_rate * 1.5), 6)


class Distributed(_Section):
    """XGBoost on a Dask cluster (:mod:`mlpipe.compute.distributed`): the splits as Parquet shards the workers read."""

    enabled: bool = False
    workers: Annotated[int, Field(gt=0, le=256)] = Field(2, description="LocalCluster processes or DaskCluster pods.")
    kubernetes: bool = Field(False, description="A DaskCluster (Dask operator) placed like the train step's pod.")
    scheduler_address: str | None = Field(None, description="A running scheduler (tcp://host:8786); overrides both.")
    above_rows: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Train on Dask whenever the train split has more rows than this (even if not enabled)."
    )


# The booster params of a spec that names none; a spec's own params are laid over these, key by key.
# The objective and the round metrics follow target.task (:data:`mlpipe.core.tasks.RULES`).
DEFAULT_PARAMS: dict[str, Any] = {
    "tree_method": "hist", "eta": 0.05, "max_depth": 4, "min_child_weight": 5, "subsample": 0.8,
    "colsample_bytree": 0.8, "seed": 42,
}


class Training(_Section):
    params: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_PARAMS),
                                   description="XGBoost parameters (booster params), laid over DEFAULT_PARAMS.")
    num_boost_round: Annotated[int, Field(gt=0)] = 2000
    early_stopping_rounds: Annotated[int, Field(gt=0)] = 100
    scale_pos_weight: Literal["auto"] | Annotated[float, Field(gt=0)] = Field(
        "auto", description='"auto": negatives/positives in the training split; or a number.'
    )
    device: Literal["cpu", "cuda"] = "cpu"
    external_memory_rows: Annotated[int, Field(gt=0)] | None = Field(
        50_000_000, description="Above this many train rows the quantized matrix is kept on disk "
                                "(ExtMemQuantileDMatrix) instead of in memory; null: never."
    )
    baseline_rows: Annotated[int, Field(gt=0)] = Field(
        200_000, description="The logistic-regression baseline fits a seeded sample of at most this many train rows."
    )
    distributed: Distributed = Distributed()

    @field_validator("params")
    @classmethod
    def _over_defaults(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**DEFAULT_PARAMS, **params}


class Fairness(_Section):
    """The gate's fairness check: what the model hands each group of ``column``, measured the task's way (binary,
    the approval rate; multiclass, the share of rows predicted ``favorable_class``; regression, the mean
    prediction), lowest group / highest group at least ``min_disparate_impact``."""

    column: str = Field(description="The group attribute whose outcomes are compared.")
    min_disparate_impact: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8, description="Lowest group's measure / highest group's (four-fifths rule: 0.8): binary, approval rate; "
                         "multiclass, favorable-class rate; regression, mean prediction."
    )
    min_group_rows: Annotated[int, Field(gt=0)] = Field(30, description="Smaller groups are not compared.")
    favorable_class: Label | None = Field(
        None, description="Multiclass (required there, else unset): the class that is the good outcome for the "
                          "person (e.g. an approval grade); its share of each group's predictions is compared."
    )

    def check_task(self, task: Task, classes: list[Label] | None) -> None:
        """Raise ``ValueError`` naming ``favorable_class`` when it does not fit a ``task`` target of ``classes``
        (``target.classes``): a multiclass target needs it, one of its ``classes`` when they are listed; other
        targets take none."""
        key = "thresholds.fairness.favorable_class"
        if task != Task.MULTICLASS and self.favorable_class is not None:
            raise ValueError(f"{key}: for multiclass targets only; this one is {task}")
        if task == Task.MULTICLASS and self.favorable_class is None:
            raise ValueError(f"{key}: a multiclass target needs the class that is the good outcome for the person "
                             "(e.g. an approval grade), whose share of each group's predictions is compared")
        if classes is not None and str(self.favorable_class) not in [str(c) for c in classes]:
            raise ValueError(f"{key}: {self.favorable_class!r} is not one of target.classes {classes}")


class Thresholds(_Section):
    """What the promotion gate asks of a new model. The lift and the improvement over the champion are measured on
    the task's headline metric (:data:`mlpipe.core.tasks.RULES`: binary ROC AUC, multiclass log loss, regression
    RMSE), positive when the new model is better."""

    min_roc_auc: Annotated[float, Field(ge=0, le=1)] = Field(0.5, description="Binary: the least analysis ROC AUC.")
    max_log_loss: Annotated[float, Field(gt=0)] | None = Field(None, description="Multiclass: the most analysis "
                                                                                 "log loss; unset: none.")
    max_rmse: Annotated[float, Field(gt=0)] | None = Field(None, description="Regression: the most analysis RMSE "
                                                                             "(in the target's units); unset: none.")
    min_lift_over_baseline: float = Field(
        0.0, description="The model's analysis headline metric better than the linear baseline's by this much."
    )
    min_improvement_over_champion: float = Field(
        0.0, description="The challenger's headline metric better than the champion's by this much, both scored "
                         "on this run's analysis set."
    )
    max_slice_roc_auc_drop: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05, description="Binary: no slice's ROC AUC may fall by more than this against the champion's."
    )
    max_slice_drop: Annotated[float, Field(ge=0)] = Field(
        0.1, description="Multiclass, regression: no slice's headline metric may be worse than the champion's by "
                         "more than this share of the champion's (0.1: 10%)."
    )
    fairness: Fairness | None = None


# The thresholds of one task only: set for another, they are spec errors.
TASK_THRESHOLDS = {"min_roc_auc": Task.BINARY, "max_slice_roc_auc_drop": Task.BINARY,
                   "max_log_loss": Task.MULTICLASS, "max_rmse": Task.REGRESSION}


class SearchRange(_Section):
    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.low >= self.high or (self.log and self.low <= 0):
            raise ValueError(f"need low < high (and low > 0 for log ranges), got [{self.low}, {self.high}]")
        return self


# The ranges SageMaker's XGBoost tuning exposes: the search space of a spec that names none.
DEFAULT_SEARCH_SPACE = {
    "eta": {"low": 0.01, "high": 0.3, "log": True},
    "max_depth": {"low": 2, "high": 6, "integer": True},
    "min_child_weight": {"low": 1, "high": 100, "log": True},
    "subsample": {"low": 0.5, "high": 1.0},
    "colsample_bytree": {"low": 0.4, "high": 1.0},
    "lambda": {"low": 0.1, "high": 50, "log": True},
    "alpha": {"low": 0.001, "high": 10, "log": True},
}
# tuning.enabled "auto": trials need enough rows of each class to rank params, and cost too much above this.
AUTO_TUNING_MIN_ROWS, AUTO_TUNING_MIN_MINORITY, AUTO_TUNING_MAX_ROWS = 500, 25, 2_000_000
AUTO_CV_FOLDS, AUTO_CV_MAX_ROWS = 4, 100_000  # tuning.cv_folds auto


class Tuning(_Section):
    enabled: bool | Literal["auto"] = Field(
        "auto", description=f"auto: tune when the train split has {AUTO_TUNING_MIN_ROWS:,} to "
                            f"{AUTO_TUNING_MAX_ROWS:,} rows and at least {AUTO_TUNING_MIN_MINORITY} of each class "
                            "(binary, multiclass)."
    )
    trials: Annotated[int, Field(gt=0)] = Field(24, description="Trial budget, shared by all workers.")
    workers: Annotated[int, Field(gt=0, le=64)] = Field(2, description="Parallel trial tasks (pods on Kubernetes).")
    timeout_minutes: Annotated[float, Field(gt=0)] | None = None
    seed: int = 42
    cv_folds: Annotated[int, Field(ge=2, le=20)] | Literal["auto"] | None = Field(
        "auto", description="Score each trial by k-fold cross-validation (stratified by class; plain for a "
                            "regression target) over train + validation "
                            f"(k boosters a trial); null: train on the train split and score on validation; auto: "
                            f"{AUTO_CV_FOLDS} folds up to {AUTO_CV_MAX_ROWS:,} rows of train + validation (a small "
                            "validation split ranks params by noise), else validation."
    )
    search_space: dict[str, SearchRange] = Field(
        default_factory=lambda: {key: SearchRange(**value) for key, value in DEFAULT_SEARCH_SPACE.items()},
        description="XGBoost param -> range; default: DEFAULT_SEARCH_SPACE.")
    sample_rows: Annotated[int, Field(gt=0)] = Field(
        200_000, description="Trials train and score on seeded samples of at most this many train (and "
                             "validation) rows; the final training uses every row."
    )


    def folds(self, rows: int) -> int | None:
        """How many cross-validation folds score a trial when train + validation hold ``rows`` rows; ``None``:
        trials are scored on the validation split."""
        if self.cv_folds == "auto":
            return AUTO_CV_FOLDS if rows <= AUTO_CV_MAX_ROWS else None
        return self.cv_folds

    def skip_reason(self, rows: int, minority: int | None) -> str | None:
        """Why a train split of ``rows`` rows, ``minority`` of them in its rarest class (``None``: a regression
        target, no classes), is not tuned; ``None`` when it is."""
        if self.enabled is False:
            return "tuning.enabled is false in the spec"
        if not self.search_space:
            return "tuning.search_space is empty"
        if self.enabled is True:
            return None
        if minority is None and rows < AUTO_TUNING_MIN_ROWS:
            return (f"tuning.enabled auto: the train split has {rows} rows: too few to rank params "
                    f"(needs {AUTO_TUNING_MIN_ROWS})")
        if minority is not None and (rows < AUTO_TUNING_MIN_ROWS or minority < AUTO_TUNING_MIN_MINORITY):
            return (f"tuning.enabled auto: the train split has {rows} rows, {minority} in its rarest class: too "
                    f"few to rank params (needs {AUTO_TUNING_MIN_ROWS} and {AUTO_TUNING_MIN_MINORITY})")
        if rows > AUTO_TUNING_MAX_ROWS:
            return (f"tuning.enabled auto: the train split has {rows} rows, more than {AUTO_TUNING_MAX_ROWS:,} "
                    "(set tuning.enabled: true to tune anyway)")
        return None


class Scoring(_Section):
    schedule: Schedule = None
    on_assets: ScoringAssets = Field(default_factory=list, description=ON_ASSETS)
    source: str | None = Field(None, description="Default batch to score (URI or spec-relative path).")
    chunk_rows: Annotated[int, Field(gt=0)] = 100_000


class Serving(_Section):
    challenger_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="Share of requests answered by @challenger (A/B)."
    )
    shadow: bool = Field(False, description="Also score @challenger on every request and only log it.")
    capture_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        1.0, description="Share of requests and responses captured to the artifact store for monitoring."
    )
    max_records: Annotated[int, Field(gt=0)] = Field(
        10_000, description="The most records in one /predict or /explain request (more: 413); larger batches "
                            "belong to the batch scoring DAG."
    )
    max_body_bytes: Annotated[int, Field(gt=0)] = Field(
        8 * 2**20, description="The largest request body in bytes (more: 413, refused by its Content-Length or, "
                               "for a chunked body, as soon as it is past the limit). 8 MiB holds 10,000 records "
                               "of the bundled spec even pretty-printed (about 6 MB; 4.6 MB compact)."
    )


Share = Annotated[float, Field(ge=0, le=1)]


class DriftRule(_Section):
    """When a feature (or the score) counts as drifting; unset fields fall back to ``monitoring.drift``."""

    psi: Annotated[float, Field(gt=0)] | None = Field(None, description="Drifting at PSI >= this.")
    ks: Share | None = Field(None, description="Numeric: drifting at KS statistic >= this (and p < ks_pvalue).")
    ks_pvalue: Share | None = Field(None, description="Numeric: the KS test must also be significant at this level.")
    new_category_share: Share | None = Field(None, description="Categorical: drifting when more rows than this "
                                                               "have categories the reference never had.")
    missing_increase: Share | None = Field(None, description="Drifting when the missing rate rises by this much.")


class Drift(_Section):
    """Default drift thresholds, per-feature overrides, and when drift is a breach."""

    psi: Annotated[float, Field(gt=0)] = 0.1
    ks: Share = 0.05
    ks_pvalue: Share = 0.01
    new_category_share: Share = 0.01
    missing_increase: Share = 0.05
    features: dict[str, DriftRule] = Field(default_factory=dict, description="feature -> its own thresholds.")
    max_drifting_share: Share = Field(0.3, description="Breach when more than this share of features drift.")
    major_psi: Annotated[float, Field(gt=0)] = Field(0.25, description="Breach when any one feature's PSI "
                                                                       "reaches this (a major shift).")
    score: bool = Field(True, description="Breach when the champion's score distribution drifts.")

    def rule(self, feature: str) -> DriftRule:
        """The thresholds of ``feature``: its own where set, else these defaults."""
        own = self.features.get(feature, DriftRule())
        return DriftRule(**{name: getattr(own, name) if getattr(own, name) is not None else getattr(self, name)
                            for name in DriftRule.model_fields})


class Feedback(_Section):
    """Late outcomes (id columns + the target column), joined by id with what was scored, and when their quality is
    a breach: the task's headline metric (:data:`mlpipe.core.tasks.RULES`) on them against the champion's analysis
    value, or against an absolute bound."""

    source: str | None = Field(None, description="CSV/Parquet file or folder of outcomes (URI or spec-relative).")
    min_labels: Annotated[int, Field(gt=0)] = Field(200, description="Fewer joined outcomes: quality not judged.")
    max_roc_auc_drop: Share = Field(0.05, description="Binary: breach when ROC AUC falls this far below the "
                                                      "champion's analysis ROC AUC.")
    min_roc_auc: Share | None = Field(None, description="Binary: breach below this ROC AUC whatever the champion's.")
    max_metric_drop: Annotated[float, Field(ge=0)] = Field(
        0.1, description="Multiclass, regression: breach when the headline metric (log loss, RMSE) on the outcomes "
                         "is worse than the champion's analysis value by more than this share of it (0.1: 10%)."
    )
    max_log_loss: Annotated[float, Field(gt=0)] | None = Field(None, description="Multiclass: breach above this log "
                                                                                 "loss whatever the champion's.")
    max_rmse: Annotated[float, Field(gt=0)] | None = Field(None, description="Regression: breach above this RMSE (in "
                                                                             "the target's units) whatever the "
                                                                             "champion's.")

    def check_task(self, task: Task) -> None:
        """Raise ``ValueError`` naming the first key set (to other than its default) for other tasks than ``task``."""
        for key, owners in FEEDBACK_KEYS.items():
            if task not in owners and getattr(self, key) != Feedback.model_fields[key].default:
                raise ValueError(f"monitoring.feedback.{key}: for {' and '.join(owners)} targets only; "
                                 f"this one is {task}")


# The feedback keys of some tasks only: set for another, they are spec errors.
FEEDBACK_KEYS = {"max_roc_auc_drop": (Task.BINARY,), "min_roc_auc": (Task.BINARY,),
                 "max_metric_drop": (Task.MULTICLASS, Task.REGRESSION), "max_log_loss": (Task.MULTICLASS,),
                 "max_rmse": (Task.REGRESSION,)}


class Monitoring(_Section):
    """The ``<name>_monitoring`` DAG: drift of recent scoring inputs and scores, and quality from feedback."""

    schedule: Schedule = None
    on_assets: MonitoringAssets = Field(default_factory=list, description=ON_ASSETS)
    window_days: Annotated[float, Field(gt=0)] = Field(7, description="Scoring runs and captured requests of "
                                                                      "the last this many days are compared.")
    min_rows: Annotated[int, Field(gt=0)] = Field(500, description="Fewer rows in the window: nothing compared.")
    reference_rows: Annotated[int, Field(gt=0)] = Field(100_000, description="Training rows kept (seeded sample) "
                                                                             "as the drift reference.")
    bins: Annotated[int, Field(ge=2, le=100)] = 10
    drift: Drift = Drift()
    feedback: Feedback = Feedback()
    retrain_on_breach: bool = Field(True, description="A breach triggers the training DAG.")


class DeadlineMinutes(_Section):
    training: Annotated[float, Field(gt=0)] | None = 240
    scoring: Annotated[float, Field(gt=0)] | None = 120
    monitoring: Annotated[float, Field(gt=0)] | None = 30


class Alerts(_Section):
    """Who hears about failures, overdue runs and monitoring breaches (Airflow connections hold the secrets)."""

    webhook_conn_id: str | None = Field("mlpipe_alerts_webhook", description="Airflow connection of a "
                                        "Slack-compatible webhook (its URL); skipped when not defined.")
    email_conn_id: str | None = Field("smtp_default", description="Airflow SMTP connection for e-mail alerts.")
    email_to: list[str] = Field(default_factory=list, description="Recipients of e-mail alerts; none: no e-mail.")
    deadline_minutes: DeadlineMinutes = Field(DeadlineMinutes(), description="A run still going this long after "
                                                                             "it was queued alerts (per DAG).")


class PodResources(_Section):
    """Container resources of a step's pod: ``requests`` and ``limits`` (``cpu: "2"``, ``memory: 4Gi``...)."""

    requests: dict[str, str | int | float] = {}
    limits: dict[str, str | int | float] = {}

    def over(self, base: PodResources) -> PodResources:
        """These resources laid over ``base``, key by key."""
        return PodResources(requests={**base.requests, **self.requests}, limits={**base.limits, **self.limits})


class StepPlacement(_Section):
    pool: str | None = Field(None, description="Node pool of this step's pods; default: kubernetes.default_pool.")
    resources: PodResources = Field(PodResources(), description="Laid over the node pool's default resources.")


class Kubernetes(_Section):
    """Where the ``kubernetes`` runtime runs each step: a node pool (named in the node-pools config) and resources."""

    default_pool: str = "cpu"
    steps: dict[str, StepPlacement] = Field(default_factory=dict, description="step name -> pool and resources.")


class Spec(_Section):
    """One model's pipeline. See dags/pipelines/loan_default.yaml for a commented example."""

    name: Annotated[str, Field(pattern=NAME)]
    description: str = ""
    owner: str = "mlpipe"
    schedule: Schedule = None
    on_assets: TrainingAssets = Field(default_factory=list, description=ON_ASSETS)
    start_date: Annotated[str, AfterValidator(_iso_date)] = "2026-01-01"
    tags: list[str] = []
    data: Data
    target: Target
    id_columns: list[str] = []
    features: Features = Features()
    pii: list[PiiRule] = []
    slices: list[str] = []
    reasons: dict[str, ReasonText] = Field(
        default_factory=dict, description="Binary: feature -> the words a declined applicant reads when that feature "
                                          "is a principal reason (adverse action, ECOA / Regulation B); a feature "
                                          "without them is named by its column (a warning of `mlpipe profile`)."
    )
    reason_count: Annotated[int, Field(ge=0)] = Field(
        REASON_COUNT, description="Binary: the most reasons given with each declined record (score at or above the "
                                  "decision threshold) by /predict and batch scoring; 0: none."
    )
    split: Split = Split()
    validation: Validation = Validation()
    training: Training = Training()
    thresholds: Thresholds = Thresholds()
    tuning: Tuning = Tuning()
    scoring: Scoring = Scoring()
    serving: Serving = Serving()
    kubernetes: Kubernetes = Kubernetes()
    monitoring: Monitoring = Monitoring()
    alerts: Alerts = Alerts()
    model_name: str | None = Field(None, description="Registered model name; defaults to the spec name.")

    @model_validator(mode="after")
    def _consistent_columns(self) -> Spec:
        pii = {rule.column for rule in self.pii}
        dropped = {rule.column for rule in self.pii if rule.action == "drop"}
        fairness = [self.thresholds.fairness.column] if self.thresholds.fairness else []
        for field, columns in [
            ("features.categorical", self.features.categorical),
            ("slices", self.slices),
            ("thresholds.fairness.column", fairness),
        ]:
            if self.target.column in columns:
                raise ValueError(f"{field}: the target column {self.target.column!r} cannot be listed here")
            if bad := sorted(set(columns) & dropped):
                raise ValueError(f"{field}: {bad} are dropped by a pii rule")
        if self.target.column in pii or self.target.column in self.id_columns:
            raise ValueError(f"target.column {self.target.column!r} cannot be a pii or id column")
        if self.monitoring.feedback.source and not self.id_columns:
            raise ValueError("monitoring.feedback.source: outcomes are joined with scored rows by id_columns, "
                             "and the spec lists none")
        if isinstance(self.features.include, list) and (missing := set(self.features.categorical)
                                                        - set(self.features.include)):
            raise ValueError(f"features.categorical: {sorted(missing)} are not in features.include")
        return self

    @model_validator(mode="after")
    def _fits_the_task(self) -> Spec:
        task = self.target.task
        self.monitoring.feedback.check_task(task)
        for key, owner in TASK_THRESHOLDS.items():
            if owner != task and getattr(self.thresholds, key) != Thresholds.model_fields[key].default:
                raise ValueError(f"thresholds.{key}: for {owner} targets only; this one is {task}")
        if self.thresholds.fairness:
            self.thresholds.fairness.check_task(task, self.target.classes)
        if task == Task.BINARY:
            return self
        if self.validation.positive_rate is not None:
            raise ValueError(f"validation.positive_rate: a {task} target has no positive class")
        if self.training.scale_pos_weight != "auto":
            raise ValueError(f"training.scale_pos_weight: a {task} target has no positive class")
        objective = self.training.params.get("objective")
        if objective is not None and objective not in RULES[task].objectives:
            raise ValueError(f"training.params.objective: {objective!r} does not fit a {task} target; "
                             f"use one of {', '.join(RULES[task].objectives)}")
        if self.target.transform is not None and objective not in (None, *TRANSFORMABLE):
            raise ValueError(f"training.params.objective: {objective!r} needs the target in its own units, and "
                             f"target.transform {self.target.transform} learns its log; use one of "
                             f"{', '.join(TRANSFORMABLE)}")
        return self

    @model_validator(mode="after")
    def _reasons_explain_declines(self) -> Spec:
        """Reason codes explain a decline, a binary model's score at or above its threshold: no other task has one."""
        task = self.target.task
        if task != Task.BINARY and self.reasons:
            raise ValueError(f"reasons: reason codes explain a declined record (a binary score at or above the "
                             f"decision threshold); this target is {task}")
        if task != Task.BINARY and self.reason_count != REASON_COUNT:
            raise ValueError(f"reason_count: for binary targets only; this one is {task}")
        if self.target.column in self.reasons:
            raise ValueError(f"reasons.{self.target.column}: the target column is what the model predicts; reason "
                             "codes name its features")
        return self

    @property
    def registered_model(self) -> str:
        return self.model_name or self.name

    @property
    def gives_reasons(self) -> bool:
        """Whether a declined record gets reason codes: a binary target and ``reason_count`` above 0."""
        return self.target.task == Task.BINARY and self.reason_count > 0

    def feature_columns(self, columns: list[str]) -> list[str]:
        """The model's input columns among a dataset's ``columns``, in dataset order."""
        excluded = {self.target.column, *self.id_columns, *self.features.exclude,
                    *(rule.column for rule in self.pii if rule.action == "drop")}
        chosen = columns if self.features.include == "all" else self.features.include
        return [c for c in chosen if c not in excluded]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)


def _field_part(part: str | int) -> str:
    """One step of an error's location; a key that is empty or has line breaks (any unprintable
    character) is quoted, so that it neither reads as ``(top level)`` nor splits the message's line."""
    if isinstance(part, str):
        return part if part and part.isprintable() else repr(part)
    return str(part)


# pydantic names the member of a union (``int | Literal["auto"]``) that an error is about in its location
# (``constrained-int``, ``literal['auto']``, ``list[...]``): never a spec key, whose names are snake_case.
_UNION_MEMBER = re.compile(r"^(int|float|str|bool|none)$|[\[-]")


def _describe(error: ValidationError, source: str) -> str:
    """One line per bad field; a value no member of a union accepts gets one line: ``... or be 'auto'``."""
    fields: dict[str, list[str]] = {}
    for item in error.errors():
        loc = list(item["loc"])
        if len(loc) > 1 and isinstance(loc[-1], str) and _UNION_MEMBER.search(loc[-1]):
            loc = loc[:-1]
        field = ".".join(_field_part(part) for part in loc) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        fields.setdefault(field, []).append(message)
    return "\n".join(f"{source}: {field}: {messages[0]}"
                      + "".join(f" or {m.removeprefix('Input should ')}" for m in messages[1:])
                      for field, messages in fields.items())


def parse(document: Any, source: str = "spec") -> Spec:
    """Validate a spec given as a mapping; raise :class:`SpecError` naming every bad field."""
    if not isinstance(document, dict):
        raise SpecError(f"{source}: a spec must be a mapping of keys to values, got {type(document).__name__}")
    try:
        return Spec.model_validate(document)
    except ValidationError as error:
        raise SpecError(_describe(error, source)) from None


def resolve_paths(spec: Spec, base: Path) -> Spec:
    """Make spec-relative paths (data source, reference profile) absolute ``file://`` URIs."""
    def resolved(value: str) -> str:
        return value if re.match(r"^[a-z][a-z0-9+.-]*://", value) else uris.normalize(base / value)

    data = spec.data.model_copy(update={"source": resolved(spec.data.source)})
    profile = resolved(spec.validation.profile or f"{spec.name}.profile.json")
    validation = spec.validation.model_copy(update={"profile": profile})
    scoring = spec.scoring.model_copy(update={"source": spec.scoring.source and resolved(spec.scoring.source)})
    feedback = spec.monitoring.feedback
    feedback = feedback.model_copy(update={"source": feedback.source and resolved(feedback.source)})
    monitoring = spec.monitoring.model_copy(update={"feedback": feedback})
    return spec.model_copy(update={"data": data, "validation": validation, "scoring": scoring,
                                   "monitoring": monitoring})


def load(path: str | Path) -> Spec:
    """Load and validate a spec YAML file, resolving its relative paths against its folder."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except OSError as error:  # a folder, no permission...
        raise SpecError(f"{path}: cannot read the spec file: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not UTF-8 text: {error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise SpecError(f"{path}: not valid YAML: collections nested too deeply") from None
    if _circular(document):
        raise SpecError(f"{path}: a YAML alias (*name) refers to a collection that contains it; "
                        "a spec must be a tree of values")
    return resolve_paths(parse(document, source=path.name), path.parent)


def _circular(document: Any) -> bool:
    """Whether ``document`` contains itself (YAML anchors allow ``a: &x [*x]``)."""
    try:
        json.dumps(document, default=str)
    except ValueError:  # "Circular reference detected"
        return True
    except RecursionError:
        return True
    return False


def with_overrides(spec: Spec, overrides: dict[str, Any], source: str = "trigger options") -> Spec:
    """A copy of ``spec`` with dotted-key overrides (``{"data.source": "s3://..."}``), re-validated."""
    document = spec.model_dump(mode="json")
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = document
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise SpecError(f"{source}: {dotted}: {where} is not a section (it is {type(node).__name__})")
        node[leaf] = value
    return parse(document, source=source)


def discover(folder: str | Path) -> list[Path]:
    """The spec files of a pipelines folder, sorted by name."""
    return sorted(Path(folder).glob("*.yaml"))
