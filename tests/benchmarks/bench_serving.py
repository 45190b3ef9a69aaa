"""Benchmark: ``mlpipe serve`` against ``mlflow models serve`` on the same model and the same record.

    python tests/benchmarks/bench_serving.py [--requests 2000] [--concurrency 8] [--rounds 2]

Sets up its own temporary artifact store and SQLite MLflow, trains the bundled spec
(ingest -> split -> train -> analyze -> register, promoted with ``force_promote``),
then starts both servers as subprocesses on localhost, one uvicorn worker each:

- ``mlpipe serve <spec>`` (POST /predict ``{"records": [...]}``; request capture on, as the spec says);
- ``mlflow models serve -m models:/<name>@champion --env-manager local``
  (POST /invocations ``{"dataframe_records": [...]}``).

Both must return the same score for the record (checked). A load generator (httpx async
client in this process) sends single-record requests at a fixed concurrency, after a
warm-up; the servers take turns for ``--rounds`` rounds and the latencies of all rounds
are pooled. For reference, the in-process latency of the same record through our scoring
path (validate + encode + ``inplace_predict``) and of a bare ``Booster.inplace_predict``
on the pre-encoded row. Aims: our p99 <= 1/3 of MLflow's, our throughput >= 3x MLflow's.
On a small shared machine the load generator competes with the server for the CPU:
compare the two servers only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.services when run as a script
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "dags" / "pipelines" / "loan_default.yaml"
DATA = ROOT / "dags" / "pipelines" / "data" / "lending_club.csv"
P99_AIM, THROUGHPUT_AIM = 1 / 3, 3.0


def prepare(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Point the store and MLflow into ``root``, train and register a champion; return a raw record (as a
    client sends it) and the same record with the spec's PII rules applied (as the model sees it)."""
    import pandas as pd

    from mlpipe.core import spec
    from mlpipe.data.pii import hash_key, mask_records
    from mlpipe.steps import run_step
    from mlpipe.store import runs

    os.environ.update({"MLPIPE_STORE": str(root / "store"), "MLPIPE_PII_KEY": "bench-key",
                       "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                       "MLPIPE_MLFLOW_ARTIFACTS": (root / "artifacts").as_uri(),
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLPIPE_SERVE_POLL_SECONDS": "3600"})
    loaded = spec.load(SPEC)
    uri = runs.start(loaded, "bench", options={"force_promote": True})
    for step in ("ingest", "split", "train", "analyze", "register"):
        run_step(step, uri)
    frame = pd.read_csv(DATA)
    row = frame[loaded.feature_columns(list(frame.columns))].iloc[0]
    record = {column: None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)
              for column, value in row.items()}
    return record, mask_records([record], loaded.pii, hash_key(loaded.pii))[0]


def start(command: list[str], url: str, log: Path) -> subprocess.Popen:
    """Start a server (its own process group) and wait until ``url`` answers 200."""
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    stop(process)
    raise SystemExit(f"{' '.join(command)} did not become ready; see {log}")


def stop(process: subprocess.Popen) -> None:
    """Stop a server started by :func:`start` (and the workers it spawned) by its process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


async def load(url: str, body: bytes, requests: int, concurrency: int) -> tuple[list[float], float]:
    """Send ``requests`` POSTs with ``concurrency`` in flight; return each latency (s) and the wall time."""
    latencies: list[float] = []
    remaining = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60,
                                 headers={"content-type": "application/json"}) as client:
        async def worker() -> None:
            for _ in remaining:
                started = time.perf_counter()
                response = await client.post(url, content=body)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def in_process(record: dict[str, Any], masked: dict[str, Any], repeats: int = 2000) -> dict[str, list[float]]:
    """Latencies of our in-process scoring path and of a bare inplace_predict on the encoded row."""
    from mlflow import MlflowClient

    from mlpipe.core.spec import load as load_spec
    from mlpipe.data.pii import hash_key, mask_records
    from mlpipe.serving.loader import load as load_model

    pipeline = load_spec(SPEC)
    name, rules, key = pipeline.registered_model, pipeline.pii, hash_key(pipeline.pii)
    client = MlflowClient()
    model = load_model(client, name, int(client.get_model_version_by_alias(name, "champion").version), "champion")
    body = json.dumps({"records": [record]}).encode()
    encoded = model.encode([masked])
    paths = {"ours, in-process (validate+mask+encode+predict)":
             lambda: model.scores(mask_records(model.validator.validate_json(body).records, rules, key)),
             "Booster.inplace_predict, pre-encoded row": lambda: model.model.booster.inplace_predict(
                 encoded, iteration_range=model.trees)}
    timings = {}
    for label, call in paths.items():
        for _ in range(200):
            call()
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
        timings[label] = samples
    return timings


def row(label: str, latencies: list[float], seconds: float | None) -> str:
    throughput = f"{len(latencies) / seconds:9.0f}" if seconds else f"{'-':>9}"
    return (f"{label:<46} {percentile(latencies, .5) * 1e3:8.2f} {percentile(latencies, .99) * 1e3:8.2f} "
            f"{throughput}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        root = Path(scratch)
        print("training and registering a champion ...", flush=True)
        record, masked = prepare(root)
        from mlpipe.core.spec import load as load_spec

        name = load_spec(SPEC).registered_model
        ours_port, mlflow_port = free_port(), free_port()
        servers = {
            "mlpipe serve": (f"http://127.0.0.1:{ours_port}/predict", json.dumps({"records": [record]}).encode(),
                             [sys.executable, "-m", "mlpipe", "serve", str(SPEC), "--port", str(ours_port)],
                             f"http://127.0.0.1:{ours_port}/ready"),
            "mlflow models serve": (f"http://127.0.0.1:{mlflow_port}/invocations",
                                    json.dumps({"dataframe_records": [masked]}).encode(),
                                    [sys.executable, "-m", "mlflow", "models", "serve",
                                     "-m", f"models:/{name}@champion", "--env-manager", "local",
                                     "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
                                    f"http://127.0.0.1:{mlflow_port}/ping"),
        }
        processes = {}
        try:
            for label, (_, _, command, ready) in servers.items():
                processes[label] = start(command, ready, root / f"{label.split()[0]}.log")
            answers = {label: httpx.post(url, content=body, headers={"content-type": "application/json"}).json()
                       for label, (url, body, _, _) in servers.items()}
            ours_score = answers["mlpipe serve"]["predictions"][0]["score"]
            mlflow_score = answers["mlflow models serve"]["predictions"][0]
            mlflow_score = mlflow_score["score"] if isinstance(mlflow_score, dict) else mlflow_score
            assert abs(ours_score - mlflow_score) < 1e-6, answers  # the same model answers the same
            results: dict[str, tuple[list[float], float]] = {label: ([], 0.0) for label in servers}
            for _ in range(args.rounds):
                for label, (url, body, _, _) in servers.items():
                    asyncio.run(load(url, body, args.warmup, args.concurrency))
                    latencies, seconds = asyncio.run(load(url, body, args.requests, args.concurrency))
                    results[label] = (results[label][0] + latencies, results[label][1] + seconds)
        finally:
            for process in processes.values():
                stop(process)
        local = in_process(record, masked)

    print(f"\nsingle-record requests, concurrency {args.concurrency}, {args.rounds} x {args.requests} per server "
          f"(score {ours_score:.6f} from both)")
    print(f"{'':<46} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9}")
    for label, (latencies, seconds) in results.items():
        print(row(label, latencies, seconds))
    for label, latencies in local.items():
        print(row(label, latencies, None))
    ours, theirs = results["mlpipe serve"], results["mlflow models serve"]
    p99 = percentile(ours[0], .99) / percentile(theirs[0], .99)
    p50 = percentile(ours[0], .5) / percentile(theirs[0], .5)
    throughput = (len(ours[0]) / ours[1]) / (len(theirs[0]) / theirs[1])
    print(f"\np50 ours/mlflow        {p50:6.3f}")
    print(f"p99 ours/mlflow        {p99:6.3f}   aim <= {P99_AIM:.3f}  {'MET' if p99 <= P99_AIM else 'NOT MET'}")
    print(f"throughput ours/mlflow {throughput:6.2f}x  aim >= {THROUGHPUT_AIM:.1f}x  "
          f"{'MET' if throughput >= THROUGHPUT_AIM else 'NOT MET'}")
    print(f"ours p50 / in-process path p50: "
          f"{percentile(ours[0], .5) / statistics.median(local[next(iter(local))]):.1f}x (HTTP + event loop overhead)")


if __name__ == "__main__":
    main()
