"""A pipeline's data assets: names and URIs, each DAG's schedule from its spec, the step tasks' inlets and outlets,
the metadata of their events, and what a run takes from the events that started it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import yaml
from airflow.sdk import AssetAny, AssetOrTimeSchedule, CronTriggerTimetable
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import OutletEventAccessors, TriggeringAssetEventsAccessor

from mlpipe.core import assets as names
from mlpipe.core import spec
from mlpipe.core.assets import INPUT_URIS, AssetKey
from mlpipe.core.names import Step
from mlpipe.orchestration import assets, factory
from mlpipe.store import runs
from tests.conftest import SPEC_PATH
from tests.result_examples import EXAMPLES, RUN, stored

PIPELINE = "loan_default"
BATCH = "s3://loans/applications-2026-12-06.csv"


def test_names_and_uris_are_per_pipeline_and_readable():
    assert [(names.asset_name(PIPELINE, key), names.asset_uri(PIPELINE, key)) for key in AssetKey] == [
        ("loan_default.training_data", "mlpipe://loan_default/training-data"),
        ("loan_default.incoming_batch", "mlpipe://loan_default/incoming-batch"),
        ("loan_default.champion", "mlpipe://loan_default/champion"),
        ("loan_default.predictions", "mlpipe://loan_default/predictions"),
        ("loan_default.monitoring_report", "mlpipe://loan_default/monitoring-report"),
    ]
    champion = assets.asset(PIPELINE, "champion")
    assert (champion.name, champion.uri, champion.group) == ("loan_default.champion", "mlpipe://loan_default/champion",
                                                             PIPELINE)
    assert champion.extra["description"] == names.DESCRIPTIONS[AssetKey.CHAMPION]
    with pytest.raises(ValueError, match="'model' is not a valid AssetKey"):
        names.asset_name(PIPELINE, "model")


def test_a_schedule_is_the_cron_the_assets_or_whichever_comes_first():
    batch, champion = assets.asset(PIPELINE, "incoming_batch"), assets.asset(PIPELINE, "champion")
    assert assets.schedule(None, []) is None
    assert assets.schedule("@daily", []) == "@daily"
    assert assets.schedule(None, [batch, champion]) == AssetAny(batch, champion)
    both = assets.schedule("@daily", [batch])
    assert isinstance(both, AssetOrTimeSchedule)
    assert both.asset_condition == AssetAny(batch)
    assert both.timetable == CronTriggerTimetable("0 0 * * *", timezone="UTC")


def test_the_spec_chooses_per_dag_and_defaults_to_the_cron_alone(loan_spec):
    assert (loan_spec.on_assets, loan_spec.scoring.on_assets, loan_spec.monitoring.on_assets) == ([], [], [])
    for build, cron in ((factory.training_dag, "@weekly"), (factory.scoring_dag, "@daily"),
                        (factory.monitoring_dag, "@daily")):
        assert type(build(SPEC_PATH).timetable).__name__ == "CronTriggerTimetable"
        assert build(SPEC_PATH).schedule == cron


@pytest.mark.parametrize(("section", "value", "message"), [
    ({"on_assets": ["predictions"]}, None, "on_assets.0: Input should be 'training_data'"),
    ({"scoring": {"on_assets": ["predictions"]}}, None,
     "scoring.on_assets.0: Input should be 'incoming_batch' or 'champion'"),
    ({"monitoring": {"on_assets": ["monitoring_report"]}}, None, "monitoring.on_assets.0: Input should be "
                                                                 "'predictions'"),
    ({"scoring": {"on_assets": ["champion", "champion"]}}, None, "scoring.on_assets: lists an asset twice"),
    ({"monitoring": {"schedule": "@once", "on_assets": ["predictions"]}}, None,
     "monitoring.on_assets: cannot be combined with schedule '@once'"),
    ({"schedule": "@continuous", "on_assets": ["training_data"]}, None,
     "on_assets: cannot be combined with schedule '@continuous'"),
    ({"scoring": {"on_assets": "incoming_batch"}}, None, "scoring.on_assets: Input should be a valid list"),
])
def test_a_bad_on_assets_is_a_spec_error_naming_the_field(section, value, message):
    document = yaml.safe_load(SPEC_PATH.read_text())
    for key, setting in section.items():
        document[key] = {**document[key], **setting} if isinstance(setting, dict) else setting
    with pytest.raises(spec.SpecError) as error:
        spec.parse(document, "loan_default.yaml")
    assert f"loan_default.yaml: {message}" in str(error.value)


def test_only_the_data_steps_read_or_write_assets():
    assert assets.step_assets(PIPELINE, Step.INGEST) == {"inlets": [assets.asset(PIPELINE, "training_data")]}
    assert assets.step_assets(PIPELINE, Step.SCORE) == {"outlets": [assets.asset(PIPELINE, "predictions")]}
    assert assets.step_assets(PIPELINE, Step.MONITOR) == {"outlets": [assets.asset(PIPELINE, "monitoring_report")]}
    assert [step for step in Step if assets.step_assets(PIPELINE, step)] == [Step.INGEST, Step.SCORE, Step.MONITOR]


def outlet_context(dag, task_id: str) -> dict:
    """The part of a running task's context that attaching event metadata uses: the task and its accessors."""
    return {"task": dag.get_task(task_id), "outlet_events": OutletEventAccessors()}


