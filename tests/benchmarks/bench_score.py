"""Benchmark: the batch-scoring step against a bare ``Booster.inplace_predict`` on the same rows.

    python tests/benchmarks/bench_score.py [--rows 5000000] [--chunk-rows N]

Sets up a temporary artifact store and SQLite MLflow, trains and registers the bundled spec
(the champion), and writes a batch of ``--rows`` loans drawn (seeded, with replacement) from
the bundled data as one Parquet file. Then, each in its own process so that its peak memory
(``ru_maxrss``) is its own:

- ours: ``python -m mlpipe step score`` on the batch: read in chunks of ``--chunk-rows``, PII
  rules, the Great Expectations check against the training schema, scores, decisions, a declined
  row's reason codes (the spec's ``reason_count``), and two Parquet outputs per chunk (predictions,
  and the inputs kept for monitoring);
- ours again with ``reason_count: 0``: no reason codes;
- raw: the same champion booster's ``inplace_predict`` over the same rows, read from the same
  file in the same chunks, masked and encoded as the model encodes them; only the predict
  calls are timed (the floor any scorer has to pay).

Printed: rows/s of both (ours from the step's own time, without the process's imports, and
from its wall time); the step's time by phase (read, PII, Great Expectations validation,
scoring, writing); the scoring phase's rows/s without reason codes against raw (aim: >= 0.8x), and with
them (their cost per declined row); the whole step's; both peak RSS, the batch's size on disk and in memory
as a frame, and the scores checked equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "dags" / "pipelines" / "loan_default.yaml"
DATA = ROOT / "dags" / "pipelines" / "data" / "lending_club.csv"
RATIO_AIM = 0.8

RAW = """
import json, sys, time
import numpy as np, pyarrow.parquet as pq
from mlpipe.core import spec
from mlpipe.data.features import matrix
from mlpipe.data.pii import mask_pii
from mlpipe.model.pyfunc import load_version
model, rules = load_version(sys.argv[2], sys.argv[3]), spec.load(sys.argv[5]).pii
tree_range = model.tree_range()
seconds, rows, total = 0.0, 0, 0.0
for batch in pq.ParquetFile(sys.argv[1]).iter_batches(batch_size=int(sys.argv[4])):
    frame = batch.to_pandas()
    mask_pii(frame, rules)  # as the step does: the model was trained on masked values
    features = matrix(frame, model.schema)
    started = time.perf_counter()
    scores = model.booster.inplace_predict(features, iteration_range=tree_range)
    seconds += time.perf_counter() - started
    rows, total = rows + len(scores), total + float(np.sum(scores, dtype=np.float64))
print(json.dumps({"rows": rows, "seconds": seconds, "score_sum": total}))
"""


def setup(root: Path) -> dict[str, str]:
    """Environment of a throwaway store + MLflow; train and register the champion in it."""
    env = {**os.environ, "MLPIPE_STORE": (root / "store").as_uri(), "MLPIPE_PII_KEY": "bench-key",
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "MLPIPE_MLFLOW_ARTIFACTS": (root / "artifacts").as_uri(), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "PYTHONPATH": str(ROOT / "plugins")}
    os.environ.update(env)
    from mlpipe.core import spec
    from mlpipe.store import runs

    uri = runs.start(spec.with_overrides(spec.load(SPEC), {"tuning.enabled": False}), "bench_score_training")
    for step in ("ingest", "split", "train", "analyze", "register"):
        subprocess.run([sys.executable, "-m", "mlpipe", "step", step, "--run", uri], env=env, check=True,
                       capture_output=True)
    return env


def make_batch(path: Path, rows: int, seed: int = 7) -> None:
    """``rows`` loans drawn with replacement from the bundled data, written in row groups (bounded memory)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pd.read_csv(DATA)
    rng = np.random.default_rng(seed)
    table = pa.Table.from_pandas(source, preserve_index=False)
    with pq.ParquetWriter(path, table.schema) as writer:
        for start in range(0, rows, 500_000):
            picked = rng.integers(0, len(source), min(500_000, rows - start))
            writer.write_table(table.take(pa.array(picked)))


