"""The champion/challenger gate, the audit log and rollback: pure rules, then a real MLflow registry.

The registry tests use real models trained once per module on the same split, so all are
scored on the same analysis rows: the bundled spec's (``analyzed_run``), a weaker but sane one
(stumps, few rounds: ``crippled_run``) and a degenerate one (2 trees: ``degenerate_run``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlpipe import cli
from mlpipe.core import spec, uris
from mlpipe.core.errors import EXIT_REFUSED, Refused
from mlpipe.core.results import Analyze, Split, Train
from mlpipe.data import datasets
from mlpipe.registry import rollback as rollback_module
from mlpipe.registry.names import AUDIT_TAG, COMPARED_TAG, COMPARISON_TAG, FORCED_TAG, REPLACED_TAG
from mlpipe.registry.promotion import (
    FORCED,
    MAX_ROC_AUC_BELOW_BASELINE,
    MIN_SLICE_CLASS_ROWS,
    MIN_TREES,
    Decision,
    decide,
    disparate_impact,
    side_by_side,
)
from mlpipe.registry.rollback import ROLLED_BACK_TAG, rollback
from mlpipe.steps import run_step
from mlpipe.store import audit, lease, storage
from mlpipe.store.runs import OPTIONS, Run
from tests.conftest import SPEC_PATH
from tests.fixtures.analysis import TRAINED, clone, detach_mlflow_run, replace_result, run_steps

# Absolute thresholds any trained model passes and no fairness rule: each test turns on the check it is about.
LENIENT = {"thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0, "thresholds.fairness": None}


def aliases(name: str) -> dict[str, int]:
    return {alias: int(v) for alias, v in MlflowClient().get_registered_model(name).aliases.items()}


def tags(name: str, version: int) -> dict[str, str]:
    return MlflowClient().get_model_version(name, str(version)).tags


def register(source: str, run_id: str, model: str, options: dict | None = None, **overrides) -> dict:
    """Register a clone of the trained run ``source`` as a version of ``model``; the step's result."""
    uri = clone(source, run_id, TRAINED, model_name=model, **{**LENIENT, **overrides})
    if options:
        storage.write_json(uris.join(uri, OPTIONS), options)
    return run_step("register", uri)


@pytest.fixture(scope="module")
def crippled_run(analyzed_run) -> str:
    """The same split, trained as 12 stumps: a clearly worse model, but not a degenerate one."""
    uri = clone(analyzed_run, "crippled", ("ingest", "split"),
                **{"training.num_boost_round": 12, "training.params.max_depth": 1})
    return run_steps(uri, ("train", "analyze"))


@pytest.fixture(scope="module")
def degenerate_run(analyzed_run) -> str:
    """The same split, trained for two boosting rounds: what a noisy early stop once promoted."""
    uri = clone(analyzed_run, "degenerate", ("ingest", "split"), **{"training.num_boost_round": 2})
    return run_steps(uri, ("train", "analyze"))


# --- the rule, pure ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gated() -> spec.Spec:
    return spec.with_overrides(spec.load(SPEC_PATH), {
        "thresholds.min_roc_auc": 0.7, "thresholds.min_lift_over_baseline": 0.0,
        "thresholds.min_improvement_over_champion": 0.01, "thresholds.max_slice_roc_auc_drop": 0.05,
        "thresholds.fairness": {"column": "emp_length", "min_disparate_impact": 0.8, "min_group_rows": 50}})


def card(roc_auc: float, slices: dict[str, float], rates: dict[str, tuple[int, float]], **extra) -> dict:
    """A scorecard: slice name -> ROC AUC (100 rows, 20 positives), group -> (rows, approval rate)."""
    return {"roc_auc": roc_auc, "lift": 0.05, "threshold": 0.5, "baseline_roc_auc": roc_auc - 0.05, "trees": 200,
            "pr_auc": 0.2, "f1": 0.25, "positive_rate": 0.05, **extra,
            "slices": {"term": {value: {"rows": 100, "positives": 20, "roc_auc": auc}
                                for value, auc in slices.items()}},
            "fairness": {group: {"rows": rows, "approval_rate": rate} for group, (rows, rate) in rates.items()}}


