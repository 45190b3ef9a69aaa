"""The DAGs' ``doc_md``: what each DAG of a pipeline does, filled in from its spec (shown in the Airflow UI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpipe.core.assets import asset_name
from mlpipe.core.tasks import RULES, Task
from mlpipe.registry.promotion import MEASURES

if TYPE_CHECKING:
    from airflow.sdk import DAG, Asset

    from mlpipe.core import spec

DOC = """
### {name}: training

{description}

Each task runs one `mlpipe` step (`python -m mlpipe step <step> --run <run uri>`) through the
`{runtime}` runtime; its return value (XCom) is the step's small JSON result. Everything a run
writes is under `$MLPIPE_STORE/{name}/runs/<run id>/` (one folder per step); models, metrics and
plots are in MLflow (experiment `{name}`, registered model `{model}`).

| | |
|---|---|
| data | `{source}` |
| target | {target} |
| schedule | `{schedule}` |
| scale | {batch_rows:,} rows at a time; XGBoost's quantized matrix built batch by batch ({memory}); {dask} |
| tuning | Optuna TPE, {trials} trials over {workers} parallel `tune_trials` tasks (`tuning.cv_folds`: CV) |
| promotion | {bound}lift of {label} over the baseline ≥ {min_lift} |
| gate | beats the champion's {label} (re-scored on the same rows) by ≥ {min_gain}; {slice_rule}{fairness} |

**Trigger with options** (Trigger DAG ▸ the form): a different data URI, skip tuning or change its
trial budget, forced promotion, notes, and force CPU (every step on the CPU node pool).
Validation failures stop the run before training; the task log lists every failed expectation
and `validate_data/report.html` in the run folder shows them.
`register_model` records why a model was or was not promoted (model version tags and the audit log
in `$MLPIPE_STORE/{name}/audit/`); `deploy_model` reloads the model server (`$MLPIPE_SERVER_URL`)
and rolls the alias back if its smoke test fails. `mlpipe rollback {model}` undoes a promotion.
Failed tasks and runs, and runs past `alerts.deadline_minutes`, alert through the spec's `alerts` connections
(README: Alerts and metrics).
"""
SCORING_DOC = """
### {name}: batch scoring

Scores a batch with the `champion` of registered model `{model}`, in chunks of {chunk_rows} rows
(memory bounded by the chunk, not the file). The batch gets the spec's PII rules and is checked
against the training schema with Great Expectations: a missing column or a column of the wrong
type fails the run naming the column; unexpected values are counted in the result.

Output, under `$MLPIPE_STORE/{name}/scoring/<run id>/score/`: `predictions/part-*.parquet` (ids,
{predicted}, model version, scoring time) and `inputs/` (the scored features, kept for drift monitoring).

| | |
|---|---|
| default batch | `{source}` |
| schedule | `{schedule}` |

**Trigger with options**: `input_uri`, the batch to score; `force_cpu`.
Failed tasks and runs, and runs past `alerts.deadline_minutes`, alert through the spec's `alerts` connections
(README: Alerts and metrics).
"""
MONITORING_DOC = """
### {name}: monitoring

Compares what `{model}`'s champion scored in the last {days:g} days (batch-scoring runs and the model
server's captured requests) with the drift reference kept when it was trained: PSI and KS per numeric
feature, PSI, Jensen-Shannon and unseen categories per categorical one, missing rates, and the drift of
the champion's scores. {feedback}

| | |
|---|---|
| schedule | `{schedule}` |
| a feature drifts | PSI ≥ {psi:g}; or KS ≥ {ks:g} with p < {ks_pvalue:g} |
| ... or | > {new_share:.0%} of rows in unseen categories; or +{missing:.0%} missing values |
| breach | > {share:.0%} of features drift, any PSI ≥ {major:g}{score_rule}{quality_rule} |
| on a breach | alert; {retrain} |

