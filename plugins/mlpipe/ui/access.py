"""Who is asking, and what they may do: the api-server's own authentication and auth manager.

The user comes from the JWT the Airflow UI keeps in its ``_token`` cookie or from an
``Authorization: Bearer`` header, resolved exactly as the public API resolves it
(:func:`airflow.api_fastapi.core_api.security.get_user`). Permissions are the auth manager's
decisions on the pipeline's training DAG, ``<pipeline>_training``:

- see a pipeline (the Models page, its artifacts and metrics): ``GET`` on the DAG;
- roll its model back: ``POST`` on the DAG's runs, the right to trigger it
  (:data:`DagAccessEntity.RUN`), the same right a new training run needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request  # a runtime import: FastAPI reads current_user's signature (api-server only)

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser


def training_dag_id(pipeline: str) -> str:
    """The dag id whose permissions guard ``pipeline``."""
    return f"{pipeline}_training"


async def current_user(request: Request) -> BaseUser | None:
    """The logged-in user of ``request`` (bearer header or the UI's cookie); ``None`` when there is none."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import HTTPException
    from fastapi.security import HTTPBearer

    credentials = await HTTPBearer(auto_error=False)(request)
    try:
        return await get_user(request, None, credentials)
    except HTTPException:  # no token, an expired one, or a forged one: not logged in
        return None


def _team(dag_id: str) -> str | None:
    from airflow.models.dag import DagModel

    try:
        return DagModel.get_team_name(dag_id)
    except Exception:  # no such DAG (yet) or no team support in this database: no team
        return None


def _authorized(user: BaseUser, dag_id: str, method: str, run: bool, auth_manager: BaseAuthManager | None) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    if auth_manager is None:
        from airflow.api_fastapi.app import get_auth_manager

        auth_manager = get_auth_manager()
    return bool(auth_manager.is_authorized_dag(
        method=method, access_entity=DagAccessEntity.RUN if run else None, user=user,
        details=DagDetails(id=dag_id, team_name=_team(dag_id))))


def can_view(user: BaseUser, pipeline: str, auth_manager: BaseAuthManager | None = None) -> bool:
    """Whether ``user`` may see ``pipeline`` (read access to its training DAG)."""
    return _authorized(user, training_dag_id(pipeline), "GET", False, auth_manager)


def can_rollback(user: BaseUser, pipeline: str, auth_manager: BaseAuthManager | None = None) -> bool:
    """Whether ``user`` may roll ``pipeline``'s model back (may trigger its training DAG)."""
    return _authorized(user, training_dag_id(pipeline), "POST", True, auth_manager)


def refusal(user: BaseUser, pipeline: str) -> str:
    """Why ``user`` may not roll back ``pipeline``, in words."""
    return (f"{user.get_name()} may not roll back {pipeline}: a rollback needs permission to trigger "
            f"the DAG {training_dag_id(pipeline)} (ask an Airflow admin for it)")
