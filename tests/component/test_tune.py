"""The tuning steps for real: Optuna studies on a journal file / SQLite, XGBoost trials, MLflow child runs.

One module-scoped run is ingested and split once; each test starts its own run that reuses
those splits (a clone), so every study is new. Trials use the fast training settings of
:mod:`tests.fixtures.analysis` and budgets of a few trials; they are scored by the shipped
spec's cross-validation (``tuning.cv_folds``) unless a test sets ``tuning.cv_folds`` to ``None``
(train on train, score on validation).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import numpy as np
import optuna
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.entities import Param
from optuna.trial import TrialState
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from mlpipe.core.errors import Refused
from mlpipe.core.results import Split, TunePrepare, TuneTrials
from mlpipe.core.settings import OPTUNA_DIR, OPTUNA_STORAGE
from mlpipe.data import datasets
from mlpipe.data.features import labels, matrix, schema
from mlpipe.model.booster import booster_params, scale_pos_weight, tuned_training
from mlpipe.registry import tracking
from mlpipe.steps import run_step
from mlpipe.steps import tune as tune_module
from mlpipe.steps.train import tuning_result
from mlpipe.steps.tune import (
    PARENT_TAG,
    SHARD_ATTR,
    TRIAL_STATE_TAG,
    load_study,
    open_storage,
    redacted,
    storage_url,
    trials_budget,
)
from mlpipe.store import runs, storage
from mlpipe.store.runs import Run
from tests.fixtures.analysis import clone, replace_result, run_steps, start

SPLIT = ("ingest", "split")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Trials boost briefly: a few dozen rounds each.
QUICK = {"training.num_boost_round": 120, "training.early_stopping_rounds": 10}


@pytest.fixture(scope="module")
def split_run(module_env) -> str:
    """A run ingested and split once (the Optuna journal in this module's own folder: ``module_env``)."""
    return run_steps(start("split", **{"tuning.enabled": True}), SPLIT)  # whatever the shipped spec says


def tuning_run(source: str, run_id: str, options: dict | None = None, **overrides) -> str:
    """A new run with ``source``'s splits (and spec, plus overrides), started with trigger ``options``."""
    uri = clone(source, run_id, SPLIT, **QUICK, **overrides)
    runs.start(Run(uri).spec, run_id, options=options)
    return uri


def study_trials(uri: str) -> list[optuna.trial.FrozenTrial]:
    return load_study(Run(uri).result(TunePrepare)).get_trials()


def worker(uri: str, shard: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlpipe", "step", "tune_trials", "--run", uri,
                             "--shard", str(shard)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def child_runs(parent_run_id: str) -> list:
    experiment = MlflowClient().get_run(parent_run_id).info.experiment_id
    return MlflowClient().search_runs([experiment], f"tags.`{PARENT_TAG}` = '{parent_run_id}'")


def test_parallel_worker_processes_share_one_study_and_train_uses_the_best(split_run):
    uri = tuning_run(split_run, "parallel", **{"tuning.trials": 7, "tuning.workers": 2})
    # Tuning must never read the analysis set: point it at a file that is not Parquet at all.
    corrupt = Run(uri).path("split", "analysis.parquet")
    storage.write_bytes(corrupt, b"not parquet")
    replace_result(uri, "split", analysis=corrupt)

    prepared = run_step("tune_prepare", uri)
    assert prepared["study"] == f"loan_default-{Run(uri).run_id}"
    assert prepared["storage"] == storage_url() and prepared["storage"].startswith("journal://")
    assert (prepared["trials_budget"], prepared["workers"], prepared["warm_start"]) == (7, 2, "spec")
    workers = [worker(uri, shard) for shard in (0, 1)]
    for process in workers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]

    trials = study_trials(uri)
    assert len(trials) == 7 and all(t.state in FINISHED for t in trials)
    # No champion: trial 0 is the untuned spec (XGBoost's defaults where it sets none; gamma 0 clipped into range).
    assert trials[0].user_attrs["warm_start"] == "spec"
    assert trials[0].params == {"eta": 0.1, "max_depth": 2, "min_child_weight": 50, "subsample": 0.8,
                                "colsample_bytree": 0.7, "colsample_bylevel": 1, "gamma": 0.001, "lambda": 5.0,
                                "alpha": 1.0, "max_delta_step": 0}
    # Each worker ran the trials it claimed: together, the budget.
    by_shard = [sum(t.user_attrs[SHARD_ATTR] == shard for t in trials) for shard in (0, 1)]
    assert by_shard == [Run(uri).result(TuneTrials, shard).trials_run for shard in (0, 1)]
    assert sum(by_shard) == 7

    # A retried worker runs nothing more once the budget is done.
    assert run_step("tune_trials", uri, shard=0)["trials_run"] == 0
    assert len(study_trials(uri)) == 7

    selected = run_step("tune", uri)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert selected["best_value"] == max(t.value for t in complete)
    assert selected["best_rounds"] == trials[selected["best_trial"]].user_attrs["best_iteration"] + 1
    assert selected["objective"] == "4-fold cross-validated ROC AUC on train + validation"
    assert selected["trials"] == {"complete": len(complete), "pruned": 7 - len(complete), "failed": 0}
    space = Run(uri).spec.tuning.search_space
    assert set(selected["best_params"]) == set(space)
    for key, value in selected["best_params"].items():
        assert space[key].low <= value <= space[key].high, key
        assert isinstance(value, int) == space[key].integer, key

    children = child_runs(selected["tuning_run_id"])
    assert sorted(int(c.data.params["trial"]) for c in children) == list(range(7))
    for child in children:
        trial = trials[int(child.data.params["trial"])]
        assert child.data.tags[TRIAL_STATE_TAG] == trial.state.name
        assert float(child.data.params["eta"]) == pytest.approx(trial.params["eta"])
        if trial.state == TrialState.COMPLETE:
            assert child.data.metrics["validation_roc_auc"] == pytest.approx(trial.value)
    parent = MlflowClient().get_run(selected["tuning_run_id"])
    assert parent.data.tags[tracking.RUN_URI_TAG] == uri
    assert parent.data.params["objective"] == selected["objective"]
    assert parent.data.metrics["best_validation_roc_auc"] == pytest.approx(selected["best_value"])

    trained = run_step("train", uri)
    mlflow_run = MlflowClient().get_run(trained["mlflow_run_id"])
    assert trained["tuned"] is True and mlflow_run.data.params["tuned"] == "True"
    floor = math.ceil(1 / selected["best_params"]["eta"])  # the fewest rounds train keeps
    assert trained["num_trees"] == max(selected["best_rounds"], floor) and trained["round_rule"] == "tuned"
    assert mlflow_run.data.tags["mlpipe.tuning_run_id"] == selected["tuning_run_id"]
    for key, value in selected["best_params"].items():
        assert mlflow_run.data.params[key] == str(value), key


def held_out_auc(uri: str, trial: optuna.trial.FrozenTrial) -> float:
    """The trial's score recomputed apart from the step: each fold's booster, cut at the trial's best
    round, scored with scikit-learn on the fold's held-out rows; the mean over folds. Without
    ``tuning.cv_folds`` the one fold is train (held out: validation)."""
    run = Run(uri)
    frames = [datasets.read(run.result(Split).folder(part)) for part in ("train", "validation")]
    feature_schema = schema(frames[0], run.spec)
    features = pd.concat([matrix(frame, feature_schema) for frame in frames], ignore_index=True)
    y = np.concatenate([labels(frame, run.spec) for frame in frames])
    train_rows, tuning = len(frames[0]), run.spec.tuning
    folds = ([(np.arange(train_rows), np.arange(train_rows, len(y)))] if not tuning.cv_folds else
             StratifiedKFold(tuning.cv_folds, shuffle=True, random_state=tuning.seed).split(features, y))
    params = booster_params(tuned_training(run.spec.training, trial.params),
                            scale_pos_weight(train_rows, int(y[:train_rows].sum()), "auto"), "cpu")
    aucs = []
    for fit_rows, held_rows in folds:
        data = xgb.DMatrix(features.iloc[fit_rows], label=y[fit_rows], enable_categorical=True)
        booster = xgb.train(params, data, num_boost_round=trial.user_attrs["best_iteration"] + 1)
        held = xgb.DMatrix(features.iloc[held_rows], enable_categorical=True)
        aucs.append(roc_auc_score(y[held_rows], booster.predict(held)))
    return float(np.mean(aucs))


@pytest.mark.parametrize("folds", [None, 3])
def test_a_trial_scores_the_held_out_auc_at_its_best_round(split_run, folds):
    # No row or column sampling in trial 0 (the spec's params): xgboost.cv interleaves the folds' boosters,
    # which share XGBoost's random engine, so only unsampled folds can be rebuilt one by one.
    unsampled = {"training.params.subsample": 1.0, "training.params.colsample_bytree": 1.0}
    uri = tuning_run(split_run, f"score_{folds}", **unsampled, **{"tuning.trials": 2, "tuning.workers": 1,
                                                                  "tuning.cv_folds": folds})
    run_step("tune_prepare", uri)
    run_step("tune_trials", uri, shard=0)
    trials = study_trials(uri)
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        rounds = trial.intermediate_values  # each round's held-out AUC, as reported for pruning
        assert trial.user_attrs["best_iteration"] == max(rounds, key=lambda step: (rounds[step], -step))
        assert trial.value == rounds[trial.user_attrs["best_iteration"]]
    assert (trials[0].params["subsample"], trials[0].params["colsample_bytree"]) == (1.0, 1.0)
    assert trials[0].value == pytest.approx(held_out_auc(uri, trials[0]), abs=1e-9)


def test_too_many_folds_for_the_rare_class_is_rejected_naming_the_field(split_run):
    uri = tuning_run(split_run, "few_positives", **{"tuning.cv_folds": 5})
    for part, keep in (("train", 3), ("validation", 1)):  # 4 positives in train + validation
        frame = datasets.read(Run(uri).result(Split).folder(part))
        positive = labels(frame, Run(uri).spec) == 1
        smaller = Run(uri).path("split", f"{part}_few.parquet")
        storage.write_parquet(pd.concat([frame[positive].head(keep), frame[~positive]]), smaller)
        replace_result(uri, "split", **{part: smaller})
    run_step("tune_prepare", uri)
    with pytest.raises(Refused, match=r"tuning\.cv_folds: 5 stratified folds need at least 5 rows of each "
                                        r"class in train \+ validation; the rarer class has 4"):
        run_step("tune_trials", uri, shard=0)


def test_one_seeded_worker_is_reproducible_on_sqlite(split_run, tmp_path, monkeypatch):
    monkeypatch.setenv(OPTUNA_STORAGE, f"sqlite:///{tmp_path / 'optuna.db'}")
    histories = []
    for run_id in ("seeded_a", "seeded_b"):
        uri = tuning_run(split_run, run_id, **{"tuning.trials": 3, "tuning.workers": 1, "tuning.cv_folds": None})
        assert run_step("tune_prepare", uri)["storage"].startswith("sqlite:///")
        run_step("tune_trials", uri, shard=0)
        histories.append([(t.params, t.value, t.state) for t in study_trials(uri)])
    assert len(histories[0]) == 3 and histories[0] == histories[1]


def test_bad_trials_are_pruned_and_logged_as_pruned(split_run, monkeypatch):
    monkeypatch.setattr(tune_module, "PRUNE_STARTUP", 1)  # aggressive: compare from the second trial on
    monkeypatch.setattr(tune_module, "PRUNE_WARMUP", 0)
    uri = tuning_run(split_run, "pruned", **{"tuning.trials": 6, "tuning.workers": 1})
    run_step("tune_prepare", uri)
    run_step("tune_trials", uri, shard=0)
    trials = study_trials(uri)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and complete and len(trials) == 6
    assert all(t.last_step is not None for t in pruned)  # stopped by the pruner during boosting
    selected = run_step("tune", uri)
    assert selected["trials"]["pruned"] == len(pruned)
    states = {c.data.params["trial"]: c.data.tags[TRIAL_STATE_TAG] for c in child_runs(selected["tuning_run_id"])}
    assert {states[str(t.number)] for t in pruned} == {"PRUNED"}


def register_champion(name: str, params: dict[str, str]) -> int:
    """A registered model whose ``champion`` version comes from an MLflow run with ``params``."""
    client = MlflowClient()
    mlflow_run = client.create_run(tracking.experiment_id(name))
    client.log_batch(mlflow_run.info.run_id, params=[Param(key, value) for key, value in params.items()])
    client.create_registered_model(name)
    version = client.create_model_version(name, source=f"file:///nonexistent/{name}",
                                          run_id=mlflow_run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return int(version.version)


def test_warm_start_enqueues_the_champions_params_as_trial_zero(split_run):
    logged = {"eta": "0.05", "max_depth": "3", "min_child_weight": "20.0", "gamma": "0",  # 0: below the range
              "objective": "binary:logistic"}
    version = register_champion("loan_default_warm", logged)
    uri = tuning_run(split_run, "warm", model_name="loan_default_warm",
                     **{"tuning.trials": 2, "tuning.workers": 1})
    assert run_step("tune_prepare", uri)["warm_start"] == version
    run_step("tune_trials", uri, shard=0)
    first = study_trials(uri)[0]
    assert first.user_attrs["warm_start"] == version
    low_gamma = Run(uri).spec.tuning.search_space["gamma"].low
    assert {key: first.params[key] for key in ("eta", "max_depth", "min_child_weight", "gamma")} == {
        "eta": 0.05, "max_depth": 3, "min_child_weight": 20.0, "gamma": low_gamma}


@pytest.mark.parametrize(("options", "overrides", "reason"), [
    ({"skip_tuning": True}, {}, "skip_tuning was set"),
    ({}, {"tuning.enabled": False}, "tuning.enabled is false"),
])
def test_skipped_tuning_creates_nothing_and_train_keeps_the_spec_params(split_run, options, overrides, reason):
    uri = tuning_run(split_run, f"skip_{len(options)}", options=options, **overrides)
    prepared = run_step("tune_prepare", uri)
    assert prepared["skipped"] is True and reason in prepared["reason"]
    assert run_step("tune_trials", uri, shard=0)["trials_run"] == 0
    assert run_step("tune", uri)["best_params"] == {}
    assert f"loan_default-{Run(uri).run_id}" not in optuna.get_all_study_names(open_storage(storage_url()))
    assert tuning_result(Run(uri)) is None


@pytest.mark.parametrize(("option", "budget"), [(None, None), (0, None), (5, 5)])
def test_the_trial_budget_option_zero_means_the_specs(split_run, option, budget):
    options = {} if option is None else {"tuning_trials": option}
    run = Run(tuning_run(split_run, f"budget_{option}", options=options))
    assert trials_budget(run) == (budget or run.spec.tuning.trials) and run.spec.tuning.trials != 5


@pytest.mark.parametrize("trials", [-3, "many", 2.5, True])
def test_bad_trial_budget_option_is_rejected_before_anything_is_made(split_run, trials):
    uri = tuning_run(split_run, runs.safe_run_id(f"bad_budget_{trials}"), options={"tuning_trials": trials})
    with pytest.raises(Refused, match=f"trigger option tuning_trials: expected a whole number >= 0 "
                                        rf"\(0: the spec's tuning.trials\), got {trials!r}"):
        run_step("tune_prepare", uri)
    assert f"loan_default-{Run(uri).run_id}" not in optuna.get_all_study_names(open_storage(storage_url()))
    assert not storage.exists(Run(uri).path("tune_prepare", runs.RESULT))


def test_search_space_over_a_reserved_param_is_rejected(split_run):
    uri = tuning_run(split_run, "bad_space", **{"tuning.search_space.scale_pos_weight": {"low": 1, "high": 9}})
    with pytest.raises(Refused, match=r"tuning\.search_space: training\.params\.scale_pos_weight: set it with"):
        run_step("tune_prepare", uri)
    assert "loan_default-bad_space" not in optuna.get_all_study_names(open_storage(storage_url()))


def test_the_time_budget_is_one_deadline_and_no_complete_trial_fails_selection(split_run):
    uri = tuning_run(split_run, "deadline", **{"tuning.timeout_minutes": 0.0001, "tuning.workers": 2})
    run_step("tune_prepare", uri)
    time.sleep(0.05)
    assert run_step("tune_trials", uri, shard=1)["trials_run"] == 0
    with pytest.raises(Refused, match="no trial completed"):
        run_step("tune", uri)
    assert not storage.exists(Run(uri).path("tune", runs.RESULT))


def test_a_shard_outside_the_workers_is_rejected(split_run):
    uri = tuning_run(split_run, "bad_shard", **{"tuning.workers": 2})
    run_step("tune_prepare", uri)
    with pytest.raises(Refused, match="shard 2 is not one of the 2 workers"):
        run_step("tune_trials", uri, shard=2)
    assert study_trials(uri) == []  # no trial was claimed


def trial_record(uri: str) -> list[tuple]:
    """Each trial of the run's study, in number order: its params, value, state and round count."""
    return [(t.number, t.params, t.value, t.state, t.user_attrs.get("best_iteration")) for t in study_trials(uri)]


def test_parallel_workers_reach_the_same_trials_whatever_their_timing(split_run):
    """Two runs on the same data: two workers at once, then one after the other (as when Airflow runs the
    mapped tasks in turn). The trials, hence the best params and round count, are the same."""
    records, selected = [], []
    for run_id, parallel in (("timing_parallel", True), ("timing_in_turn", False)):
        uri = tuning_run(split_run, run_id, **{"tuning.trials": 6, "tuning.workers": 2})
        run_step("tune_prepare", uri)
        if parallel:
            for process in [worker(uri, shard) for shard in (0, 1)]:
                _, err = process.communicate(timeout=300)
                assert process.returncode == 0, err[-2000:]
        else:
            assert run_step("tune_trials", uri, shard=1)["trials_run"] == 6
            assert run_step("tune_trials", uri, shard=0)["trials_run"] == 0
        records.append(trial_record(uri))
        selected.append({key: run_step("tune", uri)[key] for key in ("best_params", "best_trial", "best_rounds")})
    assert len(records[0]) == 6 and records[0] == records[1]
    assert selected[0] == selected[1]


def test_storage_urls_never_show_credentials(monkeypatch, tmp_path):
    assert redacted("postgresql://optuna:s3cret@db:5432/optuna") == "postgresql://optuna:***@db:5432/optuna"
    monkeypatch.delenv(OPTUNA_STORAGE, raising=False)
    monkeypatch.setenv(OPTUNA_DIR, str(tmp_path))
    assert storage_url() == f"journal://{tmp_path / 'optuna.journal'}"
    assert os.environ.get(OPTUNA_STORAGE) is None
