"""Drift statistics: how far a feature's current values have moved from its training reference.

- numeric features: PSI over the reference's quantile bins (missing values are a bin of their
  own) and the two-sample Kolmogorov-Smirnov statistic with its p-value (``None`` when either side
  has no values at all: the missing rates tell that story);
- categorical features: PSI and the Jensen-Shannon divergence (base 2, so in [0, 1]) over the
  reference's categories plus one bin for categories it never had and one for missing values,
  and the share of rows with such new categories;
- both: the missing rate before and now.

PSI = sum over bins of (current - reference) * ln(current / reference), with empty bins given a
small floor (:data:`FLOOR`) so that a bin that empties or appears counts without dividing by zero.
The usual reading: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a major one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FLOOR = 1e-4  # the share an empty bin is given in PSI
BINS = 10


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """The population stability index between two distributions over the same bins (shares or counts)."""
    import numpy as np

    expected, actual = (np.clip(np.asarray(p, float) / np.sum(p), FLOOR, None) for p in (reference, current))
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def quantile_edges(reference: pd.Series, bins: int = BINS) -> np.ndarray:
    """The inner cut points of ``bins`` equal-frequency bins of the reference (duplicates merged)."""
    import numpy as np

    values = reference.dropna().to_numpy(float)
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])) if len(values) else np.array([])


def numeric_counts(values: pd.Series, edges: np.ndarray) -> np.ndarray:
    """Rows per bin: ``len(edges) + 1`` value bins (right-closed at each edge), then the missing ones."""
    import numpy as np

    present = values.dropna().to_numpy(float)
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return np.append(counts, values.isna().sum())


def numeric_drift(reference: pd.Series, current: pd.Series, bins: int = BINS) -> dict[str, Any]:
    """PSI over the reference's quantile bins, KS statistic and p-value, and the missing rates."""
    from scipy.stats import ks_2samp

    edges = quantile_edges(reference, bins)
    before, now = numeric_counts(reference, edges), numeric_counts(current, edges)
    present = reference.dropna().to_numpy(float), current.dropna().to_numpy(float)
    ks = ks_2samp(*present) if all(len(values) for values in present) else None  # all missing: no KS
    return {"kind": "numeric", "psi": psi(before, now), "ks": ks and float(ks.statistic),
            "ks_pvalue": ks and float(ks.pvalue),
            "missing_reference": float(reference.isna().mean()), "missing_current": float(current.isna().mean()),
            "bins": {"edges": edges.tolist(), "reference": shares(before), "current": shares(now)}}


def shares(counts: np.ndarray) -> list[float]:
    """Counts as shares of their total (rounded to 6 places); all zero when there are none."""
    import numpy as np

    return np.round(counts / max(counts.sum(), 1), 6).tolist()


def category_counts(values: pd.Series, categories: list[str]) -> np.ndarray:
    """Rows per reference category (as text), then rows with a category not among them, then missing rows."""
    import numpy as np

    text = values.dropna().astype(str)
    known = text.value_counts().reindex(categories, fill_value=0).to_numpy()
    return np.array([*known, len(text) - known.sum(), values.isna().sum()])


def categorical_drift(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    """PSI and Jensen-Shannon divergence over the reference's categories (+ new, + missing); new categories."""
    from scipy.spatial.distance import jensenshannon

    categories = sorted(reference.dropna().astype(str).unique())
    before, now = category_counts(reference, categories), category_counts(current, categories)
    new = sorted(set(current.dropna().astype(str).unique()) - set(categories))
    labels = [*categories, "(new)", "(missing)"]
    return {"kind": "categorical", "psi": psi(before, now),
            "js": float(jensenshannon(before / before.sum(), now / now.sum(), base=2) ** 2),
            "new_categories": new, "new_share": float(now[-2] / max(len(current), 1)),
            "missing_reference": float(reference.isna().mean()), "missing_current": float(current.isna().mean()),
            "reference_shares": dict(zip(labels, shares(before), strict=True)),
            "shares": dict(zip(labels, shares(now), strict=True))}


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str],
                  bins: int = BINS) -> dict[str, dict[str, Any]]:
    """The drift statistics of every reference column that ``current`` has, by column."""
    missing = [column for column in reference.columns if column not in current.columns]
    if missing:
        raise KeyError(f"the current data lacks the reference columns {missing}")
    return {column: categorical_drift(reference[column], current[column]) if column in categorical
            else numeric_drift(reference[column], current[column], bins) for column in reference.columns}
