"""Operator extra links of the step tasks: MLflow run, validation/monitoring report, model version.

Airflow 3 computes an operator's links on the worker when the task ends (``get_link`` is
called by the task runner and each link is stored as an XCom the UI reads back). Every link
here is read off the task's return value, the step's result: a link whose step did not
produce what it needs (another step, a failed task) is the empty string, which the UI hides.
The result is read as a mapping, not parsed into its model (:mod:`mlpipe.core.results`): a link must
never fail a task, whatever version of a step wrote the XCom; the keys it reads are fields of the
steps' result models (:data:`LINKED_FIELDS`, checked by the tests).

- **MLflow run** (``train``: ``mlflow_run_id``; ``tune``: ``tuning_run_id``; ``monitor``):
  ``<MLflow UI>/#/runs/<id>``, MLflow 3's direct run route (it finds the experiment itself);
- **Validation report** (``validate``, ``validate_split``): the Great Expectations page
  through the ops app's artifact route, ``<Airflow>/mlpipe/artifact?uri=<report.html>``;
- **Monitoring report** (``monitor``): its ``report.html`` through the same route;
- **Model version** (``register``): ``<MLflow UI>/#/models/<name>/versions/<version>``;
- **Model card** (``register``): the version's ``model_card.html`` through the artifact route.

The MLflow UI is ``$MLPIPE_MLFLOW_UI`` (default ``http://localhost:5000``); the Airflow URL is
``[api] base_url`` (a path relative to the UI when unset).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink

from mlpipe.core.names import Step
from mlpipe.core.urls import artifact_url, mlflow_run_url, model_version_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

RETURN_VALUE = "return_value"
RUN_ID_FIELD = {Step.TRAIN: "mlflow_run_id", Step.TUNE: "tuning_run_id", Step.MONITOR: "mlflow_run_id"}
REPORT, REPORT_HTML = "report", "report_html"  # of validate and validate_split (Checks), and of monitor
MODEL_NAME, VERSION, MODEL_CARD_HTML = "model_name", "version", "model_card_html"  # of register
# step -> the fields of its result that a link reads
LINKED_FIELDS = {**{step: (field,) for step, field in RUN_ID_FIELD.items()}, Step.VALIDATE: (REPORT,),
                 Step.VALIDATE_SPLIT: (REPORT,), Step.MONITOR: (RUN_ID_FIELD[Step.MONITOR], REPORT_HTML),
                 Step.REGISTER: (MODEL_NAME, VERSION, MODEL_CARD_HTML)}


def airflow_base(default: str = "") -> str:
    """Airflow's public base URL (``[api] base_url``) without a trailing slash; ``default`` when unset."""
    from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or default).rstrip("/")


def _text(result: Mapping[str, Any], key: str) -> str:
    value = result.get(key)
    return value if isinstance(value, str) and value else ""


def run_link(step: str, result: Mapping[str, Any]) -> str:
    """The MLflow run of a ``train``, ``tune`` or ``monitor`` result; empty for any other."""
    key = RUN_ID_FIELD.get(Step(step)) if step in RUN_ID_FIELD else None
    run_id = _text(result, key) if key else ""
    return mlflow_run_url(run_id, _text(result, "mlflow_experiment_id") or None) if run_id else ""


def report_link(steps: tuple[str, ...], key: str, step: str, result: Mapping[str, Any]) -> str:
    """The HTML report at ``result[key]`` of one of ``steps``, through the artifact route; else empty."""
    uri = _text(result, key) if step in steps else ""
    return artifact_url(uri, airflow_base()) if uri.endswith(".html") else ""


def version_link(step: str, result: Mapping[str, Any]) -> str:
    """The model version a ``register`` result registered; empty for any other."""
    name, version = result.get(MODEL_NAME), result.get(VERSION)
    if step != Step.REGISTER or not isinstance(name, str) or not name or version in (None, ""):
        return ""
    return model_version_url(name, version)


class StepResultLink(BaseOperatorLink):
    """A link computed from the step's result (the task's XCom return value); empty when there is none."""

    steps: ClassVar[tuple[str, ...]] = ()

    def url(self, step: str, result: Mapping[str, Any]) -> str:
        """The link for ``step``'s ``result`` (empty when this step has no such link)."""
        raise NotImplementedError

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        step = getattr(operator, "step", None)
        if step not in self.steps:
            return ""
        from airflow.sdk.execution_time.xcom import XCom

        result = XCom.get_value(ti_key=ti_key, key=RETURN_VALUE)
        return self.url(step, result) if isinstance(result, Mapping) else ""


class MlflowRunLink(StepResultLink):
    """The step's MLflow run (train, tune, monitor)."""

    name = "MLflow run"
    steps = (Step.TRAIN, Step.TUNE, Step.MONITOR)

    def url(self, step: str, result: Mapping[str, Any]) -> str:
        return run_link(step, result)


class ValidationReportLink(StepResultLink):
    """The Great Expectations report of validate / validate_split."""

    name = "Validation report"
    steps = (Step.VALIDATE, Step.VALIDATE_SPLIT)

    def url(self, step: str, result: Mapping[str, Any]) -> str:
        return report_link(self.steps, REPORT, step, result)


class MonitoringReportLink(StepResultLink):
    """The drift and quality report of a monitoring run."""

    name = "Monitoring report"
    steps = (Step.MONITOR,)

    def url(self, step: str, result: Mapping[str, Any]) -> str:
        return report_link(self.steps, REPORT_HTML, step, result)


class ModelVersionLink(StepResultLink):
    """The registered model version (register)."""

    name = "Model version"
    steps = (Step.REGISTER,)

    def url(self, step: str, result: Mapping[str, Any]) -> str:
        return version_link(step, result)


class ModelCardLink(StepResultLink):
    """The model card of the registered version (register)."""

    name = "Model card"
    steps = (Step.REGISTER,)

    def url(self, step: str, result: Mapping[str, Any]) -> str:
        return report_link(self.steps, MODEL_CARD_HTML, step, result)


STEP_LINKS = (MlflowRunLink(), ValidationReportLink(), MonitoringReportLink(), ModelVersionLink(), ModelCardLink())
