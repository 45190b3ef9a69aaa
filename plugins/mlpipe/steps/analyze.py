"""analyze: how good the trained model is on the held-out analysis set, where, and why.

What each task (``target.task``) reports on the analysis set:

- binary: ROC AUC, PR AUC (average precision), log loss, Brier score, and precision / recall / F1 /
  confusion matrix at the decision threshold. The threshold is chosen on the *validation* set (the score
  maximizing F1; a row is positive when its score >= the threshold), so the analysis set stays untouched by
  every choice made about the model. Plots: ROC, precision-recall, reliability, confusion matrix.
- regression: RMSE, MAE, R² and the mean error (bias: predicted - actual), and the rows, mean predicted and
  actual value and RMSE of each decile of the prediction (:mod:`mlpipe.model.regression_metrics`). Plots:
  residuals vs predicted, predicted vs actual.
- multiclass: log loss, accuracy, the macro and weighted one-vs-rest ROC AUC, precision / recall / F1 /
  support of each class and the confusion matrix by class name; a row's predicted class is its most probable
  one, there is no threshold (:mod:`mlpipe.model.multiclass_metrics`). Plot: confusion matrix.

And for every task:

- The baseline's headline metric (:data:`mlpipe.core.tasks.RULES`: ROC AUC, RMSE, log loss) on the same rows,
  ``baseline_<metric>``, and the model's ``lift`` over it (positive when the model is better).
- Metrics per value of each ``spec.slices`` column (missing values form their own slice;
  :mod:`mlpipe.model.slices`): binary, positives, positive rate, mean score, ROC AUC; regression, mean actual and
  predicted value, RMSE; multiclass, accuracy, log loss.
- Sensitivity: every numeric input of every sampled row multiplied by ``1 ± scale`` (random
  sign, seeded by ``split.seed``) -> mean / max absolute change of the prediction (of each class's
  probability, multiclass) and the share of decisions that flip (binary: at the threshold; multiclass: the
  most probable class; none for regression), for each scale in :data:`SENSITIVITY_SCALES`.
- Global feature contributions: mean |SHAP| per feature from XGBoost's ``pred_contribs``, on the sampled rows
  (:mod:`mlpipe.model.contributions`); a multiclass model's for each class too, its features ranked by the mean
  over the classes. Plot: the largest.

The validation set (binary: for the threshold) and the analysis set are scored in one batched pass each
(:func:`mlpipe.model.evaluation.evaluate`, ``data.batch_rows`` rows at a time): memory holds one
batch plus, per row, the label, the model's and the baseline's scores and the slice columns.
Sensitivity and SHAP contributions use a seeded sample of at most
:data:`ANALYSIS_SAMPLE_ROWS` analysis rows (all of them when fewer; the report's
``sample_rows`` says how many).

Plots (PNG, drawn with matplotlib's object API and its Agg renderer: no pyplot, no
GUI backend) and ``metrics.json`` go to ``<run>/analyze/`` and, with every metric
(``analysis_*``, ``slice_<column>_<value>_*``), to the MLflow run of ``train``.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe.core.errors import Refused
from mlpipe.core.results import Analyze, Split, Train
from mlpipe.core.tasks import RULES, Task, lift
from mlpipe.data import datasets
from mlpipe.model.baseline import load_baseline
from mlpipe.model.contributions import UNITS, contribution_report, mean_abs_contributions
from mlpipe.model.evaluation import evaluate
from mlpipe.model.metrics import headline
from mlpipe.model.multiclass_metrics import (
    class_confusion,
    multiclass_metrics,
    per_class_metrics,
    plot_class_confusion,
    predicted_classes,
)
from mlpipe.model.plots import figure_axes, plot_contributions, plot_matrix
from mlpipe.model.regression_metrics import (
    ERROR_STATS,
    decile_errors,
    plot_predicted_vs_actual,
    plot_residuals,
    regression_metrics,
)
from mlpipe.model.slices import slice_metrics, task_slice_metrics
from mlpipe.model.tabular import TabularModel
from mlpipe.registry import tracking
from mlpipe.store import storage
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from mlpipe.core.spec import Spec
    from mlpipe.model.evaluation import Evaluated

log = logging.getLogger(__name__)

SENSITIVITY_SCALES = (0.01, 0.05)
TOP_FEATURES = 10
THRESHOLD_RULE = "the validation-set score that maximizes F1; a row is positive when its score >= it"
ARTIFACT_FOLDER = "analysis"
ANALYSIS_SAMPLE_ROWS = 50_000  # rows of the analysis set that sensitivity and SHAP contributions use
# The metrics of each slice logged to MLflow, per task
LOGGED_SLICE_STATS = {Task.BINARY: ("roc_auc", "positive_rate", "rows"),
                      Task.REGRESSION: ERROR_STATS,
                      Task.MULTICLASS: ("rows", "accuracy", "log_loss")}


@dataclass
class Findings:
    """What the analysis of a task finds on the analysis set.

    ``metrics``: the model's, with the baseline's headline metric and the lift (:func:`with_lift`); ``tables``:
    the report's other tables, each an :class:`~mlpipe.core.results.Analyze` field (``confusion_matrix``,
    ``per_class``, ``deciles``); ``slices``: the metrics per slice; ``figures``: the task's plots by name;
    ``numbers``: the tables' numbers for MLflow (logged as ``analysis_<key>``).
    """

    metrics: dict[str, float]
    tables: dict[str, Any]
    slices: dict[str, Any]
    figures: dict[str, Figure]
    numbers: dict[str, float]


def require_both_classes(y: np.ndarray, part: str) -> None:
    """Raise :class:`Refused` unless ``y`` has positives and negatives."""
    positives = int(y.sum())
    if positives in (0, len(y)):
        raise Refused(f"the {part} set has {positives} positive rows out of {len(y)}: "
                        "metrics need both classes (check target.positive_class and the split)")


def require_analyzable(y: np.ndarray, spec: Spec, classes: list[str] | None) -> None:
    """Raise :class:`Refused` unless the analysis set's target varies: both classes (binary), two classes or
    more (multiclass: ``y`` indexes ``classes``), two distinct values or more (regression)."""
    import numpy as np

    task, column = spec.target.task, spec.target.column
    if task == Task.BINARY:
        require_both_classes(y, "analysis")
        return
    found = np.unique(y)
    if len(found) < 2:
        held = [classes[index] for index in found] if task == Task.MULTICLASS else found.tolist()
        kind = "classes" if task == Task.MULTICLASS else "distinct values"
        raise Refused(f"the analysis set's target.column {column!r} holds {held or 'nothing'} in its {len(y)} "
                      f"rows: {task} metrics need two {kind} or more (check the split)")


def choose_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximizes F1 on labels ``y`` (the validation set)."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return float(thresholds[int(np.argmax(f1))])


def classification_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[dict, dict]:
    """Ranking, probability and thresholded metrics, and the confusion matrix at ``threshold``."""
    from sklearn import metrics as m

    decided = scores >= threshold
    tn, fp, fn, tp = m.confusion_matrix(y, decided, labels=[0, 1]).ravel()
    values = {
        "roc_auc": m.roc_auc_score(y, scores),
        "pr_auc": m.average_precision_score(y, scores),
        "log_loss": m.log_loss(y, scores, labels=[0, 1]),
        "brier": m.brier_score_loss(y, scores),
        "precision": m.precision_score(y, decided, zero_division=0),
        "recall": m.recall_score(y, decided, zero_division=0),
        "f1": m.f1_score(y, decided, zero_division=0),
    }
    confusion = {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}
    rounded = {key: round(float(value), 6) for key, value in values.items()}
    # The threshold is kept exact: rounded, it could decide a row differently than it did here.
    return {**rounded, "threshold": threshold}, confusion


def decisions(task: Task, scores: np.ndarray, threshold: float | None) -> np.ndarray | None:
    """What a model decides for each row from its ``scores``: binary, positive when the score >= ``threshold``;
    multiclass, the most probable class; regression, nothing to decide (None)."""
    if task == Task.BINARY:
        return scores >= threshold
    return predicted_classes(scores) if task == Task.MULTICLASS else None


def sensitivity(model: TabularModel, frame: pd.DataFrame, threshold: float | None, seed: int) -> dict[str, dict]:
    """Prediction changes when each numeric input is multiplied by ``1 ± scale`` (seeded random signs): the mean and
    max absolute change (of every class probability, multiclass) and, when the model decides (:func:`decisions`:
    not for regression), the share of rows whose decision flips."""
    import numpy as np

    numeric = [c for c in model.schema["columns"] if c not in model.schema["categorical"]]
    base = model.scores(frame)
    decided = decisions(model.task, base, threshold)
    rng = np.random.default_rng(seed)
    out = {}
    for scale in SENSITIVITY_SCALES:
        signs = rng.choice([-1.0, 1.0], size=(len(frame), len(numeric)))
        perturbed = frame.copy()
        perturbed[numeric] = frame[numeric].astype("float64").to_numpy() * (1 + scale * signs)
        moved = model.scores(perturbed)
        change = np.abs(moved - base)
        stats = {"mean_abs_change": round(float(change.mean()), 6), "max_abs_change": round(float(change.max()), 6)}
        if decided is not None:
            stats["flip_rate"] = round(float((decisions(model.task, moved, threshold) != decided).mean()), 6)
        out[f"{round(scale * 100)}pct"] = stats
    return out


def plot_roc(y: np.ndarray, scores: np.ndarray, baseline: np.ndarray) -> Figure:
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axes = figure_axes("ROC (analysis set)", "false positive rate", "true positive rate")
    for name, values in (("model", scores), ("baseline LR", baseline)):
        fpr, tpr, _ = roc_curve(y, values)
        axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, values):.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.legend(loc="lower right")
    return figure


def plot_pr(y: np.ndarray, scores: np.ndarray, threshold: float) -> Figure:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure, axes = figure_axes("Precision-recall (analysis set)", "recall", "precision")
    precision, recall, _ = precision_recall_curve(y, scores)
    axes.plot(recall, precision, label=f"model (AP {average_precision_score(y, scores):.3f})")
    decided = scores >= threshold
    if decided.any():
        axes.scatter([y[decided].sum() / y.sum()], [y[decided].mean()], color="red", zorder=3,
                     label=f"threshold {threshold:.3f}")
    axes.axhline(y.mean(), linestyle=":", color="grey", label="positive rate")
    axes.legend(loc="upper right")
    return figure


def plot_calibration(y: np.ndarray, scores: np.ndarray) -> Figure:
    from sklearn.calibration import calibration_curve

    figure, axes = figure_axes("Reliability (analysis set, score deciles)", "mean score", "observed positive rate")
    observed, predicted = calibration_curve(y, scores, n_bins=10, strategy="quantile")
    axes.plot(predicted, observed, marker="o", label="model")
    top = min(1.0, 1.1 * max(observed.max(), predicted.max()))
    axes.plot([0, top], [0, top], linestyle=":", color="grey", label="perfectly calibrated")
    axes.legend(loc="upper left")
    return figure


def plot_confusion(confusion: dict[str, int], threshold: float) -> Figure:
    """The binary confusion matrix at ``threshold`` as a heatmap."""
    cells = [[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]]
    return plot_matrix(cells, ["negative", "positive"], f"Confusion matrix at threshold {threshold:.3f}")


def with_lift(task: Task, metrics: dict[str, float], evaluated: Evaluated) -> dict[str, float]:
    """``metrics`` with the baseline's headline metric on the same rows (``baseline_<metric>``) and the model's
    ``lift`` over it (:func:`mlpipe.core.tasks.lift`)."""
    name = RULES[task].headline
    baseline = round(headline(task, evaluated.y, evaluated.scores["baseline"]), 6)
    return {**metrics, f"baseline_{name}": baseline, "lift": round(lift(task, metrics[name], baseline), 6)}


def binary_findings(evaluated: Evaluated, columns: list[str], threshold: float) -> Findings:
    """A binary model's metrics and confusion matrix at ``threshold`` (:func:`classification_metrics`), its slices
    and plots."""
    y, scores = evaluated.y, evaluated.scores["model"]
    metrics, confusion = classification_metrics(y, scores, threshold)
    figures = {"roc": plot_roc(y, scores, evaluated.scores["baseline"]), "pr": plot_pr(y, scores, threshold),
               "calibration": plot_calibration(y, scores), "confusion_matrix": plot_confusion(confusion, threshold)}
    return Findings(with_lift(Task.BINARY, metrics, evaluated), {"confusion_matrix": confusion},
                    slice_metrics(evaluated.kept, y, scores, columns), figures, confusion)


def regression_findings(evaluated: Evaluated, columns: list[str]) -> Findings:
    """A regression model's error metrics and its errors by decile of the prediction, its slices and plots."""
    y, predicted = evaluated.y, evaluated.scores["model"]
    deciles = decile_errors(y, predicted)
    figures = {"residuals": plot_residuals(y, predicted),
               "predicted_vs_actual": plot_predicted_vs_actual(y, predicted)}
    numbers = table_numbers("decile", {stats["decile"]: stats for stats in deciles}, ERROR_STATS)
    return Findings(with_lift(Task.REGRESSION, regression_metrics(y, predicted), evaluated), {"deciles": deciles},
                    task_slice_metrics(Task.REGRESSION, evaluated.kept, y, predicted, columns), figures, numbers)