@pytest.mark.parametrize(("build", "task_id", "step", "key"), [
    (factory.scoring_dag, "score_batch", Step.SCORE, "predictions"),
    (factory.monitoring_dag, "monitor_drift", Step.MONITOR, "monitoring_report"),
])
def test_a_step_task_attaches_its_result_to_its_outlets_event(build, task_id, step, key):
    context = outlet_context(build(SPEC_PATH), task_id)
    result = {**stored(step), "process_seconds": 3.5}  # the local runtime's XCom
    assets.record_step_event(context, step, result)
    extra = context["outlet_events"][assets.asset(PIPELINE, key)].extra
    assert extra["run"] == RUN
    if step == Step.SCORE:
        assert (extra["uri"], extra["rows"], extra["model_version"]) == (f"{RUN}/score/predictions", 1000, 7)
    else:
        assert (extra["uri"], extra["status"], extra["reasons"]) == (f"{RUN}/monitor/report.json", "breach",
                                                                     ["income drifts"])


def test_event_metadata_says_what_was_scored_monitored_and_promoted():
    scored, monitored = EXAMPLES[Step.SCORE], EXAMPLES[Step.MONITOR]
    assert names.predictions_event(scored) == {
        "uri": scored.predictions, "inputs": scored.inputs, "source": "file:///data/batch.csv", "rows": 1000,
        "model": "loan_default", "model_version": 7, "positive_decisions": 120, "run": ""}
    assert names.report_event(monitored) == {
        "uri": monitored.report, "report_html": monitored.report_html, "status": "breach", "breach": True,
        "reasons": ["income drifts"], "drifting_features": ["income"],
        "rows": {"total": 1000, "batch": 800, "served": 200}, "champion_version": 7, "run": ""}
    champion = names.champion_event(*(EXAMPLES[step] for step in (Step.INGEST, Step.ANALYZE, Step.REGISTER,
                                                                  Step.DEPLOY)))
    assert champion == {"model": "loan_default", "version": 7, "previous_version": 6,
                        "data_version": "f244a2187f5f81f3", "rows": 1000, "metrics": EXAMPLES[Step.ANALYZE].metrics,
                        "forced": False, "reasons": ["beats the champion"], "deployed": False, "run": ""}


def test_a_run_that_promoted_nothing_publishes_no_champion_event():
    results = [stored(step) for step in (Step.INGEST, Step.ANALYZE, Step.REGISTER, Step.DEPLOY)]
    results[2] = {**results[2], "promoted": False, "aliases": ["challenger"], "champion_version": 6}
    with pytest.raises(AirflowSkipException, match="loan_default version 7 was not promoted: no champion event"):
        factory.publish_champion(*results)


def event(key: str, timestamp: str, pipeline: str = PIPELINE, **extra) -> dict:
    """An asset event as :func:`assets.triggering_events` gives it."""
    return {"asset": names.asset_name(pipeline, key), "uri": names.asset_uri(pipeline, key), "timestamp": timestamp,
            "source": "REST API", "extra": {"from_rest_api": True, **extra}}


def test_a_run_without_asset_events_takes_its_trigger_options_as_they_are():
    params = {"input_uri": "", "force_cpu": False}
    assert assets.event_options(PIPELINE, params, []) == params


def test_an_announced_batch_is_the_one_scored_and_the_events_are_kept():
    events = [event("incoming_batch", "2026-12-06T10:00:00+00:00", uri=BATCH)]
    options = assets.event_options(PIPELINE, {"input_uri": "", "force_cpu": False}, events)
    assert options == {"input_uri": "", "input_uris": [BATCH], "force_cpu": False, "asset_events": events}


def test_a_trigger_option_given_by_hand_wins_over_the_announcement():
    events = [event("incoming_batch", "2026-12-06T10:00:00+00:00", uri=BATCH)]
    options = assets.event_options(PIPELINE, {"input_uri": "file:///mine.csv"}, events)
    assert options["input_uri"] == "file:///mine.csv" and INPUT_URIS not in options


