"""The sections of a model card, each a pure function of the version's :class:`Lineage`.

What each section says, and where it comes from:

- model details: the registered version, its aliases, the spec's purpose (``description``) and ``owner``,
  what it predicts, the pipeline run, the MLflow run and the commit of the code that trained it;
- training data: the ingest snapshot (data version, source, rows; its target over every row and the span of
  its date or time columns, :mod:`mlpipe.data.coverage`), the split and the data checks;
- features and PII: the model's feature schema, the PII rules ingest applied, the columns kept out;
- parameters and tuning: the tune and train results and every parameter logged on the MLflow run;
- analysis, slices, sensitivity, feature contributions: the analyze result and its plots;
- fairness and the promotion decision: the register result and its audit record (the gate's comparison);
- known limitations: what the figures above cannot say (the analysis set's size, the noise band over split
  seeds or that it was not measured, ...);
- monitoring: the latest drift and quality status, once monitoring has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlpipe.core.lines import (
    analysis_line,
    checks_line,
    data_line,
    registry_line,
    split_line,
    training_line,
    tuning_line,
    verdict,
)
from mlpipe.core.results import Analyze, Ingest, Register, Split, Train, Tune, Validate
from mlpipe.core.spec import Spec
from mlpipe.core.tasks import RULES, Task
from mlpipe.core.urls import mlflow_run_url, model_version_url
from mlpipe.data.coverage import Coverage
from mlpipe.registry.card import NONE, Card, Fact, Figure, Section, Table, number, share
from mlpipe.registry.noise_band import NoiseBand

PLOT_CAPTIONS = {"roc": "ROC curve, model and baseline", "pr": "Precision-recall curve",
                 "calibration": "Reliability (calibration)", "confusion_matrix": "Confusion matrix",
                 "residuals": "Residuals vs predicted", "predicted_vs_actual": "Predicted vs actual",
                 "feature_contributions": "Mean |SHAP| per feature"}
CONTRIBUTIONS_PLOT = "feature_contributions"
SEEDS_BENCHMARK = "tests/benchmarks/bench_seeds.py"
PII_ACTIONS = {"hash": "replaced by a keyed HMAC-SHA256 at ingest", "drop": "dropped at ingest"}


@dataclass(frozen=True)
class Lineage:
    """What the card of one model version is made of: the training run's spec and step results (``validate``
    and ``tune`` are ``None`` when they did not run), the register result and the gate's ``comparison`` (its
    audit record's), the snapshot's :class:`~mlpipe.data.coverage.Coverage`, the model's feature schema, the
    MLflow run's ``params`` and git ``commit``, the version's live ``aliases`` and when it was ``registered``,
    the analysis plots' bytes by name, the latest ``monitoring`` report (``None`` before any), when and by
    what the card is ``written``, and the pipeline's ``noise`` band over split seeds (``None``: not measured)."""

    spec: Spec
    run_uri: str
    notes: str
    ingest: Ingest
    validate: Validate | None
    split: Split
    tune: Tune | None
    train: Train
    analyze: Analyze
    register: Register
    comparison: dict[str, Any]
    coverage: Coverage
    features: dict[str, Any]
    params: dict[str, str]
    commit: str | None
    aliases: list[str]
    registered: datetime | None
    plots: dict[str, bytes]
    monitoring: dict[str, Any] | None
    written: datetime
    writer: str
    noise: NoiseBand | None = None  # the pipeline's noise band over split seeds, when measured

    @property
    def task(self) -> Task:
        return self.spec.target.task

    @property
    def headline(self) -> str:
        return RULES[self.task].headline


def records(caption: str, first: str, rows: dict[str, dict[str, Any]]) -> Table:
    """A table of ``rows`` (name -> column -> figure): ``first`` heads the names, the columns follow, ``rows``
    first, then in the order they first appear."""
    columns = sorted(dict.fromkeys(key for values in rows.values() for key in values), key=lambda key: key != "rows")
    return Table(caption, (first, *columns),
                 [(str(name), *(number(values.get(key)) for key in columns)) for name, values in rows.items()])


