"""The promotion gate: does a newly registered model version become the ``champion``?

:func:`decide` is a pure function of the spec and two *scorecards* (what the
challenger and the current champion scored on the same rows: this run's analysis
set), so the rule is tested and changed alone. The metrics are the task's (:data:`mlpipe.core.tasks.RULES`):
what follows names the binary ones, ROC AUC first; a multiclass model is held to its log loss and a regression
model to its RMSE the same way (``max_log_loss``, ``max_rmse``, slices by ``max_slice_drop``, sanity against
predicting the class shares or the mean for every row; fairness by the task's :data:`MEASURES`). A challenger is
promoted when:

- it passes the spec's absolute thresholds (``min_roc_auc``, ``min_lift_over_baseline``);
- it passes the fairness check when ``thresholds.fairness`` is set: what the model hands each group of
  ``thresholds.fairness.column`` (:data:`MEASURES`: binary, the approval rate, score < decision threshold;
  multiclass, the share of rows predicted ``favorable_class``; regression, the mean prediction, which must be
  positive) has a disparate impact (lowest group / highest) of at least ``min_disparate_impact`` over groups of
  at least ``min_group_rows`` rows;
- with a champion: its ROC AUC beats the champion's by ``min_improvement_over_champion``
  and no ``spec.slices`` slice loses more than ``max_slice_roc_auc_drop`` of ROC AUC
  (slices with fewer than :data:`MIN_SLICE_CLASS_ROWS` rows of either class are not
  compared, and the decision's notes say so);
- it is not degenerate (:func:`sanity_failures`): at least :data:`MIN_TREES` trees, an analysis
  ROC AUC no more than :data:`MAX_ROC_AUC_BELOW_BASELINE` below the baseline's, a PR AUC above the
  positive rate (what random scores get) and an F1 at its decision threshold above the F1 of flagging
  every row;
- and the infra check passed (the registered model loads and scores through the
  serving code path). ``force`` promotes regardless of everything but the infra and sanity
  checks (a model that cannot be served, or a degenerate one, is never made champion) and keeps
  the reasons it overrides.

:func:`scorecard` computes a scorecard from a model's scores, the labels and the slice and
fairness columns of the same rows (what :func:`mlpipe.model.evaluation.evaluate` keeps); :func:`side_by_side`
lays two scorecards out for the audit log and the model version's tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlpipe.core.tasks import RULES, Task, lift
from mlpipe.model.metrics import headline
from mlpipe.model.slices import slice_keys, slice_metrics

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlpipe.core.spec import Spec

# A slice's ROC AUC is compared only when it has at least this many positive and negative rows.
MIN_SLICE_CLASS_ROWS = 10
FORCED = "forced by the force_promote trigger option"
# A multiclass or regression slice is compared only when it has at least this many rows.
MIN_SLICE_ROWS = 30
CHANCE = {Task.MULTICLASS: "the class shares", Task.REGRESSION: "the mean"}  # the sanity check's floor
# Sanity: a model with fewer trees is degenerate (an early stop on noise: 2 trees were once promoted). Training
# keeps at least ceil(1 / eta) trees: 4 at the highest eta the shipped search space allows (0.3) ...
MIN_TREES = 4
# ... and so is one whose analysis ROC AUC is this far below the logistic baseline's: about twice the
# ROC AUC's noise on the reference analysis set (~100 positives: +-0.025).
MAX_ROC_AUC_BELOW_BASELINE = 0.05


@dataclass(frozen=True)
class GroupMeasure:
    """What the fairness check compares across groups: the mean over a group's rows of a per-row outcome
    (:func:`outcomes`), kept under ``key`` in a scorecard's ``fairness`` groups and named ``label`` in messages.
    ``positive``: its ratio means something only for positive values (a mean prediction; a rate of 0 is a rate)."""

    key: str
    label: str
    positive: bool = False


MEASURES = {Task.BINARY: GroupMeasure("approval_rate", "approval rate"),
            Task.MULTICLASS: GroupMeasure("favorable_rate", "favorable-class rate"),
            Task.REGRESSION: GroupMeasure("mean_prediction", "mean prediction", positive=True)}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def sanity_failures(spec: Spec, card: dict[str, Any]) -> list[str]:
    """Why the challenger's scorecard is degenerate against the baseline and chance (empty when it is not).

    ``force_promote`` never overrides these: such a model does no better than the baseline or than
    chance, whatever the thresholds say. A multiclass or regression model is degenerate when its headline
    metric is no better than that of the same prediction for every row (the class shares, the mean: ``chance``).
    """
    failures = []
    if card["trees"] < MIN_TREES:
        failures.append(f"sanity: the model predicts with {card['trees']} trees < {MIN_TREES}")
    task = spec.target.task
    if task != Task.BINARY:
        name = RULES[task].headline
        if lift(task, card[name], card["chance"]) <= 0:
            failures.append(f"sanity: analysis {name} {card[name]:.4f} is no better than {card['chance']:.4f}, that "
                            f"of predicting {CHANCE[task]} for every row")
        return failures
    floor = card["baseline_roc_auc"] - MAX_ROC_AUC_BELOW_BASELINE
    if card["roc_auc"] < floor:
        failures.append(f"sanity: analysis roc_auc {card['roc_auc']:.4f} < the baseline's "
                        f"{card['baseline_roc_auc']:.4f} - {MAX_ROC_AUC_BELOW_BASELINE}")
    rate = card["positive_rate"]
    if card["pr_auc"] <= rate:
        failures.append(f"sanity: analysis pr_auc {card['pr_auc']:.4f} <= the positive rate {rate:.4f} "
                        f"(random scores)")
    everyone = round(2 * rate / (1 + rate), 6)
    if card["f1"] <= everyone:
        failures.append(f"sanity: analysis f1 {card['f1']:.4f} at the decision threshold <= {everyone:.4f}, "
                        f"the f1 of flagging every row")
    return failures


def threshold_failures(spec: Spec, metrics: dict[str, Any]) -> list[str]:
    """Why ``metrics`` fail the spec's thresholds (empty when they pass): the task's bound on its headline metric
    (``min_roc_auc``, ``max_log_loss``, ``max_rmse``), the lift over the baseline."""
    failures = []
    task = spec.target.task
    name, higher = RULES[task].headline, RULES[task].higher_is_better
    key = f"{'min' if higher else 'max'}_{name}"
    bound = getattr(spec.thresholds, key)
    if bound is not None and lift(task, metrics[name], bound) < 0:
        failures.append(f"analysis {name} {metrics[name]:.4f} {'<' if higher else '>'} thresholds.{key} {bound}")
    minimum = spec.thresholds.min_lift_over_baseline
    if metrics["lift"] < minimum:
        failures.append(f"lift over baseline {metrics['lift']:.4f} "
                        f"< thresholds.min_lift_over_baseline {minimum}")
    return failures


def improvement_failures(spec: Spec, challenger: dict[str, Any], champion: dict[str, Any]) -> list[str]:
    """Why the challenger does not beat the champion's headline metric by the spec's margin (empty when it does)."""
    margin, task = spec.thresholds.min_improvement_over_champion, spec.target.task
    name = RULES[task].headline
    improvement = lift(task, challenger[name], champion[name])
    if improvement >= margin:
        return []
    return [f"{name} {challenger[name]:.4f} vs champion version {champion['version']} "
            f"{champion[name]:.4f} on this run's analysis set: improvement {improvement:+.4f} "
            f"< thresholds.min_improvement_over_champion {margin}"]


def slice_rows(spec: Spec, challenger: dict[str, Any], champion: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per slice: its size, both models' headline metric, the drop, and whether it is compared.

    Binary: the drop of ROC AUC, compared with :data:`MIN_SLICE_CLASS_ROWS` rows of each class. Other tasks: how
    much worse the challenger's headline metric is, as a share of the champion's, compared with
    :data:`MIN_SLICE_ROWS` rows.
    """
    if spec.target.task != Task.BINARY:
        return task_slice_rows(spec.target.task, challenger, champion)
    rows = []
    for column, values in challenger.get("slices", {}).items():
        for value, stats in values.items():
            theirs = champion["slices"][column][value]["roc_auc"]
            negatives = stats["rows"] - stats["positives"]
            compared = min(stats["positives"], negatives) >= MIN_SLICE_CLASS_ROWS
            drop = round(theirs - stats["roc_auc"], 6) if compared else None
            rows.append({"slice": f"{column}={value}", "rows": stats["rows"], "positives": stats["positives"],
                         "challenger": stats["roc_auc"], "champion": theirs, "drop": drop, "compared": compared})
    return rows


