"""The typed step results (mlpipe.core.results): one model per step, strict parsing, and the round trip
model -> result.json -> run.result(Model)."""

from __future__ import annotations

import inspect

import pytest

from mlpipe import steps, summary
from mlpipe.core.names import Step
from mlpipe.core.results import MODELS, Ingest, Monitor, ResultError, StepResult, Train, TuneTrials, model_of
from mlpipe.orchestration import links
from mlpipe.steps import STEPS, run_step
from mlpipe.store import storage
from mlpipe.store.runs import RESULT, Run
from tests.result_examples import EXAMPLES, stored


def subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *subclasses(direct))]


def test_every_step_has_exactly_one_result_model():
    concrete = [model for model in subclasses(StepResult) if "step" in vars(model)]
    assert sorted(model.step for model in concrete) == sorted(STEPS)  # one model per step, no step twice
    assert {model.step: model for model in concrete} == MODELS
    for step in STEPS:
        assert model_of(step.value) is MODELS[step]
        assert inspect.signature(steps.function(step)).return_annotation == MODELS[step].__name__
    assert set(EXAMPLES) == set(STEPS)


@pytest.mark.parametrize("step", list(STEPS))
def test_a_result_round_trips_through_run_step_and_result_json(step, start_run, monkeypatch):
    uri = start_run()
    example = EXAMPLES[step]
    shard = example.shard if isinstance(example, TuneTrials) else None
    monkeypatch.setattr(steps, "function", lambda name: lambda run, **_: example)
    returned = run_step(step, uri, shard)
    run = Run(uri)
    path = run.path(step, RESULT) if shard is None else run.path(step, f"shard-{shard}", RESULT)
    written = storage.read_json(path)
    assert returned == written
    assert written == {"step": step.value, "run": uri, **example.model_dump(mode="json", exclude={"run", "seconds"},
                                                                            exclude_unset=True),
                       "seconds": written["seconds"]}
    parsed = run.result(MODELS[step], shard)
    assert parsed == example.model_copy(update={"run": uri, "seconds": written["seconds"]})
    assert parsed.stored() == written
    assert run.result(step, shard) == written  # by name: the raw JSON, for the runtimes' XCom


def test_a_skipped_tuning_writes_only_what_it_set(start_run, monkeypatch):
    from mlpipe.core.results import Tune

    monkeypatch.setattr(steps, "function", lambda name: lambda run: Tune(skipped=True, reason="no", best_params={}))
    written = run_step(Step.TUNE, start_run())
    assert set(written) == {"step", "run", "skipped", "reason", "best_params", "seconds"}


def write(uri: str, step: Step, result: dict) -> None:
    storage.write_json(Run(uri).path(step, RESULT), result)


def test_a_renamed_field_fails_to_parse_naming_both_names(start_run):
    uri = start_run()
    result = stored(Step.TRAIN, uri)
    result["model_dir"] = result.pop("model_folder")
    write(uri, Step.TRAIN, result)
    with pytest.raises(ResultError) as raised:
        Run(uri).result(Train)
    message = str(raised.value)
    assert message.startswith(f"{Run(uri).path('train', RESULT)}: not a valid Train result (step 'train'): ")
    assert "model_folder: Field required" in message and "model_dir: Extra inputs are not permitted" in message
    assert "\n" not in message


@pytest.mark.parametrize("field", ["snapshot", "run", "seconds"])
def test_a_missing_field_fails_to_parse_naming_it(start_run, field):
    uri = start_run()
    result = stored(Step.INGEST, uri)
    del result[field]
    write(uri, Step.INGEST, result)
    with pytest.raises(ResultError, match=f"{field}: Field required"):
        Run(uri).result(Ingest)


def test_a_wrong_type_or_another_steps_result_fails_to_parse(start_run):
    uri = start_run()
    write(uri, Step.INGEST, {**stored(Step.INGEST, uri), "rows": "many"})
    with pytest.raises(ResultError, match="rows: Input should be a valid integer"):
        Run(uri).result(Ingest)
    write(uri, Step.TRAIN, stored(Step.INGEST, uri))
    with pytest.raises(ResultError, match="step: 'ingest', not 'train'"):
        Run(uri).result(Train)


def test_a_step_returning_an_unknown_field_fails_at_once():
    with pytest.raises(ValueError, match="model_dir"):
        Train(**{**EXAMPLES[Step.TRAIN].model_dump(exclude={"run", "seconds"}), "model_dir": "x"})


def test_the_monitor_xcom_parses_with_what_the_runtime_added():
    xcom = {**stored(Step.MONITOR), "process_seconds": 2.5}
    assert Monitor.from_xcom(xcom) == Monitor.parse(stored(Step.MONITOR))
    with pytest.raises(ResultError, match="surprise: Extra inputs"):
        Monitor.from_xcom({**xcom, "surprise": 1})


def test_the_keys_links_read_are_fields_of_the_results():
    for step, fields in links.LINKED_FIELDS.items():
        assert set(fields) <= set(MODELS[step].model_fields), step


def test_the_summary_shows_a_result_it_cannot_read_instead_of_failing(start_run):
    uri = start_run()
    write(uri, Step.INGEST, {**stored(Step.INGEST, uri), "renamed": 1})
    lines = summary.summarize(uri).splitlines()
    assert lines[1].startswith("  data:") and "unreadable result: " in lines[1]
    assert "renamed: Extra inputs are not permitted" in lines[1]
    assert lines[2].endswith("not run")