def target_text(spec: Spec) -> str:
    """What the model predicts, from the spec's target."""
    target = spec.target
    if target.task == Task.BINARY:
        return f"binary: the probability that {target.column} is {target.positive_text}"
    if target.task == Task.MULTICLASS:
        classes = f" ({', '.join(map(str, target.classes))})" if target.classes else ""
        return f"multiclass: the probability of each class of {target.column}{classes}"
    transform = f", learned as {target.transform}({target.column})" if target.transform else ""
    return f"regression: the value of {target.column}{transform}"


def model_section(found: Lineage) -> Section:
    """Which version, of what, for what and whom; where it was trained."""
    register, spec = found.register, found.spec
    facts = [Fact("Model", f"{register.model_name} version {register.version}",
                  model_version_url(register.model_name, register.version)),
             Fact("Aliases", ", ".join(found.aliases) or "none"),
             Fact("Purpose", spec.description or "not stated (the spec has no description)"),
             Fact("Owner", spec.owner),
             Fact("Predicts", target_text(spec)),
             Fact("Pipeline", f"{spec.name}, training run {found.run_uri}"),
             Fact("MLflow run", found.train.mlflow_run_id, mlflow_run_url(found.train.mlflow_run_id)),
             Fact("Registered", found.registered.isoformat(timespec="seconds") if found.registered else NONE),
             Fact("Code", found.commit or "commit unknown")]
    if found.notes:
        facts.append(Fact("Trigger notes", found.notes))
    return Section("model", "Model details", facts)


def label_text(spec: Spec, coverage: Coverage) -> str:
    """The target over every row of the snapshot: binary, the positive rate; multiclass, the class shares;
    regression, the mean."""
    target = coverage.target
    if spec.target.task == Task.BINARY:
        return (f"{share(target['positive_rate'])} of {number(coverage.rows)} rows have {spec.target.column} "
                f"{spec.target.positive_text}")
    if spec.target.task == Task.MULTICLASS:
        shares = ", ".join(f"{name} {share(value)}" for name, value in target["class_shares"].items())
        return f"{spec.target.column} over {number(coverage.rows)} rows: {shares}"
    return f"{spec.target.column}: mean {number(target['mean'])} over {number(coverage.rows)} rows"


def dates_text(coverage: Coverage) -> str:
    """The span of each date or time column, or that the data has none."""
    if not coverage.dates:
        return "none: the data has no date or time column"
    return "; ".join(f"{name} {low or NONE} to {high or NONE}" for name, (low, high) in coverage.dates.items())


def data_section(found: Lineage) -> Section:
    """The snapshot the model was trained on, its label rate (or target), dates, split and checks."""
    ingest = found.ingest
    return Section("data", "Training data", [
        Fact("Data version", ingest.data_version),
        Fact("Source", ingest.source),
        Fact("Snapshot", data_line(ingest)),
        Fact("Label rate" if found.task == Task.BINARY else "Target", label_text(found.spec, found.coverage)),
        Fact("Date range", dates_text(found.coverage)),
        Fact("Split", split_line(found.split)),
        Fact("Data checks", checks_line(found.validate) if found.validate else "not run in this run")])


def features_section(found: Lineage) -> Section:
    """Every feature the model reads, its kind and PII treatment; the columns kept out."""
    schema, pii, spec = found.features, found.ingest.pii, found.spec
    categorical = set(schema.get("categorical", []))
    rows = [(name, "categorical" if name in categorical else "numeric", PII_ACTIONS.get(pii.get(name, ""), "none"))
            for name in schema["columns"]]
    kept_out = [*spec.id_columns, *spec.features.exclude]
    items = [f"PII: {column} {PII_ACTIONS.get(action, action)}" for column, action in pii.items()] \
        or ["PII: the spec declares no PII column"]
    return Section("features", "Features and PII", [
        Fact("Features", f"{len(rows)}: {len(rows) - len(categorical)} numeric, {len(categorical)} categorical"),
        Fact("Kept out", ", ".join(kept_out) or "none (no id columns, no exclusions)")],
        items, [Table("Features the model reads", ("feature", "kind", "PII treatment"), rows)])


