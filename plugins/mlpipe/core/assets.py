"""The data assets of a pipeline: their names and URIs, which DAG may run on which, and what each event says.

Every pipeline has five (Airflow Assets on the DAG side, :mod:`mlpipe.orchestration.assets`), named
``<pipeline>.<key>`` with the URI ``mlpipe://<pipeline>/<key with dashes>``:

- ``training_data``: the training data source. An external system (or an upstream DAG) announces new
  data with an event whose extra may name it (``{"uri": ...}``: the run trains on that instead of
  ``data.source``); ``ingest_data`` reads it (its inlet).
- ``incoming_batch``: a batch to score, announced the same way (``{"uri": ...}``: the batch scored).
- ``champion``: the registered model's ``champion``; an event when a training run promoted (and deployed) one,
  and when the Models page rolls it back.
- ``predictions``: what ``score_batch`` wrote; an event per scored batch.
- ``monitoring_report``: what ``monitor_drift`` concluded; an event per monitoring run.

The spec's ``on_assets`` (training, ``scoring.on_assets``, ``monitoring.on_assets``) names the assets whose
events run each DAG (:data:`TrainingTrigger`, ...). The event builders here turn the steps' results into
an event's metadata (its ``extra``): small JSON, never a secret.

Bottom layer: the standard library and :mod:`mlpipe.core.results` only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from mlpipe.core.results import Analyze, Deploy, Ingest, Monitor, Register, Score

SCHEME = "mlpipe"
URI_KEY = "uri"  # the key of an announcement's extra that names the new data
NOTES_KEY = "notes"  # the key of an announcement's extra that becomes a training run's notes
INPUT_URIS = "input_uris"  # the scoring run option that lists its announced batches, oldest first


class AssetKey(StrEnum):
    """One of a pipeline's assets; its value is the last part of the asset's name."""

    TRAINING_DATA = "training_data"
    INCOMING_BATCH = "incoming_batch"
    CHAMPION = "champion"
    PREDICTIONS = "predictions"
    MONITORING_REPORT = "monitoring_report"


# The assets whose events may run each DAG (spec ``on_assets``). A DAG never runs on its own outlet, nor on
# anything that its own events would bring back round (scoring -> predictions -> monitoring -> report).
TrainingTrigger = Literal["training_data"]
ScoringTrigger = Literal["incoming_batch", "champion"]
MonitoringTrigger = Literal["predictions"]

# What each asset is (its static extra in Airflow, and the DAGs' docs).
DESCRIPTIONS = {
    AssetKey.TRAINING_DATA: "the training data; an event announces new data (extra uri: where it is)",
    AssetKey.INCOMING_BATCH: "a batch to score; an event announces one (extra uri: where it is)",
    AssetKey.CHAMPION: "the registered model's champion; an event per promotion and per rollback",
    AssetKey.PREDICTIONS: "a scored batch; an event per scoring run",
    AssetKey.MONITORING_REPORT: "a drift and quality verdict; an event per monitoring run",
}


def asset_name(pipeline: str, key: AssetKey | str) -> str:
    """``<pipeline>.<key>``: the asset's name in Airflow (the Assets view, ``airflow assets details --name``)."""
    return f"{pipeline}.{AssetKey(key).value}"


def asset_uri(pipeline: str, key: AssetKey | str) -> str:
    """``mlpipe://<pipeline>/<key>`` (dashes for underscores): the asset's URI (REST ``uri_pattern``)."""
    return f"{SCHEME}://{pipeline}/{AssetKey(key).value.replace('_', '-')}"


def predictions_event(scored: Score) -> dict[str, Any]:
    """The metadata of a ``predictions`` event: where the predictions are, of which batch, by which model."""
    return {URI_KEY: scored.predictions, "inputs": scored.inputs, "source": scored.source, "rows": scored.rows,
            "model": scored.model_name, "model_version": scored.model_version,
            "positive_decisions": scored.positive_decisions, "run": scored.run}


def report_event(monitored: Monitor) -> dict[str, Any]:
    """The metadata of a ``monitoring_report`` event: the verdict, its reasons and the report."""
    return {URI_KEY: monitored.report, "report_html": monitored.report_html, "status": monitored.status,
            "breach": monitored.breach, "reasons": monitored.reasons,
            "drifting_features": monitored.drifting_features, "rows": monitored.rows,
            "champion_version": monitored.champion_version, "run": monitored.run}


def champion_event(ingested: Ingest, analyzed: Analyze, registered: Register, deployed: Deploy) -> dict[str, Any]:
    """The metadata of a ``champion`` event: the promoted version, its data, metrics and why it was promoted."""
    return {"model": registered.model_name, "version": registered.version, "previous_version": registered.replaced,
            "data_version": ingested.data_version, "rows": ingested.rows, "metrics": analyzed.metrics,
            "forced": registered.forced, "reasons": registered.reasons, "deployed": deployed.deployed,
            "run": registered.run}


def rollback_event(done: dict[str, Any], reason: str, actor: str) -> dict[str, Any]:
    """The metadata of the ``champion`` event of a rollback (``done``: what
    :func:`mlpipe.registry.rollback.rollback` returns): the version restored, the one rolled back, who and why."""
    return {"model": done["model"], "version": done["to_version"], "previous_version": done["from_version"],
            "rolled_back": True, "reason": reason, "actor": actor, "audit": done["audit"]}
