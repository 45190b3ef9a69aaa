"""Plots of a model's analysis that every task draws the same way: the figure, a confusion matrix, feature
contributions.

Drawn with matplotlib's object API (no pyplot, no GUI backend); the caller saves the figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOTTED_FEATURES = 20


def figure_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    """A new figure of one plot, titled and with its axes labelled."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5), layout="tight")
    axes = figure.subplots()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return figure, axes


def plot_matrix(cells: list[list[int]], names: list[str], title: str) -> Figure:
    """A confusion matrix as a heatmap with its counts: ``cells[actual][predicted]``, both indexing ``names``."""
    figure, axes = figure_axes(title, "predicted", "actual")
    axes.imshow(cells, cmap="Blues")
    darkest = max(max(row) for row in cells)
    for row, values in enumerate(cells):
        for col, value in enumerate(values):
            axes.text(col, row, str(value), ha="center", va="center",
                      color="white" if value > darkest / 2 else "black")
    ticks = list(range(len(names)))
    axes.set(xticks=ticks, yticks=ticks, xticklabels=names, yticklabels=names)
    return figure


def plot_contributions(table: pd.DataFrame, unit: str) -> Figure:
    """The :data:`PLOTTED_FEATURES` features with the largest mean |SHAP| as horizontal bars, largest on top.

    ``table``: mean |contribution| per feature (columns) for each output of the model (rows); a model with
    several outputs (a class each) gets a bar segment per output, stacked, with a legend.
    """
    import numpy as np

    figure, axes = figure_axes("Mean |SHAP| per feature (analysis set)", f"mean |contribution| ({unit})", "")
    shown = list(table.sum().sort_values(ascending=False).index[:PLOTTED_FEATURES][::-1])
    left = np.zeros(len(shown))
    for output, values in table[shown].iterrows():
        axes.barh(shown, values.to_numpy(), left=left, label=str(output))
        left += values.to_numpy()
    if len(table) > 1:
        axes.legend(loc="lower right")
    return figure
