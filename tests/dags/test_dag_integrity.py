"""DAG integrity: the dags folder imports cleanly, without heavy libraries, follows the conventions, and declares
its data assets (the spec's ``on_assets`` as the DAGs' schedules, the step tasks' inlets and outlets)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from mlpipe.core import spec
from tests.conftest import ROOT, SPEC_PATH, airflow_env

HEAVY = ("pandas", "xgboost", "great_expectations", "mlflow", "sklearn", "matplotlib")

# Runs in a fresh interpreter: parse the folder, then describe what was found.
INSPECT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "fileloc": dag.fileloc, "tags": sorted(dag.tags), "catchup": dag.catchup,
        "schedule": str(dag.schedule), "doc_md": dag.doc_md or "", "timetable": type(dag.timetable).__name__,
        "cron": getattr(getattr(dag.timetable, "timetable", dag.timetable), "expression", None),
        "on_assets": sorted(a.name for a in getattr(getattr(dag.timetable, "asset_condition", None), "objects", ())),
        "start_date_tz": str(dag.start_date.tzinfo) if dag.start_date.tzinfo else None,
        "params": {k: dict(v.schema, default=v.value, description=v.description)
                   for k, v in dag.params.items()},
        "tasks": {t.task_id: {"downstream": sorted(t.downstream_task_ids), "retries": t.retries,
                              "backoff": bool(t.retry_exponential_backoff),
                              "timeout": bool(t.execution_timeout),
                              "mapped": type(t).__name__ == "MappedOperator",
                              "inlets": [[a.name, a.uri] for a in t.inlets],
                              "outlets": [[a.name, a.uri] for a in t.outlets],
                              "operator": getattr(t, "operator_class", type(t)).__name__} for t in dag.tasks},
    }
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2].split(",")))
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags, "heavy": heavy}))
"""


