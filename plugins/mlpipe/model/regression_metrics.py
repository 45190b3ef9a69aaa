"""How good a regression model's predictions are on labelled rows: error metrics, error by decile of the
prediction, and the plots that show where it errs.

An *error* is predicted - actual (``mean_error`` > 0: the model over-predicts on average); a *residual* is
actual - predicted, as residual plots draw it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpipe.core.tasks import Task
from mlpipe.model.metrics import headline
from mlpipe.model.plots import figure_axes

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

DECILES = 10
ERROR_STATS = ("rows", "mean_actual", "mean_predicted", "rmse")  # what error_stats measures of a group of rows


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² and the mean error (bias) of ``predicted`` against the actual values ``y``."""
    from sklearn import metrics as m

    values = {"rmse": headline(Task.REGRESSION, y, predicted), "mae": m.mean_absolute_error(y, predicted),
              "r2": m.r2_score(y, predicted), "mean_error": (predicted - y).mean()}
    return {key: round(float(value), 6) for key, value in values.items()}


def error_stats(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Rows, mean actual value, mean predicted value and RMSE of a group of rows (a slice, a decile)."""
    return {"rows": len(y), "mean_actual": round(float(y.mean()), 6),
            "mean_predicted": round(float(predicted.mean()), 6),
            "rmse": round(headline(Task.REGRESSION, y, predicted), 6)}


def decile_errors(y: np.ndarray, predicted: np.ndarray) -> list[dict[str, Any]]:
    """Each decile of the prediction, lowest first: its number (``decile``, from 1) and :func:`error_stats`.

    The rows are ordered by their prediction (ties in row order) and cut into :data:`DECILES` groups whose
    sizes differ by one row at most; with fewer rows than deciles, only the non-empty groups are listed.
    """
    import numpy as np

    groups = np.array_split(np.argsort(predicted, kind="stable"), DECILES)
    return [{"decile": number, **error_stats(y[rows], predicted[rows])}
            for number, rows in enumerate(groups, start=1) if len(rows)]


def plot_residuals(y: np.ndarray, predicted: np.ndarray) -> Figure:
    """Each row's residual (actual - predicted) against its prediction, with the zero line."""
    figure, axes = figure_axes("Residuals (analysis set)", "predicted", "residual (actual - predicted)")
    axes.scatter(predicted, y - predicted, s=8, alpha=0.5)
    axes.axhline(0, linestyle=":", color="grey")
    return figure


def plot_predicted_vs_actual(y: np.ndarray, predicted: np.ndarray) -> Figure:
    """Each row's prediction against its actual value, with the diagonal of perfect predictions."""
    figure, axes = figure_axes("Predicted vs actual (analysis set)", "actual", "predicted")
    axes.scatter(y, predicted, s=8, alpha=0.5)
    low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
    axes.plot([low, high], [low, high], linestyle=":", color="grey", label="perfect prediction")
    axes.legend(loc="upper left")
    return figure
