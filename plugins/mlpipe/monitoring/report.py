"""The HTML page of a drift-monitoring report: one self-contained file, readable in any browser.

:func:`render_html` turns the monitoring report (a JSON-ready dict: status, reasons, row counts,
the drift statistics of every feature and of the score from :mod:`mlpipe.monitoring.drift`, and the
outcome-based quality from :mod:`mlpipe.monitoring.quality`) into a page with

- a title naming the pipeline, the model, its champion version and the monitored window;
- a status banner (a breach in red with its reasons, ok in green, nothing to compare in grey);
- a summary line and a table of every feature, largest PSI first, drifting ones marked;
- reference-vs-current share charts of the score (a multiclass model's: each class's probability) and of each
  drifting feature (at most :data:`MAX_FEATURE_PLOTS`), numeric ones by quantile bin, categorical ones by category
  (the :data:`TOP_CATEGORIES` largest, the rest summed, then new and missing values);
- the quality section when outcomes were joined, with the metrics of the report's ``task`` (:data:`QUALITY_METRICS`;
  a report without one is binary): overall metrics, the headline metric (binary ROC AUC, multiclass log loss,
  regression RMSE) per window against the breach bound, and (binary) a calibration chart;
- a footer with the monitoring run, the MLflow run and when the report was made.

Charts are inline SVG drawn here (no matplotlib: a page with 25 charts renders in milliseconds),
styles are inline CSS, and nothing is loaded from elsewhere. Every value from the report is
HTML-escaped: feature names and categories come from the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from itertools import pairwise
from typing import Any

from mlpipe.core.tasks import RULES, Task

MAX_FEATURE_PLOTS = 24  # charts of drifting features; the score's chart comes on top
TOP_CATEGORIES = 12
SPECIAL = ("(new)", "(missing)")
NONE = "—"
REFERENCE_COLOR, CURRENT_COLOR, BOUND_COLOR = "#7f97c9", "#e8743b", "#c62828"
WIDTH, HEIGHT = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 46, 86  # plot margins inside the SVG
LABEL_CHARS = 22
FLAG = '<span class="flag">▲ drifting</span>'

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1200px;padding:1rem 1.5rem;color:#222;line-height:1.4}
h1{font-size:1.5rem;margin:.3rem 0}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.subtitle{color:#555;margin:0 0 1rem}
.banner{border-radius:6px;padding:.8rem 1rem;margin:1rem 0;border:1px solid}
.banner h2{margin:0;border:0;font-size:1.15rem}
.status-breach{background:#fdecea;border-color:#e57373;color:#8e1c1c}
.status-ok{background:#e8f5e9;border-color:#81c784;color:#1b5e20}
.status-nothing_to_compare,.status-not_enough_labels{background:#f1f1f1;border-color:#bbb;color:#444}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0}
th,td{border-bottom:1px solid #e3e3e3;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.drifting td{background:#fff4f2}.flag{color:#b71c1c;font-weight:600;white-space:nowrap}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:1rem}
figure{margin:0;border:1px solid #e3e3e3;border-radius:6px;padding:.4rem}
figcaption{font-size:.85rem;color:#444}svg{width:100%;height:auto;font-size:11px}
footer{margin-top:2.5rem;padding-top:.6rem;border-top:1px solid #ddd;color:#666;font-size:.82rem}
"""


def _e(value: Any) -> str:
    """``value`` as escaped text (quotes too, so it is safe in attributes)."""
    return escape(str(value), quote=True)


def _num(value: float | None, spec: str = ".3f") -> str:
    return NONE if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{value:.1%}"


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


# --- charts (inline SVG) ---------------------------------------------------------------------------------------------

