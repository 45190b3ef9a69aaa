"""The DAG factory: the training, scoring and monitoring DAGs of each pipeline spec.

The DAG decides only when, where and with what each step runs; the steps
themselves live in :mod:`mlpipe.steps` and run through the configured runtime
(:mod:`mlpipe.orchestration.runtimes`). Between tasks travel only URIs and the
steps' small JSON results.

The DAGs are chained by data (:mod:`mlpipe.orchestration.assets`): ``ingest_data`` reads the
``training_data`` asset, ``score_batch`` and ``monitor_drift`` write ``predictions`` and
``monitoring_report``, ``publish_champion`` announces a new ``champion``; each DAG runs on its
spec's schedule, on its ``on_assets`` events, or both. A monitoring breach triggers the training
DAG directly (``trigger_training``), with the reasons as its notes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlpipe.core import settings, spec, uris, urls
from mlpipe.core.assets import AssetKey, champion_event
from mlpipe.core.names import Step
from mlpipe.core.results import Analyze, Deploy, Ingest, Monitor, Register
from mlpipe.orchestration import assets, callbacks, docs
from mlpipe.orchestration.callbacks import airflow_ui_base, send_alert
from mlpipe.orchestration.runtimes import LocalStepOperator
from mlpipe.store import runs

# (step, task id) in run order.
TRAINING_STEPS = (
    (Step.INGEST, "ingest_data"),
    (Step.VALIDATE, "validate_data"),
    (Step.SPLIT, "split_data"),
    (Step.VALIDATE_SPLIT, "validate_split"),
    (Step.TUNE_PREPARE, "prepare_tuning"),
    (Step.TUNE_TRIALS, "tune_trials"),
    (Step.TUNE, "select_params"),
    (Step.TRAIN, "train_model"),
    (Step.ANALYZE, "analyze_model"),
    (Step.REGISTER, "register_model"),
    (Step.DEPLOY, "deploy_model"),
)
# Steps that run as several parallel tasks (dynamic task mapping), and how many for a spec.
SHARDED = {Step.TUNE_TRIALS: lambda pipeline: pipeline.tuning.workers}
SCORING_STEPS = ((Step.SCORE, "score_batch"),)
MONITORING_STEPS = ((Step.MONITOR, "monitor_drift"),)

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


def _start_date(text: str) -> datetime:
    day = datetime.fromisoformat(text)
    return day if day.tzinfo else day.replace(tzinfo=UTC)


def start_run(spec_path: str, params: dict[str, Any], run_id: str, kind: str = runs.TRAINING,
              events: list[dict[str, Any]] | None = None) -> str:
    """Resolve the spec with the trigger options and write it to a new run folder; return its URI.

    Every trigger option is kept in the run's ``options.json``, with the asset ``events`` that started the
    run (:func:`mlpipe.orchestration.assets.event_options`: an announced ``uri`` fills an empty ``data_uri`` or
    ``input_uri``); ``data_uri`` also replaces the spec's ``data.source``.
    """
    pipeline = spec.load(spec_path)
    options = assets.event_options(pipeline.name, params, events or [])
    if options.get("data_uri"):
        pipeline = spec.with_overrides(pipeline, {"data.source": uris.normalize(options["data_uri"])})
    return runs.start(pipeline, run_id, options=options, kind=kind)


def _start_run_task(spec_path: str, kind: str) -> str:
    context = get_current_context()
    try:
        return start_run(spec_path, context["params"], context["run_id"], kind, assets.triggering_events(context))
    except assets.AnnouncementError as error:  # the event will not change on a retry
        raise AirflowFailException(str(error)) from None


def _pipeline_dag(pipeline: spec.Spec, spec_path: str | Path, kind: str, steps: tuple[tuple[Step, str], ...],
                  operator: type, cron: str | None, on_assets: list[str],
                  then: Callable[[spec.Spec, dict[str, Any]], None] | None = None, **dag_args: Any) -> DAG:
    """A DAG that starts a run folder of ``kind`` and runs ``steps`` one after the other, each step's task with
    its inlets and outlets (:func:`mlpipe.orchestration.assets.step_assets`); it runs on ``cron``, on the events
    of any of the pipeline's ``on_assets``, or both.

    ``then(pipeline, tasks)``, when given, adds tasks after the steps' (``tasks``: by task id; inside the DAG).
    """
    suffix = dag_args.pop("suffix")
    triggers = [assets.asset(pipeline.name, key) for key in on_assets]
    with callbacks.PipelineDAG(
        dag_id=f"{pipeline.name}_{suffix}",
        start_date=_start_date(pipeline.start_date),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        schedule=assets.schedule(cron, triggers),
        auto_register=False,  # a DAG file exports the DAGs it means (spec_errors builds them only to check)
        default_args={**DEFAULT_ARGS, "owner": pipeline.owner, **callbacks.task_alerting(pipeline, kind)},
        **callbacks.dag_alerting(pipeline, suffix, kind),
        **dag_args,
    ) as dag:
        run_uri = task(task_id="start_run")(_start_run_task)(spec_path=str(spec_path), kind=kind)
        previous = run_uri
        tasks: dict[str, Any] = {}
        for step, task_id in steps:
            where = {**operator.step_kwargs(pipeline, step), **assets.step_assets(pipeline.name, step)}
            if step in SHARDED:
                shards = list(range(SHARDED[step](pipeline)))
                current = operator.partial(task_id=task_id, step=step.value, run_uri=run_uri, **where).expand(
                    shard=shards)
            else:
                current = operator(task_id=task_id, step=step.value, run_uri=run_uri, **where)
            previous >> current
            previous = tasks[task_id] = current
        if then is not None:
            then(pipeline, tasks)
    dag.doc_md = f"{dag.doc_md}{docs.assets_doc(dag, triggers)}"
    return dag


def publish_champion(ingested: dict[str, Any], analyzed: dict[str, Any], registered: dict[str, Any],
                     deployed: dict[str, Any]) -> dict[str, Any]:
    """The ``champion`` asset's event after the run's promotion was deployed (or had no server to go to): the
    version, its data, metrics and why (:func:`mlpipe.core.assets.champion_event`). Skipped, so no event, when the
    run promoted nothing (the DAGs that run on the champion must not run then)."""
    decision = Register.from_xcom(registered)
    if not decision.promoted:
        raise AirflowSkipException(f"{decision.model_name} version {decision.version} was not promoted: "
                                   "no champion event")
    extra = champion_event(Ingest.from_xcom(ingested), Analyze.from_xcom(analyzed), decision,
                           Deploy.from_xcom(deployed))
    assets.announce(get_current_context(), extra)
    return extra


def _on_promotion(pipeline: spec.Spec, tasks: dict[str, Any]) -> None:
    """``publish_champion`` after ``deploy_model``: the ``champion`` asset's producer."""
    task(task_id="publish_champion", outlets=[assets.asset(pipeline.name, AssetKey.CHAMPION)])(publish_champion)(
        *(tasks[task_id].output for task_id in ("ingest_data", "analyze_model", "register_model", "deploy_model")))


