"""The result of each step, as a typed model: what a step returns and what ``<run>/<step>/result.json`` holds.

One pydantic model per step (:data:`MODELS`, keyed by :class:`~mlpipe.core.names.Step`); the model knows
its step (the class variable ``step``). A step function returns its model; :func:`mlpipe.steps.run_step`
adds what every result carries (``step``, ``run``, ``seconds``; a sharded step's ``shard`` is its own field)
and writes it as JSON (:meth:`StepResult.stored`); readers parse it back with
:meth:`mlpipe.store.runs.Run.result` (``run.result(Train).model_folder``), so a renamed or missing key
fails where the result is written or first read, with a message naming the field.

Unknown keys are refused (``extra="forbid"``): a typo in a step's result or a key renamed in one place
only fails at once, not one task later. A result written by an older version of a step still reads as
long as a field added since has a default; one that does not parse raises :class:`ResultError`
naming its file and fields, which the run summary shows on the step's line instead of failing.

This is the bottom layer (the DAG side imports it): only pydantic and the standard library here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from mlpipe.core.names import Step

ENVELOPE = ("run", "seconds")  # what run_step adds to every result (besides ``step``), required in a stored one
PROCESS_SECONDS = "process_seconds"  # what the local runtime adds to a result in its XCom: the step's process time


class ResultError(ValueError):
    """A stored step result that does not parse as its step's model (a bug, or a run of an older version)."""


