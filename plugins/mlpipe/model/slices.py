"""Metrics per slice: the rows that share a value of a column (a grade, a state), as text.

Each task measures a slice its own way (:data:`SLICE_STATS`): binary, rows, positives, positive rate, mean score
and ROC AUC; regression, rows, mean actual and predicted value and RMSE; multiclass, rows, accuracy and log loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlpipe.core.tasks import Task
from mlpipe.model.multiclass_metrics import accuracy_stats
from mlpipe.model.regression_metrics import error_stats

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MISSING = "<missing>"

Stats = Callable[["np.ndarray", "np.ndarray"], dict[str, Any]]


def slice_keys(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The slice value of each row of ``frame`` for ``column``, as text (missing -> ``<missing>``)."""
    values = frame[column]
    return values.astype(str).where(values.notna(), MISSING).to_numpy()


def per_slice(kept: pd.DataFrame, y: np.ndarray, scores: np.ndarray, columns: list[str],
              stats: Stats) -> dict[str, dict[str, dict[str, Any]]]:
    """``stats(y, scores)`` of the rows of each value of each slice column (column -> value -> stats).

    ``kept`` holds (at least) the slice ``columns`` of the rows that ``y`` and ``scores`` describe.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for column in columns:
        keys = slice_keys(kept, column)
        rows = {value: keys == value for value in sorted(set(keys))}
        out[column] = {value: stats(y[mask], scores[mask]) for value, mask in rows.items()}
    return out


def binary_stats(y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Rows, positives, positive rate, mean score and ROC AUC (when both classes occur) of a binary slice."""
    from sklearn.metrics import roc_auc_score

    positives = int(y.sum())
    both = 0 < positives < len(y)
    return {
        "rows": len(y),
        "positives": positives,
        "positive_rate": round(float(y.mean()), 6),
        "mean_score": round(float(scores.mean()), 6),
        "roc_auc": round(float(roc_auc_score(y, scores)), 6) if both else None,
    }


SLICE_STATS: dict[Task, Stats] = {Task.BINARY: binary_stats, Task.REGRESSION: error_stats,
                                  Task.MULTICLASS: accuracy_stats}


def slice_metrics(kept: pd.DataFrame, y: np.ndarray, scores: np.ndarray,
                  columns: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Rows, positives, positive rate, mean score and ROC AUC (when both classes occur) per slice of a binary
    model's rows (:func:`binary_stats`, :func:`per_slice`)."""
    return per_slice(kept, y, scores, columns, binary_stats)


def task_slice_metrics(task: Task, kept: pd.DataFrame, y: np.ndarray, scores: np.ndarray,
                       columns: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The metrics of ``task`` per slice (:data:`SLICE_STATS`); see :func:`per_slice`."""
    return per_slice(kept, y, scores, columns, SLICE_STATS[task])