FAIR = {"a": (100, 0.9), "b": (100, 0.8)}


def test_a_better_fair_challenger_is_promoted_with_the_numbers(gated):
    decision = decide(gated, card(0.80, {"t36": 0.80, "t60": 0.70}, FAIR),
                      card(0.78, {"t36": 0.79, "t60": 0.72}, FAIR, version=4))
    assert decision.promote is True
    assert decision.reasons == ["beats champion version 4 on this run's analysis set: roc_auc 0.8000 vs 0.7800 "
                                "(>= thresholds.min_improvement_over_champion 0.01), no slice drops more than 0.05, "
                                "disparate impact on emp_length 0.8889 >= 0.8"]
    assert decision.notes == []


def test_too_small_an_improvement_and_a_dropping_slice_are_each_named(gated):
    decision = decide(gated, card(0.785, {"t36": 0.80, "t60": 0.60}, FAIR),
                      card(0.78, {"t36": 0.79, "t60": 0.70}, FAIR, version=4))
    assert decision.promote is False
    assert decision.reasons == [
        "roc_auc 0.7850 vs champion version 4 0.7800 on this run's analysis set: improvement +0.0050 "
        "< thresholds.min_improvement_over_champion 0.01",
        "slice term=t60: roc_auc 0.6000 vs champion 0.7000 (drop 0.1000 > thresholds.max_slice_roc_auc_drop 0.05)"]


def test_slices_with_too_few_rows_of_a_class_are_not_compared_and_said_so(gated):
    challenger = card(0.80, {"t36": 0.80, "t60": 0.10}, FAIR)
    challenger["slices"]["term"]["t60"]["positives"] = MIN_SLICE_CLASS_ROWS - 1
    decision = decide(gated, challenger, card(0.78, {"t36": 0.79, "t60": 0.90}, FAIR, version=4))
    assert decision.promote is True
    assert decision.notes == [f"slice term=t60 not compared: 100 rows, {MIN_SLICE_CLASS_ROWS - 1} positives "
                              f"(needs {MIN_SLICE_CLASS_ROWS} of each class)"]


def test_unfair_approvals_are_refused_naming_both_groups(gated):
    rates = {"emp_1": (100, 0.9), "emp_2": (200, 0.7), "emp_3": (10, 0.1)}
    decision = decide(gated, card(0.80, {}, rates), None)
    assert decision.promote is False
    assert decision.reasons == ["fairness: disparate impact on emp_length 0.7778 < thresholds.fairness."
                                "min_disparate_impact 0.8: approval rate of group emp_length=emp_2 0.7000 vs group "
                                "emp_length=emp_1 0.9000"]
    assert decision.notes == ["fairness: group emp_length=emp_3 not compared: 10 rows "
                              "(< thresholds.fairness.min_group_rows 50)"]


def test_disparate_impact():
    groups = {"x": {"rows": 60, "approval_rate": 0.5}, "y": {"rows": 60, "approval_rate": 0.8},
              "z": {"rows": 5, "approval_rate": 0.0}}
    assert disparate_impact(groups, 50) == {"value": 0.625, "lowest": "x", "highest": "y", "skipped": ["z"]}
    assert disparate_impact(groups, 100)["value"] is None
    nobody = {name: {"rows": 60, "approval_rate": 0.0} for name in "ab"}
    assert disparate_impact(nobody, 50)["value"] == 1.0  # equally refused


def test_the_infra_check_is_not_overridden_by_force(gated):
    assert decide(gated, card(0.9, {}, FAIR), None, force=True, infra_error="boom") == Decision(
        promote=False, reasons=["infra check failed: boom", f"{FORCED} does not override the infra check"])