def _y(value: float, low: float, high: float) -> float:
    """The pixel row of ``value`` on a y axis from ``low`` (bottom) to ``high`` (top)."""
    return HEIGHT - BOTTOM - (value - low) / ((high - low) or 1) * (HEIGHT - BOTTOM - TOP)


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round ticks covering [``low``, ``high``]: ``count`` to ``count + 1`` steps of 1, 2, 2.5 or 5 times 10^k."""
    span = (high - low) or abs(high) or 1.0
    power = 10 ** math.floor(math.log10(span / count))
    step = next(power * factor for factor in (1, 2, 2.5, 5, 10) if power * factor * (count + 1) >= span)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(index * step, 12) for index in range(first, max(last, first + 1) + 1)]


def _svg(title: str, body: list[str], ticks: list[float], label: Callable[[float], str]) -> str:
    """An SVG chart: title, horizontal grid lines at ``ticks`` (the y axis runs from the first to the last)."""
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" role="img" '
             f'aria-label="{_e(title)}"><title>{_e(title)}</title>',
             f'<text x="{WIDTH / 2}" y="15" text-anchor="middle" font-weight="600">{_e(title)}</text>']
    for value in ticks:
        y = _y(value, ticks[0], ticks[-1])
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{label(value)}</text>')
    return "".join([*parts, *body, "</svg>"])


def _percent(value: float) -> str:
    return f"{round(value * 100, 6):g}%"


def _plain(value: float) -> str:
    return f"{value:g}"


def _x_labels(labels: list[str], centers: list[float]) -> list[str]:
    """Rotated category labels under the plot, thinned to at most 30 shown."""
    every = -(-len(labels) // 30)
    y = HEIGHT - BOTTOM + 12
    return [f'<text transform="translate({x:.1f},{y}) rotate(-40)" text-anchor="end" fill="#333">'
            f'<title>{_e(label)}</title>{_e(_short(label))}</text>'
            for index, (label, x) in enumerate(zip(labels, centers, strict=True)) if index % every == 0]


def _legend(entries: list[tuple[str, str, str]]) -> list[str]:
    """Legend entries ``(label, colour, "box"|"line"|"dash")`` in a row under the title."""
    out, x, y = [], float(LEFT), 24
    for label, color, mark in entries:
        shape = (f'<rect x="{x:.1f}" y="{y}" width="10" height="10" fill="{color}"/>' if mark == "box" else
                 f'<line x1="{x - 2:.1f}" x2="{x + 12:.1f}" y1="{y + 5}" y2="{y + 5}" stroke="{color}" '
                 f'stroke-width="2" stroke-dasharray="{"5 3" if mark == "dash" else "none"}"/>')
        out.append(f'{shape}<text x="{x + 16:.1f}" y="{y + 9}" fill="#333">{_e(label)}</text>')
        x += 30 + 6.5 * len(label)
    return out


def bars_svg(title: str, labels: list[str], reference: list[float], current: list[float]) -> str:
    """Reference and current shares side by side for each label (a grouped bar chart)."""
    ticks = nice_ticks(0.0, max([*reference, *current, 0.01]))
    high = ticks[-1]
    group = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    width = group * 0.38
    body, centers = [], []
    for index, (label, before, now) in enumerate(zip(labels, reference, current, strict=True)):
        center = LEFT + group * (index + 0.5)
        centers.append(center)
        tip = f"{label}: reference {before:.1%}, current {now:.1%}"
        for offset, share, color in ((-width, before, REFERENCE_COLOR), (0.0, now, CURRENT_COLOR)):
            y = _y(share, 0.0, high)
            body.append(f'<rect x="{center + offset:.1f}" y="{y:.1f}" width="{width:.1f}" '
                        f'height="{HEIGHT - BOTTOM - y:.1f}" fill="{color}"><title>{_e(tip)}</title></rect>')
    body += _x_labels(labels, centers)
    body += _legend([("reference", REFERENCE_COLOR, "box"), ("current", CURRENT_COLOR, "box")])
    return _svg(title, body, ticks, _percent)


def line_svg(title: str, labels: list[str], values: list[float | None], bound: float | None,
             metric: str = "ROC AUC", ceiling: float | None = 1.0) -> str:
    """``values`` of ``metric`` (at least 0, at most ``ceiling`` when there is one) by label as a line (gaps where a
    value is None) with ``bound`` drawn dashed."""
    known = [value for value in values if value is not None] + ([bound] if bound is not None else [])
    low, high = min(known, default=0.5), max(known, default=0.5)
    pad = max(0.02, (high - low) * 0.05)
    ticks = nice_ticks(max(0.0, low - pad), high + pad if ceiling is None else min(ceiling, high + pad))
    low, high = ticks[0], ticks[-1]
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    centers = [LEFT + step * (index + 0.5) for index in range(len(labels))]
    body, run = [], []
    for label, x, value in [*zip(labels, centers, values, strict=True), ("", 0.0, None)]:
        if value is None:  # a gap (or the end) closes the current run of points
            if len(run) > 1:
                body.append(f'<polyline fill="none" stroke="{CURRENT_COLOR}" stroke-width="2" '
                            f'points="{" ".join(run)}"/>')
            run = []
            continue
        y = _y(value, low, high)
        run.append(f"{x:.1f},{y:.1f}")
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{CURRENT_COLOR}">'
                    f'<title>{_e(label)}: {value:.3f}</title></circle>')
    legend = [(metric, CURRENT_COLOR, "line")]
    if bound is not None:
        y = _y(bound, low, high)
        body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{BOUND_COLOR}" '
                    f'stroke-width="1.5" stroke-dasharray="6 4"><title>breach bound {bound:.3f}</title></line>')
        legend.append((f"breach bound {bound:.3f}", BOUND_COLOR, "dash"))
    body += _x_labels(labels, centers) + _legend(legend)
    return _svg(title, body, ticks, _plain)


def calibration_svg(title: str, table: list[dict[str, Any]]) -> str:
    """Mean score (x) against observed positive rate (y) per score bin, with the diagonal of perfect calibration."""
    def x_of(value: float) -> float:
        return LEFT + value * (WIDTH - LEFT - RIGHT)

    largest = max([row["rows"] for row in table], default=1)
    body = [f'<line x1="{x_of(0):.1f}" y1="{_y(0, 0, 1):.1f}" x2="{x_of(1):.1f}" y2="{_y(1, 0, 1):.1f}" '
            'stroke="#999" stroke-dasharray="4 4"/>']
    points = [(x_of(row["mean_score"]), _y(row["positive_rate"], 0, 1), row) for row in table]
    if len(points) > 1:
        body.append(f'<polyline fill="none" stroke="{CURRENT_COLOR}" stroke-width="1.5" '
                    f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)}"/>')
    for x, y, row in points:
        tip = (f"scores {row['low']:.1f}-{row['high']:.1f}: {row['rows']:,} rows, mean score "
               f"{row['mean_score']:.3f}, positive rate {row['positive_rate']:.3f}")
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{3 + 5 * (row["rows"] / largest) ** 0.5:.1f}" '
                    f'fill="{CURRENT_COLOR}" fill-opacity="0.8"><title>{_e(tip)}</title></circle>')
    for step in range(6):
        body.append(f'<text x="{x_of(step / 5):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                    f'fill="#555">{step / 5:.1f}</text>')
    body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - BOTTOM + 34}" text-anchor="middle" fill="#333">'
                'mean score (y: observed positive rate)</text>')
    body += _legend([("score bins", CURRENT_COLOR, "box"), ("perfect calibration", "#999", "dash")])
    return _svg(title, body, nice_ticks(0.0, 1.0), _plain)


# --- drift statistics as chart data ----------------------------------------------------------------------------------

def bin_labels(edges: list[float]) -> list[str]:
    """Labels of the bins of :func:`mlpipe.monitoring.drift.numeric_counts`: right-closed value bins, then missing."""
    if not edges:
        return ["all values", "(missing)"]
    cut = [format(edge, ".4g") for edge in edges]
    return [f"≤ {cut[0]}", *(f"{a} – {b}" for a, b in pairwise(cut)), f"> {cut[-1]}", "(missing)"]


def category_bars(entry: dict[str, Any]) -> tuple[list[str], list[float], list[float]]:
    """Labels and shares of a categorical entry: the largest categories, the rest summed, new and missing."""
    before, now = entry["reference_shares"], entry["shares"]
    categories = sorted((name for name in before if name not in SPECIAL),
                        key=lambda name: (-max(before[name], now.get(name, 0.0)), name))
    shown, rest = categories[:TOP_CATEGORIES], categories[TOP_CATEGORIES:]
    labels = [*shown, *([f"(other {len(rest)})"] if rest else []), *SPECIAL]
    reference = [before[name] for name in shown] + ([sum(before[name] for name in rest)] if rest else [])
    current = [now.get(name, 0.0) for name in shown] + ([sum(now.get(name, 0.0) for name in rest)] if rest else [])
    return labels, reference + [before.get(name, 0.0) for name in SPECIAL], current + [now.get(n, 0.0) for n in SPECIAL]


def drift_svg(name: str, entry: dict[str, Any]) -> str:
    """The reference-vs-current share chart of one feature (or the score)."""
    if entry["kind"] == "categorical":
        return bars_svg(f"{name}: share per category", *category_bars(entry))
    bins = entry["bins"]
    return bars_svg(f"{name}: share per reference quantile bin", bin_labels(bins["edges"]),
                    bins["reference"], bins["current"])


# --- page sections ---------------------------------------------------------------------------------------------------

def _header(report: dict[str, Any]) -> str:
    version = report.get("champion_version")
    champion = f"champion v{version}" if version is not None else "no champion"
    window = report.get("window") or {}
    days = window.get("days")
    span = f" ({days:g} days)" if days is not None else ""
    return (f"<h1>Drift monitoring: {_e(report.get('pipeline', ''))} · {_e(report.get('model_name', ''))} "
            f"({_e(champion)})</h1><p class=\"subtitle\">Window {_e(window.get('start', NONE))} → "
            f"{_e(window.get('end', NONE))}{_e(span)}</p>")


def _banner(status: str, headline: str, reasons: list[str], message: str | None) -> str:
    items = "".join(f"<li>{_e(reason)}</li>" for reason in reasons)
    return (f'<div class="banner status-{_e(status)}" data-status="{_e(status)}"><h2>{_e(headline)}</h2>'
            + (f"<ul class=\"reasons\">{items}</ul>" if items else "")
            + (f"<p>{_e(message)}</p>" if message and message != "; ".join(reasons) else "") + "</div>")


HEADLINES = {"breach": "Breach", "ok": "OK: within the drift and quality limits",
             "nothing_to_compare": "Nothing to compare"}
QUALITY_HEADLINES = {"breach": "Quality breach", "ok": "Quality OK: {metric} within the bound",
                     "not_enough_labels": "Not enough outcomes to judge quality yet"}


def _summary(report: dict[str, Any]) -> str:
    rows, reference = report.get("rows") or {}, report.get("reference") or {}
    drifting, total = len(report.get("drifting_features") or []), len(report.get("features") or {})
    return (f"<p class=\"summary\">Compared {rows.get('total', 0):,} rows ({rows.get('batch', 0):,} batch-scored, "
            f"{rows.get('served', 0):,} served) with {reference.get('rows', 0):,} reference rows of training run "
            f"<code>{_e(reference.get('training_run', NONE))}</code>. Drifting features: {drifting} of {total} "
            f"({_pct(report.get('drifting_share'))}).</p>")


def by_psi(features: dict[str, dict[str, Any]]) -> list[str]:
    """Feature names, largest PSI first (ties by name)."""
    return sorted(features, key=lambda name: (-(features[name].get("psi") or 0.0), name))


def _feature_row(name: str, entry: dict[str, Any]) -> str:
    numeric = entry["kind"] == "numeric"
    ks = f"{_num(entry.get('ks'))} (p {_num(entry.get('ks_pvalue'), '.2g')})" if numeric else NONE
    new = entry.get("new_categories") or []
    shown = ", ".join(new[:5]) + (f", … {len(new) - 5} more" if len(new) > 5 else "")
    new_text = NONE if numeric else _pct(entry.get("new_share")) + (f" ({shown})" if new else "")
    missing = f"{_pct(entry.get('missing_reference'))} → {_pct(entry.get('missing_current'))}"
    drifting = bool(entry.get("drifting"))
    cells = [f"<td>{_e(name)}</td>", f"<td>{_e(entry['kind'])}</td>", f'<td class="num">{_num(entry.get("psi"))}</td>',
             f'<td class="num">{_e(ks)}</td>', f'<td class="num">{NONE if numeric else _num(entry.get("js"))}</td>',
             f'<td class="num">{_e(missing)}</td>', f"<td>{_e(new_text)}</td>",
             f"<td>{FLAG if drifting else ''}</td>",
             f"<td>{'<br>'.join(_e(why) for why in entry.get('why') or [])}</td>"]
    marked = ' class="drifting"' if drifting else ""
    return f'<tr data-feature="{_e(name)}"{marked}>{"".join(cells)}</tr>'


def _feature_table(features: dict[str, dict[str, Any]]) -> str:
    head = "".join(f"<th>{title}</th>" for title in ("Feature", "Kind", "PSI", "KS (p-value)", "JS",
                                                      "Missing before → now", "New categories", "Drifting", "Why"))
    rows = "".join(_feature_row(name, features[name]) for name in by_psi(features))
    return (f'<h2>Features</h2><table class="features"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _figure(key: str, name: str, entry: dict[str, Any]) -> str:
    caption = f"PSI {_num(entry.get('psi'))}"
    if entry["kind"] == "numeric":
        caption += f", KS {_num(entry.get('ks'))} (p {_num(entry.get('ks_pvalue'), '.2g')})"
    else:
        caption += f", JS {_num(entry.get('js'))}"
    return (f'<figure data-plot="{_e(key)}">{drift_svg(name, entry)}<figcaption>{_e(caption)}'
            + "".join(f"<br>{_e(why)}" for why in entry.get("why") or []) + "</figcaption></figure>")


def _drift_plots(report: dict[str, Any]) -> str:
    score, outputs = report.get("score"), report.get("outputs") or {}
    if len(outputs) > 1:  # a multiclass model's class probabilities, each
        score_part = f'<div class="plots">{"".join(_figure(f"output:{n}", n, outputs[n]) for n in outputs)}</div>'
    elif score:
        score_part = f'<div class="plots">{_figure("score", "model score", score)}</div>'
    else:
        score_part = "<p>No model scores to compare.</p>"
    features = report.get("features") or {}
    drifting = [name for name in by_psi(features) if features[name].get("drifting")]
    plotted = drifting[:MAX_FEATURE_PLOTS]
    figures = "".join(_figure(f"feature:{name}", name, features[name]) for name in plotted)
    more = (f"<p>{len(drifting) - len(plotted)} more drifting features are in the table but not plotted.</p>"
            if len(drifting) > len(plotted) else "")
    feature_part = (f'<div class="plots">{figures}</div>{more}' if plotted
                    else "<p>No feature is drifting.</p>")
    return f"<h2>Model score</h2>{score_part}<h2>Drifting features</h2>{feature_part}"


# The quality figures of each task shown in the tables: (key, column title, format).
QUALITY_METRICS = {
    Task.BINARY: (("rows", "Outcomes", ","), ("positives", "Positives", ","), ("positive_rate", "Positive rate", ".3f"),
                  ("mean_score", "Mean score", ".3f"), ("roc_auc", "ROC AUC", ".3f"), ("pr_auc", "PR AUC", ".3f"),
                  ("brier", "Brier", ".4f"), ("ece", "ECE", ".4f")),
    Task.MULTICLASS: (("rows", "Outcomes", ","), ("log_loss", "Log loss", ".4f"), ("accuracy", "Accuracy", ".3f")),
    Task.REGRESSION: (("rows", "Outcomes", ","), ("mean_actual", "Mean actual", ".3f"),
                      ("mean_predicted", "Mean predicted", ".3f"), ("rmse", "RMSE", ".3f"), ("mae", "MAE", ".3f"),
                      ("mean_error", "Mean error (bias)", "+.3f")),
}
# Under the per-window chart: what its gaps mean (binary), or which way is better.
WINDOW_NOTE = {True: "Windows with one class only have no ROC AUC (gaps).",
               False: "Lower is better: the bound is the most the breach rule allows."}


def _metric_cells(metrics: dict[str, Any], shown: tuple[tuple[str, str, str], ...]) -> str:
    return "".join(f'<td class="num">{_num(metrics.get(key), spec)}</td>' for key, _, spec in shown)


def _headline_chart(task: Task, quality: dict[str, Any], windows: list[dict[str, Any]]) -> str:
    """The task's headline metric per window against the breach bound."""
    rules = RULES[task]
    return (f'<figure data-plot="quality:{rules.headline}">' + line_svg(
        f"{rules.label} per window", [str(w["window"]) for w in windows], [w.get(rules.headline) for w in windows],
        quality.get("bound"), rules.label, 1.0 if rules.higher_is_better else None)
        + f"<figcaption>{WINDOW_NOTE[rules.higher_is_better]}</figcaption></figure>")


