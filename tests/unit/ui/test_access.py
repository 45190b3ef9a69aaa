"""Who may see a pipeline and who may roll it back: Airflow's own simple auth manager decides."""

from __future__ import annotations

import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

from mlpipe.ui import access


@pytest.fixture(autouse=True)
def no_teams(monkeypatch):
    monkeypatch.setattr(access, "_team", lambda dag_id: None)  # no metadata database in a unit test


@pytest.fixture
def manager() -> SimpleAuthManager:
    return SimpleAuthManager()


@pytest.mark.parametrize(("role", "view", "roll_back"), [
    ("viewer", True, False), ("user", True, True), ("op", True, True), ("admin", True, True), ("", False, False)])
def test_rollback_needs_the_right_to_trigger_the_training_dag(manager, role, view, roll_back):
    user = SimpleAuthManagerUser(username="someone", role=role or None)
    assert access.can_view(user, "loan_default", manager) is view
    assert access.can_rollback(user, "loan_default", manager) is roll_back


def test_the_decision_is_asked_for_the_training_dag_and_its_runs():
    asked = []

    class Recording(SimpleAuthManager):
        def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
            asked.append((method, access_entity, details.id))
            return False

    user = SimpleAuthManagerUser(username="ops", role="admin")
    assert not access.can_rollback(user, "loan_default", Recording())
    assert not access.can_view(user, "loan_default", Recording())
    assert asked == [("POST", DagAccessEntity.RUN, "loan_default_training"), ("GET", None, "loan_default_training")]


def test_the_refusal_names_the_user_and_the_permission():
    message = access.refusal(SimpleAuthManagerUser(username="watcher", role="viewer"), "loan_default")
    assert "watcher may not roll back loan_default" in message and "trigger the DAG loan_default_training" in message
