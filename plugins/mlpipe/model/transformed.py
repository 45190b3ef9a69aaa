"""Boosting on a transformed regression target (``target.transform``, :class:`mlpipe.core.tasks.Transform`).

The booster learns the transformed target, but the metrics it evaluates every round (what early stopping,
tuning's pruner and the validation metrics read) are measured in the target's units: XGBoost's own would be
measured on the log. So they are computed here, on the undone predictions and labels, and handed to XGBoost as
its ``custom_metric`` under XGBoost's names (``rmse``, ``mae``...), with its built-in ones switched off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlpipe.core.errors import Refused
from mlpipe.core.tasks import Transform, undone

if TYPE_CHECKING:
    import numpy as np
    import xgboost as xgb

Metric = Callable[["np.ndarray", "np.ndarray"], float]


def _rmse(y: np.ndarray, predicted: np.ndarray) -> float:
    import numpy as np

    return float(np.sqrt(np.mean((predicted - y) ** 2)))


def _mae(y: np.ndarray, predicted: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(np.abs(predicted - y)))


def _mape(y: np.ndarray, predicted: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(np.abs((predicted - y) / y)))


# XGBoost's regression metrics that are measured in the target's units for a transformed target.
METRICS: dict[str, Metric] = {"rmse": _rmse, "mae": _mae, "mape": _mape}

CustomMetric = Callable[["np.ndarray", "xgb.DMatrix"], list[tuple[str, float]]]


def evaluation(params: dict[str, Any], transform: Transform | str | None,
               ) -> tuple[dict[str, Any], CustomMetric | None]:
    """The params to hand XGBoost and its ``custom_metric``: without a transform, ``params`` as they are and none;
    with one, ``params`` without XGBoost's metrics, and a custom metric measuring each of ``params["eval_metric"]``
    (in their order: the last decides early stopping) on the undone predictions and labels."""
    if transform is None:
        return params, None
    names = list(params["eval_metric"])
    if unknown := [name for name in names if name not in METRICS]:
        raise Refused(f"training.params.eval_metric: {unknown} cannot be measured in the target's units with "
                      f"target.transform {transform}; use {', '.join(METRICS)}")

    def measured(predicted: np.ndarray, data: xgb.DMatrix) -> list[tuple[str, float]]:
        y, values = undone(transform, data.get_label().astype("float64")), undone(transform, predicted)
        return [(name, METRICS[name](y, values)) for name in names]

    plain = {key: value for key, value in params.items() if key != "eval_metric"}
    return {**plain, "disable_default_eval_metric": 1}, measured
