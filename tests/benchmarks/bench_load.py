"""Benchmark: ``mlpipe serve`` under 5 minutes of steady load, its champion changed halfway.

    python tests/benchmarks/bench_load.py [--duration 300] [--rate 50] [--warmup 10]

Sets up its own temporary artifact store and SQLite MLflow, trains the bundled spec and
registers it as version 1 (``@champion``) and the same model again as version 2, starts
``mlpipe serve`` as a subprocess (request capture on, the alias polled every 2 s) and loads it
with :func:`tests.load.run_load`: ``--rate`` POST /predict a second of 1 to 10 records each,
for ``--warmup`` + ``--duration`` seconds; halfway through the measured part ``@champion``
moves to version 2. Prints requests, failures, p50/p99 latency, which versions answered and
the server's RSS after the warm-up, at its maximum and at the end (its growth).
Aims: no failed request, both versions answering, RSS growth < 20 MiB.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.* (the load generator, the server helpers) when run as a script

from tests.benchmarks.bench_serving import DATA, SPEC, prepare  # noqa: E402
from tests.load import request_bodies, run_load  # noqa: E402
from tests.services import clean_env, start_model_server  # noqa: E402

RSS_AIM_MIB = 20
ENVIRONMENT = ("MLPIPE_STORE", "MLPIPE_PII_KEY", "MLFLOW_TRACKING_URI", "MLPIPE_MLFLOW_ARTIFACTS")


def second_version(name: str) -> None:
    """Register version 1's model again as version 2 (same artifacts and tags): the champion to move to."""
    from mlflow import MlflowClient

    client = MlflowClient()
    first = client.get_model_version(name, "1")
    client.create_model_version(name, first.source, run_id=first.run_id, tags=first.tags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--warmup", type=float, default=10)
    args = parser.parse_args()
    import pandas as pd
    from mlflow import MlflowClient

    from mlpipe.core.spec import load as load_spec
    from tests.fixtures.serving import records

    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
        root = Path(scratch)
        print("training and registering a champion (version 1) and version 2 ...", flush=True)
        prepare(root)
        spec = load_spec(SPEC)
        name = spec.registered_model
        second_version(name)
        frame = pd.read_csv(DATA)
        bodies = request_bodies(records(frame.head(2000), spec.feature_columns(list(frame.columns))))
        env = clean_env(**{key: os.environ[key] for key in ENVIRONMENT}, MLPIPE_SERVE_POLL_SECONDS="2")
        url, server = start_model_server(SPEC, root, env)
        print(f"loading {url}/predict: {args.rate:g} requests/s for {args.warmup:g} s of warm-up + "
              f"{args.duration:g} s, @champion 1 -> 2 halfway ...", flush=True)
        try:
            report = run_load(url, server.process.pid, bodies, duration=args.duration, rate=args.rate,
                              warmup=args.warmup,
                              change=lambda: MlflowClient().set_registered_model_alias(name, "champion", "2"))
            alive = server.alive()
        finally:
            server.stop()
    print(f"\n{report.summary()}")
    met = alive and report.failures == 0 and set(report.versions) == {"1", "2"} and report.rss_growth < RSS_AIM_MIB
    print(f"aims (0 failures, both versions, RSS growth < {RSS_AIM_MIB} MiB, server alive): "
          f"{'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
