"""Metrics per slice: the rows that share a value of a column (a grade, a state), as text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MISSING = "<missing>"


def slice_keys(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The slice value of each row of ``frame`` for ``column``, as text (missing -> ``<missing>``)."""
    values = frame[column]
    return values.astype(str).where(values.notna(), MISSING).to_numpy()


def slice_metrics(kept: pd.DataFrame, y: np.ndarray, scores: np.ndarray,
                  columns: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Rows, positives, positive rate, mean score and ROC AUC (when both classes occur) per slice.

    ``kept`` holds (at least) the slice ``columns`` of the rows that ``y`` and ``scores`` describe.
    """
    from sklearn.metrics import roc_auc_score

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for column in columns:
        keys = slice_keys(kept, column)
        out[column] = {}
        for value in sorted(set(keys)):
            rows = keys == value
            positives = int(y[rows].sum())
            both = 0 < positives < int(rows.sum())
            out[column][value] = {
                "rows": int(rows.sum()),
                "positives": positives,
                "positive_rate": round(float(y[rows].mean()), 6),
                "mean_score": round(float(scores[rows].mean()), 6),
                "roc_auc": round(float(roc_auc_score(y[rows], scores[rows])), 6) if both else None,
            }
    return out
