"""Faults of real step processes: an S3 outage in the middle of a step, one that outlasts the retry deadline,
and a step killed mid-write.

The S3 endpoint is the real moto_server, reached by the step through :class:`tests.faults.CuttableProxy`
(the test itself watches moto directly). Every step here is compared object by object (sha256) with an
uninterrupted run of the same step in another run folder: steps are deterministic for a seed.
Takes about a minute (the outage alone is 20 s).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import numpy as np
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from mlpipe.core import spec, uris
from mlpipe.core.errors import EXIT_UNAVAILABLE
from mlpipe.core.results import Split
from mlpipe.data import datasets
from mlpipe.model.baseline import load_baseline
from mlpipe.orchestration.runtimes import LocalStepOperator
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from mlpipe.store.runs import RESULT, Run, StepNotFinished
from tests.comparison import comparable
from tests.conftest import SPEC_PATH
from tests.faults import CuttableProxy

OUTAGE_SECONDS = 20
BATCH_ROWS = 200  # the bundled data in 50 batches: split reads 50 parts and writes ~150
TRAIN_BATCH_ROWS = 2000  # train reads its splits in several passes: ~5 parts each keep it short
# skops writes the baseline's arrays under names made of Python object ids, in a zip with the time of writing:
# the file differs from run to run, so it is compared by what it computes instead.
NOT_BYTE_DETERMINISTIC = ("baseline/pipeline.skops",)
SECRET = "secret-never-logged-5f3a"  # moto takes any credentials


def tree_hashes(uri: str) -> dict[str, str]:
    """sha256 of every object under the folder ``uri`` (but result.json), by path relative to it."""
    hashes = {}
    for name in storage.children(uri):
        child = uris.join(uri, name)
        if inner := tree_hashes(child):
            hashes.update({f"{name}/{path}": digest for path, digest in inner.items()})
        elif name != RESULT:
            hashes[name] = hashlib.sha256(storage.read_bytes(child)).hexdigest()
    return hashes


def assert_same_outputs(step: str, run_uri: str, reference_uri: str) -> int:
    """The step's objects and result in ``run_uri`` equal those of ``reference_uri``; returns how many objects."""
    hashes, expected = ({path: digest for path, digest in tree_hashes(Run(uri).path(step)).items()
                         if path not in NOT_BYTE_DETERMINISTIC} for uri in (run_uri, reference_uri))
    assert hashes == expected
    assert (comparable(Run(run_uri).result(step), {run_uri: "<run>"})
            == comparable(Run(reference_uri).result(step), {reference_uri: "<run>"}))
    return len(hashes)


def step_command(step: str, run_uri: str) -> list[str]:
    return [sys.executable, "-m", "mlpipe", "step", step, "--run", run_uri]


@contextlib.contextmanager
def running(command: list[str], **options) -> Iterator[subprocess.Popen]:
    """A process that is killed when the block leaves it running (a failed assertion)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, **options)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_for_parts(folder: str, process: subprocess.Popen, timeout: float = 60) -> list[str]:
    """The names in ``folder`` once there are some, while ``process`` still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the step ended (status {process.returncode}) before it was interrupted"
        if names := storage.children(folder):
            return names
        time.sleep(0.02)
    pytest.fail(f"no part appeared in {folder} within {timeout}s")


def start_runs(store: str, run_ids: tuple[str, str], earlier: tuple[str, ...], batch_rows: int) -> list[str]:
    """Runs of the bundled spec with small batches (many parts) and few boosting rounds, the ``earlier`` steps done."""
    resolved = spec.with_overrides(spec.load(SPEC_PATH), {"data.batch_rows": batch_rows, "training.num_boost_round": 60,
                                                          "training.early_stopping_rounds": 20})
    uris = [runs.start(resolved, run_id, store=store) for run_id in run_ids]
    for uri in uris:
        for step in earlier:
            run_step(step, uri)
    return uris


