"""``mlpipe rollback <model>``: give the ``champion`` alias back to the ``previous-champion``.

The rolled-back version keeps a tag saying when, by whom and why; ``previous-champion``
moves one step further back (to the version the restored champion had replaced, when
known) so that a second rollback goes further back instead of undoing the first. Every
rollback is one event in the pipeline's audit log (:mod:`mlpipe.store.audit`); the pipeline is
the registered model's ``mlpipe.pipeline`` tag (set by ``register``), else the model name.
A rollback holds the model's promotion lease (:func:`mlpipe.registry.aliases.promotion_lease`),
so it never interleaves with a promotion.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlpipe.core import settings
from mlpipe.core.errors import Refused
from mlpipe.registry.aliases import promotion_lease
from mlpipe.registry.names import CHAMPION, PREVIOUS_CHAMPION, REPLACED_TAG
from mlpipe.registry.tracking import PIPELINE_TAG
from mlpipe.store import audit, lease

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import RegisteredModel

ROLLED_BACK_TAG = "mlpipe.rolled_back"


def registered_model(client: MlflowClient, model: str) -> RegisteredModel:
    """The registered model ``model``; a :class:`Refused` naming it when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(model)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":  # e.g. the server did not answer: not the user's error
            raise
        raise Refused(f"no registered model {model!r} ({error.error_code})") from None


def restore_previous(client: MlflowClient, model: str, previous: int) -> None:
    """``champion`` -> ``previous``; ``previous-champion`` -> the version ``previous`` had replaced, or none.

    The only place a rollback moves aliases (under the model's promotion lease, like a promotion).
    """
    replaced = client.get_model_version(model, str(previous)).tags.get(REPLACED_TAG)
    client.set_registered_model_alias(model, CHAMPION, str(previous))
    if replaced is None:
        client.delete_registered_model_alias(model, PREVIOUS_CHAMPION)
    else:
        client.set_registered_model_alias(model, PREVIOUS_CHAMPION, replaced)


def rollback(model: str, reason: str = "manual rollback", actor: str | None = None,
             expected_champion: int | None = None) -> dict[str, Any]:
    """Make the previous champion of ``model`` the champion again; returns the versions and the audit entry.

    ``expected_champion`` (the deploy step's new version) refuses to roll back a champion
    that has moved on since. Nothing changes when there is no previous champion.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    actor = actor or settings.user() or "unknown"
    with promotion_lease(model, f"rollback by {actor}") as held:  # never while a register decides
        found = registered_model(client, model)
        champion, previous = found.aliases.get(CHAMPION), found.aliases.get(PREVIOUS_CHAMPION)
        if champion is None or previous is None:
            raise Refused(f"{model} has no {'champion' if champion is None else 'previous-champion'} "
                            f"version (aliases: {dict(found.aliases) or 'none'}): nothing to roll back to")
        if expected_champion is not None and int(champion) != expected_champion:
            raise Refused(f"{model}'s champion is version {champion}, not {expected_champion}: "
                            "it moved on since, so it is left alone")
        lease.confirm(held)  # a rollback that outlived its lease moves nothing (a register may hold it now)
        restore_previous(client, model, int(previous))
        client.set_model_version_tag(model, champion, ROLLED_BACK_TAG,
                                     f"{datetime.now(UTC).isoformat()} by {actor}: {reason}")
        entry = audit.record(found.tags.get(PIPELINE_TAG, model), {
            "action": "rollback", "model": model, "version": int(champion), "from_version": int(champion),
            "to_version": int(previous), "actor": actor, "reason": reason})
    return {"model": model, "from_version": int(champion), "to_version": int(previous), "audit": entry}
