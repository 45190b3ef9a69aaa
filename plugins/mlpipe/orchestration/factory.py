"""The DAG factory: one training DAG per pipeline spec.

The DAG decides only when, where and with what each step runs; the steps
themselves live in :mod:`mlpipe.steps` and run through the configured runtime
(:mod:`mlpipe.orchestration.runtimes`). Between tasks travel only URIs and the
steps' small JSON results.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from mlpipe import runs, spec, storage
from mlpipe.orchestration.runtimes import step_operator_class

# (step, task id) in run order.
TRAINING_STEPS = (
    ("ingest", "ingest_data"),
    ("validate", "validate_data"),
    ("split", "split_data"),
    ("validate_split", "validate_split"),
    ("train", "train_model"),
    ("analyze", "analyze_model"),
    ("register", "register_model"),
)

DEFAULT_ARGS = {
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=2),
}

TRIGGER_PARAMS = {
    "data_uri": Param(
        "", type="string", title="Training data URI",
        description="Train on this CSV/Parquet (file:// or s3://) instead of the spec's data.source. "
                    "Empty: use the spec.",
        section="Data",
    ),
    "force_promote": Param(
        False, type="boolean", title="Force promotion",
        description="Make this run's model the champion even if it fails the spec's thresholds. "
                    "The override is recorded on the model version.",
        section="Promotion",
    ),
    "notes": Param(
        "", type="string", title="Notes",
        description="Why this run was started; recorded on the MLflow run and the model version.",
        section="Promotion",
    ),
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
| target | `{target}` = `{positive}` is the positive class |
| schedule | `{schedule}` |
| promotion | analysis ROC AUC ≥ {min_auc}, lift over the logistic-regression baseline ≥ {min_lift} |

**Trigger with options** (Trigger DAG ▸ the form): a different data URI, forced promotion, notes.
Validation failures stop the run before training; the task log lists every failed expectation
and `validate_data/report.html` in the run folder shows them.
"""


def _start_date(text: str) -> datetime:
    day = datetime.fromisoformat(text)
    return day if day.tzinfo else day.replace(tzinfo=UTC)


def _doc(pipeline: spec.Spec, runtime: str) -> str:
    return DOC.format(
        name=pipeline.name, description=pipeline.description, runtime=runtime,
        model=pipeline.registered_model, source=pipeline.data.source, target=pipeline.target.column,
        positive=pipeline.target.positive_class, schedule=pipeline.schedule or "manual only",
        min_auc=pipeline.thresholds.min_roc_auc, min_lift=pipeline.thresholds.min_lift_over_baseline,
    )


def start_run(spec_path: str, params: dict[str, Any], run_id: str) -> str:
    """Resolve the spec with the trigger options and write it to a new run folder; return its URI."""
    pipeline = spec.load(spec_path)
    if params.get("data_uri"):
        pipeline = spec.with_overrides(pipeline, {"data.source": storage.normalize(params["data_uri"])})
    options = {key: params[key] for key in TRIGGER_PARAMS if key in params}
    return runs.start(pipeline, run_id, options=options)


def _start_run_task(spec_path: str) -> str:
    context = get_current_context()
    return start_run(spec_path, context["params"], context["run_id"])


def training_dag(spec_path: str | Path, runtime: str | None = None) -> DAG:
    """Build ``<name>_training`` for the spec at ``spec_path``."""
    pipeline = spec.load(spec_path)
    operator = step_operator_class(runtime)
    with DAG(
        dag_id=f"{pipeline.name}_training",
        description=pipeline.description or f"Train {pipeline.name}",
        doc_md=_doc(pipeline, operator.__name__),
        schedule=pipeline.schedule,
        start_date=_start_date(pipeline.start_date),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        tags=["mlpipe", "training", pipeline.name, *pipeline.tags],
        default_args={**DEFAULT_ARGS, "owner": pipeline.owner},
        params=TRIGGER_PARAMS,
    ) as dag:
        run_uri = task(task_id="start_run")(_start_run_task)(spec_path=str(spec_path))
        previous = run_uri
        for step, task_id in TRAINING_STEPS:
            current = operator(task_id=task_id, step=step, run_uri=run_uri)
            previous >> current
            previous = current
    return dag


def training_dags(folder: str | Path) -> dict[str, DAG]:
    """One training DAG per spec file in ``folder``, by dag id."""
    dags = [training_dag(path) for path in spec.discover(folder)]
    return {dag.dag_id: dag for dag in dags}
