"""The ``champion`` asset event of a rollback done on the Models page.

A promotion's event comes from the training DAG (``publish_champion``); a rollback happens in the api-server, which
this page runs in, so the page records the event itself in Airflow's database, as ``POST /api/v2/assets/events``
does: the Assets view then shows the rollback, and DAGs that run on the champion (``scoring.on_assets:
[champion]``) run again with the restored version.
"""

from __future__ import annotations

import logging
from typing import Any

from mlpipe.core.assets import AssetKey, asset_uri

log = logging.getLogger(__name__)


def record(pipeline: str, extra: dict[str, Any]) -> int | None:
    """Record the pipeline's ``champion`` event with ``extra``; its id, or ``None`` when Airflow does not know the
    asset (no DAG of the pipeline was parsed yet)."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uri = asset_uri(pipeline, AssetKey.CHAMPION)
    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == uri).limit(1))
        if asset is None:
            log.warning("no champion event for the rollback of %s: Airflow knows no asset %s", pipeline, uri)
            return None
        event = asset_manager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)
        session.flush()
        return None if event is None else event.id