def test_every_batch_announced_before_the_run_is_scored_oldest_first_each_once():
    events = [event("incoming_batch", "2026-12-06T10:00:00+00:00", uri="s3://loans/a.csv"),
              event("incoming_batch", "2026-12-06T11:00:00+00:00", uri=BATCH),
              event("incoming_batch", "2026-12-06T11:30:00+00:00", uri="s3://loans/a.csv"),  # announced twice
              event("incoming_batch", "2026-12-06T09:00:00+00:00", pipeline="loan_rate", uri="s3://loans/other.csv")]
    options = assets.event_options(PIPELINE, {"input_uri": ""}, events)
    assert options[INPUT_URIS] == ["s3://loans/a.csv", BATCH]


def test_the_newest_of_several_training_data_announcements_wins_and_the_others_are_named(caplog):
    events = [event("training_data", "2026-12-06T10:00:00+00:00", uri="s3://loans/2026-10.parquet"),
              event("training_data", "2026-12-06T11:00:00+00:00", uri="s3://loans/2026-11.parquet")]
    with caplog.at_level(logging.WARNING, logger=assets.__name__):
        options = assets.event_options(PIPELINE, {"data_uri": ""}, events)
    assert options["data_uri"] == "s3://loans/2026-11.parquet"
    assert caplog.messages == ["loan_default.training_data: this run takes the newest announced data, "
                               "s3://loans/2026-11.parquet; left out: s3://loans/2026-10.parquet"]


def test_announced_training_data_replaces_the_source_and_says_why_on_the_run():
    events = [event("training_data", "2026-12-06T10:00:00+00:00", uri="s3://loans/2026-11.parquet")]
    options = assets.event_options(PIPELINE, {"data_uri": "", "notes": "", "skip_tuning": False}, events)
    assert (options["data_uri"], options["notes"]) == (
        "s3://loans/2026-11.parquet", "loan_default.training_data event of 2026-12-06T10:00:00+00:00 (REST API)")
    events = [event("training_data", "2026-12-06T10:00:00+00:00", notes="November book")]  # no uri: data.source
    assert assets.event_options(PIPELINE, {"data_uri": "", "notes": ""}, events) == {
        "data_uri": "", "notes": "November book", "asset_events": events}


@pytest.mark.parametrize("uri", [5, "", "  ", None])
def test_an_announcement_whose_uri_is_no_uri_is_refused_naming_it(uri):
    events = [event("incoming_batch", "2026-12-06T10:00:00+00:00", uri=uri)]
    with pytest.raises(assets.AnnouncementError) as refused:
        assets.event_options(PIPELINE, {"input_uri": ""}, events)
    assert str(refused.value) == ("the loan_default.incoming_batch event of 2026-12-06T10:00:00+00:00: extra.uri must "
                                  f"be the URI of the new data (file://, s3:// or a path), got {uri!r}")


def test_a_started_run_keeps_the_announced_batch_and_the_events(pipeline_env):
    events = [event("incoming_batch", "2026-12-06T10:00:00+00:00", uri=BATCH)]
    run_uri = factory.start_run(str(SPEC_PATH), {"input_uri": "", "force_cpu": False}, "asset_triggered__1",
                                runs.SCORING, events)
    assert runs.Run(run_uri).options == {"input_uri": "", "input_uris": [BATCH], "force_cpu": False,
                                         "asset_events": events}


def test_triggering_events_are_read_oldest_first_as_json():
    def reference(key: str, hour: int, **source) -> AssetEventDagRunReferenceResult:
        origin = {"source_task_id": None, "source_dag_id": None, "source_run_id": None, "source_map_index": None}
        return AssetEventDagRunReferenceResult(
            asset={"name": names.asset_name(PIPELINE, key), "uri": names.asset_uri(PIPELINE, key), "extra": {}},
            extra={"uri": f"s3://loans/{hour}.csv"}, source_aliases=[],
            timestamp=datetime(2026, 12, 6, hour, tzinfo=UTC), **{**origin, **source})

    accessor = TriggeringAssetEventsAccessor.build([
        reference("incoming_batch", 11), reference("champion", 9, source_dag_id="loan_default_training",
                                                   source_run_id="r1", source_task_id="publish_champion",
                                                   source_map_index=-1),
        reference("incoming_batch", 10)])
    found = assets.triggering_events({"triggering_asset_events": accessor})
    assert [(e["asset"], e["timestamp"], e["source"]) for e in found] == [
        ("loan_default.champion", "2026-12-06T09:00:00+00:00", "loan_default_training/r1"),
        ("loan_default.incoming_batch", "2026-12-06T10:00:00+00:00", "REST API"),
        ("loan_default.incoming_batch", "2026-12-06T11:00:00+00:00", "REST API")]
    assert found[1]["extra"] == {"uri": "s3://loans/10.csv"} and found[1]["uri"] == "mlpipe://loan_default/incoming-batch"