def test_a_degenerate_model_is_refused_naming_each_check_even_when_forced(gated):
    degenerate = card(0.70, {}, FAIR, trees=2, baseline_roc_auc=0.76, pr_auc=0.05, f1=0.046, positive_rate=0.052)
    decision = decide(gated, degenerate, None, force=True)
    assert decision.promote is False
    assert decision.reasons == [
        f"sanity: the model predicts with 2 trees < {MIN_TREES}",
        f"sanity: analysis roc_auc 0.7000 < the baseline's 0.7600 - {MAX_ROC_AUC_BELOW_BASELINE}",
        "sanity: analysis pr_auc 0.0500 <= the positive rate 0.0520 (random scores)",
        "sanity: analysis f1 0.0460 at the decision threshold <= 0.0989, the f1 of flagging every row",
        f"{FORCED} does not override the sanity check"]
    # One failing check is enough, and the sane rest of the card does not matter.
    assert decide(gated, card(0.80, {}, FAIR, trees=MIN_TREES - 1), None).reasons == [
        f"sanity: the model predicts with {MIN_TREES - 1} trees < {MIN_TREES}"]
    assert decide(gated, card(0.80, {}, FAIR, trees=MIN_TREES), None).promote is True


def test_side_by_side(gated):
    challenger = card(0.80, {"t36": 0.80}, FAIR)
    champion = card(0.78, {"t36": 0.83}, {"a": (100, 0.9), "b": (100, 0.45)}, version=4)
    laid_out = side_by_side(gated, challenger, champion)
    assert laid_out["champion_version"] == 4
    assert laid_out["metrics"]["roc_auc"] == {"challenger": 0.80, "champion": 0.78}
    assert laid_out["metrics"]["disparate_impact"] == {"challenger": round(0.8 / 0.9, 6), "champion": 0.5}
    assert laid_out["slices"] == [{"slice": "term=t36", "rows": 100, "positives": 20, "challenger": 0.80,
                                   "champion": 0.83, "drop": 0.03, "compared": True}]
    assert laid_out["fairness"]["groups"]["b"] == {"rows": 100, "challenger": 0.8, "champion": 0.45}
    assert side_by_side(gated, challenger, None)["metrics"]["roc_auc"] == {"challenger": 0.80, "champion": None}


# --- the audit log ------------------------------------------------------------------------------------

def test_audit_events_are_never_rewritten_and_come_back_in_order(module_env):
    event = {"action": "promoted", "model": "m", "version": 1}
    first, second = audit.record("audited", event), audit.record("audited", event)
    assert first != second
    assert Path(uris.local_path(first)).name.endswith("-m-v1-promoted.json")
    assert [entry["uri"] for entry in audit.history("audited")] == [first, second]
    assert audit.history("audited")[0] == {**event, "pipeline": "audited", "time": audit.history("audited")[0]["time"],
                                           "uri": first}
    assert audit.history("never_audited") == []


# --- the gate in register, against a real registry ------------------------------------------------

def last_event(pipeline: str = "loan_default") -> dict:
    return audit.history(pipeline)[-1]


def test_a_worse_challenger_is_not_promoted_and_the_record_says_why(analyzed_run, crippled_run):
    register(analyzed_run, "good_1", "worse_model")
    # A stale, flattering number on the champion must not matter: the gate re-scores it.
    MlflowClient().set_model_version_tag("worse_model", "1", "mlpipe.analysis_roc_auc", "0.999")
    # Slices may drop any amount: this test is about the overall ROC AUC.
    result = register(crippled_run, "bad_2", "worse_model", **{"thresholds.max_slice_roc_auc_drop": 1.0})
    good = Run(analyzed_run).result(Analyze).metrics["roc_auc"]
    bad = Run(crippled_run).result(Analyze).metrics["roc_auc"]
    assert bad < good
    assert (result["version"], result["promoted"], result["compared_with"]) == (2, False, 1)
    assert result["reasons"] == [f"roc_auc {bad:.4f} vs champion version 1 {good:.4f} on this run's analysis set: "
                                 f"improvement {bad - good:+.4f} < thresholds.min_improvement_over_champion 0.0"]
    assert aliases("worse_model") == {"champion": 1, "challenger": 2}
    recorded = tags("worse_model", 2)
    assert recorded["mlpipe.promoted"] == "false" and recorded[FORCED_TAG] == "false"
    assert recorded["mlpipe.promotion_reasons"] == result["reasons"][0]
    assert recorded[COMPARED_TAG] == "1"
    side = json.loads(recorded[COMPARISON_TAG])
    assert side["metrics"]["roc_auc"] == {"challenger": bad, "champion": good}  # same rows, re-scored
    assert side["champion_version"] == 1 and side["slices"]
    event = last_event()
    assert recorded[AUDIT_TAG] == event["uri"] == result["audit"]
    assert (event["action"], event["model"], event["version"], event["promoted"], event["forced"]) == (
        "not_promoted", "worse_model", 2, False, False)
    assert event["reasons"] == result["reasons"] and event["comparison"] == side
    assert event["run"].endswith("/bad_2") and event["data_version"] == Run(crippled_run).result(Train).data_version


