"""The DAG factory: the training, scoring and monitoring DAGs of each pipeline spec.

The DAG decides only when, where and with what each step runs; the steps
themselves live in :mod:`mlpipe.steps` and run through the configured runtime
(:mod:`mlpipe.orchestration.runtimes`). Between tasks travel only URIs and the
steps' small JSON results.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param, get_current_context, task

from mlpipe.core import spec, uris
from mlpipe.orchestration import callbacks
from mlpipe.orchestration.runtimes import LocalStepOperator
from mlpipe.store import runs

# (step, task id) in run order.
TRAINING_STEPS = (
    ("ingest", "ingest_data"),
    ("validate", "validate_data"),
    ("split", "split_data"),
    ("validate_split", "validate_split"),
    ("tune_prepare", "prepare_tuning"),
    ("tune_trials", "tune_trials"),
    ("tune", "select_params"),
    ("train", "train_model"),
    ("analyze", "analyze_model"),
    ("register", "register_model"),
    ("deploy", "deploy_model"),
)
# Steps that run as several parallel tasks (dynamic task mapping), and how many for a spec.
SHARDED = {"tune_trials": lambda pipeline: pipeline.tuning.workers}
SCORING_STEPS = (("score", "score_batch"),)
MONITORING_STEPS = (("monitor", "monitor_drift"),)

DEFAULT_ARGS = {
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=2),
}

FORCE_CPU = Param(
    False, type="boolean", title="Force CPU",
    description="Run every step on the CPU node pool (Kubernetes runtime), e.g. when no GPU node is free. "
                "Training then uses the CPU.",
    section="Resources",
)

TRIGGER_PARAMS = {
    "data_uri": Param(
        "", type="string", title="Training data URI",
        description="Train on this CSV/Parquet file or folder of parts (file:// or s3://) instead of the "
                    "spec's data.source. Empty: use the spec.",
        section="Data",
    ),
    "force_promote": Param(
        False, type="boolean", title="Force promotion",
        description="Make this run's model the champion even if it fails the spec's thresholds. "
                    "The override is recorded on the model version.",
        section="Promotion",
    ),
    "skip_tuning": Param(
        False, type="boolean", title="Skip tuning",
        description="Train with the spec's training.params instead of searching for better ones.",
        section="Tuning",
    ),
    "tuning_trials": Param(
        0, type="integer", minimum=0, title="Tuning trials",
        description="Trial budget of this run's hyperparameter search (shared by the parallel workers). "
                    "0: the spec's tuning.trials.",
        section="Tuning",
    ),
    "notes": Param(
        "", type="string", title="Notes",
        description="Why this run was started; recorded on the MLflow run and the model version.",
        section="Promotion",
    ),
    "force_cpu": FORCE_CPU,
}

SCORING_PARAMS = {
    "input_uri": Param(
        "", type="string", title="Batch to score",
        description="CSV/Parquet (file:// or s3://, or a path) to score with the champion. "
                    "Empty: the spec's scoring.source.",
        section="Data",
    ),
    "force_cpu": FORCE_CPU,
}

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
| target | `{target}` = {positive} is the positive class |
| schedule | `{schedule}` |
| scale | {batch_rows:,} rows at a time; XGBoost's quantized matrix built batch by batch ({memory}); {dask} |
| tuning | Optuna TPE, {trials} trials over {workers} parallel `tune_trials` tasks (`tuning.cv_folds`: CV) |
| promotion | analysis ROC AUC ≥ {min_auc}; lift over the baseline ≥ {min_lift} |
| gate | beats the champion (re-scored on the same rows) by ≥ {min_gain}; no slice drops > {max_drop}{fairness} |

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
score, decision at the champion's threshold, model version, scoring time) and `inputs/` (the
scored features, kept for drift monitoring).

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


def _monitoring_doc(pipeline: spec.Spec) -> str:
    settings = pipeline.monitoring
    drift, feedback = settings.drift, settings.feedback
    return MONITORING_DOC.format(
        name=pipeline.name, model=pipeline.registered_model, days=settings.window_days,
        schedule=settings.schedule or "manual only", psi=drift.psi, ks=drift.ks, ks_pvalue=drift.ks_pvalue,
        new_share=drift.new_category_share, missing=drift.missing_increase, share=drift.max_drifting_share,
        major=drift.major_psi, min_rows=settings.min_rows,
        score_rule=", or the scores drift" if drift.score else "",
        quality_rule=f", or ROC AUC on outcomes {feedback.max_roc_auc_drop:g} below the champion's"
        if feedback.source else "",
        feedback=f"Late outcomes from `{feedback.source}` are joined by {pipeline.id_columns} with the champion's "
                 "batch predictions: ROC AUC, PR AUC and calibration per day." if feedback.source
        else "No feedback source is set (`monitoring.feedback.source`), so quality is not judged.",
        retrain=f"trigger `{pipeline.name}_training`" if settings.retrain_on_breach else "no retraining (spec)")


def _start_date(text: str) -> datetime:
    day = datetime.fromisoformat(text)
    return day if day.tzinfo else day.replace(tzinfo=UTC)


def _scoring_doc(pipeline: spec.Spec) -> str:
    return SCORING_DOC.format(name=pipeline.name, model=pipeline.registered_model,
                              chunk_rows=pipeline.scoring.chunk_rows, source=pipeline.scoring.source,
                              schedule=pipeline.scoring.schedule or "manual only")


def _doc(pipeline: spec.Spec, runtime: str) -> str:
    return DOC.format(
        name=pipeline.name, description=pipeline.description, runtime=runtime,
        model=pipeline.registered_model, source=pipeline.data.source, target=pipeline.target.column,
        positive=pipeline.target.positive_text, schedule=pipeline.schedule or "manual only",
        min_auc=pipeline.thresholds.min_roc_auc, min_lift=pipeline.thresholds.min_lift_over_baseline,
        min_gain=pipeline.thresholds.min_improvement_over_champion,
        max_drop=pipeline.thresholds.max_slice_roc_auc_drop, trials=pipeline.tuning.trials,
        workers=pipeline.tuning.workers, fairness=_fairness(pipeline), batch_rows=pipeline.data.batch_rows,
        memory=_memory(pipeline.training), dask=_dask(pipeline.training.distributed),
    )


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
    rule = pipeline.thresholds.fairness
    return f"; disparate impact across `{rule.column}` ≥ {rule.min_disparate_impact}" if rule else ""


def start_run(spec_path: str, params: dict[str, Any], run_id: str, kind: str = runs.TRAINING) -> str:
    """Resolve the spec with the trigger options and write it to a new run folder; return its URI.

    Every trigger option is kept in the run's ``options.json``; ``data_uri`` also replaces the
    spec's ``data.source``.
    """
    pipeline = spec.load(spec_path)
    if params.get("data_uri"):
        pipeline = spec.with_overrides(pipeline, {"data.source": uris.normalize(params["data_uri"])})
    return runs.start(pipeline, run_id, options=dict(params), kind=kind)


def _start_run_task(spec_path: str, kind: str) -> str:
    context = get_current_context()
    return start_run(spec_path, context["params"], context["run_id"], kind)


def _pipeline_dag(pipeline: spec.Spec, spec_path: str | Path, kind: str, steps: tuple[tuple[str, str], ...],
                  operator: type, then: Callable[[spec.Spec, Any], None] | None = None, **dag_args: Any) -> DAG:
    """A DAG that starts a run folder of ``kind`` and runs ``steps`` one after the other.

    ``then(pipeline, last_task)``, when given, adds tasks after the last step (inside the DAG).
    """
    suffix = dag_args.pop("suffix")
    with callbacks.PipelineDAG(
        dag_id=f"{pipeline.name}_{suffix}",
        start_date=_start_date(pipeline.start_date),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        auto_register=False,  # a DAG file exports the DAGs it means (spec_errors builds them only to check)
        default_args={**DEFAULT_ARGS, "owner": pipeline.owner, **callbacks.task_alerting(pipeline, kind)},
        **callbacks.dag_alerting(pipeline, suffix, kind),
        **dag_args,
    ) as dag:
        run_uri = task(task_id="start_run")(_start_run_task)(spec_path=str(spec_path), kind=kind)
        previous = run_uri
        for step, task_id in steps:
            where = operator.step_kwargs(pipeline, step)
            if step in SHARDED:
                shards = list(range(SHARDED[step](pipeline)))
                current = operator.partial(task_id=task_id, step=step, run_uri=run_uri, **where).expand(shard=shards)
            else:
                current = operator(task_id=task_id, step=step, run_uri=run_uri, **where)
            previous >> current
            previous = current
        if then is not None:
            then(pipeline, previous)
    return dag


def training_dag(spec_path: str | Path, runtime: str | None = None) -> DAG:
    """Build ``<name>_training`` for the spec at ``spec_path``."""
    pipeline = spec.load(spec_path)
    operator = step_operator_class(runtime)
    return _pipeline_dag(
        pipeline, spec_path, runs.TRAINING, TRAINING_STEPS, operator, suffix="training",
        description=pipeline.description or f"Train {pipeline.name}", doc_md=_doc(pipeline, operator.__name__),
        schedule=pipeline.schedule, tags=["mlpipe", "training", pipeline.name, *pipeline.tags],
        params=TRIGGER_PARAMS)


def scoring_dag(spec_path: str | Path, runtime: str | None = None) -> DAG:
    """Build ``<name>_scoring`` for the spec at ``spec_path``."""
    pipeline = spec.load(spec_path)
    return _pipeline_dag(
        pipeline, spec_path, runs.SCORING, SCORING_STEPS, step_operator_class(runtime), suffix="scoring",
        description=f"Score batches with the {pipeline.registered_model} champion",
        doc_md=_scoring_doc(pipeline), schedule=pipeline.scoring.schedule,
        tags=["mlpipe", "scoring", pipeline.name, *pipeline.tags], params=SCORING_PARAMS)


def breach_notes(result: dict[str, Any]) -> str:
    """The monitor result's notes for retraining: empty (so the tasks after it are skipped) unless a breach."""
    return result["retrain_notes"] if result["breach"] else ""


