"""The model versions a server answers with, loaded from the MLflow registry and swapped atomically.

A :class:`ServedModel` is one registered version of any task (``target.task``), ready for requests: its
:class:`~mlpipe.model.tabular.TabularModel`, the decision threshold (binary) and data version from
its tags, a pydantic validator built from its feature schema, and an encoder that
turns validated records into the model's input array. Records are encoded straight
into a float32 array (categorical levels as codes of the training levels, unseen
levels and nulls as missing) for ``Booster.inplace_predict``: exactly what
:func:`mlpipe.data.features.matrix` yields, without building a DataFrame per request
(the tests hold the two equal, score for score). A declined record's reason codes
(:mod:`mlpipe.model.reasons`) come from the SHAP contributions of the same array, through a DMatrix of it that
also gives the request's scores (:meth:`ServedModel.with_reasons`).

:class:`ModelSet` holds the ``champion`` and ``challenger`` currently served as
one immutable :class:`Served` pair; :meth:`ModelSet.refresh` loads what the aliases
point at *fully*, then replaces that one reference, so a request that picked up the
old pair finishes on it.

This module exists only for the server process: it imports numpy, pydantic and
MLflow at the top.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import ConfigDict, Field, Strict, TypeAdapter, create_model
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from mlpipe.core.spec import Serving
from mlpipe.core.tasks import Task
from mlpipe.model.pyfunc import load_version
from mlpipe.model.reasons import ReasonCodes
from mlpipe.model.tabular import TabularModel
from mlpipe.registry.names import CHALLENGER, CHAMPION, THRESHOLD_TAG
from mlpipe.registry.tracking import DATA_VERSION_TAG, RUN_URI_TAG

if TYPE_CHECKING:
    import xgboost as xgb

log = logging.getLogger(__name__)

FLOAT32_MAX = float(np.finfo(np.float32).max)
Number = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
DEFAULT_MAX_RECORDS = Serving().max_records  # per request (``spec.serving.max_records``)


class LoadError(RuntimeError):
    """A model version that cannot be served (missing tag, unloadable artifacts), with the version named."""


def request_validator(schema: dict[str, Any], max_records: int) -> TypeAdapter:
    """A validator of ``{"records": [{feature: value, ...}, ...]}`` (1 to ``max_records``) for a feature schema.

    Numeric features are numbers (or null) that fit the model's float32 input, strictly:
    ``true`` or ``"1.5"`` is refused, not read as 1.0 or 1.5, and so is a number past
    float32's range (it would silently become infinite). Categorical ones are strings (or
    null; a level unseen in training is allowed and becomes missing). Every feature is
    required and unknown fields are rejected, so a typo never silently becomes a missing value.
    Past ``max_records`` pydantic reports only the count (``too_long``), without
    validating the records.
    """
    fields = {column: str | None if column in schema["categorical"] else Number | None
              for column in schema["columns"]}
    record = TypedDict("Record", fields)  # functional form: feature names need not be identifiers
    record.__pydantic_config__ = ConfigDict(extra="forbid")
    body = create_model("PredictRequest", __config__=ConfigDict(extra="forbid"),
                        records=(list[record], Field(min_length=1, max_length=max_records)))
    return TypeAdapter(body)


def _encoders(schema: dict[str, Any]) -> list[tuple[str, Callable[[Any], float]]]:
    """Per feature column, a function from a validated value to its model input (codes for categoricals)."""
    def numeric(value: float | None) -> float:
        return math.nan if value is None else value

    def categorical(levels: list[str]) -> Callable[[str | None], float]:
        codes = {level: float(code) for code, level in enumerate(levels)}
        return lambda value: codes.get(value, math.nan)

    return [(column, categorical(schema["categorical"][column]) if column in schema["categorical"] else numeric)
            for column in schema["columns"]]


@dataclass(frozen=True)
class ServedModel:
    """One registered model version, ready to answer requests."""

    name: str
    version: int
    alias: str
    model: TabularModel
    threshold: float | None  # a binary model's decision threshold
    data_version: str | None
    run_uri: str | None
    validator: TypeAdapter
    encoders: list[tuple[str, Callable[[Any], float]]]
    trees: tuple[int, int]

    @classmethod
    def build(cls, name: str, version: int, alias: str, model: TabularModel, tags: dict[str, str],
              max_records: int = DEFAULT_MAX_RECORDS) -> ServedModel:
        """Wrap a loaded TabularModel with what its version's ``tags`` say about it (a binary model: its decision
        threshold)."""
        binary = model.task == Task.BINARY
        if binary and THRESHOLD_TAG not in tags:
            raise LoadError(f"{name} version {version} has no {THRESHOLD_TAG} tag: its decision threshold is unknown")
        model.booster.set_param({"nthread": 1})  # one small request per call: threads cost more than they give
        threshold = float(tags[THRESHOLD_TAG]) if binary else None
        return cls(name=name, version=version, alias=alias, model=model, threshold=threshold,
                   data_version=tags.get(DATA_VERSION_TAG), run_uri=tags.get(RUN_URI_TAG),
                   validator=request_validator(model.schema, max_records), encoders=_encoders(model.schema),
                   trees=model.tree_range())

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "alias": self.alias}

    def encode(self, records: list[dict[str, Any]]) -> np.ndarray:
        """Validated records as the model's float32 input array (rows x schema columns)."""
        return np.array([[encode(record[column]) for column, encode in self.encoders] for record in records],
                        dtype=np.float32)

    def scores(self, records: list[dict[str, Any]]) -> np.ndarray:
        """What the model predicts for each validated record (``inplace_predict``, no DMatrix): the positive-class
        probability, the value (regression), or a row of class probabilities (multiclass)."""
        return self.scored(self.encode(records))

    def scored(self, inputs: np.ndarray) -> np.ndarray:
        """:meth:`scores` of records already encoded (:meth:`encode`)."""
        return self.model.predicted(self.model.booster.inplace_predict(inputs, iteration_range=self.trees))

    def matrix(self, inputs: np.ndarray) -> xgb.DMatrix:
        """A DMatrix of encoded records (:meth:`encode`), for what ``inplace_predict`` cannot give (SHAP
        contributions). The array's columns are the schema's, in the booster's order, so the feature names are
        neither set nor checked (a third of the time a one-record DMatrix takes)."""
        import xgboost as xgb

        schema = self.model.schema
        types = ["c" if column in schema["categorical"] else "float" for column in schema["columns"]]
        return xgb.DMatrix(inputs, feature_types=types, enable_categorical=True, nthread=1)

    def matrix_scores(self, matrix: xgb.DMatrix) -> np.ndarray:
        """:meth:`scores` of the records of a :meth:`matrix`: the same numbers ``inplace_predict`` gives."""
        return self.model.predicted(self.model.booster.predict(matrix, iteration_range=self.trees,
                                                               validate_features=False))

    def contribution_values(self, matrix: xgb.DMatrix) -> np.ndarray:
        """The SHAP contributions of the records of a :meth:`matrix`, the bias last: what
        :meth:`TabularModel.contribution_values` gives for them (no DataFrame)."""
        return self.model.booster.predict(matrix, pred_contribs=True, iteration_range=self.trees,
                                          validate_features=False)

    def predictions(self, records: list[dict[str, Any]], reasons: ReasonCodes | None = None) -> list[dict[str, Any]]:
        """Each validated record's prediction: binary, ``score`` and ``decision`` (score >= the version's threshold),
        with ``reasons`` when asked (:meth:`with_reasons`); regression, ``score`` (the value); multiclass,
        ``probabilities`` (class -> probability) and ``predicted_class`` (the most probable)."""
        inputs = self.encode(records)
        if reasons is None or self.threshold is None:
            return self.answers(self.scored(inputs))
        return self.with_reasons(records, inputs, reasons)

    def answers(self, scores: np.ndarray) -> list[dict[str, Any]]:
        """:meth:`predictions` (without reasons) from the records' :meth:`scores`."""
        if self.model.task == Task.MULTICLASS:
            classes = self.model.schema["classes"]
            return [{"probabilities": {name: float(p) for name, p in zip(classes, row, strict=True)},
                     "predicted_class": classes[int(np.argmax(row))]} for row in scores]
        if self.threshold is None:
            return [{"score": float(score)} for score in scores]
        return [{"score": float(score), "decision": bool(score >= self.threshold)} for score in scores]

    def with_reasons(self, records: list[dict[str, Any]], inputs: np.ndarray,
                     reasons: ReasonCodes) -> list[dict[str, Any]]:
        """Binary predictions of ``records`` (encoded: ``inputs``), each with its ``reasons``: a declined record's
        reason codes (:mod:`mlpipe.model.reasons`), ``[]`` for an approved one.

        One DMatrix gives the scores and, when every record is declined (a single-record request), the
        contributions too: building it costs more than either prediction. Otherwise only the declined records'
        contributions are computed, from a DMatrix of theirs.
        """
        matrix = self.matrix(inputs)
        predictions = self.answers(self.matrix_scores(matrix))
        declined = [at for at, prediction in enumerate(predictions) if prediction["decision"]]
        if not declined:
            return [{**prediction, "reasons": []} for prediction in predictions]
        if len(declined) < len(predictions):
            matrix = self.matrix(inputs[declined])
        columns = self.model.schema["columns"]
        found = reasons.of_rows(self.model.schema, self.contribution_values(matrix),
                                [[records[at][column] for column in columns] for at in declined])
        given = dict(zip(declined, found, strict=True))
        return [{**prediction, "reasons": given.get(at, [])} for at, prediction in enumerate(predictions)]

    def explanations(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per record: its prediction, the bias and the per-feature contributions (binary: log-odds; regression:
        the target's units); multiclass, ``bias`` and ``contributions`` per class (the log-odds of each)."""
        matrix = self.matrix(self.encode(records))
        values = self.contribution_values(matrix)  # rows x [classes x] (features + bias)
        return [{**prediction, **contribution_fields(row, self.model.schema)}
                for prediction, row in zip(self.answers(self.matrix_scores(matrix)), values, strict=True)]

    def metadata(self) -> dict[str, Any]:
        return {**self.identity(), "task": str(self.model.task), "data_version": self.data_version,
                "run_uri": self.run_uri, "threshold": self.threshold,
                "best_iteration": self.trees[1] - 1 if self.trees[1] else None, "feature_schema": self.model.schema}


def contribution_fields(values: np.ndarray, schema: dict[str, Any]) -> dict[str, Any]:
    """One record's ``bias`` and ``contributions`` (feature -> value) from its SHAP values (features, then the bias);
    a multiclass record's (classes x (features + bias)): each keyed by class."""
    def fields(row: np.ndarray) -> tuple[float, dict[str, float]]:
        return float(row[-1]), {column: float(value) for column, value in zip(schema["columns"], row[:-1], strict=True)}

    if values.ndim == 1:
        bias, contributions = fields(values)
        return {"bias": bias, "contributions": contributions}
    per_class = {name: fields(row) for name, row in zip(schema["classes"], values, strict=True)}
    return {"bias": {name: bias for name, (bias, _) in per_class.items()},
            "contributions": {name: found for name, (_, found) in per_class.items()}}


@dataclass(frozen=True)
class Served:
    """The versions answering requests now; replaced as a whole, never changed in place."""

    champion: ServedModel | None = None
    challenger: ServedModel | None = None

    def versions(self) -> dict[str, int | None]:
        return {alias: None if model is None else model.version
                for alias, model in ((CHAMPION, self.champion), (CHALLENGER, self.challenger))}


def alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version ``alias`` points at, or ``None`` when the model or the alias does not exist."""
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        if error.get_http_status_code() == 404 or "not found" in str(error).lower():
            return None
        raise


def load(client: MlflowClient, name: str, version: int, alias: str,
         max_records: int = DEFAULT_MAX_RECORDS) -> ServedModel:
    """Load version ``version`` of ``name`` from the registry (by number: the alias may move meanwhile);
    its requests hold at most ``max_records`` records."""
    tags = dict(client.get_model_version(name, str(version)).tags)
    try:
        model = load_version(name, version)
    except (MlflowException, OSError, AttributeError) as error:
        raise LoadError(f"{name} version {version}: cannot load the model: {error}") from error
    log.info("loaded %s version %d (%s)", name, version, alias)
    return ServedModel.build(name, version, alias, model, tags, max_records)


class ModelSet:
    """The champion and challenger of one registered model, reloaded when their aliases move."""

    def __init__(self, name: str, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        self.name = name
        self.max_records = max_records
        self.current = Served()
        self._lock = threading.Lock()  # one refresh at a time (the poll and POST /reload)

    def refresh(self) -> bool:
        """Point the served pair at what the aliases say now; return whether a version changed.

        A champion alias that disappears keeps the last champion serving; a missing
        challenger alias (or one on the champion's version) means no challenger.
        """
        with self._lock:
            client = MlflowClient()
            old = self.current
            champion = self._fresh(client, CHAMPION, old) or old.champion
            challenger = self._fresh(client, CHALLENGER, old)
            if challenger is not None and champion is not None and challenger.version == champion.version:
                challenger = None
            self.current = Served(champion, challenger)
            return self.current.versions() != old.versions()

    def _fresh(self, client: MlflowClient, alias: str, old: Served) -> ServedModel | None:
        """The model ``alias`` points at: reused when that version is already loaded, else loaded."""
        version = alias_version(client, self.name, alias)
        if version is None:
            return None
        for loaded in (old.champion, old.challenger):
            if loaded is not None and loaded.version == version:
                return replace(loaded, alias=alias)
        return load(client, self.name, version, alias, self.max_records)
