"""Global feature contributions: how much each feature moves a model's output, from XGBoost's SHAP values.

A feature's contribution is its mean |SHAP value| over the rows (``pred_contribs``): in log-odds for a binary
model, in the log-odds of each class for a multiclass one (an output per class), in the prediction's margin for
a regression model (the target's units for squared error).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpipe.core.tasks import Task

if TYPE_CHECKING:
    import pandas as pd

    from mlpipe.model.tabular import TabularModel

UNITS = {Task.BINARY: "log-odds", Task.MULTICLASS: "log-odds, stacked by class", Task.REGRESSION: "prediction margin"}


def mean_abs_contributions(model: TabularModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP| of each feature (a column each) on the rows of ``frame``, for each output of the model (a row
    each): one row (binary, regression), a row per class named by it (multiclass)."""
    import numpy as np
    import pandas as pd

    if model.task != Task.MULTICLASS:
        return model.contributions(frame).drop(columns="bias").abs().mean().to_frame().T
    values = model.contribution_values(frame)  # rows x classes x (features + bias)
    return pd.DataFrame(np.abs(values[:, :, :-1]).mean(axis=0), index=model.schema["classes"],
                        columns=model.schema["columns"])


def ranked(mean_abs: pd.Series) -> list[list]:
    """``[feature, mean |SHAP|]`` for every feature of ``mean_abs``, largest first."""
    return [[name, round(float(value), 6)] for name, value in mean_abs.sort_values(ascending=False).items()]


def contribution_report(table: pd.DataFrame) -> dict[str, Any]:
    """What the report says of :func:`mean_abs_contributions`: ``feature_contributions``, every feature ranked by
    its contribution averaged over the model's outputs; with several outputs (multiclass),
    ``class_contributions`` too: the ranking of each class."""
    report: dict[str, Any] = {"feature_contributions": ranked(table.mean())}
    if len(table) > 1:
        report["class_contributions"] = {str(name): ranked(row) for name, row in table.iterrows()}
    return report