def measured(command: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run ``command``; its stdout, wall seconds and peak RSS in MiB (of that process alone)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{text[-3000:]}")
    return text, wall, usage.ru_maxrss / 1024


def score_step(pipeline: Any, run_id: str, batch: Path, env: dict[str, str]) -> tuple[Any, float, float]:
    """Run the score step of ``pipeline`` on ``batch`` in its own process: its result, wall seconds, peak RSS."""
    from mlpipe.core.results import Score
    from mlpipe.store import runs

    uri = runs.start(pipeline, run_id, options={"input_uri": str(batch)}, kind=runs.SCORING)
    _, wall, rss = measured([sys.executable, "-m", "mlpipe", "step", "score", "--run", uri], env)
    return runs.Run(uri).result(Score), wall, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--chunk-rows", type=int, default=None, help="default: the spec's scoring.chunk_rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-score-") as folder:
        root = Path(folder)
        env = setup(root)
        from mlpipe.core import spec

        batch = root / "batch.parquet"
        make_batch(batch, args.rows)
        pipeline = spec.load(SPEC)
        if args.chunk_rows:
            pipeline = spec.with_overrides(pipeline, {"scoring.chunk_rows": args.chunk_rows})
        args.chunk_rows = pipeline.scoring.chunk_rows
        result, wall, ours_rss = score_step(pipeline, "bench_score", batch, env)
        plain, _, _ = score_step(spec.with_overrides(pipeline, {"reason_count": 0}), "bench_score_no_reasons", batch,
                                 env)
        out, _, raw_rss = measured([sys.executable, "-c", RAW, str(batch), result.model_name,
                                    str(result.model_version), str(args.chunk_rows), str(SPEC)], env)
        raw = json.loads(out.strip().splitlines()[-1])

        import pandas as pd

        predictions = pd.read_parquet(result.predictions.removeprefix("file://"), columns=["score"])  # file store
        assert result.rows == raw["rows"] == args.rows, (result.rows, raw["rows"])
        assert abs(float(predictions["score"].sum()) - raw["score_sum"]) < 1e-6 * args.rows, "scores differ"
        frame_mib = pd.read_parquet(batch).memory_usage(deep=True).sum() / 2**20
        ours_rate, wall_rate, raw_rate = (args.rows / result.seconds, args.rows / wall,
                                          args.rows / raw["seconds"])
        print(f"batch: {args.rows:,} rows, {batch.stat().st_size / 2**20:.0f} MiB Parquet, "
              f"{frame_mib:.0f} MiB as one DataFrame; chunks of {args.chunk_rows:,} rows")
        print(f"ours (score step):  {ours_rate:,.0f} rows/s in the step ({result.seconds:.1f} s), "
              f"{wall_rate:,.0f} rows/s with process start ({wall:.1f} s); peak RSS {ours_rss:,.0f} MiB")
        print(f"raw inplace_predict: {raw_rate:,.0f} rows/s ({raw['seconds']:.1f} s of predict calls); "
              f"peak RSS {raw_rss:,.0f} MiB")
        phases = result.seconds_by_phase
        print("the step's time by phase: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in phases.items()))
        scoring_rate = args.rows / plain.seconds_by_phase["score"]
        ratio, whole = scoring_rate / raw_rate, ours_rate / raw_rate
        print(f"scoring without reason codes (encode + inplace_predict + decisions): {scoring_rate:,.0f} rows/s = "
              f"{ratio:.2f}x raw (aim >= {RATIO_AIM}x: {'met' if ratio >= RATIO_AIM else 'MISSED'})")
        declined, without = result.positive_decisions, plain.seconds_by_phase["score"]
        print(f"with reason codes: {args.rows / phases['score']:,.0f} rows/s = {phases['score'] / without:.2f}x the "
              f"time; {declined:,} declined rows ({declined / args.rows:.1%}), "
              f"{(phases['score'] - without) / declined * 1e6:.0f} us each (SHAP contributions, ranking, JSON); "
              f"the whole step {result.seconds:.1f} s with them, {plain.seconds:.1f} s without")
        print(f"whole step (read, PII, GE validation, score, write): {whole:.2f}x raw; "
              f"value issues counted: {sum(result.value_issues.values())}")


if __name__ == "__main__":
    main()
