"""A real ``mlpipe serve`` process under a minute of steady load, its champion changed halfway (~90 s).

50 POST /predict a second (1 to 10 records each, request capture on as the bundled spec says) for
5 s of warm-up and 60 s measured (:mod:`tests.load`); at 35 s the ``@champion`` alias moves from
version 1 to version 2 and the server's alias poll (every 2 s) loads it. Not one request may fail,
both versions must have answered, and the server's RSS may not rise more than :data:`RSS_BOUND_MIB`
above its after-warm-up value. The figures (p50/p99 latency, RSS) are printed. The 5-minute run is
``tests/benchmarks/bench_load.py``.
"""

from __future__ import annotations

import pytest

from tests.conftest import SPEC_PATH
from tests.fixtures.serving import records, set_aliases
from tests.load import request_bodies, run_load
from tests.services import clean_env, start_model_server

pytestmark = pytest.mark.integration
RSS_BOUND_MIB = 20  # measured: 0.4 and 5.5 MiB in two runs of this minute, 3.3 MiB in bench_load.py's 5


def test_a_minute_of_steady_load_with_a_champion_reload_fails_no_request(registry, module_env, champion, frame,
                                                                          tmp_path):
    url, server = start_model_server(SPEC_PATH, tmp_path, clean_env(**module_env, MLPIPE_SERVE_POLL_SECONDS="2"))
    try:
        bodies = request_bodies(records(frame, champion.model.schema["columns"]))
        report = run_load(url, server.process.pid, bodies, duration=60, rate=50, warmup=5,
                          change=lambda: set_aliases(registry["name"], champion=2))
        assert server.alive(), server.tail()
    finally:
        server.stop()
        set_aliases(registry["name"], champion=1)
    print(f"\n{report.summary()}")
    assert report.requests == 65 * 50
    assert (report.failures, report.failure_examples) == (0, [])
    assert set(report.versions) == {"1", "2"} and sum(report.versions.values()) == report.requests
    assert report.new_version_first_at - report.change_at < 10  # the poll (2 s) picked it up
    assert report.rss_growth < RSS_BOUND_MIB, report.summary()
