"""One line for people of each result of a training run's lineage, up to ``register``.

The run summary (:mod:`mlpipe.summary`) prints them one per step; the model card
(:mod:`mlpipe.registry.model_card`) shows them beside its tables. A step result records no task, so the
lines of a model's metrics find it by its headline metric (:func:`task_of`).

Import-light: the results and the tasks' rules only.
"""

from __future__ import annotations

from mlpipe.core.names import PARTS
from mlpipe.core.results import Analyze, Checks, Ingest, Register, Split, Train, Tune
from mlpipe.core.tasks import RULES, Task


def data_line(result: Ingest) -> str:
    """The snapshot: its data version and size."""
    return f"version {result.data_version}, {result.rows} rows x {result.columns} columns"


def checks_line(result: Checks) -> str:
    """A Great Expectations run: passed or how many failed, and its report."""
    verdict = "passed" if result.success else f"FAILED ({result.failed} failed)"
    return f"{verdict}, {result.evaluated} expectations evaluated; report {result.report}"


def split_line(result: Split) -> str:
    """The rows of each part of the split."""
    return " / ".join(f"{part} {result.rows[part]}" for part in PARTS) + " rows"


def tuning_line(result: Tune) -> str:
    """The best trial and how the trials ended, or why tuning was skipped."""
    if result.skipped:
        return f"skipped: {result.reason}"
    trials = result.trials or {}
    return (f"best {result.objective} {result.best_value:.4f} (trial {result.best_trial}; "
            f"{trials['complete']} complete, {trials['pruned']} pruned, {trials['failed']} failed)")


def task_of(metrics: dict[str, float]) -> Task:
    """The task whose headline metric is among ``metrics`` (a step result records no task)."""
    return next((task for task, rules in RULES.items() if rules.headline in metrics), Task.BINARY)


def training_line(result: Train) -> str:
    """The trained model's validation headline metric, where it stopped, its device and MLflow run."""
    rules = RULES[task_of(result.validation)]
    return (f"validation {rules.label} {result.validation.get(rules.headline, float('nan')):.4f} at iteration "
            f"{result.best_iteration} on {result.device}; MLflow run {result.mlflow_run_id}")


# Besides the headline metric, what an analysis line shows of each task: (metric, text before it).
ANALYSIS_EXTRAS = {Task.BINARY: (("pr_auc", ", PR AUC"), ("f1", ", F1"), ("threshold", " @ threshold")),
                   Task.MULTICLASS: (("accuracy", ", accuracy"), ("roc_auc_ovr_macro", ", macro ROC AUC")),
                   Task.REGRESSION: (("mae", ", MAE"), ("r2", ", R²"))}


def analysis_line(result: Analyze) -> str:
    """The analysis headline metric and the task's others (:data:`ANALYSIS_EXTRAS`), the baseline's and the lift."""
    m, task = result.metrics, task_of(result.metrics)
    rules = RULES[task]
    extras = "".join(f"{text} {m[key]:.4f}" for key, text in ANALYSIS_EXTRAS[task])
    return (f"{rules.label} {m[rules.headline]:.4f}{extras}; baseline {rules.label} "
            f"{m[f'baseline_{rules.headline}']:.4f}, lift {m['lift']:+.4f}")


def verdict(result: Register) -> str:
    """The gate's decision on the registered version."""
    return "promoted to champion" if result.promoted else "not promoted"


def registry_line(result: Register) -> str:
    """The registered version, its aliases, the gate's decision and why, and the champion."""
    aliases = ", ".join(result.aliases) or "no aliases"
    champion = f"champion: version {result.champion_version}" if result.champion_version else "no champion"
    return (f"{result.model_name} version {result.version} [{aliases}], {verdict(result)}: "
            f"{'; '.join(result.reasons)} ({champion})")
