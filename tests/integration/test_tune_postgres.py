"""An Optuna study on a real Postgres server, shared by two tuning workers running at the same time.

``tune_prepare`` creates the study in Postgres (``$MLPIPE_OPTUNA_STORAGE`` is a
``postgresql+psycopg2://`` URL), two ``python -m mlpipe step tune_trials`` processes
run their shards in parallel against it, and ``tune`` picks the best trial. The
study is then read back both through Optuna and with plain SQL.
"""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from mlpipe.core.results import TuneTrials
from mlpipe.core.settings import OPTUNA_STORAGE
from mlpipe.steps import run_step
from mlpipe.steps.tune import SHARD_ATTR, open_storage
from mlpipe.store.runs import Run
from tests.fixtures.analysis import run_steps, start

pytestmark = pytest.mark.integration
BUDGET, WORKERS = 6, 2
# Trials boost briefly: a few dozen rounds each.
QUICK = {"training.num_boost_round": 120, "training.early_stopping_rounds": 10}


@pytest.fixture
def optuna_postgres(postgres_server, monkeypatch) -> str:
    """A fresh Postgres database for Optuna, set as ``$MLPIPE_OPTUNA_STORAGE``; returns its URL."""
    url = postgres_server.create_database("optuna_tune_test")
    monkeypatch.setenv(OPTUNA_STORAGE, url)
    return url


def test_two_parallel_workers_fill_one_postgres_study_and_select_its_best(module_env, optuna_postgres,
                                                                          postgres_server):
    uri = run_steps(start("pg", **QUICK, **{"tuning.enabled": True, "tuning.trials": BUDGET,
                                            "tuning.workers": WORKERS}), ("ingest", "split"))
    prepared = run_step("tune_prepare", uri)
    assert prepared["storage"].startswith("postgresql+psycopg2://mlpipe:***@127.0.0.1:")
    assert postgres_server.password not in str(prepared)

    workers = [subprocess.Popen([sys.executable, "-m", "mlpipe", "step", "tune_trials", "--run", uri,
                                 "--shard", str(shard)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for shard in range(WORKERS)]
    try:
        outputs = [process.communicate(timeout=600)[0] for process in workers]
    finally:
        for process in workers:
            process.kill()
    for process, output in zip(workers, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]

    study = optuna.load_study(study_name=prepared["study"], storage=open_storage(optuna_postgres))
    trials = study.get_trials()
    assert len(trials) == BUDGET
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    # Workers claim trials in turn (mlpipe.steps.tune): together they ran the budget.
    by_shard = [sum(t.user_attrs[SHARD_ATTR] == shard for t in trials) for shard in range(WORKERS)]
    assert by_shard == [Run(uri).result(TuneTrials, shard).trials_run for shard in range(WORKERS)]
    assert sum(by_shard) == BUDGET
    # The two workers really ran at the same time: their trial windows overlap.
    spans = [(min(t.datetime_start for t in trials if t.user_attrs[SHARD_ATTR] == shard),
              max(t.datetime_complete for t in trials if t.user_attrs[SHARD_ATTR] == shard))
             for shard in range(WORKERS)]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans

    # The trials are rows of Postgres itself, not of some local fallback.
    connection = postgres_server.connect("optuna_tune_test")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT t.state, count(*) FROM trials t JOIN studies s USING (study_id) "
                           "WHERE s.study_name = %s GROUP BY t.state", (prepared["study"],))
            states = dict(cursor.fetchall())
    finally:
        connection.close()
    assert sum(states.values()) == BUDGET and set(states) <= {"COMPLETE", "PRUNED"}

    selected = run_step("tune", uri)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert selected["best_value"] == study.best_value == max(t.value for t in complete)
    assert selected["best_trial"] == study.best_trial.number
    assert selected["best_params"] == study.best_params
    assert selected["trials"] == {"complete": len(complete), "pruned": BUDGET - len(complete), "failed": 0}
