"""split: stratified, seeded train / validation / analysis sets.

The analysis set is held out: training, early stopping and tuning never see it.
"""

from __future__ import annotations

from typing import Any

from mlpipe import storage
from mlpipe.features import labels
from mlpipe.runs import Run

PARTS = ("train", "validation", "analysis")


def split(run: Run) -> dict[str, Any]:
    from sklearn.model_selection import train_test_split

    spec = run.spec
    frame = storage.read_parquet(run.result("ingest")["snapshot"])
    y = labels(frame, spec)
    seed = spec.split.seed
    rest, analysis = train_test_split(frame, test_size=spec.split.analysis, stratify=y, random_state=seed)
    validation_share = spec.split.validation / (1 - spec.split.analysis)
    train, validation = train_test_split(rest, test_size=validation_share,
                                         stratify=labels(rest, spec), random_state=seed)
    result: dict[str, Any] = {"rows": {}, "positive_rate": {}}
    for name, part in zip(PARTS, (train, validation, analysis), strict=True):
        result[name] = storage.write_parquet(part, run.path("split", f"{name}.parquet"))
        result["rows"][name] = len(part)
        result["positive_rate"][name] = round(float(labels(part, spec).mean()), 6)
    return result