def training_dag(spec_path: str | Path, runtime: str | None = None) -> DAG:
    """Build ``<name>_training`` for the spec at ``spec_path``."""
    pipeline = spec.load(spec_path)
    operator = step_operator_class(runtime)
    return _pipeline_dag(
        pipeline, spec_path, runs.TRAINING, TRAINING_STEPS, operator, then=_on_promotion, suffix="training",
        description=pipeline.description or f"Train {pipeline.name}",
        doc_md=docs.training_doc(pipeline, operator.__name__),
        cron=pipeline.schedule, on_assets=pipeline.on_assets,
        tags=["mlpipe", "training", pipeline.name, *pipeline.tags], params=TRIGGER_PARAMS)


def scoring_dag(spec_path: str | Path, runtime: str | None = None) -> DAG:
    """Build ``<name>_scoring`` for the spec at ``spec_path``."""
    pipeline = spec.load(spec_path)
    return _pipeline_dag(
        pipeline, spec_path, runs.SCORING, SCORING_STEPS, step_operator_class(runtime), suffix="scoring",
        description=f"Score batches with the {pipeline.registered_model} champion",
        doc_md=docs.scoring_doc(pipeline),
        cron=pipeline.scoring.schedule, on_assets=pipeline.scoring.on_assets,
        tags=["mlpipe", "scoring", pipeline.name, *pipeline.tags], params=SCORING_PARAMS)


def breach_notes(result: dict[str, Any]) -> str:
    """The monitor result's notes for retraining: empty (so the tasks after it are skipped) unless a breach."""
    monitored = Monitor.from_xcom(result)
    return monitored.retrain_notes if monitored.breach else ""


def alert_breach(result: dict[str, Any]) -> dict[str, str]:
    """Tell the pipeline's people (its ``alerts`` section) why the monitor breached; the channels' outcomes."""
    monitored = Monitor.from_xcom(result)
    pipeline = runs.Run(monitored.run).spec
    links = {"Monitoring report": urls.artifact_url(monitored.report_html, base=airflow_ui_base())}
    if monitored.mlflow_run_id:
        links["MLflow run"] = urls.mlflow_run_url(monitored.mlflow_run_id)
    return send_alert(pipeline, f"{pipeline.name}: monitoring breach of {pipeline.registered_model} "
                                f"v{monitored.champion_version}", text="\n".join(monitored.reasons), links=links)


def _on_breach(pipeline: spec.Spec, tasks: dict[str, Any]) -> None:
    """``check_breach`` after the monitor; on a breach, an alert and the training DAG triggered with the reasons.

    The training DAG is triggered directly, not through the ``monitoring_report`` asset: every monitoring run
    emits a report event, and only a breach retrains, with its reasons as the run's notes.
    """
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    monitor = tasks["monitor_drift"]
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
        doc_md=docs.monitoring_doc(pipeline),
        cron=pipeline.monitoring.schedule, on_assets=pipeline.monitoring.on_assets,
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

RUNTIMES = settings.RUNTIMES


def step_operator_class(runtime: str | None = None) -> type[BaseOperator]:
    """The operator class of the configured runtime (``$MLPIPE_RUNTIME``, default ``local``)."""
    name = runtime or settings.runtime()
    if name not in RUNTIMES:
        raise ValueError(f"{settings.RUNTIME}={name!r} is not a runtime; choose one of: {', '.join(RUNTIMES)}")
    if name == "kubernetes":
        from mlpipe.orchestration.kubernetes import KubernetesStepOperator

        return KubernetesStepOperator
    return LocalStepOperator

