"""Fixtures for the analyze / register tests: real runs through the real steps, made once per module.

Import the ``*_fixture`` functions into a test module to use them by their pytest
names, ``module_env`` and ``analyzed_run``. Training is the expensive part, so each
test module trains once (``analyzed_run``) and tests that need a variant *clone*
that run: a new run folder whose earlier steps' outputs are copied (or replaced)
instead of recomputed.
"""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import pytest

from mlpipe.core import spec, uris
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from mlpipe.store.runs import RESULT, Run
from tests.conftest import SPEC_PATH

# Fewer, faster boosting rounds than the production spec; still a real, early-stopped model.
FAST_TRAINING = {"training.num_boost_round": 300, "training.early_stopping_rounds": 30,
                 "training.params.eta": 0.1}
TRAINED = ("ingest", "split", "train", "analyze")


@cache
def _empty_mlflow_db(folder: Path) -> bytes:
    """An MLflow SQLite database with its schema created (migrations are slow: made once per session)."""
    from mlflow import MlflowClient

    path = folder / "template.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path.read_bytes()


@pytest.fixture(scope="module", name="module_env")
def module_env_fixture(tmp_path_factory):
    """This module's artifact store and MLflow tracking/registry database, set in the environment."""
    folder = tmp_path_factory.mktemp("pipeline")
    database = folder / "mlflow.db"
    database.write_bytes(_empty_mlflow_db(tmp_path_factory.getbasetemp()))
    env = {"MLPIPE_STORE": uris.normalize(folder / "store"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{database}",
           "MLPIPE_MLFLOW_ARTIFACTS": uris.normalize(folder / "mlartifacts"),
           "MLPIPE_PII_KEY": "test-key-not-a-secret"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


def start(run_id: str, base: spec.Spec | None = None, **overrides) -> str:
    """Start a run of the bundled spec (fast training) or of ``base``, with dotted-key overrides."""
    base = base or spec.with_overrides(spec.load(SPEC_PATH), FAST_TRAINING)
    return runs.start(spec.with_overrides(base, overrides) if overrides else base, run_id)


def run_steps(uri: str, steps: tuple[str, ...]) -> str:
    for step in steps:
        run_step(step, uri)
    return uri


def clone(source: str, run_id: str, steps: tuple[str, ...], **overrides) -> str:
    """A new run with ``source``'s spec (plus overrides) and copies of its ``steps`` folders."""
    uri = start(run_id, Run(source).spec, **overrides)
    for step in steps:
        shutil.copytree(uris.local_path(Run(source).path(step)), uris.local_path(Run(uri).path(step)))
    return uri


def replace_result(uri: str, step: str, **changes) -> None:
    """Change keys of a (copied) step result, e.g. to point it at a modified output."""
    result_uri = Run(uri).path(step, RESULT)
    storage.write_json(result_uri, {**storage.read_json(result_uri), **changes})


def detach_mlflow_run(uri: str) -> str:
    """Point a cloned run's train result at a new, empty MLflow run (same experiment), so that
    re-running analyze there logs nothing into the run it was cloned from."""
    from mlflow import MlflowClient

    client = MlflowClient()
    original = client.get_run(Run(uri).result("train")["mlflow_run_id"])
    replace_result(uri, "train", mlflow_run_id=client.create_run(original.info.experiment_id).info.run_id)
    return uri


@pytest.fixture(scope="module", name="analyzed_run")
def analyzed_run_fixture(module_env) -> str:
    """One run of the bundled spec through ingest, split, train and analyze."""
    return run_steps(start("analyzed"), TRAINED)