def training_section(found: Lineage) -> Section:
    """How the parameters were chosen and the model trained; every parameter logged on the MLflow run."""
    train = found.train
    tuning = tuning_line(found.tune) if found.tune else "not run in this run: the spec's training.params were used"
    params = Table("Parameters (logged on the MLflow run)", ("parameter", "value"), sorted(found.params.items()))
    return Section("training", "Parameters and tuning", [
        Fact("Tuning", tuning),
        Fact("Training", training_line(train)),
        Fact("Boosting rounds", train.rounds),
        Fact("Rows", ", ".join(f"{part} {number(rows)}" for part, rows in train.rows.items())),
        Fact("Baseline", ", ".join(f"{key} {value}" for key, value in train.baseline_settings.items()
                                   if not isinstance(value, dict)))],
        tables=[params])


def figures(found: Lineage, names: list[str]) -> list[Figure]:
    """The analysis plots ``names`` (those the analyze step drew), captioned, in the order of
    :data:`PLOT_CAPTIONS` (others after them)."""
    plots, order = found.analyze.plots, list(PLOT_CAPTIONS)
    shown = sorted((name for name in names if name in plots),
                   key=lambda name: order.index(name) if name in order else len(order))
    return [Figure(PLOT_CAPTIONS.get(name, name.replace("_", " ")), plots[name], found.plots[name]) for name in shown]


def metric_rows(found: Lineage) -> list[tuple[str, ...]]:
    """Every analysis metric of the model, with the baseline's beside the headline metric; the lift last."""
    metrics = found.analyze.metrics
    shown = [key for key in metrics if not key.startswith("baseline_") and key != "lift"]
    return [*((key, number(metrics[key]), number(metrics.get(f"baseline_{key}"))) for key in shown),
            ("lift over the baseline", number(metrics["lift"]), NONE)]


def task_tables(found: Lineage) -> list[Table]:
    """The analysis tables of the task: binary, the confusion matrix; multiclass, per class and the confusion
    matrix; regression, errors by decile of the prediction."""
    analyze = found.analyze
    if found.task == Task.REGRESSION:
        return [records("Errors by decile of the prediction", "decile",
                        {str(row["decile"]): {k: v for k, v in row.items() if k != "decile"}
                         for row in analyze.deciles or []})]
    matrix = analyze.confusion_matrix or {}
    if found.task == Task.BINARY:
        cells = {"actual negative": {"predicted negative": matrix.get("tn"), "predicted positive": matrix.get("fp")},
                 "actual positive": {"predicted negative": matrix.get("fn"), "predicted positive": matrix.get("tp")}}
        return [records(f"Confusion matrix at threshold {number(analyze.metrics.get('threshold'))}", "", cells)]
    return [records("Per class", "class", analyze.per_class or {}),
            records("Confusion matrix (rows: actual class, columns: predicted)", "actual", matrix)]


def analysis_section(found: Lineage) -> Section:
    """The analysis metrics with the baseline's, the task's tables and plots."""
    rows = found.split.rows["analysis"]
    plots = [name for name in found.analyze.plots if name != CONTRIBUTIONS_PLOT]
    return Section("analysis", "Analysis", [
        Fact("Headline", analysis_line(found.analyze)),
        Fact("Measured on", f"the held-out analysis split: {number(rows)} rows, never used to train, stop or tune "
                            "the model")],
        tables=[Table("Metrics", ("metric", "model", "baseline"), metric_rows(found)), *task_tables(found)],
        figures=figures(found, plots))


def slices_section(found: Lineage) -> Section:
    """The task's metrics per value of each slice column."""
    slices = found.analyze.slices
    if not slices:
        return Section("slices", "Slices", items=["no slices: the spec lists no slice columns (slices)"])
    return Section("slices", "Slices", tables=[records(f"By {column}", column, values)
                                               for column, values in slices.items()])


def gate_lines(found: Lineage, prefix: str) -> list[str]:
    """The gate's reasons and notes that start with ``prefix``."""
    return [line for line in [*found.register.reasons, *found.register.notes] if line.startswith(prefix)]