def task_slice_rows(task: Task, challenger: dict[str, Any], champion: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`slice_rows` of a multiclass or regression model."""
    name, rows = RULES[task].headline, []
    for column, values in challenger.get("slices", {}).items():
        for value, stats in values.items():
            theirs = champion["slices"][column][value][name]
            compared = stats["rows"] >= MIN_SLICE_ROWS and theirs > 0
            drop = round(-lift(task, stats[name], theirs) / theirs, 6) if compared else None
            rows.append({"slice": f"{column}={value}", "rows": stats["rows"], "challenger": stats[name],
                         "champion": theirs, "drop": drop, "compared": compared})
    return rows


def slice_limit(spec: Spec) -> tuple[str, float]:
    """The spec key that bounds a slice's drop (:func:`slice_rows`) for the spec's task, and its value."""
    key = "max_slice_roc_auc_drop" if spec.target.task == Task.BINARY else "max_slice_drop"
    return key, getattr(spec.thresholds, key)


def slice_failures(spec: Spec, rows: list[dict[str, Any]]) -> list[str]:
    """The compared slices whose headline metric drops by more than the spec allows (:func:`slice_limit`)."""
    name = RULES[spec.target.task].headline
    key, limit = slice_limit(spec)
    return [f"slice {row['slice']}: {name} {row['challenger']:.4f} vs champion {row['champion']:.4f} "
            f"(drop {row['drop']:.4f} > thresholds.{key} {limit})"
            for row in rows if row["compared"] and row["drop"] > limit]


def slice_notes(rows: list[dict[str, Any]]) -> list[str]:
    """The slices too small to compare (binary: in either class)."""
    return [f"slice {row['slice']} not compared: {row['rows']} rows, {row['positives']} positives "
            f"(needs {MIN_SLICE_CLASS_ROWS} of each class)" if "positives" in row else
            f"slice {row['slice']} not compared: {row['rows']} rows (needs {MIN_SLICE_ROWS})"
            for row in rows if not row["compared"]]


def disparate_impact(groups: dict[str, dict[str, Any]], min_rows: int,
                     measure: GroupMeasure = MEASURES[Task.BINARY]) -> dict[str, Any]:
    """Lowest / highest ``measure`` over the groups of at least ``min_rows`` rows.

    ``lowest`` and ``highest`` name the groups, ``None`` when fewer than two are big enough (``value`` too);
    ``value`` is also ``None`` when the measure must be positive and the lowest group's is not; ``skipped`` lists
    the groups too small to compare.
    """
    eligible = {name: stats[measure.key] for name, stats in groups.items() if stats["rows"] >= min_rows}
    skipped = sorted(set(groups) - set(eligible))
    if len(eligible) < 2:
        return {"value": None, "lowest": None, "highest": None, "skipped": skipped}
    lowest, highest = min(eligible, key=eligible.get), max(eligible, key=eligible.get)
    low, top = eligible[lowest], eligible[highest]
    value = None if measure.positive and low <= 0 else round(low / top if top > 0 else 1.0, 6)
    return {"value": value, "lowest": lowest, "highest": highest, "skipped": skipped}


def unmeasured(spec: Spec, card: dict[str, Any]) -> str:
    """Why ``card`` has no fairness groups: a multiclass model without the favorable class, or nothing measured."""
    rule, measure = spec.thresholds.fairness, MEASURES[spec.target.task]
    classes = card.get("classes") or []
    if spec.target.task == Task.MULTICLASS and str(rule.favorable_class) not in classes:
        return (f"thresholds.fairness.favorable_class {rule.favorable_class!r} is not one of the model's classes "
                f"{classes}: no {measure.label} to compare")
    return f"no {measure.label}s were measured for column {rule.column!r}"


def unfairness(spec: Spec, groups: dict[str, dict[str, Any]], impact: dict[str, Any]) -> list[str]:
    """The fairness failure of a comparison of two groups or more (:func:`disparate_impact`), if any."""
    rule, measure = spec.thresholds.fairness, MEASURES[spec.target.task]
    low, high = impact["lowest"], impact["highest"]
    lowest = f"{measure.label} of group {rule.column}={low} {groups[low][measure.key]:.4f}"
    if impact["value"] is None:
        return [f"fairness: {lowest} <= 0: a ratio of group means needs positive predictions; drop "
                f"thresholds.fairness for a target whose predictions can be 0 or less"]
    if impact["value"] >= rule.min_disparate_impact:
        return []
    return [f"fairness: disparate impact on {rule.column} {impact['value']:.4f} "
            f"< thresholds.fairness.min_disparate_impact {rule.min_disparate_impact}: {lowest} vs group "
            f"{rule.column}={high} {groups[high][measure.key]:.4f}"]


def fairness_findings(spec: Spec, card: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(failures, notes)`` of the fairness check of one scorecard; nothing when the spec declares none."""
    rule = spec.thresholds.fairness
    if rule is None:
        return [], []
    groups = card.get("fairness")
    if groups is None:
        return [f"fairness: {unmeasured(spec, card)}"], []
    impact = disparate_impact(groups, rule.min_group_rows, MEASURES[spec.target.task])
    notes = [f"fairness: group {rule.column}={name} not compared: {groups[name]['rows']} rows "
             f"(< thresholds.fairness.min_group_rows {rule.min_group_rows})" for name in impact["skipped"]]
    if impact["lowest"] is None:
        return [], [*notes, f"fairness: fewer than two groups of {rule.column!r} are big enough to compare"]
    return unfairness(spec, groups, impact), notes


def fairness_clause(spec: Spec, challenger: dict[str, Any]) -> str:
    """``", disparate impact on <column> <value> >= <minimum>"`` when the check ran, else nothing."""
    rule, value = spec.thresholds.fairness, impact_of(spec, challenger)
    return "" if rule is None or value is None else (
        f", disparate impact on {rule.column} {value:.4f} >= {rule.min_disparate_impact}")


def passing_reason(spec: Spec, challenger: dict[str, Any], champion: dict[str, Any] | None) -> str:
    """Why a challenger that passes every check is promoted."""
    name = RULES[spec.target.task].headline
    if champion is None:
        return ("no champion yet and the spec thresholds pass "
                f"({name} {challenger[name]:.4f}, lift {challenger['lift']:.4f}"
                f"{fairness_clause(spec, challenger)})")
    return (f"beats champion version {champion['version']} on this run's analysis set: {name} "
            f"{challenger[name]:.4f} vs {champion[name]:.4f} "
            f"(>= thresholds.min_improvement_over_champion {spec.thresholds.min_improvement_over_champion}), "
            f"no slice drops more than {slice_limit(spec)[1]}{fairness_clause(spec, challenger)}")


def decide(spec: Spec, challenger: dict[str, Any], champion: dict[str, Any] | None,
           force: bool = False, infra_error: str | None = None) -> Decision:
    """Promote the challenger or not, and why.

    ``challenger`` is its scorecard (:func:`scorecard`, plus its ``trees``); ``champion`` is ``None``
    when the model has no champion, else the champion's scorecard on the same rows plus its ``version``.
    ``force`` (the ``force_promote`` trigger option) promotes regardless, keeping the reasons it
    overrides, unless ``infra_error`` says the challenger cannot be served or it fails the sanity check.
    """
    if infra_error is not None:
        overridden = [f"{FORCED} does not override the infra check"] if force else []
        return Decision(promote=False, reasons=[f"infra check failed: {infra_error}", *overridden])
    insane = sanity_failures(spec, challenger)
    failures = threshold_failures(spec, challenger)
    failures_fair, notes = fairness_findings(spec, challenger)
    if champion is not None:
        rows = slice_rows(spec, challenger, champion)
        failures += improvement_failures(spec, challenger, champion) + slice_failures(spec, rows)
        notes = slice_notes(rows) + notes
    failures += failures_fair
    if insane:
        overridden = [f"{FORCED} does not override the sanity check"] if force else []
        return Decision(promote=False, reasons=[*insane, *overridden, *failures], notes=notes)
    if force:
        return Decision(promote=True, reasons=[FORCED, *failures], notes=notes)
    if failures:
        return Decision(promote=False, reasons=failures, notes=notes)
    return Decision(promote=True, reasons=[passing_reason(spec, challenger, champion)], notes=notes)


def impact_of(spec: Spec, card: dict[str, Any] | None) -> float | None:
    """The disparate impact of a scorecard's fairness groups (``None`` when not measured or not comparable)."""
    rule = spec.thresholds.fairness
    if rule is None or card is None or card.get("fairness") is None:
        return None
    return disparate_impact(card["fairness"], rule.min_group_rows, MEASURES[spec.target.task])["value"]


def side_by_side(spec: Spec, challenger: dict[str, Any], champion: dict[str, Any] | None) -> dict[str, Any]:
    """The two scorecards laid out metric by metric, slice by slice and group by group."""
    def both(key: str) -> dict[str, Any]:
        return {"challenger": challenger.get(key), "champion": None if champion is None else champion.get(key)}

    binary = spec.target.task == Task.BINARY
    metrics = {key: both(key) for key in (RULES[spec.target.task].headline, "lift", *(["threshold"] * binary))}
    metrics["disparate_impact"] = {"challenger": impact_of(spec, challenger), "champion": impact_of(spec, champion)}
    key, groups = MEASURES[spec.target.task].key, challenger.get("fairness") or {}
    fairness = {group: {"rows": stats["rows"], "challenger": stats[key],
                        "champion": None if champion is None else champion["fairness"][group][key]}
                for group, stats in groups.items()}
    return {"champion_version": None if champion is None else champion["version"], "metrics": metrics,
            "slices": [] if champion is None else slice_rows(spec, challenger, champion),
            "fairness": fairness and {"column": spec.thresholds.fairness.column,
                                      "measure": MEASURES[spec.target.task].label, "groups": fairness}}


def outcomes(spec: Spec, scores: np.ndarray, threshold: float | None, classes: list[str] | None) -> np.ndarray | None:
    """Per row, what :data:`MEASURES` averages over a group: binary, approved (score < ``threshold``: not predicted
    to go bad); multiclass, predicted (the most probable of the model's ``classes``) as
    ``thresholds.fairness.favorable_class``, ``None`` when that is not one of them; regression, the prediction."""
    task = spec.target.task
    if task == Task.BINARY:
        return scores < threshold
    if task == Task.REGRESSION:
        return scores
    favorable = str(spec.thresholds.fairness.favorable_class)
    return None if favorable not in (classes or []) else scores.argmax(axis=1) == classes.index(favorable)


def group_measures(spec: Spec, kept: pd.DataFrame, scores: np.ndarray, threshold: float | None,
                   classes: list[str] | None) -> dict[str, dict[str, Any]] | None:
    """Rows and the task's measure (:data:`MEASURES`, of :func:`outcomes`) per value of the fairness column of
    ``kept``; ``None`` when the spec sets no fairness check or the measure cannot be taken."""
    rule = spec.thresholds.fairness
    values = None if rule is None else outcomes(spec, scores, threshold, classes)
    if values is None:
        return None
    keys, key = slice_keys(kept, rule.column), MEASURES[spec.target.task].key
    masks = {group: keys == group for group in sorted(set(keys))}
    return {group: {"rows": int(mask.sum()), key: round(float(values[mask].mean(dtype="float64")), 6)}
            for group, mask in masks.items()}


def scorecard(spec: Spec, kept: pd.DataFrame, y: np.ndarray, scores: np.ndarray,
              threshold: float | None, baseline: float, classes: list[str] | None = None) -> dict[str, Any]:
    """What a model's ``scores`` amount to, for :func:`decide`.

    ``y`` are the rows' labels and ``kept`` their ``spec.slices`` columns and fairness column; ``baseline`` is the
    baseline's headline metric on them. Binary: PR AUC and F1 (at ``threshold``) are measured as the analyze step
    does. Other tasks: :func:`task_scorecard` (a multiclass model's ``classes``, in the order of its scores).
    Every task: the fairness groups (:func:`group_measures`).
    """
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    if spec.target.task != Task.BINARY:
        return task_scorecard(spec, kept, y, scores, baseline, classes)
    baseline_roc_auc = baseline

    roc_auc = round(float(roc_auc_score(y, scores)), 6)
    return {"roc_auc": roc_auc, "lift": round(roc_auc - baseline_roc_auc, 6), "threshold": threshold,
            "baseline_roc_auc": baseline_roc_auc, "pr_auc": round(float(average_precision_score(y, scores)), 6),
            "f1": round(float(f1_score(y, scores >= threshold, zero_division=0)), 6),
            "positive_rate": round(float(y.mean()), 6),
            "slices": slice_metrics(kept, y, scores, spec.slices),
            "fairness": group_measures(spec, kept, scores, threshold, None)}


def task_scorecard(spec: Spec, kept: pd.DataFrame, y: np.ndarray, predicted: np.ndarray,
                   baseline: float, classes: list[str] | None = None) -> dict[str, Any]:
    """:func:`scorecard` of a multiclass or regression model: its headline metric, the baseline's and the lift;
    ``chance``, the headline metric of predicting the same for every row (the class shares, the mean: the sanity
    check's floor); per slice of ``spec.slices``, its rows and headline metric; the fairness groups; a multiclass
    model's ``classes``."""
    import numpy as np

    task = spec.target.task
    name = RULES[task].headline
    value = round(headline(task, y, predicted), 6)
    if task == Task.MULTICLASS:
        shares = np.bincount(y, minlength=predicted.shape[1]) / len(y)
        constant = np.tile(shares, (len(y), 1))
    else:
        constant = np.full(len(y), float(y.mean()))
    slices = {}
    for column in spec.slices:
        keys = slice_keys(kept, column)
        slices[column] = {key: {"rows": int((keys == key).sum()),
                                name: round(headline(task, y[keys == key], predicted[keys == key]), 6)}
                          for key in sorted(set(keys))}
    return {name: value, f"baseline_{name}": baseline, "lift": round(lift(task, value, baseline), 6),
            "chance": round(headline(task, y, constant), 6), "slices": slices,
            "fairness": group_measures(spec, kept, predicted, None, classes),
            **({"classes": classes} if task == Task.MULTICLASS else {})}
