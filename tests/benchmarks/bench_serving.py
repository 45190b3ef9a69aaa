"""Benchmark: ``mlpipe serve`` against ``mlflow models serve`` on the same model and the same record, and
``mlpipe serve`` with reason codes against without.

    python tests/benchmarks/bench_serving.py [--requests 400] [--concurrency 8] [--rounds 10]

Sets up its own temporary artifact store and SQLite MLflow, trains the bundled spec
(ingest -> split -> train -> analyze -> register, promoted with ``force_promote``),
then starts three servers as subprocesses on localhost, one uvicorn worker each:

- ``mlpipe serve <spec>`` (POST /predict ``{"records": [...]}``; request capture on, as the spec says),
  giving a declined record its reason codes (the spec's ``reason_count``, 4);
- the same with ``reason_count: 0`` (a copy of the spec): no reason codes;
- ``mlflow models serve -m models:/<name>@champion --env-manager local``
  (POST /invocations ``{"dataframe_records": [...]}``).

The record is the first of the bundled data that the champion declines, so every request to the first
server computes its SHAP contributions and reasons: the worst case. All must return the same score for it (checked).
Then the two ``mlpipe serve`` take the stream of the first ``--stream`` bundled records, one per request, of which
the champion declines its usual share (printed). A load generator (httpx async client in this process) sends
single-record requests at a fixed concurrency, after a warm-up; the declined record also goes to the two ``mlpipe
serve`` one request at a time (``sequential``: the latency a lone client sees, without the queueing of the
concurrent load). The servers take turns for ``--rounds`` short rounds, in the reverse order every other round, and
the latencies of all rounds are pooled: a stall of the shared machine (at concurrency 8 the load generator and the
server want both cores) then falls on every server alike instead of on whichever was measured at that moment. For
reference, the in-process latency of the same record through our scoring path (validate + encode +
``inplace_predict``), the same with reason codes, and of a bare ``Booster.inplace_predict`` on the pre-encoded row.
Aims: our p99 <= 1/3 of MLflow's, our throughput >= 3x MLflow's; with reason codes, a p99 <= 1.5x that without.
The p99 at concurrency 8 is that of the requests a stall of the machine caught: on a small shared virtual
machine (2 vCPUs) single requests stall for 50 ms to over a second, spread over the run, with request capture
off as with it on, and it swings from run to run. The sequential p99 is the server's own tail. Compare the servers
only within one run.
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
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.services when run as a script
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "dags" / "pipelines" / "loan_default.yaml"
DATA = ROOT / "dags" / "pipelines" / "data" / "lending_club.csv"
P99_AIM, THROUGHPUT_AIM, REASONS_AIM = 1 / 3, 3.0, 1.5
OURS, NO_REASONS, MLFLOW = "mlpipe serve", "mlpipe serve, reason_count 0", "mlflow models serve"
STREAMED = " (stream)"  # a measure of the stream of bundled records
SEQUENTIAL = " (sequential)"  # a measure of one request at a time


def prepare(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[bool]]:
    """Point the store and MLflow into ``root``, train and register a champion; return the bundled records, raw
    (as a client sends them) and with the spec's PII rules applied (as the model sees them), and whether the
    champion declines each."""
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
    rows = frame[loaded.feature_columns(list(frame.columns))]
    raw = [{column: None if pd.isna(value) else (value.item() if hasattr(value, "item") else value)
            for column, value in row.items()} for row in rows.to_dict("records")]
    masked = mask_records(raw, loaded.pii, hash_key(loaded.pii))
    return raw, masked, [prediction["decision"] for prediction in champion().predictions(masked)]


def champion():
    """The registered champion of the bundled spec, loaded as the server loads it."""
    from mlflow import MlflowClient

    from mlpipe.core.spec import load as load_spec
    from mlpipe.serving.loader import load as load_model

    name, client = load_spec(SPEC).registered_model, MlflowClient()
    return load_model(client, name, int(client.get_model_version_by_alias(name, "champion").version), "champion")


def without_reasons(root: Path) -> Path:
    """A copy of the bundled spec with ``reason_count: 0`` (its paths made absolute): a server giving no reasons."""
    document = yaml.safe_load(SPEC.read_text())
    document["reason_count"] = 0
    document["data"]["source"] = str(SPEC.parent / document["data"]["source"])
    document["validation"]["profile"] = str(SPEC.parent / document["validation"]["profile"])
    path = root / "no_reasons.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


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


async def load(url: str, bodies: list[bytes], requests: int, concurrency: int) -> tuple[list[float], float]:
    """Send ``requests`` POSTs of ``bodies`` in turn with ``concurrency`` in flight; return each latency (s) and
    the wall time."""
    latencies: list[float] = []
    remaining = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60,
                                 headers={"content-type": "application/json"}) as client:
        async def worker() -> None:
            for sent in remaining:
                started = time.perf_counter()
                response = await client.post(url, content=bodies[sent % len(bodies)])
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def in_process(record: dict[str, Any], masked: dict[str, Any], repeats: int = 2000) -> dict[str, list[float]]:
    """Latencies of our in-process scoring path, without and with reason codes, and of a bare inplace_predict on
    the encoded row."""
    from mlpipe.core.spec import load as load_spec
    from mlpipe.data.pii import hash_key, mask_records
    from mlpipe.model.reasons import ReasonCodes

    pipeline = load_spec(SPEC)
    rules, key, reasons = pipeline.pii, hash_key(pipeline.pii), ReasonCodes.of(pipeline)
    model = champion()
    body = json.dumps({"records": [record]}).encode()
    encoded = model.encode([masked])

    def records() -> list[dict[str, Any]]:
        return mask_records(model.validator.validate_json(body).records, rules, key)

    paths = {"ours, in-process (validate+mask+encode+predict)": lambda: model.predictions(records()),
             "ours, in-process, with reason codes": lambda: model.predictions(records(), reasons),
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


def servers(root: Path, name: str) -> dict[str, tuple[list[str], str]]:
    """Each server's command line and base URL (on a free localhost port)."""
    ours, plain, theirs = free_port(), free_port(), free_port()
    return {OURS: ([sys.executable, "-m", "mlpipe", "serve", str(SPEC), "--port", str(ours)],
                   f"http://127.0.0.1:{ours}"),
            NO_REASONS: ([sys.executable, "-m", "mlpipe", "serve", str(without_reasons(root)), "--port", str(plain)],
                         f"http://127.0.0.1:{plain}"),
            MLFLOW: ([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion",
                      "--env-manager", "local", "--host", "127.0.0.1", "--port", str(theirs), "--workers", "1"],
                     f"http://127.0.0.1:{theirs}")}