def test_a_better_challenger_is_promoted_and_the_old_champion_kept_as_previous(analyzed_run, crippled_run):
    register(crippled_run, "bad_1", "better_model")
    result = register(analyzed_run, "good_2", "better_model")
    assert (result["promoted"], result["replaced"], result["aliases"]) == (True, 1, ["challenger", "champion"])
    assert result["reasons"][0].startswith("beats champion version 1 on this run's analysis set")
    assert aliases("better_model") == {"champion": 2, "challenger": 2, "previous-champion": 1}
    assert tags("better_model", 2)[REPLACED_TAG] == "1"
    assert (last_event()["action"], last_event()["replaced"]) == ("promoted", 1)


def test_a_slice_that_drops_too_far_refuses_promotion_naming_it(analyzed_run, crippled_run):
    register(analyzed_run, "good_1s", "sliced_model")
    result = register(crippled_run, "bad_2s", "sliced_model", **{"thresholds.min_improvement_over_champion": -1.0,
                                                                 "thresholds.max_slice_roc_auc_drop": 0.0})
    side = json.loads(tags("sliced_model", 2)[COMPARISON_TAG])
    dropped = [row["slice"] for row in side["slices"] if row["compared"] and row["drop"] > 0]
    assert dropped and result["promoted"] is False
    assert [reason.split(":")[0] for reason in result["reasons"]] == [f"slice {name}" for name in dropped]
    skipped = [row["slice"] for row in side["slices"] if not row["compared"]]
    assert [note.split(" not compared")[0] for note in result["notes"]] == [f"slice {name}" for name in skipped]
    assert aliases("sliced_model") == {"champion": 1, "challenger": 2}


def test_unfair_approvals_refuse_promotion_naming_the_groups(analyzed_run):
    result = register(analyzed_run, "unfair", "unfair_model", **{"thresholds.fairness": {
        "column": "verification_status", "min_disparate_impact": 1.0, "min_group_rows": 30}})
    assert result["promoted"] is False and aliases("unfair_model") == {"challenger": 1}
    groups = json.loads(tags("unfair_model", 1)[COMPARISON_TAG])["fairness"]["groups"]
    low = min(groups, key=lambda group: groups[group]["challenger"])
    high = max(groups, key=lambda group: groups[group]["challenger"])
    [reason] = result["reasons"]
    assert reason.startswith("fairness: disparate impact on verification_status ")
    assert f"group verification_status={low} {groups[low]['challenger']:.4f} vs group " \
           f"verification_status={high} {groups[high]['challenger']:.4f}" in reason


def test_the_gate_decides_the_same_whatever_the_batch_size(analyzed_run, crippled_run):
    fairness = {"thresholds.fairness": {"column": "verification_status", "min_disparate_impact": 0.5,
                                        "min_group_rows": 30}}
    comparisons = []
    for batch_rows in (250_000, 300):  # one batch, then several batches of the 1,972 analysis rows
        model = f"batched_{batch_rows}_model"
        register(analyzed_run, f"batched_{batch_rows}_1", model, **{"data.batch_rows": batch_rows})
        result = register(crippled_run, f"batched_{batch_rows}_2", model, **fairness,
                          **{"data.batch_rows": batch_rows, "thresholds.min_improvement_over_champion": -1.0})
        comparisons.append((result["reasons"], json.loads(tags(model, 2)[COMPARISON_TAG])))
    assert comparisons[0] == comparisons[1]
    side = comparisons[0][1]
    assert side["slices"] and side["fairness"]["groups"] and side["metrics"]["roc_auc"]["champion"] == Run(
        analyzed_run).result(Analyze).metrics["roc_auc"]