class StepResult(BaseModel):
    """What every step result carries: the run it belongs to and how long the step took.

    ``run`` and ``seconds`` are filled in by :func:`mlpipe.steps.run_step`; a stored result (one with its
    ``step`` key) must have both.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    step: ClassVar[Step]
    run: str = ""
    seconds: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _stored(cls, data: Any) -> Any:
        """A stored result names its step (this model's) and carries the envelope; the ``step`` key is dropped."""
        if not isinstance(data, dict) or "step" not in data:
            return data
        data = dict(data)
        if (step := data.pop("step")) != cls.step:
            raise ValueError(f"step: {step!r}, not {cls.step.value!r}")
        if missing := [key for key in ENVELOPE if key not in data]:
            raise ValueError("; ".join(f"{key}: Field required" for key in missing))
        return data

    @model_serializer(mode="wrap")
    def _with_step(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``step`` first, ``seconds`` last, as result.json has always been written."""
        fields = handler(self)
        seconds = fields.pop("seconds", None)
        return {"step": str(self.step), **fields, **({} if seconds is None else {"seconds": seconds})}

    def stored(self) -> dict[str, Any]:
        """The JSON of ``result.json``: every field the step set, plus ``step``, ``run`` and ``seconds``."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def parse(cls, data: Any, source: str = "") -> Self:
        """``data`` (a stored result) as this model; :class:`ResultError` names ``source`` and each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ResultError(f"{source or 'a stored result'}: not a valid {cls.__name__} result "
                              f"(step {cls.step.value!r}): {problems(error)}") from None

    @classmethod
    def from_xcom(cls, value: Any) -> Self:
        """The result in a step task's XCom (its return value): the stored result, plus what the runtime added."""
        data = {key: item for key, item in value.items() if key != PROCESS_SECONDS} if isinstance(value, dict) \
            else value
        return cls.parse(data, f"the XCom of a {cls.step.value} task")


def problems(error: ValidationError) -> str:
    """A validation error on one line: ``field: message`` for each problem."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"]
                     else e["msg"].removeprefix("Value error, ") for e in error.errors())


class Ingest(StepResult):
    step: ClassVar[Step] = Step.INGEST
    source: str
    snapshot: str  # folder of the Parquet parts
    data_version: str
    rows: int
    columns: int
    parts: int
    pii: dict[str, str]  # column -> what was done to it
    categorical: list[str]  # every categorical feature, as ingest resolved them (Run.spec reads it)


class Checks(StepResult):
    """A Great Expectations run that passed (a failed one leaves no result)."""

    success: bool
    evaluated: int
    failed: int
    report: str  # report.html
    result: str  # validation.json


class Validate(Checks):
    step: ClassVar[Step] = Step.VALIDATE
    profile: str | None
    data_version: str


class ValidateSplit(Checks):
    step: ClassVar[Step] = Step.VALIDATE_SPLIT
    positive_rate: float | None  # of the whole snapshot (binary targets)


class Split(StepResult):
    step: ClassVar[Step] = Step.SPLIT
    train: str
    validation: str
    analysis: str
    rows: dict[str, int]  # part -> rows
    parts: dict[str, int]  # part -> files
    positive_rate: dict[str, float]  # part -> share of positives (binary targets; none for other tasks)

    def folder(self, part: str) -> str:
        """The folder of split part ``part`` (one of :data:`mlpipe.core.names.PARTS`)."""
        if part not in ("train", "validation", "analysis"):
            raise KeyError(part)
        return getattr(self, part)


class TunePrepare(StepResult):
    """The study the workers share; or, skipped, only ``skipped`` and ``reason``."""

    step: ClassVar[Step] = Step.TUNE_PREPARE
    skipped: bool
    reason: str | None = None
    study: str | None = None
    storage: str | None = None  # password masked
    trials_budget: int | None = None
    workers: int | None = None
    warm_start: int | str | None = None  # the champion's version, or "spec"
    tuning_run_id: str | None = None


class TuneTrials(StepResult):
    step: ClassVar[Step] = Step.TUNE_TRIALS
    shard: int
    trials_run: int
    best_value_seen: float | None
    skipped: bool


class Tune(StepResult):
    """The best trial; or, skipped, ``skipped``, ``reason`` and empty ``best_params``."""

    step: ClassVar[Step] = Step.TUNE
    skipped: bool
    reason: str | None = None
    best_params: dict[str, Any]
    best_value: float | None = None
    best_trial: int | None = None
    best_rounds: int | None = None
    objective: str | None = None
    trials: dict[str, int] | None = None  # complete, pruned, failed
    tuning_run_id: str | None = None


class Train(StepResult):
    step: ClassVar[Step] = Step.TRAIN
    mlflow_run_id: str
    model_uri: str
    model_folder: str
    baseline: str  # folder
    reference: str  # drift reference, Parquet
    device: str
    rows: dict[str, int]
    external_memory: bool
    best_iteration: int
    num_trees: int
    round_rule: str
    rounds: str
    scale_pos_weight: float | None  # binary targets only
    validation: dict[str, float]
    train_seconds: float
    data_version: str
    tuned: bool
    baseline_settings: dict[str, Any]


class Analyze(StepResult):
    """The analysis of a model on the analysis split; what it holds depends on the target's task.

    ``metrics``: every task's headline metric, ``baseline_<headline>`` and ``lift``. ``confusion_matrix``: binary,
    ``tn`` / ``fp`` / ``fn`` / ``tp`` at the threshold; multiclass, actual class -> predicted class -> rows;
    none for regression. ``per_class`` (multiclass): class -> precision, recall, F1, support, ROC AUC.
    ``deciles`` (regression): each decile of the prediction, lowest first: its number, rows, means, RMSE.
    """

    step: ClassVar[Step] = Step.ANALYZE
    metrics: dict[str, float]
    confusion_matrix: dict[str, int] | dict[str, dict[str, int]] | None = None
    per_class: dict[str, dict[str, float | int | None]] | None = None
    deciles: list[dict[str, float | int]] | None = None
    slices: dict[str, Any]
    sensitivity: dict[str, Any]
    top_features: list[tuple[str, float]]
    sample_rows: int
    plots: dict[str, str]
    metrics_uri: str
    mlflow_run_id: str


class Register(StepResult):
    """The registered version, the gate's decision, and the version's model card (``None`` when cards are off:
    ``$MLPIPE_MODEL_CARD=0``, or a result of a version before cards)."""

    step: ClassVar[Step] = Step.REGISTER
    model_name: str
    version: int
    aliases: list[str]
    promoted: bool
    forced: bool
    reasons: list[str]
    notes: list[str]
    compared_with: int | None
    replaced: int | None
    metrics: dict[str, Any]  # the gate's side-by-side comparison
    audit: str
    champion_version: int | None
    model_card_md: str | None = None  # model_card.md in the artifact store
    model_card_html: str | None = None  # model_card.html, plots inline


class Deploy(StepResult):
    step: ClassVar[Step] = Step.DEPLOY
    deployed: bool
    server: str | None
    version: int
    smoke_rows: int
    skipped: str | None  # why nothing was deployed


class Score(StepResult):
    step: ClassVar[Step] = Step.SCORE
    source: str  # the batch scored; the batches an asset-triggered run scored, oldest first, joined by ', '
    rows: int
    chunks: int
    model_name: str
    model_version: int
    threshold: float | None  # binary targets only
    positive_decisions: int | None  # binary targets only
    value_issues: dict[str, int]
    seconds_by_phase: dict[str, float]
    predictions: str
    inputs: str


class Monitor(StepResult):
    step: ClassVar[Step] = Step.MONITOR
    status: str
    breach: bool
    reasons: list[str]
    message: str
    drifting_features: list[str]
    rows: dict[str, int]  # total, batch, served
    champion_version: int | None
    report: str  # report.json
    report_html: str
    mlflow_run_id: str | None
    retrain_notes: str


MODELS: dict[Step, type[StepResult]] = {model.step: model for model in (
    Ingest, Validate, Split, ValidateSplit, TunePrepare, TuneTrials, Tune, Train, Analyze, Register, Deploy, Score,
    Monitor)}


def model_of(step: str) -> type[StepResult]:
    """The result model of step ``step``."""
    return MODELS[Step(step)]
