"""monitor: compare what was scored recently with the champion's training reference; judge feedback.

The window is the last ``monitoring.window_days`` days (up to the run's start). The current
data (:mod:`mlpipe.monitoring.scored`) is every batch-scoring run that finished in it and the server's
captured requests; the reference (:mod:`mlpipe.model.reference`) is the champion's training sample.
It computes drift per feature (:mod:`mlpipe.monitoring.drift`: PSI, KS, Jensen-Shannon, new categories,
missing rates) and of the champion's outputs (only rows the champion scored: its score, a regression model's
predicted value, each class probability of a multiclass one), judges them by the
spec (:mod:`mlpipe.monitoring.judge`), and, when ``monitoring.feedback.source`` has late outcomes,
joins them by ``id_columns`` with the champion's batch predictions and judges the task's metrics on them, overall
and per day, against the champion's analysis value of its headline metric (its version tag
``mlpipe.analysis_<headline>``): binary, ROC AUC, PR AUC and calibration (:mod:`mlpipe.monitoring.quality`);
multiclass, log loss and accuracy; regression, RMSE, MAE and the mean error (:mod:`mlpipe.monitoring.task_quality`).

It writes ``report.json`` and ``report.html`` under ``<store>/<pipeline>/monitoring/<run>/monitor/``
and logs the figures to an MLflow run (experiment ``<pipeline>``, tagged with the champion's
version, which gets an ``mlpipe.last_monitoring`` tag back). With no champion, no reference or
fewer than ``monitoring.min_rows`` rows in the window, the result says there is nothing to compare
(status ``nothing_to_compare``), which is not a failure and never a breach.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlpipe.core.errors import Refused, StorageError
from mlpipe.core.results import Monitor
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.data.features import labels
from mlpipe.model import reference
from mlpipe.model.tabular import PROBABILITY
from mlpipe.monitoring.drift import feature_drift, numeric_drift
from mlpipe.monitoring.judge import breach_reasons, drifting, judged
from mlpipe.monitoring.quality import quality
from mlpipe.monitoring.report import render_html
from mlpipe.monitoring.scored import SCORE, VERSION, WINDOW, Scored, Window, scored_in
from mlpipe.monitoring.task_quality import LABEL, task_quality
from mlpipe.registry import model_card, tracking
from mlpipe.registry.names import CHAMPION
from mlpipe.store import storage
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import pandas as pd

    from mlpipe.core.spec import Spec

log = logging.getLogger(__name__)
STEP = "monitor"
OK, BREACH, NOTHING = "ok", "breach", "nothing_to_compare"
LAST_MONITORING_TAG = "mlpipe.last_monitoring"
FEEDBACK_BATCH_ROWS = 1_000_000
FEEDBACK_MAXIMUM = {Task.MULTICLASS: "max_log_loss", Task.REGRESSION: "max_rmse"}  # monitoring.feedback's keys


def champion(model_name: str) -> tuple[int, dict[str, str]] | None:
    """The champion's version number and tags, or ``None`` when there is no champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        version = MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None
    return int(version.version), dict(version.tags)


def categorical_columns(spec: Spec, frame: pd.DataFrame) -> list[str]:
    """The spec's categorical features, and any column the reference holds as text or true/false (the
    feature kinds inferred from the data)."""
    from pandas.api import types

    return [c for c in frame.columns if c in spec.features.categorical or types.is_bool_dtype(frame[c])
            or not types.is_numeric_dtype(frame[c])]


def outcomes(spec: Spec) -> pd.DataFrame:
    """The late outcomes (id columns + the target), one row per id (the last one given wins)."""
    import pandas as pd

    source = spec.monitoring.feedback.source
    try:
        files = datasets.files(source)
    except Refused:  # no outcomes have arrived yet
        files = []
    needed = [*spec.id_columns, spec.target.column]
    frames = []
    for uri in files:
        for frame in datasets.batches(uri, FEEDBACK_BATCH_ROWS):
            if missing := [c for c in needed if c not in frame.columns]:
                raise Refused(f"{uri}: the feedback lacks the columns {missing} (needs {needed})")
            frames.append(frame[needed])
    if not frames:
        return pd.DataFrame(columns=needed)
    return pd.concat(frames, ignore_index=True).drop_duplicates(spec.id_columns, keep="last")


def analysis_value(tags: dict[str, str], task: Task) -> float | None:
    """The champion's headline metric on its analysis set (version tag ``mlpipe.analysis_<headline>``), if tagged."""
    tag = f"mlpipe.analysis_{RULES[task].headline}"
    return float(tags[tag]) if tag in tags else None


