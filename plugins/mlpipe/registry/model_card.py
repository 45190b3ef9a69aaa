"""The model card of a registered version: one document per version, written from its lineage, never by hand.

:func:`publish` gathers the version's lineage (:class:`~mlpipe.registry.card_sections.Lineage`: the training
run's spec and step results, the gate's audit record, the snapshot's coverage, the MLflow run's parameters, the
pipeline's noise band when one was recorded, :mod:`mlpipe.registry.noise_band`),
builds the card (:mod:`mlpipe.registry.card_sections`) and renders it (:mod:`mlpipe.registry.card_render`) as
``model_card.md`` and a self-contained ``model_card.html`` (plots inline). Both are written under a folder of
the artifact store and logged on the version's MLflow run under ``model_card/``, and the version's tags
:data:`CARD_TAG` (the HTML) and :data:`CARD_MARKDOWN_TAG` point at the stored files: the ops page links
them.

``register`` publishes the card of the version it registered once the gate has decided, under its own folder
(``<run>/register/model_card/``), and keeps the training snapshot's coverage beside it (:data:`COVERAGE_FILE`,
:func:`training_coverage`): the snapshot is read once per version, never again by a refresh. The monitor step calls
:func:`refresh` once it has tagged the champion with its latest status: the card is built again with the monitoring
section (drift and quality), written under the monitoring run's folder, logged over the version's card on its MLflow
run, and the tags point at it. ``$MLPIPE_MODEL_CARD=0`` turns cards off (:func:`mlpipe.core.settings.model_card`).
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from mlpipe.core import settings, uris
from mlpipe.core.errors import Refused, StorageError
from mlpipe.core.results import Analyze, Ingest, Register, ResultError, Split, StepResult, Train, Tune, Validate
from mlpipe.core.tasks import RULES
from mlpipe.data.coverage import Coverage, coverage
from mlpipe.model.tabular import SCHEMA_FILE
from mlpipe.registry.card_render import html, markdown
from mlpipe.registry.card_sections import Lineage, build
from mlpipe.registry.noise_band import recorded
from mlpipe.registry.tracking import GIT_COMMIT_TAG, RUN_URI_TAG
from mlpipe.store import storage
from mlpipe.store.runs import Run, StepNotFinished

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CARD_FOLDER = "model_card"  # the artifact path on the MLflow run, and the folder in the artifact store
MARKDOWN_FILE, HTML_FILE = "model_card.md", "model_card.html"
COVERAGE_FILE = "coverage.json"  # the training snapshot's Coverage, beside the card register wrote
CARD_TAG = "mlpipe.model_card"  # model version tag: the stored model_card.html
CARD_MARKDOWN_TAG = "mlpipe.model_card_md"  # ... and model_card.md
R = TypeVar("R", bound=StepResult)


class CardFiles(NamedTuple):
    """Where a card was written in the artifact store."""

    markdown: str
    html: str


def optional(run: Run, model: type[R]) -> R | None:
    """The result of a step the run may have skipped (validate, tune), or ``None``."""
    try:
        return run.result(model)
    except StepNotFinished:
        return None


def training_coverage(run: Run) -> Coverage:
    """The :class:`~mlpipe.data.coverage.Coverage` of training run ``run``'s snapshot: read from the snapshot by
    the first card of its version (register's), then kept as ``<run>/register/model_card/coverage.json`` and read
    back from there (a monitoring refresh: the figures never change, and re-reading a large snapshot would cost
    every monitoring run seconds)."""
    kept = run.path(Register.step, CARD_FOLDER, COVERAGE_FILE)
    if storage.exists(kept):
        return Coverage.from_json(storage.read_json(kept))
    found = coverage(run.result(Ingest).snapshot, run.spec)
    storage.write_json(kept, found.to_json())
    return found


def lineage(run: Run, registered: Register, version: ModelVersion, monitoring: dict[str, Any] | None,
            writer: str) -> Lineage:
    """Everything the card of ``version`` (registered by training run ``run``) says, read from where it lives."""
    from mlflow import MlflowClient

    spec, ingest, train, analyze = run.spec, run.result(Ingest), run.result(Train), run.result(Analyze)
    logged = MlflowClient().get_run(train.mlflow_run_id).data
    created = version.creation_timestamp
    return Lineage(
        spec=spec, run_uri=run.uri, notes=run.options.get("notes", ""), ingest=ingest,
        validate=optional(run, Validate), split=run.result(Split), tune=optional(run, Tune), train=train,
        analyze=analyze, register=registered, comparison=storage.read_json(registered.audit)["comparison"],
        coverage=training_coverage(run),
        features=storage.read_json(uris.join(train.model_folder, SCHEMA_FILE)), params=dict(logged.params),
        commit=logged.tags.get(GIT_COMMIT_TAG), aliases=sorted(version.aliases),
        registered=datetime.fromtimestamp(created / 1000, UTC) if created else None,
        plots={name: storage.read_bytes(uri) for name, uri in analyze.plots.items()}, monitoring=monitoring,
        written=datetime.now(UTC), writer=writer, noise=recorded(spec.name, RULES[spec.target.task].headline))


def publish(run: Run, registered: Register, folder: str, monitoring: dict[str, Any] | None = None,
            writer: str | None = None) -> CardFiles:
    """Write the card of the version ``registered`` (by training run ``run``) under ``folder``, log it on the
    version's MLflow run under :data:`CARD_FOLDER` and tag the version with it; ``monitoring``, the latest
    monitoring report, adds its section; ``writer`` says what wrote it (default: the run's register step)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    name, number = registered.model_name, str(registered.version)
    version = client.get_model_version(name, number)
    card = build(lineage(run, registered, version, monitoring, writer or f"the register step of run {run.run_id}"))
    with tempfile.TemporaryDirectory(prefix="mlpipe-card-") as tmp:
        written = {}
        for file, text in ((MARKDOWN_FILE, markdown(card)), (HTML_FILE, html(card))):
            (Path(tmp) / file).write_text(text, encoding="utf-8")
            written[file] = storage.write_bytes(uris.join(folder, file), text.encode("utf-8"))
        client.log_artifacts(version.run_id, tmp, artifact_path=CARD_FOLDER)
    files = CardFiles(written[MARKDOWN_FILE], written[HTML_FILE])
    client.set_model_version_tag(name, number, CARD_MARKDOWN_TAG, files.markdown)
    client.set_model_version_tag(name, number, CARD_TAG, files.html)
    log.info("model card of %s version %s: %s", name, number, files.html)
    return files


def refresh(model_name: str, version: int, report: dict[str, Any], folder: str) -> CardFiles | None:
    """Publish the card of ``version`` again with the monitoring ``report`` (the monitor step's, once it has tagged
    the version with its status), under ``folder`` (the monitor step's own).

    ``None``, and nothing written, when cards are off or the version has no lineage to build one from (not
    registered by a training run, or that run's folder is gone or from a version before cards).
    """
    if not settings.model_card():
        return None
    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version(model_name, str(version)).tags
    try:
        run = Run(tags[RUN_URI_TAG])
        registered = run.result(Register)
    except (KeyError, StorageError, Refused, ResultError) as error:
        log.warning("%s version %s: no model card refreshed, its training run cannot be read (%s)",
                    model_name, version, error)
        return None
    if (registered.model_name, registered.version) != (model_name, version):
        log.warning("%s version %s: no model card refreshed, training run %s registered %s version %s",
                    model_name, version, run.uri, registered.model_name, registered.version)
        return None
    return publish(run, registered, folder, report, f"monitoring run {report.get('monitoring_run', '')}")