def multiclass_findings(evaluated: Evaluated, columns: list[str], classes: list[str]) -> Findings:
    """A multiclass model's metrics, per-class metrics and confusion matrix by class name, its slices and plot."""
    y, probabilities = evaluated.y, evaluated.scores["model"]
    per_class = per_class_metrics(y, probabilities, classes)
    confusion = class_confusion(y, probabilities, classes)
    return Findings(with_lift(Task.MULTICLASS, multiclass_metrics(y, probabilities), evaluated),
                    {"per_class": per_class, "confusion_matrix": confusion},
                    task_slice_metrics(Task.MULTICLASS, evaluated.kept, y, probabilities, columns),
                    {"confusion_matrix": plot_class_confusion(confusion)},
                    {**table_numbers("class", per_class), **table_numbers("confusion", confusion)})


def findings(task: Task, evaluated: Evaluated, columns: list[str], threshold: float | None,
             classes: list[str] | None) -> Findings:
    """What the analysis of ``task`` finds on the ``evaluated`` rows, with metrics per value of the slice
    ``columns`` (binary: at ``threshold``; multiclass: ``classes`` names the model's classes)."""
    if task == Task.BINARY:
        return binary_findings(evaluated, columns, threshold)
    if task == Task.REGRESSION:
        return regression_findings(evaluated, columns)
    return multiclass_findings(evaluated, columns, classes)