def outcome_labels(spec: Spec, joined: pd.DataFrame, outputs: list[str]) -> pd.Series:
    """The outcomes' target as the champion learned it (:func:`mlpipe.data.features.labels`; multiclass: the index
    of the class among the champion's, named by its ``probability_<class>`` outputs); refused naming the feedback
    source and the target column when an outcome does not fit (an unknown class, a regression value that is not
    a number, a missing value)."""
    import pandas as pd

    classes = [c.removeprefix(f"{PROBABILITY}_") for c in outputs] if spec.target.task == Task.MULTICLASS else None
    try:
        return pd.Series(labels(joined, spec, classes), index=joined.index)
    except Refused as error:
        raise Refused(f"monitoring.feedback.source {spec.monitoring.feedback.source}: the outcomes' {error}") from None


def feedback_quality(spec: Spec, scored: Scored, version: int, tags: dict[str, str],
                     outputs: list[str]) -> dict[str, Any] | None:
    """Quality of the champion's batch predictions (its ``outputs`` columns) with known outcomes, by the task's
    metrics; ``None`` without a feedback source."""
    feedback, task = spec.monitoring.feedback, spec.target.task
    if not feedback.source:
        return None
    mine = scored.predictions[scored.predictions[VERSION] == version]
    joined = mine.merge(outcomes(spec), on=spec.id_columns, how="inner")
    joined[LABEL] = outcome_labels(spec, joined, outputs)
    champion_value = analysis_value(tags, task)
    if task == Task.BINARY:
        return quality(joined[[SCORE, LABEL, WINDOW]], champion_value, feedback.min_labels,
                       feedback.max_roc_auc_drop, feedback.min_roc_auc)
    return task_quality(task, joined[[*outputs, LABEL, WINDOW]], outputs, champion_value, feedback.min_labels,
                        feedback.max_metric_drop, getattr(feedback, FEEDBACK_MAXIMUM[task]))


def output_drift(spec: Spec, ref: pd.DataFrame, scored: Scored, version: int) -> dict[str, dict[str, Any]]:
    """Drift of each of the champion's outputs (its score or predicted value; a multiclass model's class
    probabilities) on the rows it scored, judged by the spec; none with fewer than ``monitoring.min_rows``."""
    settings, outputs = spec.monitoring, reference.output_columns(ref)
    mine = scored.inputs.loc[scored.inputs[VERSION] == version, outputs].astype(float)
    if len(mine) < settings.min_rows:
        return {}
    return judged({name: numeric_drift(ref[name], mine[name], settings.bins) for name in outputs}, settings.drift)


def compare(spec: Spec, ref: pd.DataFrame, scored: Scored, version: int) -> dict[str, Any]:
    """Drift of every feature and of the champion's outputs, judged by the spec. ``score`` is the output that drifts
    most (by PSI): the one output of a binary or regression model; ``outputs`` each one (multiclass: a class each)."""
    outputs = reference.output_columns(ref)
    columns = [c for c in ref.columns if c not in outputs]
    settings = spec.monitoring
    features = judged(feature_drift(ref[columns], scored.inputs[columns], categorical_columns(spec, ref[columns]),
                                    settings.bins), settings.drift)
    drift = output_drift(spec, ref, scored, version)
    score = max(drift.values(), key=lambda stats: stats["psi"], default=None)
    moved = drifting(features)
    return {"features": features, "drifting_features": moved, "drifting_share": len(moved) / max(len(features), 1),
            "score": score, "outputs": drift,
            "reasons": breach_reasons(features, score, settings.drift)}


def nothing(message: str) -> dict[str, Any]:
    return {"status": NOTHING, "breach": False, "reasons": [], "message": message, "features": {},
            "drifting_features": [], "drifting_share": 0.0, "score": None, "outputs": {}, "quality": None}


def assess(spec: Spec, window: Window) -> tuple[dict[str, Any], int | None]:
    """The report's findings and the champion's version."""
    found = champion(spec.registered_model)
    if found is None:
        return nothing(f"registered model {spec.registered_model!r} has no champion yet: nothing to compare"), \
            None
    version, tags = found
    try:
        ref = reference.load(tags[tracking.RUN_URI_TAG])
    except (KeyError, StorageError) as error:
        return nothing(f"champion version {version} has no drift reference ({error}); retrain to make one"), \
            version
    outputs = reference.output_columns(ref)
    scored = scored_in(spec.name, window, [c for c in ref.columns if c not in outputs], spec.id_columns,
                       tuple(outputs))
    rows = {"total": len(scored.inputs), "batch": scored.rows("batch"), "served": scored.rows("served")}
    if rows["total"] < spec.monitoring.min_rows:
        found = nothing(f"{rows['total']} rows scored between {window.start:%Y-%m-%d %H:%M} and "
                        f"{window.end:%Y-%m-%d %H:%M} UTC; at least {spec.monitoring.min_rows} are needed")
        return {**found, "rows": rows, "sources": scored.sources}, version
    findings = {**compare(spec, ref, scored, version), "rows": rows, "sources": scored.sources,
                "reference": {"rows": len(ref), "training_run": tags[tracking.RUN_URI_TAG]},
                "quality": feedback_quality(spec, scored, version, tags, outputs)}
    if findings["quality"]:
        findings["reasons"] = findings["reasons"] + [
            f"quality: {reason}" for reason in findings["quality"]["reasons"] if findings["quality"]["breach"]]
    breach = bool(findings["reasons"])
    return {**findings, "status": BREACH if breach else OK, "breach": breach,
            "message": "; ".join(findings["reasons"]) or "no drift beyond the spec's thresholds"}, version


