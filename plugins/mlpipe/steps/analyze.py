"""analyze: how good the trained model is on the held-out analysis set, where, and why.

- Metrics on the analysis set: ROC AUC, PR AUC (average precision), log loss, Brier
  score, and precision / recall / F1 / confusion matrix at the decision threshold.
- The decision threshold is chosen on the *validation* set (the score maximizing F1;
  a row is positive when its score >= the threshold), so the analysis set stays
  untouched by every choice made about the model.
- The logistic-regression baseline's ROC AUC on the same rows, and the lift over it.
- Metrics per value of each ``spec.slices`` column (missing values form their own slice).
- Sensitivity: every numeric input of every sampled row multiplied by ``1 ± scale`` (random
  sign, seeded by ``split.seed``) -> mean / max absolute score change and the share of
  decisions that flip, for each scale in :data:`SENSITIVITY_SCALES`.
- Global feature contributions: mean |SHAP| per feature from XGBoost's ``pred_contribs``,
  on the sampled rows.

The validation and analysis sets are scored in one batched pass each
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
from pathlib import Path
from typing import TYPE_CHECKING

from mlpipe.core.errors import Refused
from mlpipe.core.results import Analyze, Split, Train
from mlpipe.data import datasets
from mlpipe.model.baseline import load_baseline
from mlpipe.model.evaluation import evaluate
from mlpipe.model.slices import slice_metrics
from mlpipe.model.tabular import TabularModel
from mlpipe.registry import tracking
from mlpipe.store import storage
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from mlpipe.core.spec import Spec
    from mlpipe.model.evaluation import Evaluated

log = logging.getLogger(__name__)

SENSITIVITY_SCALES = (0.01, 0.05)
TOP_FEATURES = 10
PLOTTED_FEATURES = 20
THRESHOLD_RULE = "the validation-set score that maximizes F1; a row is positive when its score >= it"
ARTIFACT_FOLDER = "analysis"
ANALYSIS_SAMPLE_ROWS = 50_000  # rows of the analysis set that sensitivity and SHAP contributions use


def require_both_classes(y: np.ndarray, part: str) -> None:
    """Raise :class:`Refused` unless ``y`` has positives and negatives."""
    positives = int(y.sum())
    if positives in (0, len(y)):
        raise Refused(f"the {part} set has {positives} positive rows out of {len(y)}: "
                        "metrics need both classes (check target.positive_class and the split)")


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


def sensitivity(model: TabularModel, frame: pd.DataFrame, threshold: float, seed: int) -> dict[str, dict]:
    """Score changes when each numeric input is multiplied by ``1 ± scale`` (seeded random signs)."""
    import numpy as np

    numeric = [c for c in model.schema["columns"] if c not in model.schema["categorical"]]
    base = model.scores(frame)
    rng = np.random.default_rng(seed)
    out = {}
    for scale in SENSITIVITY_SCALES:
        signs = rng.choice([-1.0, 1.0], size=(len(frame), len(numeric)))
        perturbed = frame.copy()
        perturbed[numeric] = frame[numeric].astype("float64").to_numpy() * (1 + scale * signs)
        moved = model.scores(perturbed)
        change = np.abs(moved - base)
        flips = (moved >= threshold) != (base >= threshold)
        out[f"{round(scale * 100)}pct"] = {"mean_abs_change": round(float(change.mean()), 6),
                                           "max_abs_change": round(float(change.max()), 6),
                                           "flip_rate": round(float(flips.mean()), 6)}
    return out


def feature_contributions(model: TabularModel, frame: pd.DataFrame) -> list[list]:
    """``[feature, mean |SHAP|]`` for every feature, largest first."""
    mean_abs = model.contributions(frame).drop(columns="bias").abs().mean().sort_values(ascending=False)
    return [[name, round(float(value), 6)] for name, value in mean_abs.items()]


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5), layout="tight")
    axes = figure.subplots()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return figure, axes


def plot_roc(y: np.ndarray, scores: np.ndarray, baseline: np.ndarray) -> Figure:
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axes = _axes("ROC (analysis set)", "false positive rate", "true positive rate")
    for name, values in (("model", scores), ("baseline LR", baseline)):
        fpr, tpr, _ = roc_curve(y, values)
        axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, values):.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.legend(loc="lower right")
    return figure


def plot_pr(y: np.ndarray, scores: np.ndarray, threshold: float) -> Figure:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure, axes = _axes("Precision-recall (analysis set)", "recall", "precision")
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

    figure, axes = _axes("Reliability (analysis set, score deciles)", "mean score", "observed positive rate")
    observed, predicted = calibration_curve(y, scores, n_bins=10, strategy="quantile")
    axes.plot(predicted, observed, marker="o", label="model")
    top = min(1.0, 1.1 * max(observed.max(), predicted.max()))
    axes.plot([0, top], [0, top], linestyle=":", color="grey", label="perfectly calibrated")
    axes.legend(loc="upper left")
    return figure


def plot_confusion(confusion: dict[str, int], threshold: float) -> Figure:
    figure, axes = _axes(f"Confusion matrix at threshold {threshold:.3f}", "predicted", "actual")
    cells = [[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]]
    axes.imshow(cells, cmap="Blues")
    darkest = max(max(row) for row in cells)
    for row in (0, 1):
        for col in (0, 1):
            axes.text(col, row, str(cells[row][col]), ha="center", va="center",
                      color="white" if cells[row][col] > darkest / 2 else "black")
    axes.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["negative", "positive"],
             yticklabels=["negative", "positive"])
    return figure


def plot_contributions(contributions: list[list]) -> Figure:
    figure, axes = _axes("Mean |SHAP| per feature (analysis set)", "mean |contribution| (log-odds)", "")
    shown = contributions[:PLOTTED_FEATURES][::-1]
    axes.barh([name for name, _ in shown], [value for _, value in shown])
    return figure


def mlflow_metrics(metrics: dict, confusion: dict, slices: dict, sensitive: dict) -> dict[str, float]:
    """Every number worth a chart in MLflow, under sanitized keys."""
    out = {f"analysis_{key}": value for key, value in {**metrics, **confusion}.items()}
    for scale, values in sensitive.items():
        out.update({f"analysis_sensitivity_{scale}_{key}": value for key, value in values.items()})
    for column, values in slices.items():
        for value, stats in values.items():
            prefix = re.sub(r"[^A-Za-z0-9_]+", "_", f"slice_{column}_{value}").strip("_")
            out.update({f"{prefix}_{key}": stats[key] for key in ("roc_auc", "positive_rate", "rows")
                        if stats[key] is not None})
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


def analysis_metrics(evaluated: Evaluated, threshold: float) -> tuple[dict, dict]:
    """The model's metrics and confusion matrix (:func:`classification_metrics`), the baseline's ROC AUC, the lift."""
    from sklearn.metrics import roc_auc_score

    require_both_classes(evaluated.y, "analysis")
    metrics, confusion = classification_metrics(evaluated.y, evaluated.scores["model"], threshold)
    metrics["baseline_roc_auc"] = round(float(roc_auc_score(evaluated.y, evaluated.scores["baseline"])), 6)
    metrics["lift"] = round(metrics["roc_auc"] - metrics["baseline_roc_auc"], 6)
    return metrics, confusion


def analyze(run: Run) -> Analyze:
    spec, split, train = run.spec, run.result(Split), run.result(Train)
    model = TabularModel.load(train.model_folder)
    threshold = decision_threshold(model, split.validation, spec)
    datasets.require_columns(split.analysis, spec.slices, "slices")
    evaluated = evaluate(split.analysis, spec, {"model": model.scores, "baseline": load_baseline(run).scores},
                         keep=spec.slices)
    y, scores = evaluated.y, evaluated.scores["model"]
    metrics, confusion = analysis_metrics(evaluated, threshold)
    slices = slice_metrics(evaluated.kept, y, scores, spec.slices)
    sample = datasets.sample(split.analysis, ANALYSIS_SAMPLE_ROWS, spec.split.seed)
    sensitive = sensitivity(model, sample, threshold, spec.split.seed)
    contributions = feature_contributions(model, sample)
    report = {"rows": len(evaluated), "sample_rows": len(sample), "threshold_rule": THRESHOLD_RULE,
              "metrics": metrics, "confusion_matrix": confusion, "slices": slices, "sensitivity": sensitive,
              "feature_contributions": contributions}
    figures = {"roc": plot_roc(y, scores, evaluated.scores["baseline"]), "pr": plot_pr(y, scores, threshold),
               "calibration": plot_calibration(y, scores),
               "confusion_matrix": plot_confusion(confusion, threshold),
               "feature_contributions": plot_contributions(contributions)}
    logged = mlflow_metrics(metrics, confusion, slices, sensitive)
    with tempfile.TemporaryDirectory(prefix="mlpipe-analyze-") as tmp:
        plots, metrics_uri = write_outputs(run, figures, report, Path(tmp))
        log_to_mlflow(train.mlflow_run_id, logged, Path(tmp))
    log.info("analysis: roc_auc %.4f (baseline %.4f), f1 %.4f at threshold %.4f",
             metrics["roc_auc"], metrics["baseline_roc_auc"], metrics["f1"], threshold)
    return Analyze(metrics=metrics, confusion_matrix=confusion, slices=slices, sensitivity=sensitive,
                   top_features=contributions[:TOP_FEATURES], sample_rows=len(sample), plots=plots,
                   metrics_uri=metrics_uri, mlflow_run_id=train.mlflow_run_id)