def _quality(quality: dict[str, Any], task: Task) -> str:
    status, shown, rules = quality.get("status", "ok"), QUALITY_METRICS[task], RULES[task]
    head = "".join(f"<th>{title}</th>" for _, title, _ in shown)
    overall = (f'<table class="quality-overall"><thead><tr>{head}<th>Champion {_e(rules.label)}</th>'
               f"<th>Breach bound</th></tr></thead><tbody><tr>{_metric_cells(quality.get('overall') or {}, shown)}"
               f'<td class="num">{_num(quality.get(f"champion_{rules.headline}"))}</td>'
               f'<td class="num">{_num(quality.get("bound"))}</td></tr></tbody></table>')
    windows = quality.get("windows") or []
    rows = "".join(f'<tr data-window="{_e(w["window"])}"><td>{_e(w["window"])}</td>{_metric_cells(w, shown)}</tr>'
                   for w in windows)
    table = (f'<table class="quality-windows"><thead><tr><th>Window</th>{head}</tr></thead>'
             f"<tbody>{rows}</tbody></table>") if windows else "<p>No outcomes per window yet.</p>"
    charts = [_headline_chart(task, quality, windows)] if windows else []
    if quality.get("calibration"):
        charts.append('<figure data-plot="quality:calibration">'
                      + calibration_svg("Calibration (10 equal-width score bins)", quality["calibration"])
                      + "</figure>")
    headline = QUALITY_HEADLINES.get(status, status).format(metric=rules.label)
    return ('<section class="quality"><h2>Model quality from outcomes</h2>'
            + _banner(status, headline, quality.get("reasons") or [], None)
            + overall + table + f'<div class="plots">{"".join(charts)}</div></section>')


def _footer(report: dict[str, Any]) -> str:
    return (f"<footer>Monitoring run <code>{_e(report.get('monitoring_run', NONE))}</code> · MLflow run "
            f"<code>{_e(report.get('mlflow_run_id') or NONE)}</code> · report "
            f"<code>{_e(report.get('report_html') or NONE)}</code> · generated {_e(report.get('generated_at', NONE))}"
            "</footer>")


def render_html(report: dict[str, Any]) -> str:
    """The self-contained HTML page of a monitoring ``report`` (see the module docstring for what it shows)."""
    status = report.get("status", "ok")
    version = report.get("champion_version")
    title = (f"{report.get('pipeline', '')} · {report.get('model_name', '')}"
             f"{f' v{version}' if version is not None else ''} drift monitoring")
    parts = [_header(report), _banner(status, HEADLINES.get(status, status), report.get("reasons") or [],
                                      report.get("message"))]
    if status != "nothing_to_compare":
        parts += [_summary(report), _feature_table(report.get("features") or {}), _drift_plots(report)]
    if report.get("quality"):
        parts.append(_quality(report["quality"], Task(report.get("task", Task.BINARY))))
    parts.append(_footer(report))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f"<body>{''.join(parts)}</body></html>\n")