def metric_name(text: str) -> str:
    """``text`` with the characters MLflow refuses in metric names replaced."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", text)


def mlflow_metrics(report: dict[str, Any]) -> list[tuple[str, float, int]]:
    """The report's figures as MLflow metrics: overall, per feature, of the score, and of quality."""
    metrics = [("breach", float(report["breach"]), 0), ("rows", float(report["rows"]["total"]), 0),
               ("drifting_features", float(len(report["drifting_features"])), 0),
               ("drifting_share", report["drifting_share"], 0)]
    for name, stats in report["features"].items():
        metrics.append((metric_name(f"psi/{name}"), stats["psi"], 0))
        if stats["kind"] == "numeric" and stats["ks"] is not None:
            metrics.append((metric_name(f"ks/{name}"), stats["ks"], 0))
    if report["score"]:
        metrics += [("score_psi", report["score"]["psi"], 0), ("score_ks", report["score"]["ks"], 0)]
    if len(report["outputs"]) > 1:  # a multiclass model's class probabilities, each
        metrics += [(metric_name(f"psi/{name}"), stats["psi"], 0) for name, stats in report["outputs"].items()]
    overall = (report["quality"] or {}).get("overall") or {}
    metrics += [(f"quality_{key}", value, 0) for key, value in overall.items() if isinstance(value, float)]
    return metrics


def log_to_mlflow(run: Run, report: dict[str, Any], files: list[str]) -> str:
    """Log the report's figures and files to a new MLflow run; tag the champion version with it."""
    import mlflow
    from mlflow import MlflowClient

    spec, version = run.spec, report["champion_version"]
    tags = {tracking.PIPELINE_TAG: spec.name, tracking.RUN_URI_TAG: run.uri, "mlpipe.kind": "monitoring",
            "mlpipe.model_name": spec.registered_model, "mlpipe.model_version": str(version),
            "mlpipe.monitoring_status": report["status"]}
    with mlflow.start_run(experiment_id=tracking.experiment_id(spec.name), run_name=f"monitoring-{run.run_id}",
                          tags=tags) as active:
        run_id = active.info.run_id
        tracking.log_batch(run_id, {"window_days": spec.monitoring.window_days}, mlflow_metrics(report))
        for path in files:
            with storage.local_copy(path) as local:
                mlflow.log_artifact(str(local), artifact_path="monitoring")
    MlflowClient().set_model_version_tag(spec.registered_model, str(version), LAST_MONITORING_TAG, json.dumps(
        {"status": report["status"], "mlflow_run_id": run_id, "run": run.uri, "at": report["generated_at"]}))
    return run_id


def retrain_notes(run: Run, report: dict[str, Any]) -> str:
    """Why the monitor asks for retraining, for the training run's ``notes`` (run conf, MLflow, version)."""
    return (f"monitoring breach of {report['model_name']} v{report['champion_version']} "
            f"(monitoring run {run.run_id}): " + "; ".join(report["reasons"]))


def monitor(run: Run) -> Monitor:
    spec, now = run.spec, datetime.now(UTC)
    window = Window.last(spec.monitoring.window_days, now)
    findings, version = assess(spec, window)
    report = {"pipeline": spec.name, "task": str(spec.target.task), "model_name": spec.registered_model,
              "champion_version": version,
              "monitoring_run": run.uri, "generated_at": now.isoformat(), "window": window.as_dict(),
              "rows": {"total": 0, "batch": 0, "served": 0}, "sources": [], "mlflow_run_id": None,
              "report_html": run.path(STEP, "report.html"), **findings}
    files = [storage.write_bytes(report["report_html"], render_html(report).encode()),
             storage.write_json(run.path(STEP, "report.json"), report)]
    if version is not None and report["status"] != NOTHING:
        report["mlflow_run_id"] = log_to_mlflow(run, report, files)
        model_card.refresh(spec.registered_model, version, report, run.path(STEP, model_card.CARD_FOLDER))
        storage.write_json(run.path(STEP, "report.json"), report)
    log.info("monitoring %s v%s: %s (%s)", spec.registered_model, version, report["status"], report["message"])
    return Monitor(status=report["status"], breach=report["breach"], reasons=report["reasons"],
                   message=report["message"], drifting_features=report["drifting_features"],
                   rows=report["rows"], champion_version=version, report=files[1],
                   report_html=files[0], mlflow_run_id=report["mlflow_run_id"],
                   retrain_notes=retrain_notes(run, report) if report["breach"] else "")