def test_a_fairness_column_missing_from_the_analysis_set_fails_clearly(analyzed_run):
    with pytest.raises(Refused, match=r"thresholds\.fairness\.column: column 'nope' is not in the analysis set"):
        register(analyzed_run, "no_column", "no_column_model", **{"thresholds.fairness": {"column": "nope"}})


def own_model_run(source: str, run_id: str, model: str) -> tuple[str, Path]:
    """A clone with its own MLflow model (what gets registered and served); the run and the model's booster file."""
    import mlflow

    from mlpipe.model.pyfunc import log_model
    from mlpipe.model.tabular import TabularModel

    uri = detach_mlflow_run(clone(source, run_id, TRAINED, model_name=model, **LENIENT))
    run = Run(uri)
    with mlflow.start_run(run_id=run.result(Train).mlflow_run_id):
        info = log_model(TabularModel.load(run.result(Train).model_folder),
                         next(datasets.batches(run.result(Split).analysis, 3)))
    replace_result(uri, "train", model_uri=f"runs:/{info.run_id}/model")
    folder = uris.local_path(MlflowClient().get_logged_model(info.model_id).artifact_location)
    [booster] = folder.rglob("model.ubj")
    return uri, booster


def test_a_challenger_that_fails_the_infra_check_is_not_promoted_even_when_forced(analyzed_run):
    uri, booster = own_model_run(analyzed_run, "broken", "broken_model")
    booster.write_bytes(b"not a booster")
    storage.write_json(uris.join(uri, OPTIONS), {"force_promote": True})
    result = run_step("register", uri)
    assert result["promoted"] is False and aliases("broken_model") == {"challenger": 1}
    assert result["reasons"][0].startswith("infra check failed: models:/broken_model/1 could not load and score "
                                           "20 analysis rows: XGBoostError")
    assert result["reasons"][1] == f"{FORCED} does not override the infra check"
    assert last_event()["reasons"] == result["reasons"]


def test_a_champion_that_cannot_be_rescored_fails_the_step_and_changes_nothing(analyzed_run):
    uri, booster = own_model_run(analyzed_run, "decayed_1", "decayed_model")
    run_step("register", uri)
    booster.write_bytes(b"truncated")  # the champion's files went bad after it was promoted
    events = len(audit.history("loan_default"))
    second = clone(analyzed_run, "decayed_2", TRAINED, model_name="decayed_model", **LENIENT)
    with pytest.raises(Refused, match=r"cannot re-score champion decayed_model version 1 to compare with it "
                                        r"\(XGBoostError: [^\n]*\); repair it or roll it back "
                                        r"\(mlpipe rollback decayed_model\)$"):
        run_step("register", second)
    assert aliases("decayed_model") == {"champion": 1, "challenger": 1}
    assert len(audit.history("loan_default")) == events
    assert not storage.exists(Run(second).path("register", "result.json"))
    assert [int(v.version) for v in MlflowClient().search_model_versions("name = 'decayed_model'")] == [1]  # 2 undone


def test_force_promote_promotes_a_worse_challenger_and_records_the_override(analyzed_run, crippled_run):
    register(analyzed_run, "good_1f", "forced_model")
    result = register(crippled_run, "bad_2f", "forced_model", options={"force_promote": True})
    assert (result["promoted"], result["forced"], result["replaced"]) == (True, True, 1)
    assert result["reasons"][0] == FORCED and "< thresholds.min_improvement_over_champion" in result["reasons"][1]
    assert aliases("forced_model") == {"champion": 2, "challenger": 2, "previous-champion": 1}
    assert tags("forced_model", 2)[FORCED_TAG] == "true"
    assert (last_event()["forced"], last_event()["reasons"]) == (True, result["reasons"])


