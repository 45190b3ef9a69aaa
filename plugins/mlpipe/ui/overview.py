"""What the Models page shows of a pipeline, gathered from where each fact lives.

- the pipelines: the spec files of ``<[core] dags_folder>/pipelines`` (:func:`mlpipe.core.spec.discover`);
- champion, challenger and previous champion, and the recent versions with their analysis
  metrics: the MLflow registry (aliases and the ``mlpipe.*`` version tags ``register`` writes), with a link to
  each version's model card (its ``mlpipe.model_card`` tags, :mod:`mlpipe.registry.model_card`);
- the last training run: Airflow's metadata database (latest DagRun of ``<pipeline>_training``);
- the last monitoring result: ``report.json`` of the latest monitoring run in the artifact store;
- promotions, rollbacks and deploys: the audit log (:func:`mlpipe.store.audit.history`).

Each part is gathered on its own: one that cannot be read (MLflow down, no database) is an
error message in its place on the page, never a failed page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlpipe.core import spec, uris
from mlpipe.core.errors import StorageError
from mlpipe.core.tasks import RULES, Task
from mlpipe.registry.model_card import CARD_MARKDOWN_TAG, CARD_TAG
from mlpipe.store import audit, runs, storage

log = logging.getLogger(__name__)

LIFT, THRESHOLD = "mlpipe.lift", "mlpipe.threshold"
VERSION_FACTS = (("Data version", "mlpipe.data_version"), ("Promoted", "mlpipe.promoted"),
                 ("Forced", "mlpipe.promotion_forced"), ("Gate reasons", "mlpipe.promotion_reasons"),
                 ("Rolled back", "mlpipe.rolled_back"), ("Notes", "mlpipe.notes"))
CARD_LINKS = (("HTML", CARD_TAG), ("Markdown", CARD_MARKDOWN_TAG))  # a version's model card: its files' tags
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
MONITOR_STEP, REPORT = "monitor", "report.json"
TREND_VERSIONS = 20
HISTORY_EVENTS = 25


@dataclass(frozen=True)
class Pipeline:
    """A pipeline spec file: its name, registered model and target task, or why it could not be loaded."""

    name: str
    model: str
    source: str
    error: str | None = None
    task: Task = Task.BINARY

    @property
    def headline_tags(self) -> tuple[str, str]:
        """The version tags of the task's headline metric (:data:`mlpipe.core.tasks.RULES`): the model's and the
        baseline's, on the analysis set."""
        name = RULES[self.task].headline
        return f"mlpipe.analysis_{name}", f"mlpipe.baseline_{name}"

    @property
    def version_metrics(self) -> tuple[tuple[str, str], ...]:
        """(label, version tag) of the figures shown side by side: the headline metric of the model and of the
        baseline, the lift and (binary) the decision threshold."""
        label = RULES[self.task].label
        analysis, baseline = self.headline_tags
        shown = (f"Analysis {label}", analysis), (f"Baseline {label}", baseline), ("Lift over baseline", LIFT)
        return (*shown, ("Decision threshold", THRESHOLD)) if self.task == Task.BINARY else shown


def pipelines_folder() -> Path:
    """``<[core] dags_folder>/pipelines``, where the pipeline specs live."""
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")) / "pipelines"


def pipelines(folder: str | Path | None = None) -> list[Pipeline]:
    """Every spec of ``folder`` (default :func:`pipelines_folder`), sorted by file name."""
    found = []
    for path in spec.discover(folder or pipelines_folder()):
        try:
            loaded = spec.load(path)
        except Exception as error:  # a broken spec is shown as such; the others still are
            found.append(Pipeline(path.stem, path.stem, str(path), error=str(error)))
            continue
        found.append(Pipeline(loaded.name, loaded.registered_model, str(path), task=loaded.target.task))
    return found


# The quality figures on late outcomes the page and /mlpipe/metrics show, those of each task (binary; multiclass;
# regression: mlpipe.monitoring.quality and task_quality), in this order.
QUALITY_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "log_loss", "accuracy", "rmse", "mae", "mean_error")


def number(text: Any) -> float | None:
    """``text`` as a float, or ``None`` when it is missing or not a number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN is no figure


@dataclass
class Version:
    """One registered model version as the page shows it."""

    number: int
    aliases: list[str]
    tags: dict[str, str]
    created: datetime | None = None
    run_id: str | None = None

    def metric(self, tag: str) -> float | None:
        return number(self.tags.get(tag))


@dataclass
class Registry:
    """The registered model's aliases and its recent versions (newest first), or why they are unknown."""

    model: str
    champion: Version | None = None
    challenger: Version | None = None
    previous: Version | None = None
    versions: list[Version] = field(default_factory=list)
    error: str | None = None


def _version(found: Any) -> Version:
    created = getattr(found, "creation_timestamp", None)
    return Version(int(found.version), sorted(getattr(found, "aliases", None) or []), dict(found.tags or {}),
                   datetime.fromtimestamp(created / 1000, UTC) if created else None, found.run_id)


