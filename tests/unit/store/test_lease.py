"""The lease in the artifact store: exclusive creation, one holder at a time, expiry, a bounded wait.

Each test runs on a local folder and on a real S3 endpoint (moto_server).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest

from mlpipe.core import uris
from mlpipe.store import lease, s3, storage


def warnings_of(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


@pytest.fixture(params=["file", "s3"])
def folder(request, tmp_path) -> str:
    """A fresh lease folder: local, or in a bucket of the local S3 endpoint."""
    if request.param == "file":
        return uris.normalize(tmp_path / "leases" / "model")
    return f"s3://{request.getfixturevalue('s3_bucket')}/leases/model"


def test_create_exclusive_creates_once_and_keeps_the_first_content(folder):
    uri = uris.join(folder, "object.json")
    assert storage.create_exclusive(uri, b"first") is True
    assert storage.create_exclusive(uri, b"second") is False
    assert storage.read_bytes(uri) == b"first"
    assert storage.children(folder) == ["object.json"]  # no temporary file left beside it
    if folder.startswith("s3://"):  # encrypted like every write (the chart's bucket policy denies others)
        bucket, key = uris.bucket_key(uri)
        assert s3.client().head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_one_holder_at_a_time_among_racing_threads(folder):
    holders, most, lock = [], [0], threading.Lock()
    start = threading.Barrier(6)

    def work(worker: int) -> None:
        start.wait()
        for _ in range(3):
            with lease.held(folder, f"worker {worker}", ttl=60, wait=60):
                with lock:
                    holders.append(worker)
                    most[0] = max(most[0], len(holders))
                time.sleep(0.02)
                with lock:
                    holders.remove(worker)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    generation, state = lease.current(folder)
    assert (generation, state["state"]) == (36, "free")  # 18 takes and 18 releases, none lost


def test_a_busy_lease_fails_after_the_wait_naming_its_holder(folder):
    with lease.held(folder, "register of run A", ttl=60, wait=1):
        started = time.monotonic()
        with pytest.raises(lease.LeaseBusy, match=rf"^lease {folder} is held by register of run A until "
                                                  r"\S+; gave up after waiting 0.6 s$"):
            lease.acquire(folder, "register of run B", ttl=60, wait=0.6)
        assert time.monotonic() - started >= 0.6  # it did wait (no upper bound: a loaded machine is slow)
    assert lease.current(folder) == (2, {"state": "free", "owner": "register of run A",
                                         "released": lease.current(folder)[1]["released"]})


def test_an_expired_hold_is_taken_over_and_its_late_release_frees_nothing(folder, caplog):
    crashed = lease.acquire(folder, "crashed holder", ttl=0.5, wait=1)
    time.sleep(0.6)
    with caplog.at_level(logging.WARNING, logger="mlpipe.store.lease"):
        taker = lease.acquire(folder, "next holder", ttl=60, wait=1)
        lease.release(crashed)  # it comes back late: the lease is not its own any more
    assert taker.generation == crashed.generation + 1
    expired = lease._stamp(crashed.expires)
    process = f"host {socket.gethostname()}, pid {os.getpid()}"
    assert warnings_of(caplog) == [
        f"lease {folder}: crashed holder's hold ({process}) expired at {expired} without a release; taking it over",
        f"lease {folder}: crashed holder held it past its expiry ({expired}) and another owner took it over"]
    assert lease.current(folder)[1]["owner"] == "next holder"
    with pytest.raises(lease.LeaseBusy):  # still held by the taker
        lease.acquire(folder, "third", ttl=60, wait=0)


def test_the_same_owner_takes_over_the_hold_an_earlier_attempt_left(folder, caplog):
    lease.acquire(folder, "register step of run A", ttl=600, wait=0)  # its process died holding it
    with caplog.at_level(logging.WARNING, logger="mlpipe.store.lease"):
        retry = lease.acquire(folder, "register step of run A", ttl=600, wait=0)
    assert retry.generation == 2
    process = f"host {socket.gethostname()}, pid {os.getpid()}"
    assert warnings_of(caplog) == [f"lease {folder}: register step of run A's hold ({process}) was left by an "
                                   "earlier attempt without a release; taking it over"]
    with pytest.raises(lease.LeaseBusy, match="is held by register step of run A until"):
        lease.acquire(folder, "register step of run B", ttl=600, wait=0)


def test_a_hold_that_outlived_its_ttl_is_refused_by_confirm(folder):
    slow = lease.acquire(folder, "slow holder", ttl=0.5, wait=0)
    lease.confirm(slow)  # still its own
    time.sleep(0.6)
    with pytest.raises(lease.LeaseLost, match=r"slow holder's hold expired at .* \(now: nobody yet\)"):
        lease.confirm(slow)
    lease.acquire(folder, "next holder", ttl=60, wait=0)
    with pytest.raises(lease.LeaseLost, match=r"\(now: next holder \(held\)\); its work is dropped, to be retried"):
        lease.confirm(slow)