`monitor_drift` writes `report.html` (plots) and `report.json` under
`$MLPIPE_STORE/{name}/monitoring/<run id>/monitor/` and logs the figures to MLflow (experiment `{name}`,
tagged with the champion's version). Fewer than {min_rows} rows in the window, or no champion yet:
"nothing to compare", no breach. `check_breach` lets the alert and the retraining run only on a breach;
the triggered training run's conf carries the reasons as its `notes`.

**Trigger with options**: `force_cpu`. Failures and overdue runs alert too (README: Alerts and metrics).
"""


# Quality from late outcomes per task: what is measured, and when it is a breach.
QUALITY = {Task.BINARY: "ROC AUC, PR AUC and calibration", Task.MULTICLASS: "log loss and accuracy",
           Task.REGRESSION: "RMSE, MAE and the mean error"}
QUALITY_RULE = {Task.BINARY: "ROC AUC on outcomes {feedback.max_roc_auc_drop:g} below the champion's",
                Task.MULTICLASS: "log loss on outcomes {feedback.max_metric_drop:.0%} above the champion's",
                Task.REGRESSION: "RMSE on outcomes {feedback.max_metric_drop:.0%} above the champion's"}


def monitoring_doc(pipeline: spec.Spec) -> str:
    """The monitoring DAG's doc: window, drift and quality rules, what a breach does."""
    settings = pipeline.monitoring
    drift, feedback = settings.drift, settings.feedback
    return MONITORING_DOC.format(
        name=pipeline.name, model=pipeline.registered_model, days=settings.window_days,
        schedule=schedule_text(pipeline.name, settings.schedule, settings.on_assets),
        psi=drift.psi, ks=drift.ks, ks_pvalue=drift.ks_pvalue,
        new_share=drift.new_category_share, missing=drift.missing_increase, share=drift.max_drifting_share,
        major=drift.major_psi, min_rows=settings.min_rows,
        score_rule=", or the scores drift" if drift.score else "",
        quality_rule=f", or {QUALITY_RULE[pipeline.target.task].format(feedback=feedback)}"
        if feedback.source else "",
        feedback=f"Late outcomes from `{feedback.source}` are joined by {pipeline.id_columns} with the champion's "
                 f"batch predictions: {QUALITY[pipeline.target.task]} per day." if feedback.source
        else "No feedback source is set (`monitoring.feedback.source`), so quality is not judged.",
        retrain=f"trigger `{pipeline.name}_training`" if settings.retrain_on_breach else "no retraining (spec)")


# What batch scoring writes of each row, per task.
PREDICTED = {Task.BINARY: "score, decision at the champion's threshold, a declined row's reason codes (`reasons`)",
             Task.REGRESSION: "score (the predicted value)",
             Task.MULTICLASS: "each class's probability (`probability_<class>`), the predicted class"}


def scoring_doc(pipeline: spec.Spec) -> str:
    """The scoring DAG's doc: source, chunking, schedule, what it writes for the task."""
    return SCORING_DOC.format(name=pipeline.name, model=pipeline.registered_model,
                              chunk_rows=pipeline.scoring.chunk_rows, source=pipeline.scoring.source,
                              schedule=schedule_text(pipeline.name, pipeline.scoring.schedule,
                                                     pipeline.scoring.on_assets),
                              predicted=PREDICTED[pipeline.target.task])


def training_doc(pipeline: spec.Spec, runtime: str) -> str:
    """The training DAG's doc: data, steps, gate thresholds, tuning, memory and where it trains."""
    return DOC.format(
        name=pipeline.name, description=pipeline.description, runtime=runtime,
        model=pipeline.registered_model, source=pipeline.data.source, target=_target(pipeline.target),
        schedule=schedule_text(pipeline.name, pipeline.schedule, pipeline.on_assets), bound=_bound(pipeline),
        label=RULES[pipeline.target.task].label, min_lift=pipeline.thresholds.min_lift_over_baseline,
        min_gain=pipeline.thresholds.min_improvement_over_champion, slice_rule=_slice_rule(pipeline),
        trials=pipeline.tuning.trials,
        workers=pipeline.tuning.workers, fairness=_fairness(pipeline), batch_rows=pipeline.data.batch_rows,
        memory=_memory(pipeline.training), dask=_dask(pipeline.training.distributed),
    )


def _target(target: spec.Target) -> str:
    """What the model predicts: binary, the positive class; else the task."""
    if target.task == Task.BINARY:
        return f"`{target.column}` = {target.positive_text} is the positive class"
    what = "a number" if target.task == Task.REGRESSION else "one of its classes"
    return f"`{target.column}`, {what} ({target.task})"


def _bound(pipeline: spec.Spec) -> str:
    """The gate's bound on the analysis set's headline metric, when the spec sets one."""
    rules, thresholds = RULES[pipeline.target.task], pipeline.thresholds
    key = f"{'min' if rules.higher_is_better else 'max'}_{rules.headline}"
    value = getattr(thresholds, key)
    return "" if value is None else f"analysis {rules.label} {'≥' if rules.higher_is_better else '≤'} {value}; "


def _slice_rule(pipeline: spec.Spec) -> str:
    """How much worse than the champion's a slice may be."""
    if pipeline.target.task == Task.BINARY:
        return f"no slice drops > {pipeline.thresholds.max_slice_roc_auc_drop}"
    return f"no slice worse by > {pipeline.thresholds.max_slice_drop:.0%}"


def _memory(training: spec.Training) -> str:
    limit = training.external_memory_rows
    return "always in memory" if limit is None else f"on disk above {limit:,} train rows"


def _dask(distributed: spec.Distributed) -> str:
    if distributed.enabled:
        return f"trains on Dask ({distributed.workers} workers)"
    if distributed.above_rows is not None:
        return f"trains on Dask above {distributed.above_rows:,} train rows"
    return "trains on this task's machine (Dask: `training.distributed`)"


def _fairness(pipeline: spec.Spec) -> str:
    """The gate's fairness check, when the spec sets one: what it compares across groups, the task's way."""
    rule, task = pipeline.thresholds.fairness, pipeline.target.task
    if rule is None:
        return ""
    what = {Task.BINARY: " (score < decision threshold)", Task.MULTICLASS: f" (predicted `{rule.favorable_class}`)",
            Task.REGRESSION: ""}[task]
    return (f"; disparate impact of the {MEASURES[task].label}{what} across `{rule.column}` "
            f"≥ {rule.min_disparate_impact} (groups of ≥ {rule.min_group_rows} rows)")


def schedule_text(pipeline: str, cron: str | None, on_assets: list[str]) -> str:
    """When a DAG runs: its cron, the events of its ``on_assets``, both (whichever comes first), or manual only."""
    events = " or ".join(asset_name(pipeline, key) for key in on_assets)
    if not events:
        return cron or "manual only"
    return f"{cron} or on {events}" if cron else f"on {events}"


def assets_doc(dag: DAG, triggers: list[Asset]) -> str:
    """The data assets whose events run ``dag`` (``triggers``) and those its tasks read (inlets) and write
    (outlets), for its doc (Airflow ▸ Assets)."""
    found = [("runs on", asset) for asset in triggers] + [
        (f"`{task.task_id}` {verb}", asset) for task in dag.tasks
        for verb, assets in (("reads", task.inlets), ("writes", task.outlets)) for asset in assets]
    rows = "".join(f"| {what} | `{asset.name}` (`{asset.uri}`): {asset.extra.get('description', '')} |\n"
                   for what, asset in found)
    return f"\n**Data assets** (Airflow ▸ Assets; README: Data assets)\n\n| | |\n|---|---|\n{rows}"