def ratio_line(label: str, ours: list[float], theirs: list[float], aim: float) -> str:
    """The p99 of ``ours`` over that of ``theirs`` against an aim of at most ``aim``, and the p50s'."""
    p99 = percentile(ours, .99) / percentile(theirs, .99)
    return (f"{label:<38} {p99:6.3f}   aim <= {aim:.3f}  {'MET' if p99 <= aim else 'NOT MET'}  "
            f"(p50 {percentile(ours, .5) / percentile(theirs, .5):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per measure and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=50, help="per measure and round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--stream", type=int, default=2000, help="bundled records cycled through by the stream")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        root = Path(scratch)
        print("training and registering a champion ...", flush=True)
        raw, masked, declined = prepare(root)
        first = declined.index(True)
        from mlpipe.core.spec import load as load_spec

        started = servers(root, load_spec(SPEC).registered_model)
        one = json.dumps({"records": [raw[first]]}).encode()
        stream = [json.dumps({"records": [record]}).encode() for record in raw[:args.stream]]
        concurrency = args.concurrency
        measures = {OURS: (f"{started[OURS][1]}/predict", [one], concurrency),  # label -> URL, bodies sent in
                    NO_REASONS: (f"{started[NO_REASONS][1]}/predict", [one], concurrency),  # turn, concurrency
                    MLFLOW: (f"{started[MLFLOW][1]}/invocations",
                             [json.dumps({"dataframe_records": [masked[first]]}).encode()], concurrency),
                    OURS + STREAMED: (f"{started[OURS][1]}/predict", stream, concurrency),
                    NO_REASONS + STREAMED: (f"{started[NO_REASONS][1]}/predict", stream, concurrency),
                    OURS + SEQUENTIAL: (f"{started[OURS][1]}/predict", [one], 1),
                    NO_REASONS + SEQUENTIAL: (f"{started[NO_REASONS][1]}/predict", [one], 1)}
        processes = {}
        try:
            for label, (command, url) in started.items():
                ready = f"{url}/ping" if label == MLFLOW else f"{url}/ready"
                processes[label] = start(command, ready, root / f"server-{len(processes)}.log")
            answers = {label: httpx.post(measures[label][0], content=measures[label][1][0],
                                         headers={"content-type": "application/json"}).json() for label in started}
            answer, plain = answers[OURS]["predictions"][0], answers[NO_REASONS]["predictions"][0]
            mlflow_score = answers[MLFLOW]["predictions"][0]
            mlflow_score = mlflow_score["score"] if isinstance(mlflow_score, dict) else mlflow_score
            assert abs(answer["score"] - mlflow_score) < 1e-6, answers  # the same model answers the same
            assert answer["decision"] and answer["reasons"] and "reasons" not in plain, answers
            results: dict[str, tuple[list[float], float]] = {label: ([], 0.0) for label in measures}
            for turn in range(args.rounds):
                for label in list(measures)[::-1 if turn % 2 else 1]:
                    url, bodies, concurrency = measures[label]
                    asyncio.run(load(url, bodies, args.warmup, concurrency))
                    latencies, seconds = asyncio.run(load(url, bodies, args.requests, concurrency))
                    results[label] = (results[label][0] + latencies, results[label][1] + seconds)
        finally:
            for process in processes.values():
                stop(process)
        local = in_process(raw[first], masked[first])

    share = sum(declined[:args.stream]) / len(declined[:args.stream])
    print(f"\nsingle-record requests, concurrency {args.concurrency} (sequential: 1), {args.rounds} x {args.requests} "
          f"per measure; "
          f"one declined record (score {answer['score']:.6f} from all, {len(answer['reasons'])} reasons), or the "
          f"stream of {len(stream)} bundled records ({share:.1%} declined)")
    print(f"{'':<46} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9}")
    for label, (latencies, seconds) in results.items():
        print(row(label, latencies, seconds))
    for label, latencies in local.items():
        print(row(label, latencies, None))
    ours, theirs = results[OURS], results[MLFLOW]
    throughput = (len(ours[0]) / ours[1]) / (len(theirs[0]) / theirs[1])
    print()
    print(ratio_line("p99 ours/mlflow", ours[0], theirs[0], P99_AIM))
    print(f"throughput ours/mlflow {throughput:6.2f}x  aim >= {THROUGHPUT_AIM:.1f}x  "
          f"{'MET' if throughput >= THROUGHPUT_AIM else 'NOT MET'}")
    print(ratio_line("p99 with reasons/without, declined", ours[0], results[NO_REASONS][0], REASONS_AIM))
    print(ratio_line("p99 with reasons/without, stream", results[OURS + STREAMED][0],
                     results[NO_REASONS + STREAMED][0], REASONS_AIM))
    print(ratio_line("p99 with reasons/without, sequential", results[OURS + SEQUENTIAL][0],
                     results[NO_REASONS + SEQUENTIAL][0], REASONS_AIM))
    alone = statistics.median(local["ours, in-process, with reason codes"]) / statistics.median(
        local["ours, in-process (validate+mask+encode+predict)"])
    print(f"in-process p50 with reasons/without, declined: {alone:.3f}")
    print(f"ours p50 / in-process path p50: "
          f"{percentile(ours[0], .5) / statistics.median(local[next(iter(local))]):.1f}x (HTTP + event loop overhead)")

if __name__ == "__main__":
    main()
