"""The Airflow side of a pipeline's data assets (names, URIs and metadata: :mod:`mlpipe.core.assets`).

- :func:`asset`: a pipeline's :class:`~airflow.sdk.Asset` (``<pipeline>.<key>``, ``mlpipe://<pipeline>/<key>``);
- :func:`schedule`: a DAG's schedule from its spec section: the cron alone, the events of any of its
  ``on_assets``, or both (:class:`~airflow.sdk.AssetOrTimeSchedule`: whichever comes first);
- :func:`step_assets`: the ``inlets`` / ``outlets`` of a step's task (``ingest_data`` reads the training data,
  ``score_batch`` writes the predictions, ``monitor_drift`` the monitoring report), and
  :func:`record_step_event`, with which a runtime attaches the step's result to its outlet's event;
- :func:`event_options`: what a run takes from the asset events that started it (the announced batches become
  the batches it scores, an announced ``uri`` of training data its ``data_uri``).

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
    INPUT_URIS,
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


def announced_uri(event: dict[str, Any]) -> str:
    """The ``uri`` an announcement's extra names; :class:`AnnouncementError` when it is no URI."""
    uri = event["extra"][URI_KEY]
    if not isinstance(uri, str) or not uri.strip():
        raise AnnouncementError(f"the {event['asset']} event of {event['timestamp']}: extra.{URI_KEY} must be "
                                f"the URI of the new data (file://, s3:// or a path), got {uri!r}")
    return uri


def event_options(pipeline: str, params: Mapping[str, Any], events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A run's options: its trigger options ``params``, plus what the asset ``events`` that started it say.

    ``events`` (as :func:`triggering_events` gives them) are kept as ``asset_events``. Airflow folds the events
    that arrive before a run starts into that run, so one run may have several announcements:

    - an empty ``input_uri`` takes every announced batch: :data:`INPUT_URIS` lists each distinct extra ``uri`` of
      the ``incoming_batch`` events, oldest first, and the score step scores them all (none is left out);
    - an empty ``data_uri`` takes the newest ``training_data`` announcement's ``uri`` (newer training data
      supersedes older); an older one's is left out, with a warning naming it;
    - an empty ``notes`` takes the newest event's extra ``notes`` or says which event started the run.
    """
    options = dict(params)
    if not events:
        return options
    options[EVENTS] = list(events)

    def announced(key: AssetKey) -> list[str]:
        return [announced_uri(event) for event in events
                if event["asset"] == asset_name(pipeline, key) and URI_KEY in event["extra"]]

    if "input_uri" in params and not params["input_uri"] and (batches := announced(AssetKey.INCOMING_BATCH)):
        options[INPUT_URIS] = list(dict.fromkeys(batches))
    if "data_uri" in params and not params["data_uri"] and (data := announced(AssetKey.TRAINING_DATA)):
        *older, newest = data
        if skipped := [uri for uri in older if uri != newest]:
            log.warning("%s: this run takes the newest announced data, %s; left out: %s",
                        asset_name(pipeline, AssetKey.TRAINING_DATA), newest, ", ".join(skipped))
        options["data_uri"] = newest
    if NOTES in params and not params[NOTES]:
        newest = events[-1]
        options[NOTES] = str(newest["extra"].get(NOTES_KEY) or f"{newest['asset']} event of {newest['timestamp']}"
                                                              f" ({newest['source']})")
    return options
