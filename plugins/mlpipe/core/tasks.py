"""What a model predicts (``target.task``): the learning task, and what follows from it for every layer.

- ``binary``: the probability of the positive class (``target.positive_class``);
- ``multiclass``: a probability for each class of the target (``target.classes``, or the train split's classes
  in the order of their text);
- ``regression``: a number, learned as it is or through a :class:`Transform` (``target.transform``) that every
  prediction undoes.

Each task names XGBoost's objective and the metrics evaluated every boosting round (the last one decides early
stopping, as in XGBoost), and the headline metric that the model and its baseline are compared on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


@dataclass(frozen=True)
class TaskRules:
    """How a task trains and is judged.

    ``objectives``: the XGBoost objectives that fit the task, the first the default. ``round_metrics``: evaluated
    on the validation split every round, whatever else the spec lists; the last decides early stopping unless
    the spec lists another last. ``headline``: the metric (as :mod:`mlpipe.steps.analyze` names it) the model's
    lift over its baseline is measured on; ``higher_is_better`` says which way the lift points.
    """

    objectives: tuple[str, ...]
    round_metrics: tuple[str, ...]
    headline: str
    higher_is_better: bool
    label: str  # the headline metric's name for people: "ROC AUC"

    @property
    def objective(self) -> str:
        return self.objectives[0]


RULES = {
    Task.BINARY: TaskRules(("binary:logistic",), ("logloss", "auc"), "roc_auc", True, "ROC AUC"),
    Task.MULTICLASS: TaskRules(("multi:softprob",), ("merror", "mlogloss"), "log_loss", False, "log loss"),
    Task.REGRESSION: TaskRules(("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:tweedie",
                                "reg:gamma", "count:poisson"), ("mae", "rmse"), "rmse", False, "RMSE"),
}


def lift(task: Task, model: float, baseline: float) -> float:
    """How much better the model's headline metric is than the baseline's: positive when it is better."""
    return model - baseline if RULES[task].higher_is_better else baseline - model


class Transform(StrEnum):
    """How a regression model learns its target (``target.transform``): the log of it (a target above 0, e.g. an
    amount whose errors grow with it), or the log of one plus it (a target of 0 or more). The model predicts on that
    scale; every prediction it makes is turned back into the target's units (``exp``, ``expm1``), so metrics,
    scores and answers are all in those units."""

    LOG = "log"
    LOG1P = "log1p"


@dataclass(frozen=True)
class TransformRule:
    forward: str  # numpy's function from the target to what the model learns ...
    inverse: str  # ... and back
    above: float  # every target value must be greater than this


TRANSFORMS = {Transform.LOG: TransformRule("log", "exp", 0.0), Transform.LOG1P: TransformRule("log1p", "expm1", -1.0)}
# The objectives a transformed target may be learned with: those that take any real label (a log can be negative).
TRANSFORMABLE = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror")


def learned(transform: Transform | str | None, values: np.ndarray) -> np.ndarray:
    """Target values as a model with ``transform`` learns them (as they are without one)."""
    import numpy as np

    return values if transform is None else getattr(np, TRANSFORMS[Transform(transform)].forward)(values)


def undone(transform: Transform | str | None, values: np.ndarray) -> np.ndarray:
    """What a model with ``transform`` predicts, in the target's units (as it is without one)."""
    import numpy as np

    return values if transform is None else getattr(np, TRANSFORMS[Transform(transform)].inverse)(values)