def fairness_section(found: Lineage) -> Section:
    """The gate's fairness check: the disparate impact, each group's measure and what was left out."""
    rule = found.spec.thresholds.fairness
    if rule is None:
        return Section("fairness", "Fairness", items=["not checked: the spec sets no thresholds.fairness"])
    compared = found.comparison.get("fairness") or {}
    impact = (found.register.metrics.get("disparate_impact") or {}).get("challenger")
    facts = [Fact("Group column", rule.column),
             Fact("Disparate impact", f"{number(impact)} (lowest group / highest; at least "
                                      f"{rule.min_disparate_impact} required over groups of "
                                      f"{rule.min_group_rows} rows or more)")]
    groups = {name: {"rows": stats["rows"], "model": stats["challenger"], "champion": stats["champion"]}
              for name, stats in (compared.get("groups") or {}).items()}
    measure = compared.get("measure", "measure")
    tables = [records(f"{measure.capitalize()} by {rule.column}", rule.column, groups)] if groups else []
    return Section("fairness", "Fairness", facts, gate_lines(found, "fairness"), tables)


def sensitivity_section(found: Lineage) -> Section:
    """How much the prediction moves when the numeric inputs do."""
    analyze = found.analyze
    return Section("sensitivity", "Sensitivity", [
        Fact("Perturbation", f"every numeric input of {number(analyze.sample_rows)} sampled analysis rows multiplied "
                             f"by 1 ± scale (random sign); how much the prediction moves")],
        tables=[records("Change of the prediction", "scale", analyze.sensitivity)])


def contributions_section(found: Lineage) -> Section:
    """The features with the largest mean |SHAP| and the plot of them."""
    analyze = found.analyze
    rows = [(str(rank), name, number(value, 6)) for rank, (name, value) in enumerate(analyze.top_features, 1)]
    return Section("contributions", "Feature contributions (SHAP)", [
        Fact("Measured on", f"{number(analyze.sample_rows)} sampled analysis rows (XGBoost pred_contribs)")],
        tables=[Table("Largest mean |SHAP|", ("rank", "feature", "mean |SHAP|"), rows)],
        figures=figures(found, [CONTRIBUTIONS_PLOT]))


def decision_section(found: Lineage) -> Section:
    """The gate's decision, its reasons and notes, and the comparison with the champion."""
    register = found.register
    facts = [Fact("Decision", verdict(register) + (" (forced)" if register.forced else "")),
             Fact("Compared with", f"champion version {register.compared_with}" if register.compared_with
                  else "no champion"),
             Fact("Summary", registry_line(register)),
             Fact("Audit record", register.audit)]
    rows = [(key, number(both.get("challenger")), number(both.get("champion")))
            for key, both in register.metrics.items()]
    tables = [Table("Side by side on this run's analysis set", ("metric", "this version", "champion"), rows)]
    if slices := found.comparison.get("slices"):
        tables.append(Table("Slices against the champion", ("slice", "rows", "this version", "champion", "drop"),
                            [(row["slice"], number(row["rows"]), number(row["challenger"]), number(row["champion"]),
                              number(row["drop"]) if row["compared"] else "not compared") for row in slices]))
    items = [f"reason: {reason}" for reason in register.reasons] + [f"note: {note}" for note in register.notes]
    return Section("decision", "Promotion decision", facts, items, tables)


def spread(values: list[float], sign: str = "") -> str:
    """The mean of ``values`` and their range: ``0.7213 (0.7012 to 0.7401)``."""
    low, high, mean = min(values), max(values), sum(values) / len(values)
    return f"{mean:{sign}.4f} ({low:{sign}.4f} to {high:{sign}.4f})"


def noise_text(found: Lineage) -> str:
    """What the card says of the headline metric's noise over split seeds: the pipeline's band when
    ``bench_seeds.py --record`` measured one (:mod:`mlpipe.registry.noise_band`), else that it was not measured."""
    label, band = RULES[found.task].label, found.noise
    if band is None:
        return (f"Noise of the {label} over split seeds: not measured for this pipeline ({SEEDS_BENCHMARK} "
                "--record measures it).")
    text = (f"Noise of the {label} over split seeds {', '.join(map(str, band.seeds))} ({SEEDS_BENCHMARK}, "
            f"{band.measured_at:%Y-%m-%d}, {'tuned' if band.tuned else 'untuned'}, commit {band.commit}): the model "
            f"{spread(band.model)}, the baseline {spread(band.baseline)}, the lift {spread(band.lift, '+')}. A "
            f"difference smaller than that range is within the noise of one split.")
    if band.source != found.ingest.source:
        text += f" It was measured on {band.source}, not on this version's data: a guide only."
    return text


