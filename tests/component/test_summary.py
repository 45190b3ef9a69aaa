"""mlpipe summary of a failed run: the failed step and its error line, and the last successful run.

One successful run goes through every real step of the training DAG (fast training, tuning
skipped, no model server); the failed runs fail for real, through ``run_step`` or the CLI.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from mlpipe import cli
from mlpipe.core import spec
from mlpipe.core.errors import EXIT_REFUSED
from mlpipe.core.results import Register, ResultError
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from mlpipe.store.runs import ERROR, RESULT, Run, StepNotFinished
from tests.conftest import DATA_PATH, SPEC_PATH
from tests.fixtures.analysis import FAST_TRAINING

PIPELINE = "loan_default"
# Thresholds any trained model passes: the successful run promotes its model.
LENIENT = {"thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0, "thresholds.fairness": None}
TRAINING_STEPS = ("ingest", "validate", "split", "validate_split", "tune_prepare", "tune_trials", "tune", "train",
                  "analyze", "register", "deploy")


def start(run_id: str, **overrides) -> str:
    resolved = spec.with_overrides(spec.load(SPEC_PATH), {**FAST_TRAINING, **LENIENT, **overrides})
    return runs.start(resolved, run_id, options={"skip_tuning": True})


@pytest.fixture(scope="module")
def succeeded(module_env) -> str:
    """A run of every step of the training DAG that promoted its model."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLPIPE_SERVER_URL", raising=False)
        uri = start("good")
        for step in TRAINING_STEPS:
            run_step(step, uri, 0 if step == "tune_trials" else None)
    assert Run(uri).result(Register).promoted is True
    return uri


def summary(capsys, *argv: str) -> list[str]:
    capsys.readouterr()
    assert cli.main(["summary", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_step_refusing_its_input_is_named_with_its_error(succeeded, tmp_path, capsys):
    loans = pd.read_csv(DATA_PATH).astype({"annual_inc": object})
    loans.loc[[2, 9, 40], "annual_inc"] = "unknown"
    loans.to_csv(tmp_path / "loans.csv", index=False)
    uri = start("refused", **{"data.source": (tmp_path / "loans.csv").as_uri()})
    assert cli.main(["step", "ingest", "--run", uri]) == 0
    capsys.readouterr()
    assert cli.main(["step", "validate", "--run", uri]) == EXIT_REFUSED
    printed = capsys.readouterr().err.splitlines()[-3:]  # the step's error, as the CLI prints it
    assert printed[0].startswith("mlpipe step: error: validate: 2 of 87 expectations failed")

    record = storage.read_json(Run(uri).path("validate", ERROR))
    assert record["step"] == "validate" and record["run"] == uri and record["kind"] == "refused input"
    assert record["error"].splitlines() == [printed[0].removeprefix("mlpipe step: error: "), *printed[1:]]
    assert datetime.fromisoformat(record["failed_at"]).tzinfo is not None
    assert not storage.exists(Run(uri).path("validate", RESULT))

    lines = summary(capsys, "--latest", PIPELINE)
    assert lines[0] == f"run {uri} (pipeline {PIPELINE})"
    assert lines[1].startswith("  data:         version ")
    assert lines[2] == f"  validation:   FAILED in validate (refused input): {record['error'].splitlines()[0]}"
    assert lines[3:5] == [" " * 18 + line for line in printed[1:]]
    assert "e.g. ['unknown' (3 rows)]" in lines[4]
    assert lines[5:-1] == [f"  {label + ':':<14}not run" for label in (
        "split", "split checks", "tuning", "training", "analysis", "registry", "deploy")]
    assert lines[-1] == f"last successful run: {succeeded}: {PIPELINE} version 1, promoted to champion"


def test_a_crashed_step_is_named_with_its_exception_and_a_retry_clears_it(succeeded, capsys):
    uri = start("crashed")
    run_step("ingest", uri)
    ingested = storage.read_json(Run(uri).path("ingest", RESULT))
    storage.write_json(Run(uri).path("ingest", RESULT), {**ingested, "snapshot": None})  # a bug's output
    with pytest.raises(ResultError, match="snapshot: Input should be a valid string"):
        run_step("validate", uri)
    record = storage.read_json(Run(uri).path("validate", ERROR))
    assert record["kind"] == "crash" and record["error"].startswith("mlpipe.core.results.ResultError: ")
    assert "\n" not in record["error"] and "Traceback" not in record["error"]
    lines = summary(capsys, "--run", uri)
    assert lines[2] == f"  validation:   FAILED in validate (crash): {record['error']}"
    assert lines[3] == "  split:        not run"
    assert lines[-1] == f"last successful run: {succeeded}: {PIPELINE} version 1, promoted to champion"

    storage.write_json(Run(uri).path("ingest", RESULT), ingested)  # fixed: the retry empties the folder
    run_step("validate", uri)
    assert storage.children(Run(uri).path("validate")) == ["report.html", RESULT, "validation.json"]
    lines = summary(capsys, "--run", uri)
    assert lines[2].startswith("  validation:   passed") and not any("FAILED" in line for line in lines)
    assert not lines[-1].startswith("last successful run")


def test_a_failed_shard_shows_on_its_section_and_the_latest_run_is_the_failed_one(succeeded, capsys):
    uri = start("shard_failed")
    for step in ("ingest", "validate", "split", "validate_split"):
        run_step(step, uri)
    with pytest.raises(StepNotFinished):  # run before tune_prepare: its study is not there
        run_step("tune_trials", uri, 0)
    lines = summary(capsys, "--latest", PIPELINE)
    assert lines[0] == f"run {uri} (pipeline {PIPELINE})"
    assert lines[5] == ("  tuning:       FAILED in tune_trials shard 0 (refused input): step 'tune_prepare' has not "
                        f"finished in run {uri} (no {RESULT})")
    assert lines[-1] == f"last successful run: {succeeded}: {PIPELINE} version 1, promoted to champion"
    assert summary(capsys, "--run", succeeded)[-1].startswith("  deploy:       skipped: $MLPIPE_SERVER_URL")


def test_without_an_earlier_success_the_summary_says_so(pipeline_env, capsys):
    uri = runs.start(spec.load(SPEC_PATH), "first")
    with pytest.raises(StepNotFinished):
        run_step("validate", uri)  # before ingest
    lines = summary(capsys, "--latest", PIPELINE)
    assert lines[2].startswith("  validation:   FAILED in validate (refused input): step 'ingest' has not finished")
    assert lines[-1] == f"no successful run of pipeline {PIPELINE} in {uri.rsplit('/', 1)[0]}"