def metric_key(*parts: object) -> str:
    """An MLflow metric key of ``parts`` joined by ``_``: each run of other characters than letters, digits and
    ``_`` made one ``_``, and none at either end."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(map(str, parts))).strip("_")


def table_numbers(name: str, table: dict[Any, dict[str, Any]],
                  columns: tuple[str, ...] | None = None) -> dict[str, float]:
    """The numbers of ``table`` (row -> column -> number; only ``columns`` when given, None skipped) under the
    MLflow keys ``<name>_<row>_<column>``."""
    return {f"{metric_key(name, row)}_{metric_key(column)}": value for row, values in table.items()
            for column, value in values.items() if value is not None and (columns is None or column in columns)}


def mlflow_metrics(task: Task, found: Findings, sensitive: dict[str, dict]) -> dict[str, float]:
    """Every number worth a chart in MLflow, under sanitized keys: ``analysis_<metric>``,
    ``analysis_sensitivity_<scale>_<metric>`` and ``slice_<column>_<value>_<metric>``."""
    out = {f"analysis_{key}": value for key, value in {**found.metrics, **found.numbers}.items()}
    out.update(table_numbers("analysis_sensitivity", sensitive))
    for column, values in found.slices.items():
        out.update(table_numbers(f"slice_{column}", values, LOGGED_SLICE_STATS[task]))
    return out


def log_to_mlflow(run_id: str, metrics: dict[str, float], folder: Path) -> None:
    """Log ``metrics`` and the files of ``folder`` (plots, metrics.json) to the MLflow run ``run_id``."""
    from mlflow import MlflowClient

    tracking.log_batch(run_id, {}, [(key, value, 0) for key, value in metrics.items()])
    MlflowClient().log_artifacts(run_id, str(folder), artifact_path=ARTIFACT_FOLDER)


def write_outputs(run: Run, figures: dict[str, Figure], report: dict, folder: Path) -> tuple[dict, str]:
    """Save the plots and the report under ``folder`` and ``<run>/analyze/``; return their URIs."""
    (folder / "plots").mkdir()
    plots = {}
    for name, figure in figures.items():
        local = folder / "plots" / f"{name}.png"
        figure.savefig(local, format="png", dpi=100)
        plots[name] = storage.write_bytes(run.path("analyze", "plots", local.name), local.read_bytes())
    metrics_uri = storage.write_json(run.path("analyze", "metrics.json"), report)
    (folder / "metrics.json").write_bytes(storage.read_bytes(metrics_uri))
    return plots, metrics_uri


def decision_threshold(model: TabularModel, uri: str, spec: Spec) -> float:
    """The F1-maximizing threshold on the validation set at ``uri``, scored in one batched pass."""
    validation = evaluate(uri, spec, {"model": model.scores})
    require_both_classes(validation.y, "validation")
    return choose_threshold(validation.y, validation.scores["model"])


def analyze(run: Run) -> Analyze:
    """The step: the trained model of ``run`` analyzed on its analysis split, as the module says."""
    spec, split, train = run.spec, run.result(Split), run.result(Train)
    task, model = spec.target.task, TabularModel.load(train.model_folder)
    threshold = decision_threshold(model, split.validation, spec) if task == Task.BINARY else None
    datasets.require_columns(split.analysis, spec.slices, "slices")
    classes = model.schema.get("classes")
    evaluated = evaluate(split.analysis, spec, {"model": model.scores, "baseline": load_baseline(run).scores},
                         keep=spec.slices, classes=classes)
    require_analyzable(evaluated.y, spec, classes)
    found = findings(task, evaluated, spec.slices, threshold, classes)
    sample = datasets.sample(split.analysis, ANALYSIS_SAMPLE_ROWS, spec.split.seed)
    sensitive = sensitivity(model, sample, threshold, spec.split.seed)
    contributions = mean_abs_contributions(model, sample)
    explained = contribution_report(contributions)
    about = {"threshold_rule": THRESHOLD_RULE} if task == Task.BINARY else {"task": str(task)}
    report = {"rows": len(evaluated), "sample_rows": len(sample), **about, "metrics": found.metrics,
              **found.tables, "slices": found.slices, "sensitivity": sensitive, **explained}
    figures = {**found.figures, "feature_contributions": plot_contributions(contributions, UNITS[task])}
    with tempfile.TemporaryDirectory(prefix="mlpipe-analyze-") as tmp:
        plots, metrics_uri = write_outputs(run, figures, report, Path(tmp))
        log_to_mlflow(train.mlflow_run_id, mlflow_metrics(task, found, sensitive), Path(tmp))
    name = RULES[task].headline
    log.info("analysis: %s %.4f (baseline %.4f), lift %+.4f", name, found.metrics[name],
             found.metrics[f"baseline_{name}"], found.metrics["lift"])
    return Analyze(metrics=found.metrics, **found.tables, slices=found.slices, sensitivity=sensitive,
                   top_features=explained["feature_contributions"][:TOP_FEATURES], sample_rows=len(sample),
                   plots=plots, metrics_uri=metrics_uri, mlflow_run_id=train.mlflow_run_id)
