"""The README's commands work as written: every ``sh`` block that needs nothing but a fresh copy of the
project (its tracked files, a new ``.state``) runs in one, in README order, exits 0 and shows what the
README says it shows. (A block after a step the reader does by hand, such as bringing their own data
in "Add a model", is run by its section's own test: :func:`tests.readme.standalone`.)

The blocks come from README.md itself (:mod:`tests.readme`, which also states the fence rule), so this
test cannot drift from it. The quick start (``make run``) trains through Airflow; "Trigger a run with
options" runs ``airflow dags test`` by hand; "Monitor drift and quality" scores and monitors (~6 min in all).
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests import readme

pytestmark = pytest.mark.integration
QUICK_START = "mlpipe"  # the README's title: the quick start is the section before the first "##"
TRIGGER = "Trigger a run with options"
MONITOR = "Monitor drift and quality"
_LABEL = re.compile(r"  ([a-z][a-z ]*):\s")


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> list[tuple[readme.Block, subprocess.CompletedProcess[str]]]:
    """The README's standalone ``sh`` blocks run in order in one fresh copy, up to the first that fails."""
    project = readme.fresh_copy(tmp_path_factory.mktemp("readme") / "mlpipe")
    results = []
    for block in readme.standalone():
        results.append((block, readme.run_block(block.text, project)))
        if results[-1][1].returncode != 0:
            break
    return results


def output_of(ran, heading: str) -> str:
    """The output of the section's ``sh`` blocks, which must all have run and exited 0."""
    outputs = [out for block, out in ran if block.heading == heading]
    assert len(outputs) == len(readme.blocks(heading)) > 0, f"not every sh block under {heading!r} ran"
    assert all(out.returncode == 0 for out in outputs)
    return "".join(out.stdout for out in outputs)


def summary(text: str) -> list[str]:
    """The lines of a run summary in ``text`` (from ``run <uri> (pipeline <name>)`` up to the first line
    that is not indented), a wrapped line joined to the line it continues."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    found = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        if _LABEL.match(line):
            found.append(line)
        else:
            found[-1] += " " + line.strip()
    return found


def labels(lines: list[str]) -> list[str]:
    return ["run" if line.startswith("run ") else _LABEL.match(line).group(1) for line in lines]


def promotion(lines: list[str]) -> str:
    """The registry line's outcome, e.g. ``promoted to champion`` or ``kept the champion``."""
    [registry] = [line for line in lines if line.startswith("  registry:")]
    return registry.split("], ", 1)[1].split(":", 1)[0]


def test_every_fence_says_what_the_readme_test_does_with_it():
    unlabelled = [(block.heading, block.text.splitlines()[0]) for block in readme.fenced()
                  if block.lang not in readme.FENCES]
    assert not unlabelled, f"fence these README blocks with one of {readme.FENCES} (rule: tests/readme.py)"


def test_every_sh_block_exits_0(ran):
    for block, out in ran:
        assert out.returncode == 0, (f"README block under {block.heading!r} exited {out.returncode}:\n"
                                     f"{block.text}\n{out.stdout[-5000:]}")
    assert [block for block, _ in ran] == readme.standalone()


def test_quick_start_prints_the_readme_summary_and_promotes_a_champion(ran):
    [sample] = readme.blocks(QUICK_START, readme.OUTPUT)
    printed = summary(output_of(ran, QUICK_START))
    expected = summary(sample)
    assert labels(printed) == labels(expected), "\n".join(printed)
    assert promotion(printed) == promotion(expected) == "promoted to champion", "\n".join(printed)


def test_airflow_dags_test_by_hand_runs_the_training_dag(ran):
    log = output_of(ran, TRIGGER)
    assert re.search(r"Marking run <DagRun loan_default_training @ .*> successful", log), log[-3000:]
    assert "Traceback" not in log, log[-5000:]


def test_make_monitor_prints_the_readme_result(ran):
    [sample] = readme.blocks(MONITOR, readme.OUTPUT)
    status = sample.splitlines()[0].strip()  # "monitoring: ok: no drift beyond the spec's thresholds"
    assert status in output_of(ran, MONITOR)