def test_split_survives_a_20s_s3_outage_and_writes_what_an_uninterrupted_run_writes(pipeline_env, s3_bucket,
                                                                                    s3_endpoint):
    reference, interrupted = start_runs(f"s3://{s3_bucket}/store", ("reference", "interrupted"), ("ingest",),
                                        BATCH_ROWS)
    moto = urlparse(s3_endpoint)
    proxy = CuttableProxy((moto.hostname, moto.port))
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url, "MLPIPE_S3_RETRY_SECONDS": "60",
           "AWS_SECRET_ACCESS_KEY": SECRET}
    try:
        subprocess.run(step_command("split", reference), env=env, check=True, capture_output=True)
        started = time.monotonic()
        with running(step_command("split", interrupted), env=env, stderr=subprocess.PIPE, text=True) as step:
            wait_for_parts(Run(interrupted).path("split", "train"), step)
            with proxy.outage():
                cut = time.monotonic()
                while time.monotonic() - cut < OUTAGE_SECONDS:
                    assert step.poll() is None, "the step gave up while S3 was down"
                    with pytest.raises(StepNotFinished, match="step 'split' has not finished"):
                        Run(interrupted).result(Split)
                    time.sleep(0.5)
            _, log = step.communicate(timeout=120)
        seconds = time.monotonic() - started
    finally:
        proxy.close()
    assert step.returncode == 0, log
    assert "retrying in" in log
    assert SECRET not in log
    assert Run(interrupted).result(Split).seconds >= OUTAGE_SECONDS
    compared = assert_same_outputs("split", interrupted, reference)
    assert compared == sum(Run(reference).result(Split).parts.values())
    print(f"split survived a {OUTAGE_SECONDS}s S3 outage: {seconds:.1f}s in all, {compared} objects equal")


@pytest.mark.parametrize(("step", "earlier", "batch_rows"), [
    ("ingest", (), BATCH_ROWS), ("split", ("ingest",), BATCH_ROWS), ("train", ("ingest", "split"), TRAIN_BATCH_ROWS)])
def test_a_step_killed_mid_write_and_rerun_writes_what_an_uninterrupted_run_writes(step, earlier, batch_rows,
                                                                                    pipeline_env):
    reference, killed = start_runs(pipeline_env["MLPIPE_STORE"], ("reference", "killed"), earlier, batch_rows)
    subprocess.run(step_command(step, reference), check=True, capture_output=True)
    watched = {"ingest": ("ingest", "snapshot"), "split": ("split", "train"), "train": ("train",)}[step]
    with running(step_command(step, killed), stderr=subprocess.DEVNULL) as process:
        wait_for_parts(Run(killed).path(*watched), process)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    with pytest.raises(StepNotFinished, match=f"step '{step}' has not finished"):
        Run(killed).result(step)
    folder = uris.local_path(Run(killed).path(step))
    leftover = folder / ".part-00000.parquet.killed"  # what a write cut between its temp file and rename leaves
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a part")
    subprocess.run(step_command(step, killed), check=True, capture_output=True)
    assert not [path for path in folder.rglob(".*")], "temporary files left in the step's folder"
    compared = assert_same_outputs(step, killed, reference)
    assert compared > 0
    if step == "train":
        validation = datasets.read(Run(reference).result(Split).validation)
        scores = [load_baseline(Run(uri)).scores(validation) for uri in (killed, reference)]
        np.testing.assert_array_equal(*scores)
    print(f"{step}: killed mid-write, rerun: {compared} objects equal")


def test_a_step_whose_store_stays_down_past_the_retry_deadline_fails_its_task_for_a_retry(pipeline_env, s3_bucket,
                                                                                          s3_endpoint, monkeypatch):
    run_uri = runs.start(spec.load(SPEC_PATH), "outage", store=f"s3://{s3_bucket}/store")
    moto = urlparse(s3_endpoint)
    proxy = CuttableProxy((moto.hostname, moto.port))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("MLPIPE_S3_RETRY_SECONDS", "2")
    operator = LocalStepOperator(task_id="ingest_data", step="ingest", run_uri=run_uri)
    try:
        proxy.cut()
        done = subprocess.run(step_command("ingest", run_uri), capture_output=True, text=True, timeout=300)
        with pytest.raises(AirflowException) as failed:  # the runtime's view of the same step
            operator.execute({"params": {}})
    finally:
        proxy.close()
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr  # 3: unavailable, not 2: refused input
    assert "S3 is still unavailable at the retry deadline ($MLPIPE_S3_RETRY_SECONDS)" in done.stderr
    assert not isinstance(failed.value, AirflowFailException)  # so Airflow retries the task
    assert str(failed.value) == f"step ingest failed with exit status {EXIT_UNAVAILABLE}"
