"""register: versions, tags and aliases in a real MLflow registry; the promotion rule; the run summary."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mlpipe import cli
from mlpipe.core import spec, uris
from mlpipe.core.errors import EXIT_REFUSED, Refused
from mlpipe.core.results import Analyze, Ingest, Register, Train
from mlpipe.registry.promotion import decide
from mlpipe.registry.tracking import DATA_VERSION_TAG, NOTES_TAG, RUN_URI_TAG
from mlpipe.steps import run_step
from mlpipe.store import audit, lease, storage
from mlpipe.store.runs import ERROR, OPTIONS, Run, StepNotFinished
from tests.conftest import SPEC_PATH
from tests.fixtures.analysis import TRAINED, clone, run_steps, start

# Thresholds any trained model passes: these tests are about the registry, not the model's quality.
LENIENT = {"thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0, "thresholds.fairness": None}


def versions(name: str) -> list[int]:
    return sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name = '{name}'"))


def aliases(name: str) -> dict[str, int]:
    return {alias: int(v) for alias, v in MlflowClient().get_registered_model(name).aliases.items()}


# --- the promotion rule, a pure function -------------------------------------------------------

def sane(metrics: dict) -> dict:
    """A challenger's scorecard with ``metrics`` and figures that pass the gate's sanity check (not under test
    here; see test_promotion_gate)."""
    return {"trees": 100, "baseline_roc_auc": 0.5, "positive_rate": 0.05, "pr_auc": 0.3, "f1": 0.3, **metrics}


@pytest.fixture(scope="module")
def thresholds() -> spec.Spec:
    return spec.with_overrides(spec.load(SPEC_PATH), {"thresholds.min_roc_auc": 0.7,
                                                      "thresholds.min_lift_over_baseline": 0.01,
                                                      "thresholds.fairness": None})


@pytest.mark.parametrize(
    ("metrics", "champion", "promote", "reasons"),
    [
        ({"roc_auc": 0.75, "lift": 0.02}, None, True, ["no champion yet and the spec thresholds pass"]),
        ({"roc_auc": 0.69, "lift": 0.02}, None, False,
         ["analysis roc_auc 0.6900 < thresholds.min_roc_auc 0.7"]),
        ({"roc_auc": 0.75, "lift": 0.0}, None, False,
         ["lift over baseline 0.0000 < thresholds.min_lift_over_baseline 0.01"]),
        ({"roc_auc": 0.6, "lift": -0.1}, None, False,
         ["thresholds.min_roc_auc", "thresholds.min_lift_over_baseline"]),
        ({"roc_auc": 0.9, "lift": 0.2}, {"version": 3, "roc_auc": 0.91}, False,
         ["roc_auc 0.9000 vs champion version 3 0.9100 on this run's analysis set: improvement -0.0100 "
          "< thresholds.min_improvement_over_champion 0.0"]),
        ({"roc_auc": 0.9, "lift": 0.2}, {"version": 3, "roc_auc": 0.9}, True,
         ["beats champion version 3 on this run's analysis set: roc_auc 0.9000 vs 0.9000"]),
        ({"roc_auc": 0.6, "lift": 0.2}, {"version": 3, "roc_auc": 0.5}, False, ["thresholds.min_roc_auc 0.7"]),
    ],
)
def test_decide(thresholds, metrics, champion, promote, reasons):
    decision = decide(thresholds, sane(metrics), champion)
    assert decision.promote is promote
    assert len(decision.reasons) == len(reasons)
    for got, expected in zip(decision.reasons, reasons, strict=True):
        assert expected in got


def test_force_keeps_the_reasons_it_overrides(thresholds):
    failing = sane({"roc_auc": 0.6, "lift": 0.02})
    forced = decide(thresholds, failing, None, force=True)
    assert forced.promote is True
    assert forced.reasons == ["forced by the force_promote trigger option",
                              "analysis roc_auc 0.6000 < thresholds.min_roc_auc 0.7"]
    passing = decide(thresholds, sane({"roc_auc": 0.9, "lift": 0.2}), None, force=True)
    assert passing.reasons == ["forced by the force_promote trigger option"]


def test_decide_is_pure(thresholds):
    metrics, champion = sane({"roc_auc": 0.9, "lift": 0.2}), {"version": 1, "roc_auc": 0.8}
    assert decide(thresholds, metrics, champion) == decide(thresholds, metrics, champion)
    assert metrics == sane({"roc_auc": 0.9, "lift": 0.2}) and champion == {"version": 1, "roc_auc": 0.8}


# --- the step, against a real MLflow registry -------------------------------------------------

def test_first_registration_is_challenger_and_champion_with_lineage_tags(analyzed_run):
    uri = clone(analyzed_run, "first", TRAINED, model_name="first_model", **LENIENT)
    result = run_step("register", uri)
    run = Run(uri)
    assert (result["model_name"], result["version"], result["aliases"], result["promoted"],
            result["champion_version"]) == ("first_model", 1, ["challenger", "champion"], True, 1)
    assert "no champion yet" in result["reasons"][0]
    assert aliases("first_model") == {"challenger": 1, "champion": 1}

    version = MlflowClient().get_model_version_by_alias("first_model", "champion")
    train, metrics = run.result(Train), run.result(Analyze).metrics
    assert version.run_id == train.mlflow_run_id
    tags = version.tags
    assert tags[DATA_VERSION_TAG] == run.result(Ingest).data_version == train.data_version
    assert tags[RUN_URI_TAG] == uri
    assert tags["mlpipe.mlflow_run_id"] == train.mlflow_run_id
    assert float(tags["mlpipe.analysis_roc_auc"]) == metrics["roc_auc"]
    assert float(tags["mlpipe.baseline_roc_auc"]) == metrics["baseline_roc_auc"]
    assert float(tags["mlpipe.lift"]) == metrics["lift"]
    assert float(tags["mlpipe.threshold"]) == metrics["threshold"]  # exact, not rounded
    assert tags["mlpipe.promoted"] == "true"
    assert tags["mlpipe.promotion_reasons"] == "; ".join(result["reasons"])


def test_a_second_run_is_challenger_and_the_champion_stays(analyzed_run):
    first = clone(analyzed_run, "one", TRAINED, model_name="two_runs", **LENIENT)
    run_step("register", first)
    # Retrained on the same data with the same seeds: as good as the champion, not better by the margin.
    second = run_steps(clone(analyzed_run, "two", ("ingest", "split"), model_name="two_runs", **LENIENT,
                             **{"thresholds.min_improvement_over_champion": 0.01}),
                       ("train", "analyze", "register"))
    result = Run(second).result(Register)
    assert Run(second).result(Train).mlflow_run_id != Run(first).result(Train).mlflow_run_id
    assert (result.version, result.aliases, result.promoted, result.champion_version) == (
        2, ["challenger"], False, 1)
    assert result.reasons == ["roc_auc {0:.4f} vs champion version 1 {0:.4f} on this run's analysis set: "
                              "improvement +0.0000 < thresholds.min_improvement_over_champion 0.01".format(
                                  Run(second).result(Analyze).metrics["roc_auc"])]
    assert result.compared_with == 1 and result.metrics["roc_auc"]["champion"] == result.metrics[
        "roc_auc"]["challenger"]
    assert aliases("two_runs") == {"champion": 1, "challenger": 2}
    tags = MlflowClient().get_model_version("two_runs", "2").tags
    assert (tags["mlpipe.promoted"], tags[RUN_URI_TAG]) == ("false", second)

    again = run_step("register", first)  # re-running the older run takes no alias from the newer one
    assert (again["version"], again["aliases"], again["champion_version"]) == (1, ["champion"], 1)
    assert versions("two_runs") == [1, 2]
    assert aliases("two_runs") == {"champion": 1, "challenger": 2}


def test_a_retried_register_keeps_the_first_decision(analyzed_run):
    first = clone(analyzed_run, "retry_one", TRAINED, model_name="retried", **LENIENT)
    run_step("register", first)
    second = run_steps(clone(analyzed_run, "retry_two", ("ingest", "split"), model_name="retried", **LENIENT),
                       ("train", "analyze", "register"))
    decided, aliases_before = Run(second).result(Register), aliases("retried")
    events = audit.history(Run(second).spec.name)

    again = run_step("register", second)  # e.g. the task was retried after the step had finished

    assert versions("retried") == [1, 2] and aliases("retried") == aliases_before
    assert audit.history(Run(second).spec.name) == events  # no second audit event
    keys = ("version", "promoted", "reasons", "compared_with", "replaced", "metrics", "audit", "aliases")
    assert {k: again[k] for k in keys} == {k: getattr(decided, k) for k in keys}


def test_failing_thresholds_register_a_challenger_that_is_not_champion(analyzed_run):
    uri = clone(analyzed_run, "strict", TRAINED, model_name="strict_model",
                **{"thresholds.min_roc_auc": 0.99})
    result = run_step("register", uri)
    assert (result["version"], result["aliases"], result["promoted"], result["champion_version"]) == (
        1, ["challenger"], False, None)
    assert "< thresholds.min_roc_auc 0.99" in result["reasons"][0]
    assert aliases("strict_model") == {"challenger": 1}
    tags = MlflowClient().get_model_version("strict_model", "1").tags
    assert tags["mlpipe.promoted"] == "false"
    assert "thresholds.min_roc_auc 0.99" in tags["mlpipe.promotion_reasons"]


def test_force_promote_overrides_failing_thresholds_and_is_recorded(analyzed_run):
    uri = clone(analyzed_run, "forced", TRAINED, model_name="forced_model", **{"thresholds.min_roc_auc": 0.99})
    storage.write_json(uris.join(uri, OPTIONS), {"force_promote": True, "notes": "regulator asked"})
    result = run_step("register", uri)
    assert (result["promoted"], result["aliases"]) == (True, ["challenger", "champion"])
    assert result["reasons"][0] == "forced by the force_promote trigger option"
    assert "< thresholds.min_roc_auc 0.99" in result["reasons"][1]
    tags = MlflowClient().get_model_version("forced_model", "1").tags
    assert tags["mlpipe.promoted"] == "true"
    assert tags["mlpipe.promotion_reasons"].startswith("forced by the force_promote trigger option; analysis")
    assert tags[NOTES_TAG] == "regulator asked"


def test_a_retry_finishes_a_recorded_decision_without_deciding_again(analyzed_run):
    uri = clone(analyzed_run, "retried", TRAINED, model_name="retried_model", **LENIENT)
    first = run_step("register", uri)
    client = MlflowClient()
    # As if the first attempt died after recording its decision in the audit log, before carrying it out.
    for alias in ("champion", "challenger"):
        client.delete_registered_model_alias("retried_model", alias)
    for tag in ("mlpipe.promotion_audit", "mlpipe.promoted", "mlpipe.promotion_reasons"):
        client.delete_model_version_tag("retried_model", "1", tag)
    second = run_step("register", uri)
    assert versions("retried_model") == [1]
    assert {**second, "seconds": 0} == {**first, "seconds": 0}  # the same decision, the same audit entry
    assert [e["uri"] for e in audit.history(Run(uri).spec.name) if e["model"] == "retried_model"] == [first["audit"]]
    assert aliases("retried_model") == {"challenger": 1, "champion": 1}
    tags = client.get_model_version("retried_model", "1").tags
    assert (tags["mlpipe.promotion_audit"], tags["mlpipe.promoted"], tags["mlpipe.promotion_reasons"]) == (
        first["audit"], "true", "; ".join(first["reasons"]))


def test_a_gate_that_outlived_the_promotion_lease_decides_nothing_and_the_retry_decides_once(analyzed_run,
                                                                                               monkeypatch):
    uri = clone(analyzed_run, "slow_gate", TRAINED, model_name="slow_gate_model", **LENIENT)
    monkeypatch.setenv("MLPIPE_PROMOTION_LEASE_SECONDS", "0.01")  # the gate takes longer than that
    with pytest.raises(lease.LeaseLost, match=r"register step of run .*slow_gate's hold expired at"):
        run_step("register", uri)
    assert aliases("slow_gate_model") == {}
    assert [e for e in audit.history(Run(uri).spec.name) if e["model"] == "slow_gate_model"] == []
    monkeypatch.delenv("MLPIPE_PROMOTION_LEASE_SECONDS")
    result = run_step("register", uri)
    assert (result["version"], result["promoted"]) == (1, True) and versions("slow_gate_model") == [1]
    assert [e["uri"] for e in audit.history(Run(uri).spec.name) if e["model"] == "slow_gate_model"] == [
        result["audit"]]


def test_register_before_analyze_fails_and_registers_nothing(analyzed_run):
    uri = clone(analyzed_run, "unanalyzed", ("ingest", "split", "train"), model_name="unanalyzed_model")
    with pytest.raises(StepNotFinished, match="step 'analyze' has not finished"):
        run_step("register", uri)
    assert MlflowClient().search_registered_models("name = 'unanalyzed_model'") == []
    assert storage.children(Run(uri).path("register")) == [ERROR]  # how it failed, nothing else


@pytest.mark.parametrize(("field", "override"), [("thresholds.fairness.column",
                                                    {"thresholds.fairness.column": "emp_title"}),
                                                   ("slices", {"slices": ["term", "emp_title"]})])
def test_a_column_the_gate_needs_and_the_data_lacks_registers_nothing(analyzed_run, field, override):
    # as if the spec changed after analyze: ingest refuses such a spec, register must not half-do it either
    uri = clone(analyzed_run, f"lacking_{field}", TRAINED, model_name="lacking_model", **override)
    with pytest.raises(Refused, match=rf"{field}: column 'emp_title' is not in the analysis set"):
        run_step("register", uri)
    assert MlflowClient().search_registered_models("name = 'lacking_model'") == []


def test_a_register_refused_inside_the_gate_deletes_the_version_it_created(analyzed_run, monkeypatch):
    from mlpipe.steps import register as register_step

    uri = clone(analyzed_run, "refused_gate", TRAINED, model_name="refused_model", **LENIENT)
    run_step("register", clone(analyzed_run, "kept_first", TRAINED, model_name="refused_model", **LENIENT))

    def refused(*args, **kwargs):  # a refused input found only once the version exists
        raise Refused("the analysis set cannot be scored")

    monkeypatch.setattr(register_step, "gate", refused)
    with pytest.raises(Refused, match="the analysis set cannot be scored"):
        run_step("register", uri)
    assert versions("refused_model") == [1] and aliases("refused_model") == {"challenger": 1, "champion": 1}
    monkeypatch.undo()
    retried = run_step("register", uri)  # the retry registers afresh, once (MLflow never reuses a number)
    assert versions("refused_model") == [1, retried["version"]] and retried["version"] > 1


# --- the run summary ------------------------------------------------------------------------------

def test_summary_of_a_registered_run(analyzed_run, capsys):
    uri = clone(analyzed_run, "summarized", TRAINED, model_name="summarized_model", **LENIENT)
    register = run_step("register", uri)
    analysis = Run(uri).result(Analyze).metrics
    assert cli.main(["summary", "--run", uri]) == 0
    text = capsys.readouterr().out
    assert Run(uri).result(Ingest).data_version in text
    assert f"ROC AUC {analysis['roc_auc']:.4f}" in text and f"PR AUC {analysis['pr_auc']:.4f}" in text
    assert f"F1 {analysis['f1']:.4f} @ threshold {analysis['threshold']:.4f}" in text
    assert f"baseline ROC AUC {analysis['baseline_roc_auc']:.4f}, lift {analysis['lift']:+.4f}" in text
    assert "summarized_model version 1 [challenger, champion], promoted to champion" in text
    assert register["reasons"][0] in text
    assert "validation:   not run" in text


def test_summary_shows_missing_steps_as_not_run(module_env, capsys):
    uri = start("nothing_yet")
    assert cli.main(["summary", "--run", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run {uri} (pipeline loan_default)"
    assert len(lines) == 10 and all(line.endswith(" not run") for line in lines[1:])


def test_summary_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["summary", "--run", str(tmp_path)]) == EXIT_REFUSED
    assert "not a pipeline run folder (no spec.json)" in capsys.readouterr().err