def inspect(dags_folder, home, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", INSPECT, str(dags_folder), ",".join(HEAVY)],
                         env=airflow_env(home, dags_folder, **env), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def found(tmp_path_factory) -> dict:
    return inspect(ROOT / "dags", tmp_path_factory.mktemp("airflow"))


def _topological(tasks: dict) -> list[str]:
    indegree = {t: 0 for t in tasks}
    for info in tasks.values():
        for child in info["downstream"]:
            indegree[child] += 1
    ready, order = [t for t, n in indegree.items() if n == 0], []
    while ready:
        node = ready.pop()
        order.append(node)
        for child in tasks[node]["downstream"]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order


def test_no_import_errors_and_one_dag_per_spec(found):
    assert found["errors"] == {}
    names = sorted(spec.load(path).name for path in spec.discover(ROOT / "dags" / "pipelines"))
    assert names == ["loan_default", "loan_rate", "loan_verification"]  # binary, regression, multiclass
    assert sorted(found["dags"]) == [f"{name}_{kind}" for name in names
                                     for kind in ("monitoring", "scoring", "training")]


def test_parsing_imports_no_heavy_library(found):
    # how long parsing takes is measured by make bench (bench_dag.py), never asserted: a loaded CI machine
    assert found["heavy"] == []


def test_the_kubernetes_runtime_parses_into_pod_tasks(tmp_path):
    found = inspect(ROOT / "dags", tmp_path, MLPIPE_RUNTIME="kubernetes")
    assert found["errors"] == {}
    assert found["heavy"] == []
    tasks = found["dags"]["loan_default_training"]["tasks"]
    steps = {task["operator"] for name, task in tasks.items() if name not in ("start_run", "publish_champion")}
    assert steps == {"KubernetesStepOperator"}
    assert tasks["ingest_data"]["inlets"] == [["loan_default.training_data", "mlpipe://loan_default/training-data"]]


def test_training_dag_shape(found):
    dag = found["dags"]["loan_default_training"]
    order = _topological(dag["tasks"])
    assert len(order) == len(dag["tasks"]), "the DAG has a cycle"
    assert order == ["start_run", "ingest_data", "validate_data", "split_data", "validate_split",
                     "prepare_tuning", "tune_trials", "select_params", "train_model", "analyze_model",
                     "register_model", "deploy_model", "publish_champion"]
    assert dag["tasks"]["tune_trials"]["mapped"] and not dag["tasks"]["train_model"]["mapped"]
    # the data it reads and the champion it announces (README: Data assets)
    assert dag["tasks"]["ingest_data"]["inlets"] == [["loan_default.training_data",
                                                      "mlpipe://loan_default/training-data"]]
    assert dag["tasks"]["publish_champion"]["outlets"] == [["loan_default.champion", "mlpipe://loan_default/champion"]]
    assert [name for name, task in dag["tasks"].items() if task["inlets"] or task["outlets"]] == [
        "ingest_data", "publish_champion"]
    assert (dag["timetable"], dag["schedule"]) == ("CronTriggerTimetable", "@weekly")  # no on_assets: the cron


def test_scoring_dag_shape(found):
    dag = found["dags"]["loan_default_scoring"]
    assert _topological(dag["tasks"]) == ["start_run", "score_batch"]
    assert dag["schedule"] == "@daily"
    assert dag["tasks"]["score_batch"]["outlets"] == [["loan_default.predictions", "mlpipe://loan_default/predictions"]]


def test_monitoring_dag_shape(found):
    dag = found["dags"]["loan_default_monitoring"]
    order = _topological(dag["tasks"])
    assert order[:3] == ["start_run", "monitor_drift", "check_breach"]
    assert sorted(order[3:]) == ["alert_breach", "trigger_training"]  # both only after the breach check
    assert dag["tasks"]["check_breach"]["downstream"] == ["alert_breach", "trigger_training"]
    assert dag["schedule"] == "@daily"
    assert dag["tasks"]["monitor_drift"]["outlets"] == [["loan_default.monitoring_report",
                                                         "mlpipe://loan_default/monitoring-report"]]


@pytest.mark.parametrize("kind", ["training", "scoring", "monitoring"])
def test_conventions(found, kind):
    dag = found["dags"][f"loan_default_{kind}"]
    assert {"mlpipe", kind, "loan_default"} <= set(dag["tags"])
    assert dag["catchup"] is False
    assert dag["start_date_tz"] is not None
    assert "loan_default" in dag["doc_md"] and "Trigger with options" in dag["doc_md"]
    for task_id, task in dag["tasks"].items():
        assert task["retries"] >= 2 and task["backoff"] and task["timeout"], task_id


@pytest.mark.parametrize(("kind", "names"), [("training", {"data_uri", "force_promote", "notes", "skip_tuning",
                                                           "tuning_trials", "force_cpu"}),
                                              ("scoring", {"input_uri", "force_cpu"}),
                                              ("monitoring", {"force_cpu"})])
def test_trigger_params_have_titles_and_descriptions(found, kind, names):
    params = found["dags"][f"loan_default_{kind}"]["params"]
    assert set(params) == names
    for name, schema in params.items():
        assert schema.get("title") and len(schema.get("description", "")) > 20, name


def test_a_second_spec_is_a_second_dag(tmp_path):
    dags = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", dags)
    document = yaml.safe_load(SPEC_PATH.read_text())
    document.update(name="loan_default_eu", schedule="@daily")
    (dags / "pipelines" / "loan_default_eu.yaml").write_text(yaml.safe_dump(document))
    found = inspect(dags, tmp_path / "home")
    assert found["errors"] == {}
    names = [spec.load(path).name for path in spec.discover(dags / "pipelines")]
    assert "loan_default_eu" in names
    assert sorted(found["dags"]) == sorted(f"{name}_{kind}" for name in names
                                           for kind in ("monitoring", "scoring", "training"))
    assert found["dags"]["loan_default_eu_training"]["schedule"] != found["dags"]["loan_default_training"][
        "schedule"]


def test_a_bad_spec_is_an_import_error_naming_the_field(tmp_path):
    dags = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", dags)
    document = yaml.safe_load(SPEC_PATH.read_text())
    document["target"].pop("column")
    document["training"]["num_boost_rounds"] = 5
    (dags / "pipelines" / "loan_default.yaml").write_text(yaml.safe_dump(document))
    found = inspect(dags, tmp_path / "home")
    [message] = found["errors"].values()
    assert "loan_default.yaml: target.column: Field required" in message
    assert "loan_default.yaml: training.num_boost_rounds: unknown key" in message


@pytest.mark.parametrize(("sections", "timetables"), [
    ({"on_assets": ["training_data"], "scoring": {"on_assets": ["incoming_batch", "champion"]},
      "monitoring": {"schedule": None, "on_assets": ["predictions"]}},
     {"training": ("AssetOrTimeSchedule", "0 0 * * 0", ["loan_default.training_data"]),
      "scoring": ("AssetOrTimeSchedule", "0 0 * * *", ["loan_default.champion", "loan_default.incoming_batch"]),
      "monitoring": ("AssetTriggeredTimetable", None, ["loan_default.predictions"])}),
    ({"schedule": None, "scoring": {"schedule": "0 6 * * 1-5"}},
     {"training": ("NullTimetable", None, []), "scoring": ("CronTriggerTimetable", "0 6 * * 1-5", []),
      "monitoring": ("CronTriggerTimetable", "0 0 * * *", [])}),
])
def test_the_spec_chooses_each_dags_schedule_cron_assets_or_both(tmp_path, sections, timetables):
    dags = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", dags)
    document = yaml.safe_load(SPEC_PATH.read_text())
    for key, value in sections.items():
        document[key] = {**document[key], **value} if isinstance(value, dict) else value
    (dags / "pipelines" / "loan_default.yaml").write_text(yaml.safe_dump(document))
    found = inspect(dags, tmp_path / "home")
    assert found["errors"] == {}
    for kind, expected in timetables.items():
        dag = found["dags"][f"loan_default_{kind}"]
        assert (dag["timetable"], dag["cron"], dag["on_assets"]) == expected, kind
        (schedule_row,) = [line for line in dag["doc_md"].splitlines() if line.startswith("| schedule |")]
        for name in expected[2]:  # the doc says what runs it
            assert f"| runs on | `{name}`" in dag["doc_md"] and name in schedule_row, kind


def test_a_schedule_that_cannot_go_with_assets_is_an_import_error_naming_the_field(tmp_path):
    dags = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", dags)
    document = yaml.safe_load(SPEC_PATH.read_text())
    document["scoring"].update(schedule="@once", on_assets=["incoming_batch"])
    (dags / "pipelines" / "loan_default.yaml").write_text(yaml.safe_dump(document))
    [message] = inspect(dags, tmp_path / "home")["errors"].values()
    assert "loan_default.yaml: scoring.on_assets: cannot be combined with schedule '@once'" in message