def alert_breach(result: dict[str, Any]) -> dict[str, str]:
    """Tell the pipeline's people (its ``alerts`` section) why the monitor breached; the channels' outcomes."""
    from mlpipe.core import urls
    from mlpipe.orchestration.callbacks import airflow_ui_base, send_alert

    pipeline = runs.Run(result["run"]).spec
    links = {"Monitoring report": urls.artifact_url(result["report_html"], base=airflow_ui_base())}
    if result["mlflow_run_id"]:
        links["MLflow run"] = urls.mlflow_run_url(result["mlflow_run_id"])
    return send_alert(pipeline, f"{pipeline.name}: monitoring breach of {pipeline.registered_model} "
                                f"v{result['champion_version']}", text="\n".join(result["reasons"]), links=links)


def _on_breach(pipeline: spec.Spec, monitor: Any) -> None:
    """``check_breach`` after the monitor; on a breach, an alert and the training DAG triggered with the reasons."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    check = task.short_circuit(task_id="check_breach")(breach_notes)(monitor.output)
    check >> task(task_id="alert_breach")(alert_breach)(monitor.output)
    if pipeline.monitoring.retrain_on_breach:
        check >> TriggerDagRunOperator(
            task_id="trigger_training", trigger_dag_id=f"{pipeline.name}_training",
            conf={"notes": "{{ ti.xcom_pull(task_ids='check_breach') }}"}, wait_for_completion=False)


def monitoring_dag(spec_path: str | Path, runtime: str | None = None) -> DAG:
    """Build ``<name>_monitoring`` for the spec at ``spec_path``."""
    pipeline = spec.load(spec_path)
    return _pipeline_dag(
        pipeline, spec_path, runs.MONITORING, MONITORING_STEPS, step_operator_class(runtime), then=_on_breach,
        suffix="monitoring", description=f"Drift and quality of the {pipeline.registered_model} champion",
        doc_md=_monitoring_doc(pipeline), schedule=pipeline.monitoring.schedule,
        tags=["mlpipe", "monitoring", pipeline.name, *pipeline.tags], params={"force_cpu": FORCE_CPU})


def _load(folder: str | Path) -> tuple[dict[str, DAG], list[str]]:
    """The DAGs of the spec files in ``folder`` that build, by dag id; one message per spec file that does not.

    A spec that fails adds no DAG and hides no other spec's: invalid (the spec's own message names the
    file and field), a pipeline name that another spec file has too (neither builds: a new file must not
    take over a running pipeline's DAGs), or a value the spec accepts but Airflow refuses (checked here
    with ``DAG.validate``, as Airflow does before it keeps a DAG: e.g. a schedule that is no cron).
    """
    names: dict[Path, str] = {}
    errors: dict[Path, str] = {}
    for path in spec.discover(folder):
        try:
            names[path] = spec.load(path).name
        except spec.SpecError as error:
            errors[path] = str(error)
    dags: dict[str, DAG] = {}
    for path, name in names.items():
        if others := [other.name for other, same in names.items() if same == name and other != path]:
            errors[path] = f"{path.name}: name: {name!r} is also the name of {', '.join(others)}"
            continue
        try:
            built = [build(path) for build in (training_dag, scoring_dag, monitoring_dag)]
            for dag in built:
                dag.validate()
        except Exception as error:  # a valid spec with a value Airflow refuses
            errors[path] = f"{path.name}: {type(error).__name__}: {error}"
            continue
        dags.update((dag.dag_id, dag) for dag in built)
    return dags, [errors[path] for path in sorted(errors)]


def pipeline_dags(folder: str | Path) -> dict[str, DAG]:
    """The training, scoring and monitoring DAGs of every spec file in ``folder`` that builds, by dag id."""
    return _load(folder)[0]


def spec_errors(folder: str | Path) -> list[str]:
    """One message per spec file in ``folder`` whose DAGs do not build, naming the file and the field."""
    return _load(folder)[1]

RUNTIMES = ("local", "kubernetes")


def step_operator_class(runtime: str | None = None) -> type[BaseOperator]:
    """The operator class of the configured runtime (``$MLPIPE_RUNTIME``, default ``local``)."""
    name = runtime or os.environ.get(RUNTIME_ENV, "local")
    if name not in RUNTIMES:
        raise ValueError(f"{RUNTIME_ENV}={name!r} is not a runtime; choose one of: {', '.join(RUNTIMES)}")
    if name == "kubernetes":
        from mlpipe.orchestration.kubernetes import KubernetesStepOperator

        return KubernetesStepOperator
    return LocalStepOperator

RUNTIME_ENV = "MLPIPE_RUNTIME"
