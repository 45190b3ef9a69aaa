"""The headline metric of each task (:data:`mlpipe.core.tasks.RULES`): how a model and its baseline are compared."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpipe.core.tasks import RULES, Task

if TYPE_CHECKING:
    import numpy as np


def headline(task: Task, y: np.ndarray, predicted: np.ndarray) -> float:
    """The task's headline metric of ``predicted`` against the labels ``y`` (:func:`mlpipe.data.features.labels`):
    binary, ROC AUC of the positive class's probability; multiclass, log loss of the class probabilities (one
    column per class); regression, the root mean squared error."""
    from sklearn import metrics

    name = RULES[task].headline
    if name == "roc_auc":
        return float(metrics.roc_auc_score(y, predicted))
    if name == "log_loss":  # float32 probabilities sum to one within 1e-7; scikit-learn asks for 1e-8
        probabilities = predicted.astype("float64")
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return float(metrics.log_loss(y, probabilities, labels=list(range(predicted.shape[1]))))
    return float(metrics.root_mean_squared_error(y, predicted))
