"""Model quality from late outcomes of a multiclass or regression model (:mod:`mlpipe.monitoring.quality` judges a
binary one's).

The input is one row per scored case whose outcome is known: the model's output columns (multiclass: a probability
per class, ``probability_<class>`` in the model's class order; regression: ``score``, the predicted value),
``label`` (multiclass: the index of the outcome's class among the model's; regression: the outcome's value, as
:func:`mlpipe.data.features.labels` gives them) and ``window`` (text naming when the case was scored). From it:

- metrics of a set of rows: multiclass, rows, log loss and accuracy (of the most probable class,
  :func:`mlpipe.model.multiclass_metrics.accuracy_stats`); regression, rows, mean actual and mean predicted value,
  RMSE, MAE and the mean error (predicted - actual: above 0, the model over-predicts);
- the same metrics per window;
- :func:`task_quality`: a verdict against the champion. The task's headline metric (:data:`mlpipe.core.tasks.RULES`:
  log loss, RMSE; lower is better) on all outcomes breaches when it is above the bound
  ``min(champion x (1 + max_metric_drop), maximum)``, parts that are unknown left out; with fewer than
  ``min_labels`` outcomes there is no verdict.

Numbers are plain Python floats and ints rounded as :mod:`mlpipe.monitoring.quality` rounds them, and undefined
values (the metrics of no rows) are ``None``, so the result goes into JSON as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlpipe.core.tasks import RULES, Task
from mlpipe.model.multiclass_metrics import accuracy_stats
from mlpipe.model.regression_metrics import error_stats
from mlpipe.monitoring.quality import DIGITS, by_window, rounded, too_few

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LABEL, WINDOW = "label", "window"


def _regression(y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Rows, mean actual and predicted value, RMSE (:func:`error_stats`), MAE and the mean error of some rows."""
    import numpy as np

    errors = predicted - y
    return {**error_stats(y, predicted), "mae": rounded(np.abs(errors).mean()), "mean_error": rounded(errors.mean())}


# What each task measures of a set of outcomes besides its rows (the headline metric among them), and how.
MEASURES: dict[Task, tuple[tuple[str, ...], Callable[[np.ndarray, np.ndarray], dict[str, Any]]]] = {
    Task.MULTICLASS: (("accuracy", "log_loss"), accuracy_stats),
    Task.REGRESSION: (("mean_actual", "mean_predicted", "rmse", "mae", "mean_error"), _regression),
}


def outcome_metrics(task: Task, y: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The task's :data:`MEASURES` of one set of outcomes ``y`` and what was predicted for them (multiclass: a
    probability column per class; regression: the values); all but ``rows`` are ``None`` for an empty set."""
    names, measure = MEASURES[task]
    return measure(y, predicted) if len(y) else {"rows": 0, **dict.fromkeys(names)}


def predictions(task: Task, rows: pd.DataFrame, outputs: list[str]) -> np.ndarray:
    """What the model predicted for ``rows``: a multiclass model's class probabilities (rows x ``outputs``), a
    regression model's values (its one output)."""
    return rows[outputs].to_numpy(float) if task == Task.MULTICLASS else rows[outputs[0]].to_numpy(float)


def actuals(task: Task, rows: pd.DataFrame) -> np.ndarray:
    """The outcomes of ``rows`` as :func:`outcome_metrics` takes them: class indices (multiclass) or values."""
    return rows[LABEL].to_numpy(int if task == Task.MULTICLASS else float)


def check_outcomes(task: Task, joined: pd.DataFrame, outputs: list[str]) -> None:
    """Raise ``ValueError`` naming the column unless ``joined`` has the columns, predictions that are numbers, and
    labels that are the index of one of the model's classes (multiclass) or numbers (regression)."""
    import numpy as np
    import pandas as pd

    needed = [*outputs, LABEL, WINDOW]
    if missing := [column for column in needed if column not in joined.columns]:
        raise ValueError(f"the outcomes lack the columns {missing} (need {needed})")
    if not np.isfinite(joined[outputs].to_numpy(float)).all():
        raise ValueError(f"the predictions {outputs} must be numbers (no missing values)")
    labels = joined[LABEL]
    if task == Task.MULTICLASS:
        bad = labels[~labels.isin(range(len(outputs)))]
        expected = f"the index of one of the model's {len(outputs)} classes"
    else:
        bad = labels[~np.isfinite(pd.to_numeric(labels, errors="coerce").to_numpy(float))]
        expected = "a number"
    if len(bad):
        raise ValueError(f"{LABEL}: each {task} outcome must be {expected}, found "
                         f"{sorted({str(value) for value in bad})[:5]}")


def breach_bound(champion: float | None, max_metric_drop: float | None, maximum: float | None) -> float | None:
    """The headline metric above which quality breaches: min(champion x (1 + drop), maximum), parts that are None
    left out."""
    parts = [maximum]
    if champion is not None and max_metric_drop is not None:
        parts.append(champion * (1 + max_metric_drop))
    known = [float(part) for part in parts if part is not None]
    return rounded(min(known)) if known else None


def bound_origin(champion: float | None, max_metric_drop: float | None, maximum: float | None, bound: float) -> str:
    """Where ``bound`` comes from, in words: ``champion 0.812 + 10%`` or ``maximum 0.900``."""
    if maximum is not None and round(float(maximum), DIGITS) == bound:
        return f"maximum {maximum:.3f}"
    return f"champion {champion:.3f} + {max_metric_drop:.0%}"


def task_quality(task: Task, joined: pd.DataFrame, outputs: list[str], champion: float | None, min_labels: int,
                 max_metric_drop: float | None, maximum: float | None = None) -> dict[str, Any]:
    """The quality verdict on the outcomes ``joined`` of a multiclass or regression model (its output columns
    ``outputs``, ``label`` and ``window``), against ``champion``, the champion's headline metric on its analysis set.

    ``status`` is ``not_enough_labels`` with fewer than ``min_labels`` (at least 1) outcomes, ``breach`` when the
    headline metric on all outcomes is above :func:`breach_bound`, else ``ok`` (also when there is no bound). The
    champion's value is ``champion_<headline>`` (``champion_log_loss``, ``champion_rmse``).
    """
    check_outcomes(task, joined, outputs)
    name, label = RULES[task].headline, RULES[task].label
    overall = outcome_metrics(task, actuals(task, joined), predictions(task, joined, outputs))
    bound = breach_bound(champion, max_metric_drop, maximum)
    count, value = overall["rows"], overall[name]
    reasons: list[str] = []
    if few := too_few(count, min_labels):
        status = "not_enough_labels"
        reasons.append(few)
    elif bound is not None and value > bound:
        status = "breach"
        origin = bound_origin(champion, max_metric_drop, maximum, bound)
        reasons.append(f"{label} {value:.3f} on {count:,} outcomes is above {bound:.3f} ({origin})")
    else:
        status = "ok"
    windows = by_window(joined, lambda rows: outcome_metrics(task, actuals(task, rows),
                                                             predictions(task, rows, outputs)))
    return {"status": status, "labels": count, f"champion_{name}": rounded(champion), "bound": bound,
            "overall": overall, "windows": windows, "breach": status == "breach", "reasons": reasons}