def test_a_degenerate_challenger_is_not_promoted_even_when_forced_and_the_record_says_why(degenerate_run):
    result = register(degenerate_run, "degenerate_forced", "degenerate_model", options={"force_promote": True})
    assert Run(degenerate_run).result(Train).num_trees == 2
    assert (result["promoted"], result["forced"]) == (False, True)
    assert result["reasons"][0] == f"sanity: the model predicts with 2 trees < {MIN_TREES}"
    assert f"{FORCED} does not override the sanity check" in result["reasons"]
    assert aliases("degenerate_model") == {"challenger": 1}
    assert tags("degenerate_model", 1)["mlpipe.promoted"] == "false"
    assert (last_event()["action"], last_event()["reasons"]) == ("not_promoted", result["reasons"])


# --- rollback -------------------------------------------------------------------------------------------

def test_rollback_restores_previous_champions_one_by_one_and_audits_each(analyzed_run, crippled_run, capsys):
    register(crippled_run, "r1", "rolled_model")
    register(analyzed_run, "r2", "rolled_model")
    register(analyzed_run, "r3", "rolled_model")  # as good as version 2: promoted at a margin of 0
    assert aliases("rolled_model") == {"champion": 3, "challenger": 3, "previous-champion": 2}

    assert cli.main(["rollback", "rolled_model", "--reason", "bad calibration", "--by", "alice"]) == 0
    assert json.loads(capsys.readouterr().out)["to_version"] == 2
    assert aliases("rolled_model") == {"champion": 2, "challenger": 3, "previous-champion": 1}
    assert tags("rolled_model", 3)[ROLLED_BACK_TAG].endswith(" by alice: bad calibration")
    event = last_event()
    assert {key: event[key] for key in ("action", "model", "from_version", "to_version", "actor", "reason")} == {
        "action": "rollback", "model": "rolled_model", "from_version": 3, "to_version": 2, "actor": "alice",
        "reason": "bad calibration"}

    assert rollback("rolled_model", actor="bob") == {"model": "rolled_model", "from_version": 2, "to_version": 1,
                                                      "audit": audit.history("loan_default")[-1]["uri"]}
    assert aliases("rolled_model") == {"champion": 1, "challenger": 3}


def test_a_rollback_that_outlived_the_promotion_lease_moves_no_alias(analyzed_run, crippled_run, monkeypatch):
    register(crippled_run, "l1", "lapsed_model")
    register(analyzed_run, "l2", "lapsed_model")
    before, events = aliases("lapsed_model"), len(audit.history("loan_default"))
    assert before == {"champion": 2, "challenger": 2, "previous-champion": 1}
    monkeypatch.setenv("MLPIPE_PROMOTION_LEASE_SECONDS", "0.05")
    read = rollback_module.registered_model  # a registry slower than the lease: it expires while the rollback reads
    monkeypatch.setattr(rollback_module, "registered_model", lambda *args: (time.sleep(0.1), read(*args))[1])
    with pytest.raises(lease.LeaseLost, match=r"rollback by carol's hold expired at"):
        rollback("lapsed_model", actor="carol")
    assert aliases("lapsed_model") == before
    assert len(audit.history("loan_default")) == events
    assert ROLLED_BACK_TAG not in tags("lapsed_model", 2)


def test_rollback_without_a_previous_champion_fails_clearly_and_changes_nothing(analyzed_run, capsys):
    register(analyzed_run, "only", "lonely_model")
    before, events = aliases("lonely_model"), len(audit.history("loan_default"))
    assert cli.main(["rollback", "lonely_model"]) == EXIT_REFUSED
    assert "lonely_model has no previous-champion version" in capsys.readouterr().err
    assert aliases("lonely_model") == before == {"champion": 1, "challenger": 1}
    assert len(audit.history("loan_default")) == events
    assert ROLLED_BACK_TAG not in tags("lonely_model", 1)
    with pytest.raises(Refused, match="no registered model 'no_such_model'"):
        rollback("no_such_model")
