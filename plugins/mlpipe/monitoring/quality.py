"""Model quality from late-arriving outcomes: the served scores joined with what actually happened.

The input is one row per scored case whose outcome is known: ``score`` (the model's probability
of the positive class), ``label`` (the outcome, 0 or 1) and ``window`` (text naming when or in
which run the case was scored, e.g. ``"2026-11-20"``). From it:

- metrics of a set of rows: rows, positives, positive rate, mean score, ROC AUC, PR AUC (average
  precision), Brier score and the expected calibration error (ECE) over :data:`BINS` equal-width
  score bins, weighted by rows. ROC and PR AUC need both classes: they are ``None`` otherwise;
- the same metrics per window, and a calibration table (per non-empty score bin: its bounds, rows,
  mean score and observed positive rate);
- :func:`quality`: a verdict against the champion. The ROC AUC on all outcomes breaches when it is
  below the bound ``max(champion ROC AUC - max drop, minimum ROC AUC)``; with fewer than
  ``min_labels`` outcomes (or outcomes of one class only) there is no verdict.

Every number is a plain Python float or int rounded to :data:`DIGITS` places, and undefined values
are ``None`` (never NaN), so the result goes into JSON as it is. :func:`by_window` and :func:`too_few` are shared
with the multiclass and regression verdicts (:mod:`mlpipe.monitoring.task_quality`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

BINS = 10  # equal-width score bins of the calibration table and the ECE
DIGITS = 6
COLUMNS = ("score", "label", "window")


def rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), DIGITS)


def check_outcomes(joined: pd.DataFrame) -> None:
    """Raise ``ValueError`` unless ``joined`` has the columns, 0/1 labels and scores in [0, 1]."""
    import numpy as np

    missing = [column for column in COLUMNS if column not in joined.columns]
    if missing:
        raise ValueError(f"the outcomes lack the columns {missing} (need {list(COLUMNS)})")
    labels = joined["label"]
    if labels.isna().any() or not labels.isin([0, 1]).all():
        bad = sorted({str(value) for value in labels[labels.isna() | ~labels.isin([0, 1])].unique()})
        raise ValueError(f"outcome labels must be 0 or 1, found {bad[:5]}")
    scores = joined["score"].to_numpy(float)
    if not np.all((scores >= 0) & (scores <= 1)):  # False for NaN too
        raise ValueError("scores must be probabilities in [0, 1] (no missing values)")


def bin_index(scores: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The equal-width bin of each score: bin ``i`` is ``[i/bins, (i+1)/bins)``, the last one includes 1."""
    import numpy as np

    return np.minimum(np.floor(np.asarray(scores, float) * bins).astype(int), bins - 1)


