"""Benchmark: the register step with its model card against the same step without it, on the same trained run.

    python tests/benchmarks/bench_register.py [--repeats 5]

Sets up a throwaway artifact store and SQLite MLflow and runs ingest, split, train and analyze of the bundled
spec once (tuning off). Then, ``--repeats`` times and alternating, the register step runs with the model card
(the default) and without it (``$MLPIPE_MODEL_CARD=0``), in this process, on clones of that trained run (copies
of its step folders, its MLflow run shared): each time a first clone registers version 1 of a model of its own
(the champion, untimed) and a second clone registers version 2, which the gate compares with it (the champion
re-scored on the analysis set), as a pipeline's scheduled retraining does. One registration of each kind runs
first, untimed, to warm the imports up.

Printed: the step's own time (``seconds`` of its result) of each timed registration, the median and minimum of
both, the ratios card / no card and the card's share of the step; the card's size (Markdown and HTML, plots
inline).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "dags" / "pipelines" / "loan_default.yaml"
TRAINED = ("ingest", "split", "train", "analyze")
# Thresholds any trained model passes: each first version becomes the champion the second is compared with.
PASSING = {"tuning.enabled": False, "thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0,
           "thresholds.fairness.min_disparate_impact": 0.5}
CARD = "MLPIPE_MODEL_CARD"


def isolate(root: Path) -> None:
    """Point the artifact store and MLflow into ``root``."""
    os.environ.update({"MLPIPE_STORE": (root / "store").as_uri(),
                       "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                       "MLPIPE_MLFLOW_ARTIFACTS": (root / "artifacts").as_uri(),
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    os.environ.setdefault("MLPIPE_PII_KEY", "bench-key")


def trained() -> str:
    """One run of the bundled spec through ingest, split, train and analyze."""
    from mlpipe.core import spec
    from mlpipe.steps import run_step
    from mlpipe.store import runs

    uri = runs.start(spec.with_overrides(spec.load(SPEC), PASSING), "bench_register_trained")
    for step in TRAINED:
        run_step(step, uri)
    return uri


def clone(source: str, run_id: str, model: str) -> str:
    """A new run registering ``model``, with copies of ``source``'s trained step folders."""
    from mlpipe.core import spec, uris
    from mlpipe.store import runs
    from mlpipe.store.runs import Run

    uri = runs.start(spec.with_overrides(Run(source).spec, {"model_name": model}), run_id)
    for step in TRAINED:
        shutil.copytree(uris.local_path(Run(source).path(step)), uris.local_path(Run(uri).path(step)))
    return uri


def registered(source: str, name: str, card: bool) -> dict:
    """Register version 1 (untimed) then version 2 of model ``name`` from clones of ``source``, with the model card
    or without; the second register's result."""
    from mlpipe.steps import run_step

    os.environ[CARD] = "1" if card else "0"
    run_step("register", clone(source, f"{name}_champion", name))
    result = run_step("register", clone(source, f"{name}_challenger", name))
    assert result["version"] == 2 and result["compared_with"] == 1, result
    assert ("model_card_html" in result) is card
    return result


def card_size(result: dict) -> str:
    """The sizes of the card a register ``result`` names."""
    from mlpipe.store import storage

    md, html = (len(storage.read_bytes(result[key])) / 1024 for key in ("model_card_md", "model_card_html"))
    return f"model_card.md {md:.1f} KiB, model_card.html {html:.1f} KiB (plots inline)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the steps' and MLflow's own lines
    seconds: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="bench-register-") as folder:
        isolate(Path(folder))
        source = trained()
        size = card_size(registered(source, "warm_card", True))  # warm-up, both ways
        registered(source, "warm_no_card", False)
        for repeat in range(args.repeats):
            for card in ((True, False) if repeat % 2 == 0 else (False, True)):
                result = registered(source, f"model_{repeat}_{int(card)}", card)
                seconds[card].append(result["seconds"])
                print(f"repeat {repeat}: register {'with' if card else 'without'} the card {result['seconds']:.3f} s")
    on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
    fastest = min(seconds[True]) / min(seconds[False])
    print(f"register with the model card: median {on:.3f} s (min {min(seconds[True]):.3f}); without: median "
          f"{off:.3f} s (min {min(seconds[False]):.3f}); ratio {on / off:.2f}x (of the minima {fastest:.2f}x), "
          f"the card {on - off:.3f} s ({(on - off) / on:.0%} of the step)")
    print(f"card size: {size}")


if __name__ == "__main__":
    main()
