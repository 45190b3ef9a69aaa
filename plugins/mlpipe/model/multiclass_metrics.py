"""How good a multiclass model's class probabilities are on labelled rows: probability and ranking metrics,
per-class metrics and the confusion matrix.

``y`` holds each row's class as its index in the model's classes (:func:`mlpipe.data.features.labels`),
``probabilities`` a column per class in that order. A row's predicted class is its most probable one (the first
of equals); there is no threshold.

One-vs-rest ROC AUC is measured for each class that the rows hold (a class absent from them has no positives
to rank, so no ROC AUC); its macro average weighs those classes equally, its weighted average by their rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpipe.core.tasks import Task
from mlpipe.model.metrics import headline
from mlpipe.model.plots import plot_matrix

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure


def one_vs_rest_roc_auc(y: np.ndarray, probabilities: np.ndarray) -> list[float | None]:
    """The ROC AUC of each class's probability at telling its rows from the others' (None for a class the rows
    do not hold, or when they hold no other)."""
    from sklearn.metrics import roc_auc_score

    found = [y == index for index in range(probabilities.shape[1])]
    return [float(roc_auc_score(rows, probabilities[:, index])) if 0 < rows.sum() < len(y) else None
            for index, rows in enumerate(found)]


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """The index of each row's most probable class (the first of equals)."""
    return probabilities.argmax(axis=1)


def accuracy_stats(y: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Rows, accuracy and log loss of a group of rows (all of them, a slice)."""
    return {"rows": len(y), "accuracy": round(float((predicted_classes(probabilities) == y).mean()), 6),
            "log_loss": round(headline(Task.MULTICLASS, y, probabilities), 6)}


def multiclass_metrics(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Log loss, accuracy (:func:`accuracy_stats`) and the macro and weighted averages of the one-vs-rest ROC AUC
    of the classes the rows hold (:func:`one_vs_rest_roc_auc`)."""
    import numpy as np

    overall = accuracy_stats(y, probabilities)
    aucs = one_vs_rest_roc_auc(y, probabilities)
    held = [index for index, auc in enumerate(aucs) if auc is not None]
    support = np.bincount(y, minlength=probabilities.shape[1])[held]
    held_aucs = [aucs[index] for index in held]
    return {"log_loss": overall["log_loss"], "accuracy": overall["accuracy"],
            "roc_auc_ovr_macro": round(float(np.mean(held_aucs)), 6),
            "roc_auc_ovr_weighted": round(float(np.average(held_aucs, weights=support)), 6)}


def per_class_metrics(y: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall and F1 of predicting each class (0 where undefined), its rows (``support``) and its
    one-vs-rest ROC AUC (None for a class the rows do not hold), by class name."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted_classes(probabilities), labels=list(range(len(classes))), zero_division=0)
    aucs = one_vs_rest_roc_auc(y, probabilities)
    return {name: {"precision": round(float(precision[index]), 6), "recall": round(float(recall[index]), 6),
                   "f1": round(float(f1[index]), 6), "support": int(support[index]),
                   "roc_auc": None if aucs[index] is None else round(aucs[index], 6)}
            for index, name in enumerate(classes)}


def class_confusion(y: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, dict[str, int]]:
    """The confusion matrix by class name: actual class -> predicted class -> rows."""
    from sklearn.metrics import confusion_matrix

    cells = confusion_matrix(y, predicted_classes(probabilities), labels=list(range(len(classes))))
    return {actual: {predicted: int(cells[row, col]) for col, predicted in enumerate(classes)}
            for row, actual in enumerate(classes)}


def plot_class_confusion(confusion: dict[str, dict[str, int]]) -> Figure:
    """:func:`class_confusion` as a heatmap: a row per actual class, a column per predicted class."""
    names = list(confusion)
    return plot_matrix([[confusion[actual][predicted] for predicted in names] for actual in names], names,
                       "Confusion matrix (most probable class)")
