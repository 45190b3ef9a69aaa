"""The step tasks' extra links, computed from the step results a task leaves in XCom."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest

from mlpipe.core import settings
from mlpipe.orchestration import links
from mlpipe.orchestration.runtimes import LocalStepOperator

TRAIN = {"step": "train", "mlflow_run_id": "3fbc851a22c34740be01bd9ca4a2fcb0", "model_uri": "runs:/3fbc/model"}
VALIDATE = {"step": "validate", "success": True, "report": "file:///s/loan_default/runs/r1/validate/report.html",
            "result": "file:///s/loan_default/runs/r1/validate/validation.json"}
REGISTER = {"step": "register", "model_name": "loan_default", "version": 7, "promoted": True,
            "model_card_html": "file:///s/loan_default/runs/r1/register/model_card/model_card.html"}
MONITOR = {"step": "monitor", "mlflow_run_id": "abc", "report_html": "file:///s/p/monitoring/m1/monitor/report.html"}
TUNE = {"step": "tune", "tuning_run_id": "tuned1", "best_params": {}}


@pytest.fixture(autouse=True)
def ui_urls(monkeypatch):
    monkeypatch.setenv(settings.MLFLOW_UI, "http://mlflow.example:5000/")
    monkeypatch.setattr(links, "airflow_base", lambda: "http://airflow.example:8080")


@pytest.fixture
def xcom(monkeypatch):
    """Make ``XCom.get_value`` answer from a dict of ``(task id, key) -> value``; returns that dict."""
    from airflow.sdk.execution_time.xcom import XCom

    stored: dict = {}
    monkeypatch.setattr(XCom, "get_value", classmethod(lambda cls, *, ti_key, key: stored.get((ti_key.task_id, key))))
    return stored


def resolve(xcom: dict, step: str, result) -> dict[str, str]:
    """Every link of a task running ``step`` whose return value is ``result``: name -> URL."""
    task_id = f"{step}_task"
    xcom[(task_id, "return_value")] = result
    operator = SimpleNamespace(step=step)
    key = SimpleNamespace(dag_id="loan_default_training", task_id=task_id, run_id="r1", map_index=-1, try_number=1)
    return {link.name: link.get_link(operator, ti_key=key) for link in links.STEP_LINKS}


def test_train_links_to_its_mlflow_run_and_nothing_else(xcom):
    found = resolve(xcom, "train", TRAIN)
    assert found == {"MLflow run": "http://mlflow.example:5000/#/runs/3fbc851a22c34740be01bd9ca4a2fcb0",
                     "Validation report": "", "Monitoring report": "", "Model version": "", "Model card": ""}


def test_the_experiment_is_in_the_run_link_when_the_result_names_it(xcom):
    found = resolve(xcom, "train", {**TRAIN, "mlflow_experiment_id": "12"})
    assert found["MLflow run"] == "http://mlflow.example:5000/#/experiments/12/runs/3fbc851a22c34740be01bd9ca4a2fcb0"


@pytest.mark.parametrize("step", ["validate", "validate_split"])
def test_validation_steps_link_their_report_through_the_artifact_route(xcom, step):
    found = resolve(xcom, step, VALIDATE)
    url = urlparse(found["Validation report"])
    assert (url.scheme, url.netloc, url.path) == ("http", "airflow.example:8080", "/mlpipe/artifact")
    assert parse_qs(url.query) == {"uri": [VALIDATE["report"]]}
    assert found["MLflow run"] == found["Model version"] == ""


def test_register_links_the_model_version_and_its_card(xcom):
    found = resolve(xcom, "register", REGISTER)
    assert found["Model version"] == "http://mlflow.example:5000/#/models/loan_default/versions/7"
    card = urlparse(found["Model card"])
    assert (card.netloc, card.path) == ("airflow.example:8080", "/mlpipe/artifact")
    assert parse_qs(card.query) == {"uri": [REGISTER["model_card_html"]]}


def test_a_version_without_a_card_links_none(xcom):
    found = resolve(xcom, "register", {**REGISTER, "model_card_html": None})
    assert found["Model card"] == "" and found["Model version"].endswith("/versions/7")


def test_monitor_and_tune_links(xcom):
    monitor = resolve(xcom, "monitor", MONITOR)
    assert monitor["MLflow run"] == "http://mlflow.example:5000/#/runs/abc"
    assert parse_qs(urlparse(monitor["Monitoring report"]).query) == {"uri": [MONITOR["report_html"]]}
    assert monitor["Validation report"] == ""
    assert resolve(xcom, "tune", TUNE)["MLflow run"] == "http://mlflow.example:5000/#/runs/tuned1"


@pytest.mark.parametrize(("step", "result"), [
    ("ingest", {"data_version": "abc", "mlflow_run_id": "not-this-step"}),  # a key in another step's result
    ("train", None),                                                         # the task failed: no return value
    ("train", {"mlflow_run_id": ""}),
    ("validate", {"report": "file:///s/p/runs/r/validate/validation.json"}),  # not an HTML report
    ("register", {"model_name": "loan_default"}),                             # no version
    ("register", "not a dict"),
])
def test_no_link_without_what_it_needs(xcom, step, result):
    assert set(resolve(xcom, step, result).values()) == {""}


def test_names_in_links_are_quoted(xcom):
    found = resolve(xcom, "register", {"model_name": "a b/c?", "version": 1})
    assert found["Model version"] == "http://mlflow.example:5000/#/models/a%20b%2Fc%3F/versions/1"


def test_artifact_links_are_relative_without_a_base_url(monkeypatch):
    monkeypatch.setattr(links, "airflow_base", lambda: "")
    found = links.report_link(("monitor",), "report", "monitor", {"report": "file:///s/p/r.html"})
    assert found == "/mlpipe/artifact?uri=file%3A%2F%2F%2Fs%2Fp%2Fr.html"


def test_both_step_operators_carry_the_links():
    from mlpipe.orchestration.kubernetes import KubernetesStepOperator

    names = ["MLflow run", "Validation report", "Monitoring report", "Model version", "Model card"]
    assert [link.name for link in LocalStepOperator.operator_extra_links] == names
    assert [link.name for link in KubernetesStepOperator.operator_extra_links] == names
    assert len({link.xcom_key for link in links.STEP_LINKS}) == len(names)  # one XCom per link