def registry(model: str, limit: int = TREND_VERSIONS) -> Registry:
    """Aliases and the ``limit`` newest versions of ``model`` in the MLflow registry."""
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError:
        return Registry(model, error="the MLflow client is not installed in the api-server")
    client = MlflowClient()
    try:
        aliases = client.get_registered_model(model).aliases
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return Registry(model, error=f"no registered model {model} yet: no training run has registered one")
        return Registry(model, error=f"MLflow registry: {error.message}")
    except Exception as error:  # unreachable server, bad tracking URI: say so on the page
        return Registry(model, error=f"MLflow registry unreachable: {type(error).__name__}: {error}")
    found = client.search_model_versions(f"name = '{model}'", order_by=["version_number DESC"],
                                         max_results=limit)
    versions = [_version(v) for v in found]
    for version in versions:  # versions from a search carry no aliases: take them from the model
        version.aliases = sorted({*version.aliases, *(a for a, v in aliases.items() if int(v) == version.number)})
    by_number = {v.number: v for v in versions}

    def alias(name: str) -> Version | None:
        if name not in aliases:
            return None
        wanted = int(aliases[name])
        return by_number.get(wanted) or _version(client.get_model_version(model, str(wanted)))

    return Registry(model, alias(CHAMPION), alias(CHALLENGER), alias(PREVIOUS), versions)


def training_run(dag_id: str) -> dict[str, Any] | None:
    """The latest DagRun of ``dag_id`` in Airflow's database (state, dates, run id), or ``None``."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)
                              .order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(1)).first()
        if run is None:
            return None
        return {"dag_id": dag_id, "run_id": run.run_id, "state": str(run.state or "none"),
                "run_type": str(run.run_type or ""), "run_after": run.run_after,
                "start_date": run.start_date, "end_date": run.end_date}


def monitoring(pipeline: str) -> dict[str, Any] | None:
    """The latest monitoring run's ``report.json`` (with ``run_uri``), a note when it has none, or ``None``."""
    try:
        run_uri = runs.latest(pipeline, kind=runs.MONITORING)
    except StorageError:
        return None
    report_uri = uris.join(run_uri, MONITOR_STEP, REPORT)
    if not storage.exists(report_uri):
        return {"run_uri": run_uri, "missing": f"monitoring run {run_uri.rsplit('/', 1)[-1]} has no report "
                                               "(still running, or it failed: see its task log)"}
    report = storage.read_json(report_uri)
    return {**(report if isinstance(report, dict) else {}), "run_uri": run_uri, "report_uri": report_uri}


def drift_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's features as rows, drifting ones first, then by PSI, highest first."""
    rows = []
    for name, stats in (report.get("features") or {}).items():
        stats = stats if isinstance(stats, dict) else {}
        rows.append({"feature": str(name), "kind": stats.get("kind", ""), "psi": number(stats.get("psi")),
                     "ks": number(stats.get("ks")), "js": number(stats.get("js")),
                     "new_share": number(stats.get("new_share")), "drifting": bool(stats.get("drifting")),
                     "why": [str(w) for w in stats.get("why") or []]})
    return sorted(rows, key=lambda r: (not r["drifting"], -(r["psi"] if r["psi"] is not None else -1),
                                       r["feature"]))


def history(pipeline: str, limit: int = HISTORY_EVENTS) -> list[dict[str, Any]]:
    """The newest ``limit`` audit events of ``pipeline`` (promotions, rollbacks, deploys), newest first."""
    return list(reversed(audit.history(pipeline)))[:limit]


def _part(what: str, gather, *args: Any) -> tuple[Any, str | None]:
    try:
        return gather(*args), None
    except Exception as error:  # one unreadable source must not take the page down
        log.exception("Models page: cannot read the %s", what)
        return None, f"cannot read the {what}: {type(error).__name__}: {error}"


def overview(pipeline: Pipeline) -> dict[str, Any]:
    """Everything the Models page shows of ``pipeline``; a part that failed has its error beside it."""
    if pipeline.error:
        return {"pipeline": pipeline, "spec_error": pipeline.error}
    from mlpipe.ui.access import training_dag_id

    found: dict[str, Any] = {"pipeline": pipeline, "dag_id": training_dag_id(pipeline.name)}
    for key, what, gather, arg in (
        ("registry", "model registry", registry, pipeline.model),
        ("training", "last training run", training_run, training_dag_id(pipeline.name)),
        ("monitoring", "latest monitoring report", monitoring, pipeline.name),
        ("history", "audit log", history, pipeline.name),
    ):
        found[key], found[f"{key}_error"] = _part(what, gather, arg)
    if found["monitoring"] and "features" in found["monitoring"]:
        found["drift"] = drift_rows(found["monitoring"])
    return found
