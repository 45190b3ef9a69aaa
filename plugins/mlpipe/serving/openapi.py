"""The OpenAPI schema of ``mlpipe serve`` (``GET /openapi.json``, ``/docs``): the request bodies and the errors.

/predict and /explain read their body as bytes and validate it with the served
champion's own validator (:func:`mlpipe.serving.loader.request_validator`), so FastAPI
cannot see what they take. :func:`openapi` adds it: the JSON schema of that validator
(the champion's feature names, number or string, null allowed, 1 to
``serving.max_records`` records, no other fields), or while no champion is loaded a
``records`` array of objects. It is built on each call, so it follows a reload to a
version with other features. The error answers are declared on the routes with
:data:`BODY_ERRORS`, :data:`NO_CHAMPION` and :data:`AUTH_ERRORS` (every 4xx has a ``detail``
naming the problem: a :class:`Problem`, or for a 422 :class:`Invalid`), and /predict's answer with
:data:`PREDICTED` (:class:`Predicted`: each record's prediction, a declined one's :class:`Reason` codes).

This module exists only for the server process: it imports FastAPI at the top.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, TypeAdapter

BODY_ROUTES = ("/predict", "/explain")


class Problem(BaseModel):
    """An error answer: what is wrong (for a 413, the size, the limit and the setting)."""

    detail: str


class FieldProblem(BaseModel):
    """One invalid part of a request body: where (``["body", "records", 0, "int_rate"]``) and what."""

    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    """A 422: each invalid part of the request body."""

    detail: list[FieldProblem]


class Reason(BaseModel):
    """A principal reason of a decline (:mod:`mlpipe.model.reasons`): a feature that pushed the score toward the
    positive class."""

    feature: str = Field(description="The feature (a column of the model's input).")
    text: str = Field(description="The spec's `reasons` text of the feature, else its column name.")
    value: float | str | None = Field(description="The value the model saw: a number, a category's text, null "
                                                  "when missing; a hashed PII column's token, never the clear value.")
    contribution: float = Field(description="Its SHAP contribution to the score, in log-odds (above 0).")


class Prediction(BaseModel):
    """One record's prediction; the fields are the served model's task's."""

    score: float | None = Field(None, description="Binary: the positive-class probability; regression: the value.")
    decision: bool | None = Field(None, description="Binary: declined, the score at or above the model's threshold.")
    reasons: list[Reason] | None = Field(
        None, description="Binary, with `reason_count` above 0: a declined record's principal reasons, largest "
                          "contribution first (ties in feature order), at most `reason_count`; [] when approved."
    )
    probabilities: dict[str, float] | None = Field(None, description="Multiclass: class -> probability.")
    predicted_class: str | None = Field(None, description="Multiclass: the most probable class.")


class ModelIdentity(BaseModel):
    """The model version that answered (also in the ``X-Model-Version`` header)."""

    name: str
    version: int
    alias: str


class Predicted(BaseModel):
    """A /predict answer: a prediction per record, in the order of the records."""

    model: ModelIdentity
    predictions: list[Prediction]


def problem(description: str, model: type[BaseModel] = Problem) -> dict[str, Any]:
    return {"model": model, "description": description}


NO_CHAMPION = {503: problem("No champion is loaded yet")}
BODY_ERRORS = {
    413: problem("The body is past `serving.max_body_bytes` bytes or has more than `serving.max_records` records"),
    422: problem("The body is not JSON, or a record has a missing, unknown or wrongly typed field", Invalid),
    **NO_CHAMPION,
}
AUTH_ERRORS = {401: problem("No bearer token"), 403: problem("A wrong bearer token")}
PREDICTED = {200: {"model": Predicted, "description": "Each record's prediction; a declined record's reason codes"}}


def request_schema(validator: TypeAdapter | None, max_records: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schema of a /predict or /explain body, and the definitions it refers to."""
    if validator is None:  # no champion yet: its features are unknown
        return {"type": "object", "required": ["records"], "additionalProperties": False, "properties": {
            "records": {"type": "array", "minItems": 1, "maxItems": max_records, "items": {"type": "object"}}}}, {}
    schema = validator.json_schema(ref_template="#/components/schemas/{model}")
    return schema, schema.pop("$defs", {})


def openapi(app: FastAPI, validator: Callable[[], TypeAdapter | None], max_records: int) -> dict[str, Any]:
    """``app``'s OpenAPI schema with the request body of /predict and /explain described by the
    ``validator()`` of the champion served now (``None``: none yet)."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    body, definitions = request_schema(validator(), max_records)
    schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions)
    for path in BODY_ROUTES:
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": body}}}
    return schema
