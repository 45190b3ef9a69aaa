"""The Airflow side of a pipeline's data assets (names, URIs and metadata: :mod:`mlpipe.core.assets`).

- :func:`asset`: a pipeline's :class:`~airflow.sdk.Asset` (``<pipeline>.<key>``, ``mlpipe://<pipeline>/<key>``);
- :func:`schedule`: a DAG's schedule from its spec section: the cron alone, the events of any of its
  ``on_assets``, or both (:class:`~airflow.sdk.AssetOrTimeSchedule`: whichever comes first);
- :func:`step_assets`: the ``inlets`` / ``outlets`` of a step's task (``ingest_data`` reads the training data,
  ``score_batch`` writes the predictions, ``monitor_drift`` the monitoring report), and
  :func:`record_step_event`, with which a runtime attaches the step's result to its outlet's event;
- :func:`event_options`: what a run takes from the asset events that started it (an announced ``uri`` becomes
  its ``data_uri`` / ``input_uri`` trigger option).

The ``champion`` event is not a step's: ``publish_champion`` (:mod:`mlpipe.orchestration.factory`) emits it
after a promotion was deployed, and skips (no event) when the run promoted nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow.sdk import Asset, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable

from mlpipe.core.assets import (
    DESCRIPTIONS,
    NOTES_KEY,
    URI_KEY,
    AssetKey,
    asset_name,
    asset_uri,
    predictions_event,
    report_event,
)
from mlpipe.core.names import Step
from mlpipe.core.results import Monitor, Score, StepResult

log = logging.getLogger(__name__)

# The trigger option that an announcement's ``uri`` fills in a run of the DAG that has that option.
ANNOUNCED = {AssetKey.TRAINING_DATA: "data_uri", AssetKey.INCOMING_BATCH: "input_uri"}
NOTES = "notes"  # the training DAG's trigger option that lands on the MLflow run and the model version
EVENTS = "asset_events"  # the run option that lists the events that started the run
# The asset a step's task reads, and the one it writes with the metadata its result makes.
STEP_INLETS = {Step.INGEST: AssetKey.TRAINING_DATA}
STEP_OUTLETS: dict[Step, tuple[AssetKey, type[StepResult], Callable[[Any], dict[str, Any]]]] = {
    Step.SCORE: (AssetKey.PREDICTIONS, Score, predictions_event),
    Step.MONITOR: (AssetKey.MONITORING_REPORT, Monitor, report_event),
}


def asset(pipeline: str, key: AssetKey | str) -> Asset:
    """The Airflow asset ``key`` of ``pipeline`` (grouped by pipeline in the Assets view)."""
    key = AssetKey(key)
    return Asset(name=asset_name(pipeline, key), uri=asset_uri(pipeline, key), group=pipeline,
                 extra={"description": DESCRIPTIONS[key]})


def schedule(cron: str | None, on_assets: Sequence[Asset]) -> Any:
    """A DAG's ``schedule``: ``cron`` (``None``: manual only) alone, the events of any of ``on_assets``, or
    whichever of the two comes first (``cron`` is a cron expression or a recurring preset: the spec checks)."""
    if not on_assets:
        return cron
    events = AssetAny(*on_assets)
    if cron is None:
        return events
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=events)


def step_assets(pipeline: str, step: Step | str) -> dict[str, list[Asset]]:
    """The ``inlets`` and ``outlets`` arguments of the task that runs ``step`` (none for most steps)."""
    step = Step(step)
    found: dict[str, list[Asset]] = {}
    if step in STEP_INLETS:
        found["inlets"] = [asset(pipeline, STEP_INLETS[step])]
    if step in STEP_OUTLETS:
        found["outlets"] = [asset(pipeline, STEP_OUTLETS[step][0])]
    return found


def announce(context: Mapping[str, Any], extra: dict[str, Any]) -> None:
    """Attach ``extra`` to the event that each outlet of the running task gets when the task succeeds."""
    for outlet in context["task"].outlets:
        context["outlet_events"][outlet].extra = extra


def record_step_event(context: Mapping[str, Any], step: str, result: dict[str, Any]) -> None:
    """Attach the metadata of ``step``'s ``result`` (its task's return value) to its outlet's event, if it has one."""
    if (outlet := STEP_OUTLETS.get(Step(step))) is not None:
        _, model, metadata = outlet
        announce(context, metadata(model.from_xcom(result)))


def triggering_events(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The asset events that started this run (none for a manual or scheduled run), oldest first, as JSON."""
    found = sorted((event for events in context["triggering_asset_events"].values() for event in events),
                   key=lambda event: event.timestamp)
    return [{"asset": event.asset.name, "uri": event.asset.uri, "timestamp": event.timestamp.isoformat(),
             "source": f"{event.source_dag_id}/{event.source_run_id}" if event.source_dag_id else "REST API",
             "extra": dict(event.extra)} for event in found]


class AnnouncementError(ValueError):
    """An asset event whose extra names new data in a way a run cannot use."""


def event_options(pipeline: str, params: Mapping[str, Any], events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A run's options: its trigger options ``params``, plus what the asset ``events`` that started it say.

    ``events`` (as :func:`triggering_events` gives them) are kept as ``asset_events``. An empty option that an
    announced asset fills (:data:`ANNOUNCED`: ``data_uri``, ``input_uri``) takes the newest announcement's extra
    ``uri``; Airflow folds the events that arrive before a run starts into that run, so an older announcement's
    ``uri`` is left out, with a warning naming it. An empty ``notes`` takes the newest event's extra ``notes``
    or says which event started the run.
    """
    options = dict(params)
    if not events:
        return options
    options[EVENTS] = list(events)
    for key, option in ANNOUNCED.items():
        announced = [event for event in events
                     if event["asset"] == asset_name(pipeline, key) and URI_KEY in event["extra"]]
        if option not in params or params[option] or not announced:
            continue
        *older, newest = announced
        uri = newest["extra"][URI_KEY]
        if not isinstance(uri, str) or not uri.strip():
            raise AnnouncementError(f"the {newest['asset']} event of {newest['timestamp']}: extra.{URI_KEY} must be "
                                    f"the URI of the new data (file://, s3:// or a path), got {uri!r}")
        if skipped := [event["extra"][URI_KEY] for event in older if event["extra"][URI_KEY] != uri]:
            log.warning("%s: this run takes the newest announced data, %s; left out: %s", newest["asset"], uri,
                        ", ".join(map(str, skipped)))
        options[option] = uri
    if NOTES in params and not params[NOTES]:
        newest = events[-1]
        options[NOTES] = str(newest["extra"].get(NOTES_KEY) or f"{newest['asset']} event of {newest['timestamp']}"
                                                              f" ({newest['source']})")
    return options