def calibration_table(scores: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Per non-empty equal-width score bin: ``low``, ``high``, ``rows``, ``mean_score``, ``positive_rate``."""
    import numpy as np

    scores, labels = np.asarray(scores, float), np.asarray(labels, float)
    index = bin_index(scores, bins)
    table = []
    for b in np.unique(index):
        rows = index == b
        table.append({"low": rounded(b / bins), "high": rounded((b + 1) / bins), "rows": int(rows.sum()),
                      "mean_score": rounded(scores[rows].mean()),
                      "positive_rate": rounded(labels[rows].mean())})
    return table


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float | None:
    """Sum over equal-width score bins of (bin rows / rows) * |mean score - positive rate|; None without rows."""
    import numpy as np

    scores, labels = np.asarray(scores, float), np.asarray(labels, float)
    if not len(scores):
        return None
    index = bin_index(scores, bins)
    rows = np.bincount(index, minlength=bins)
    score_sums = np.bincount(index, weights=scores, minlength=bins)
    label_sums = np.bincount(index, weights=labels, minlength=bins)
    return float(np.abs(score_sums - label_sums).sum() / rows.sum())  # n_b |mean_s - mean_y| = |sum_s - sum_y|


def outcome_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Rows, positives, positive rate, mean score, ROC AUC, PR AUC, Brier and ECE of one set of outcomes.

    ROC AUC and PR AUC are ``None`` unless both classes occur; everything but the counts is ``None``
    for an empty set.
    """
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    rows, positives = len(labels), int(labels.sum())
    both = 0 < positives < rows
    return {
        "rows": rows,
        "positives": positives,
        "positive_rate": rounded(positives / rows) if rows else None,
        "mean_score": rounded(scores.mean()) if rows else None,
        "roc_auc": rounded(roc_auc_score(labels, scores)) if both else None,
        "pr_auc": rounded(average_precision_score(labels, scores)) if both else None,
        "brier": rounded(np.mean((scores - labels) ** 2)) if rows else None,
        "ece": rounded(expected_calibration_error(scores, labels)),
    }


def by_window(joined: pd.DataFrame, measure: Callable[[pd.DataFrame], dict[str, Any]]) -> list[dict[str, Any]]:
    """``{"window": str, **measure(rows)}`` for the rows of each window of ``joined``, sorted by window."""
    keys = joined["window"].astype(str)
    return [{"window": str(window), **measure(rows)} for window, rows in joined.groupby(keys, sort=True)]


def window_metrics(joined: pd.DataFrame) -> list[dict[str, Any]]:
    """``{"window": str, **metrics}`` (:func:`outcome_metrics`) for each window of ``joined``, sorted by window."""
    return by_window(joined, lambda rows: outcome_metrics(rows["score"].to_numpy(float), rows["label"].to_numpy(int)))


def too_few(count: int, min_labels: int) -> str | None:
    """Why ``count`` outcomes are not judged (fewer than ``min_labels``), or ``None`` when they are enough."""
    if count < min_labels:
        return f"only {count:,} outcomes have arrived; {min_labels:,} are needed to judge the model"
    return None


def breach_bound(champion_roc_auc: float | None, max_roc_auc_drop: float | None,
                 min_roc_auc: float | None = None) -> float | None:
    """The ROC AUC below which quality breaches: max(champion - drop, minimum), parts that are None left out."""
    parts = [min_roc_auc]
    if champion_roc_auc is not None and max_roc_auc_drop is not None:
        parts.append(champion_roc_auc - max_roc_auc_drop)
    known = [float(part) for part in parts if part is not None]
    return rounded(max(known)) if known else None


def bound_origin(champion_roc_auc: float | None, max_roc_auc_drop: float | None,
                 min_roc_auc: float | None, bound: float) -> str:
    """Where ``bound`` comes from, in words: ``champion 0.750 - 0.050`` or ``minimum 0.700``."""
    if min_roc_auc is not None and round(float(min_roc_auc), DIGITS) == bound:
        return f"minimum {min_roc_auc:.3f}"
    return f"champion {champion_roc_auc:.3f} - {max_roc_auc_drop:.3f}"


def quality(joined: pd.DataFrame, champion_roc_auc: float | None, min_labels: int,
            max_roc_auc_drop: float | None, min_roc_auc: float | None = None) -> dict[str, Any]:
    """The quality verdict on the outcomes ``joined`` (columns ``score``, ``label``, ``window``).

    ``status`` is ``not_enough_labels`` with fewer than ``min_labels`` outcomes or outcomes of a
    single class (ROC AUC is undefined then), ``breach`` when the ROC AUC on all outcomes is below
    :func:`breach_bound`, else ``ok`` (also when there is no bound to compare with).
    """
    check_outcomes(joined)
    scores, labels = joined["score"].to_numpy(float), joined["label"].to_numpy(int)
    overall = outcome_metrics(scores, labels)
    bound = breach_bound(champion_roc_auc, max_roc_auc_drop, min_roc_auc)
    count, auc = overall["rows"], overall["roc_auc"]
    reasons: list[str] = []
    if few := too_few(count, min_labels):
        status = "not_enough_labels"
        reasons.append(few)
    elif auc is None:
        status = "not_enough_labels"
        reasons.append(f"all {count:,} outcomes are of one class ({overall['positives']:,} positive): "
                       "ROC AUC needs both")
    elif bound is not None and auc < bound:
        status = "breach"
        origin = bound_origin(champion_roc_auc, max_roc_auc_drop, min_roc_auc, bound)
        reasons.append(f"ROC AUC {auc:.3f} on {count:,} outcomes is below {bound:.3f} ({origin})")
    else:
        status = "ok"
    return {"status": status, "labels": count, "champion_roc_auc": rounded(champion_roc_auc), "bound": bound,
            "overall": overall, "windows": window_metrics(joined), "calibration": calibration_table(scores, labels),
            "breach": status == "breach", "reasons": reasons}
