"""register: put the trained model in the MLflow registry as ``challenger``, maybe promote it.

The version carries its lineage and analysis as tags (data version, pipeline run,
MLflow run, analysis metrics, decision threshold) and the promotion decision of
:func:`mlpipe.promotion.decide` (promoted or not, and why). Promotion uses aliases
only. A retry reuses the version this pipeline run already registered for the same
MLflow run instead of creating a second one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlpipe.promotion import decide
from mlpipe.runs import Run
from mlpipe.tracking import DATA_VERSION_TAG, NOTES_TAG, RUN_URI_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
PROMOTED_TAG = "mlpipe.promoted"
REASONS_TAG = "mlpipe.promotion_reasons"
THRESHOLD_TAG = "mlpipe.threshold"


def version_tags(run: Run, train: dict[str, Any], metrics: dict[str, Any]) -> dict[str, str]:
    """Lineage and analysis tags of the model version registered by ``run``."""
    return {
        DATA_VERSION_TAG: str(train["data_version"]),
        RUN_URI_TAG: run.uri,
        "mlpipe.mlflow_run_id": train["mlflow_run_id"],
        "mlpipe.analysis_roc_auc": str(metrics["roc_auc"]),
        "mlpipe.baseline_roc_auc": str(metrics["baseline_roc_auc"]),
        "mlpipe.lift": str(metrics["lift"]),
        THRESHOLD_TAG: str(metrics["threshold"]),  # exact (str of a float round-trips): serving uses it
        NOTES_TAG: run.options.get("notes", ""),
    }


def existing_version(client: MlflowClient, name: str, run: Run, mlflow_run_id: str) -> ModelVersion | None:
    """The version this pipeline run already registered from this MLflow run, if any."""
    found = client.search_model_versions(
        f"name = '{name}' and run_id = '{mlflow_run_id}' and tags.`{RUN_URI_TAG}` = '{run.uri}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def champion_version(client: MlflowClient, name: str) -> int | None:
    """The version the ``champion`` alias points at, if any."""
    version = client.get_registered_model(name).aliases.get(CHAMPION)
    return None if version is None else int(version)


def champion_info(client: MlflowClient, name: str) -> dict[str, Any] | None:
    """What the promotion rule gets to know of the current champion (``None`` when there is none)."""
    version = champion_version(client, name)
    if version is None:
        return None
    found = client.get_model_version(name, str(version))
    return {"version": int(found.version), "run_id": found.run_id, "tags": dict(found.tags)}


def latest_version(client: MlflowClient, name: str) -> int:
    """The newest version number of registered model ``name``."""
    newest = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"], max_results=1)
    return int(newest[0].version)


def register(run: Run) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient

    spec, train = run.spec, run.result("train")
    metrics = run.result("analyze")["metrics"]
    name = spec.registered_model
    client = MlflowClient()
    found = existing_version(client, name, run, train["mlflow_run_id"])
    if found is None:
        found = mlflow.register_model(train["model_uri"], name, tags=version_tags(run, train, metrics))
    else:
        log.info("reusing version %s of %s registered earlier by this run", found.version, name)
    version = int(found.version)
    champion = champion_info(client, name)
    # The champion to compare with is another version: a retry must not compare a version with itself.
    decision = decide(spec, metrics, None if champion and champion["version"] == version else champion,
                      force=bool(run.options.get("force_promote")))
    if version == latest_version(client, name):  # an old run re-registered does not take the alias back
        client.set_registered_model_alias(name, CHALLENGER, str(version))
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_model_version_tag(name, str(version), PROMOTED_TAG, str(decision.promote).lower())
    client.set_model_version_tag(name, str(version), REASONS_TAG, "; ".join(decision.reasons))
    log.info("%s version %d: promoted=%s (%s)", name, version, decision.promote, "; ".join(decision.reasons))
    aliases = client.get_model_version(name, str(version)).aliases
    return {"model_name": name, "version": version, "aliases": sorted(aliases),
            "promoted": decision.promote, "reasons": decision.reasons,
            "champion_version": champion_version(client, name)}