def limitations(found: Lineage) -> list[str]:
    """What the card's figures cannot say, from the run itself."""
    analysis, metrics = found.split.rows["analysis"], found.analyze.metrics
    size = f"The analysis set holds {number(analysis)} rows"
    if found.task == Task.BINARY and found.analyze.confusion_matrix:
        positives = found.analyze.confusion_matrix["tp"] + found.analyze.confusion_matrix["fn"]
        size += f", {number(positives)} of them positive"
    found_items = [f"{size}: every analysis figure, slice and fairness group above is measured on those rows alone, "
                   "and a small slice or group is noisy.",
                   noise_text(found)]
    if metrics["lift"] <= 0:
        found_items.append(f"The model does not beat the linear baseline on the analysis set (lift "
                           f"{metrics['lift']:+.4f}).")
    if found.analyze.sample_rows < analysis:
        found_items.append(f"Sensitivity and SHAP contributions use {number(found.analyze.sample_rows)} sampled rows "
                           "of the analysis set.")
    if not found.coverage.dates:
        found_items.append("The data has no date or time column: the period it covers is not known.")
    if not found.train.tuned:
        found_items.append("The parameters were not tuned in this run: the spec's training.params were used.")
    if found.spec.thresholds.fairness is None:
        found_items.append("Fairness was not checked (no thresholds.fairness in the spec).")
    if notes := found.register.notes:
        found_items.append(f"The gate left {len(notes)} comparison(s) out, their slice or group too small (see the "
                           "promotion decision's notes).")
    return found_items


def limitations_section(found: Lineage) -> Section:
    """See :func:`limitations`."""
    return Section("limitations", "Known limitations", items=limitations(found))


def quality_text(quality: dict[str, Any]) -> str:
    """Quality on late outcomes: its status, how many labels and the overall metrics."""
    overall = ", ".join(f"{key} {number(value)}" for key, value in (quality.get("overall") or {}).items()
                        if isinstance(value, float))
    return f"{quality.get('status', NONE)} on {number(quality.get('labels'))} labelled rows" + \
        (f": {overall}" if overall else "")


def monitoring_section(found: Lineage) -> Section:
    """See :func:`monitored`."""
    return monitored(found.monitoring)


def monitored(report: dict[str, Any] | None) -> Section:
    """The monitoring section of the latest monitoring ``report`` (``None``: not monitored yet)."""
    if report is None:
        return Section("monitoring", "Monitoring", items=[
            "not monitored yet: the next monitoring run of the pipeline adds its drift and quality status here"])
    window = report.get("window") or {}
    rows = report.get("rows") or {}
    facts = [Fact("Status", f"{report.get('status', NONE)}: {report.get('message', '')}"),
             Fact("Window", f"{window.get('start', NONE)} to {window.get('end', NONE)}"),
             Fact("Rows", ", ".join(f"{key} {number(value)}" for key, value in rows.items()) or NONE),
             Fact("Drifting features", ", ".join(report.get("drifting_features") or []) or "none"),
             Fact("Quality", quality_text(report["quality"]) if report.get("quality") else
                  "no outcomes joined (no monitoring.feedback.source, or none yet)"),
             Fact("Report", report.get("report_html") or NONE),
             Fact("Monitoring run", report.get("monitoring_run") or NONE),
             Fact("Generated", report.get("generated_at") or NONE)]
    return Section("monitoring", "Monitoring", facts, [f"breach: {reason}" for reason in report.get("reasons") or []])


SECTIONS = (model_section, data_section, features_section, training_section, analysis_section, slices_section,
            fairness_section, sensitivity_section, contributions_section, decision_section, limitations_section,
            monitoring_section)


def build(found: Lineage) -> Card:
    """The card of the version ``found`` describes."""
    register = found.register
    return Card(f"Model card: {register.model_name} version {register.version}",
                f"Pipeline {found.spec.name}; written {found.written.isoformat(timespec='seconds')} by {found.writer}, "
                "from the version's lineage.", [section(found) for section in SECTIONS])
