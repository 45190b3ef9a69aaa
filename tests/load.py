"""A steady load on a running model server, with a champion change in the middle: failures, latency, RSS.

:func:`run_load` sends POST /predict at a fixed rate (open loop: request *i* leaves at
``start + i / rate`` whatever the answers before it took, so a slow server cannot slow the load
down), each with one of the prepared bodies (:func:`request_bodies`: 1 to 10 records), for a
warm-up and then ``duration`` seconds. Halfway through the measured part it calls ``change`` (in
a thread: e.g. move the ``@champion`` alias to another version) and the server picks the new
version up by itself. Every second it samples the server process's RSS (psutil).

The :class:`LoadReport` counts requests and failures (any answer but a 200, or a connection
error or timeout), the latency percentiles of the answered requests (send to full response),
which model version answered how often (``X-Model-Version``) and when the new one first did,
and the RSS at the end of the warm-up, its maximum afterwards and at the end. Used by
``tests/integration/test_server_load.py`` (60 s) and ``tests/benchmarks/bench_load.py`` (5 min).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

MIB = 2**20
VERSION_HEADER = "X-Model-Version"


@dataclass
class LoadReport:
    """What a load run saw (latencies in milliseconds, RSS in MiB, times in seconds from the start)."""

    rate: float
    seconds: float
    requests: int = 0
    failures: int = 0
    failure_examples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    versions: Counter = field(default_factory=Counter)
    change_at: float | None = None
    new_version_first_at: float | None = None
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (time, RSS) every second
    warm_at: float = 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (1-99) of the latencies."""
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    @property
    def rss_start(self) -> float:
        """The RSS at the end of the warm-up."""
        return next(rss for at, rss in self.rss_mib if at >= self.warm_at)

    @property
    def rss_max(self) -> float:
        return max(rss for at, rss in self.rss_mib if at >= self.warm_at)

    @property
    def rss_end(self) -> float:
        return self.rss_mib[-1][1]

    @property
    def rss_growth(self) -> float:
        """How far the RSS rose above its after-warm-up value at any time (max - start)."""
        return self.rss_max - self.rss_start

    def summary(self) -> str:
        switch = (f"{self.new_version_first_at - self.change_at:.1f} s after the change"
                  if self.new_version_first_at is not None and self.change_at is not None else "never")
        return "\n".join([
            f"requests {self.requests} in {self.seconds:.0f} s ({self.requests / self.seconds:.1f}/s, aimed at "
            f"{self.rate:g}/s), failures {self.failures}",
            f"latency p50 {self.percentile(50):.1f} ms, p99 {self.percentile(99):.1f} ms, "
            f"max {max(self.latencies_ms):.1f} ms",
            f"versions answering: {dict(sorted(self.versions.items()))}; the new champion first answered {switch}",
            f"server RSS after warm-up {self.rss_start:.1f} MiB, max {self.rss_max:.1f}, end {self.rss_end:.1f}, "
            f"growth {self.rss_growth:.1f} MiB",
            *(f"failure: {example}" for example in self.failure_examples),
        ])


def request_bodies(records: Sequence[dict[str, Any]], count: int = 200, most: int = 10,
                   seed: int = 0) -> list[bytes]:
    """``count`` /predict bodies, each of 1 to ``most`` records drawn from ``records`` (seeded)."""
    draw = random.Random(seed)
    return [json.dumps({"records": draw.sample(list(records), draw.randint(1, most))}).encode()
            for _ in range(count)]


def run_load(url: str, pid: int, bodies: Sequence[bytes], *, duration: float, rate: float = 50.0,
             warmup: float = 5.0, change: Callable[[], None] | None = None, old_version: str = "1") -> LoadReport:
    """Load ``url``/predict (server process ``pid``) for ``warmup`` + ``duration`` seconds at ``rate``
    requests per second, calling ``change`` halfway through the measured part; answers by versions
    other than ``old_version`` count as the new champion's."""
    report = LoadReport(rate=rate, seconds=warmup + duration, warm_at=warmup)
    asyncio.run(_load(url, psutil.Process(pid), bodies, report, change, old_version))
    return report


async def _load(url: str, server: psutil.Process, bodies: Sequence[bytes], report: LoadReport,
                change: Callable[[], None] | None, old_version: str) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    start = time.monotonic()

    async def one(body: bytes) -> None:
        sent = time.monotonic()
        try:
            response = await client.post(f"{url}/predict", content=body)
        except httpx.HTTPError as error:
            fail(f"{type(error).__name__}: {error}")
            return
        if response.status_code != 200:
            fail(f"{response.status_code}: {response.text[:200]}")
            return
        report.latencies_ms.append((time.monotonic() - sent) * 1000)
        version = response.headers.get(VERSION_HEADER, "")
        report.versions[version] += 1
        if version != old_version and report.new_version_first_at is None:
            report.new_version_first_at = time.monotonic() - start

    def fail(what: str) -> None:
        report.failures += 1
        if len(report.failure_examples) < 5:
            report.failure_examples.append(what)

    async def sample_rss() -> None:
        while True:
            report.rss_mib.append((time.monotonic() - start, server.memory_info().rss / MIB))
            await asyncio.sleep(1.0)

    async def change_halfway() -> None:
        await asyncio.sleep(report.warm_at + (report.seconds - report.warm_at) / 2)
        report.change_at = time.monotonic() - start
        await asyncio.to_thread(change)

    async with httpx.AsyncClient(limits=limits, timeout=30, headers={"content-type": "application/json"}) as client:
        background = [asyncio.create_task(sample_rss())]
        if change is not None:
            background.append(asyncio.create_task(change_halfway()))
        in_flight: set[asyncio.Task] = set()
        for index in range(int(report.seconds * report.rate)):
            await asyncio.sleep(max(0.0, start + index / report.rate - time.monotonic()))
            task = asyncio.create_task(one(bodies[index % len(bodies)]))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            report.requests += 1
        await asyncio.gather(*in_flight)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    report.rss_mib.append((time.monotonic() - start, server.memory_info().rss / MIB))
