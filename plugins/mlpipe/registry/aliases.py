"""Who holds which alias of a registered model, and the promotion lease that guards moving them.

Promotions (``register``) and rollbacks move the ``champion`` and ``previous-champion`` aliases only
under the model's promotion lease (:func:`promotion_lease`, an :mod:`mlpipe.store.lease` in the
artifact store), so they never interleave. Should its holder crash, the lease expires
``$MLPIPE_PROMOTION_LEASE_SECONDS`` (default 1800) after it was taken; a caller waits for it at most
``$MLPIPE_PROMOTION_WAIT_SECONDS`` (default 2400), then fails, to be retried.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mlpipe.core import settings, uris
from mlpipe.registry.names import CHAMPION
from mlpipe.store import lease
from mlpipe.store.runs import store_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient


@contextlib.contextmanager
def promotion_lease(name: str, owner: str) -> Iterator[lease.Lease]:
    """Hold the promotion lease of registered model ``name`` (``<store>/leases/promotion-<name>/``)."""
    folder = uris.join(store_uri(), "leases", "promotion-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name))
    with lease.held(folder, owner, settings.promotion_lease_seconds(), settings.promotion_wait_seconds()) as held:
        yield held


def alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version ``alias`` points at, if any."""
    version = client.get_registered_model(name).aliases.get(alias)
    return None if version is None else int(version)


def champion_version(client: MlflowClient, name: str) -> int | None:
    """The version the ``champion`` alias points at, if any."""
    return alias_version(client, name, CHAMPION)
