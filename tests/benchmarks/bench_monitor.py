"""Benchmark: drift detection on planted shifts, and the monitor on a 1M-row scoring window.

    python tests/benchmarks/bench_monitor.py [--seeds 10] [--rows 1000000]

Sets up a throwaway store and SQLite MLflow and trains and registers the bundled spec (the
champion, with its drift reference), as ``bench_score.py`` does. Then:

1. detection, for each seed: a resample (with replacement, 9,857 rows) of the bundled loans is
   scored by the real score step and monitored by the real monitor step, unshifted and with
   ``int_rate`` + 1 standard deviation on 20% of the rows; each seed in a store of its own.
   Printed: false alarms (features flagged in unshifted resamples: aim 0 over all seeds) and the
   seeds where ``int_rate`` was flagged alone in the shifted one (aim: all);
2. scale: ``--rows`` resampled loans scored into one window, then ``python -m mlpipe step monitor``
   in its own process: wall time and peak RSS (aim: under a minute), against the floor of
   reading the window's inputs (the same Parquet parts, into pandas) in a process of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench_score import DATA, SPEC, make_batch, measured, setup

# Peak RSS is the process's own VmHWM, printed at exit: ru_maxrss would not do here, since a child
# inherits the high-water mark of this (large, after scoring in-process) benchmark process at exec.
PEAK = """
import atexit, sys
def peak():
    print("peak-rss-kib", next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
atexit.register(peak)
"""
CLI = PEAK + """
from mlpipe.cli import main
sys.exit(main(sys.argv[1:]))
"""
READ_INPUTS = PEAK + """
import pandas as pd
from mlpipe.core import uris
from mlpipe.store import storage
frames = [storage.read_parquet(uris.join(sys.argv[1], name)) for name in storage.children(sys.argv[1])]
print(len(pd.concat(frames, ignore_index=True)), "rows")
"""


def run_peak(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, its own VmHWM) of a ``python -c`` command built on :data:`PEAK`."""
    out, wall, _ = measured(command, env)
    return wall, int(out.rsplit("peak-rss-kib", 1)[1].split()[0]) / 1024


def monitored(pipeline, store: Path, batch, run_id: str) -> dict:
    """Score ``batch`` into a fresh store and monitor it there; the monitor's report."""
    from mlpipe.steps import run_step
    from mlpipe.store import runs, storage

    os.environ["MLPIPE_STORE"] = store.as_uri()
    store.parent.mkdir(parents=True, exist_ok=True)
    path = store.parent / f"{run_id}.csv"
    batch.drop(columns=["Class"]).to_csv(path, index=False)
    run_step("score", runs.start(pipeline, run_id, options={"input_uri": path.as_uri()}, kind=runs.SCORING))
    result = run_step("monitor", runs.start(pipeline, f"{run_id}_monitor", kind=runs.MONITORING))
    return storage.read_json(result["report"])


def detection(pipeline, root: Path, seeds: int) -> None:
    import numpy as np
    import pandas as pd

    loans = pd.read_csv(DATA)
    false_alarms, caught = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        steady = loans.iloc[rng.integers(0, len(loans), len(loans))].reset_index(drop=True)
        shifted = loans.iloc[rng.integers(0, len(loans), len(loans))].reset_index(drop=True)
        moved = rng.random(len(shifted)) < 0.2
        shifted.loc[moved, "int_rate"] += loans["int_rate"].std()
        quiet = monitored(pipeline, root / f"steady-{seed}" / "store", steady, f"steady_{seed}")
        loud = monitored(pipeline, root / f"shifted-{seed}" / "store", shifted, f"shifted_{seed}")
        false_alarms += [(seed, name) for name in quiet["drifting_features"]]
        caught.append(loud["drifting_features"] == ["int_rate"])
        stats = loud["features"]["int_rate"]
        print(f"seed {seed}: unshifted flags {quiet['drifting_features'] or 'none'} (max PSI "
              f"{max(s['psi'] for s in quiet['features'].values()):.3f}, max KS "
              f"{max(s.get('ks', 0) for s in quiet['features'].values()):.3f}); shifted flags "
              f"{loud['drifting_features']} (int_rate PSI {stats['psi']:.3f}, KS {stats['ks']:.3f})")
    print(f"detection: false alarms {len(false_alarms)} over {seeds} unshifted resamples x "
          f"{len(quiet['features'])} features (aim 0: {'met' if not false_alarms else 'MISSED'}); int_rate flagged "
          f"alone in {sum(caught)} of {seeds} shifted ones (aim all: {'met' if all(caught) else 'MISSED'})")


def scale(pipeline, root: Path, rows: int, env: dict[str, str]) -> None:
    from mlpipe.core.results import Monitor
    from mlpipe.steps import run_step
    from mlpipe.store import runs

    store = root / "scale" / "store"
    env = {**env, "MLPIPE_STORE": store.as_uri()}
    os.environ["MLPIPE_STORE"] = store.as_uri()
    batch = root / "scale" / "batch.parquet"
    batch.parent.mkdir(parents=True, exist_ok=True)
    make_batch(batch, rows)
    scored = run_step("score", runs.start(pipeline, "scale", options={"input_uri": str(batch)}, kind=runs.SCORING))
    uri = runs.start(pipeline, "scale_monitor", kind=runs.MONITORING)
    wall, rss = run_peak([sys.executable, "-c", CLI, "step", "monitor", "--run", uri], env)
    result = runs.Run(uri).result(Monitor)
    read_wall, read_rss = run_peak([sys.executable, "-c", READ_INPUTS, scored["inputs"]], env)
    print(f"scale: monitor of a {result.rows['total']:,}-row window: {wall:.1f} s wall "
          f"({result.seconds:.1f} s in the step), peak RSS {rss:,.0f} MiB (aim < 60 s: "
          f"{'met' if wall < 60 else 'MISSED'}); status {result.status}, drifting {result.drifting_features}")
    print(f"floor: reading the window's inputs alone: {read_wall:.1f} s wall, peak RSS {read_rss:,.0f} MiB; "
          f"monitor = {wall / read_wall:.1f}x the time and {rss / read_rss:.1f}x the memory of that read")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as folder:
        root = Path(folder)
        env = setup(root)
        from mlpipe.core import spec

        pipeline = spec.load(SPEC)
        detection(pipeline, root, args.seeds)
        scale(pipeline, root, args.rows, env)


if __name__ == "__main__":
    main()
