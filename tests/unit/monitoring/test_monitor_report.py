"""The monitoring page, parsed back, on reports built from real drift statistics of the bundled loans."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from mlpipe.monitoring.drift import feature_drift, numeric_drift
from mlpipe.monitoring.quality import quality
from mlpipe.monitoring.report import (
    MAX_FEATURE_PLOTS,
    TOP_CATEGORIES,
    bin_labels,
    category_bars,
    nice_ticks,
    render_html,
)

SCRIPT = "<script>alert(1)</script>"
ODD_NAME = '<img src=x onerror="alert(2)">'
PSI_LIMIT = 0.2
REASONS = ["2 of 22 features drift (9.1%, limit 5.0%)",
           "ROC AUC 0.281 on 3,857 outcomes is below 0.650 (champion 0.700 - 0.050)"]


class Page(HTMLParser):
    """What a test needs to know of a rendered page: tags, feature rows, banners, plots and their tags."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.rows: list[tuple[str, str]] = []  # (feature, class) of the feature table, in order
        self.windows: list[str] = []
        self.tables: list[str] = []
        self.banners: list[dict] = []
        self.plots: dict[str, Counter[str]] = {}
        self.text: list[str] = []
        self._figure: str | None = None
        self._item: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags[tag] += 1
        if self._figure is not None:
            self.plots[self._figure][tag] += 1
        if tag == "tr" and "data-feature" in attributes:
            self.rows.append((attributes["data-feature"], attributes.get("class") or ""))
        elif tag == "tr" and "data-window" in attributes:
            self.windows.append(attributes["data-window"])
        elif tag == "table":
            self.tables.append(attributes.get("class") or "")
        elif tag == "figure":
            self._figure = attributes["data-plot"]
            self.plots[self._figure] = Counter()
        elif tag == "div" and "data-status" in attributes:
            self.banners.append({"status": attributes["data-status"], "reasons": []})
        elif tag == "li" and self.banners:
            self._item = []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        elif tag == "li" and self._item is not None:
            self.banners[-1]["reasons"].append("".join(self._item))
            self._item = None

    def handle_data(self, data):
        self.text.append(data)
        if self._item is not None:
            self._item.append(data)


def mark(features: dict[str, dict]) -> dict[str, dict]:
    """Mark features drifting as a monitor would: PSI above the limit, or new categories in over 5% of rows."""
    for entry in features.values():
        entry["why"] = [f"PSI {entry['psi']:.3f} > {PSI_LIMIT}"] if entry["psi"] > PSI_LIMIT else []
        if entry.get("new_share", 0) > 0.05:
            entry["why"].append(f"new categories in {entry['new_share']:.1%} of rows")
        entry["drifting"] = bool(entry["why"])
    return features


def monitoring_report(features: dict, score: dict | None, outcomes: dict | None) -> dict:
    drifting = [name for name, entry in features.items() if entry["drifting"]]
    return {"pipeline": "loan_default", "model_name": "loan-default-xgb", "champion_version": 7,
            "monitoring_run": "s3://mlpipe/loan_default/monitor/2026-11-21T06-00-00",
            "generated_at": "2026-11-21T06:04:12+00:00",
            "window": {"start": "2026-11-14T06:00:00+00:00", "end": "2026-11-21T06:00:00+00:00", "days": 7.0},
            "status": "breach", "breach": True, "reasons": REASONS, "message": "drift beyond the limits",
            "rows": {"total": 3857, "batch": 3000, "served": 857},
            "reference": {"rows": 6000, "training_run": "s3://mlpipe/loan_default/runs/2026-11-01T02-00-00"},
            "features": features, "drifting_features": drifting,
            "drifting_share": len(drifting) / max(len(features), 1), "score": score, "quality": outcomes,
            "mlflow_run_id": "0f3c2a9e5d7b4c18", "report_html": "s3://mlpipe/loan_default/monitor/x/report.html"}


@pytest.fixture(scope="module")
def report(loans) -> dict:
    """Reference: the first 6000 loans; current: the rest, int_rate shifted and the emp_length mix changed."""
    inputs = loans.drop(columns="Class")
    categorical = [column for column in inputs.columns if not pd.api.types.is_numeric_dtype(inputs[column])]
    reference, current = inputs.iloc[:6000], inputs.iloc[6000:].copy()
    current["int_rate"] = current["int_rate"] * 1.3 + 2
    current.iloc[:800, current.columns.get_loc("emp_length")] = "emp_unknown"
    current.iloc[800:1100, current.columns.get_loc("emp_length")] = SCRIPT
    features = mark(feature_drift(reference, current, categorical))

    def logistic(rate: pd.Series) -> np.ndarray:
        return 1 / (1 + np.exp(-(rate.to_numpy(float) - 22) / 3))

    score = mark({"score": numeric_drift(pd.Series(logistic(reference["int_rate"])),
                                         pd.Series(logistic(current["int_rate"])))})["score"]
    bad = (loans["Class"].iloc[6000:] == "bad").astype(int).to_numpy()
    days = np.array(["2026-11-14", "2026-11-15", "2026-11-16"])[np.arange(len(bad)) * 3 // len(bad)]
    outcomes = pd.DataFrame({"score": logistic(current["int_rate"]), "label": 1 - bad, "window": days})
    outcomes.loc[outcomes["window"] == "2026-11-16", "label"] = 0  # a window whose outcomes are one class
    return monitoring_report(features, score, quality(outcomes, 0.70, min_labels=500, max_roc_auc_drop=0.05))


def test_every_feature_is_in_the_table_by_psi_with_drifting_rows_marked(report):
    page = Page(render_html(report))
    by_psi = sorted(report["features"], key=lambda name: -report["features"][name]["psi"])
    assert [name for name, _ in page.rows] == by_psi and len(by_psi) == 22
    assert {name for name, marked in page.rows if marked == "drifting"} == set(report["drifting_features"])
    assert set(report["drifting_features"]) == {"int_rate", "emp_length"}  # the planted drift, nothing else
    assert page.rows[0][0] in {"int_rate", "emp_length"} and page.rows[1][0] in {"int_rate", "emp_length"}
    text = "".join(page.text)
    assert f"PSI {report['features']['int_rate']['psi']:.3f} > 0.2" in text
    assert "Drifting features: 2 of 22 (9.1%)" in text
    assert "3,857 rows (3,000 batch-scored, 857 served) with 6,000 reference rows" in text
    assert page.tags["script"] == 0 and page.tags["link"] == 0 and page.tags["img"] == 0  # nothing loaded


def test_the_breach_banner_lists_the_reasons(report):
    page = Page(render_html(report))
    assert page.banners[0] == {"status": "breach", "reasons": REASONS}
    assert "loan_default · loan-default-xgb (champion v7)" in "".join(page.text)


def test_the_score_and_each_drifting_feature_have_a_chart(report):
    page = Page(render_html(report))
    drift_plots = {key for key in page.plots if not key.startswith("quality:")}
    assert drift_plots == {"score", "feature:int_rate", "feature:emp_length"}
    assert all(page.plots[key]["svg"] == 1 for key in drift_plots)
    edges = report["features"]["int_rate"]["bins"]["edges"]
    assert page.plots["feature:int_rate"]["rect"] == 2 * (len(edges) + 2) + 2  # 2 bars a bin, 2 legend boxes
    # emp_length: 11 known categories + (new) + (missing), two bars each
    assert page.plots["feature:emp_length"]["rect"] == 2 * (len(report["features"]["emp_length"]["shares"])) + 2


def test_numeric_bin_labels_follow_the_drift_bins():
    assert bin_labels([1.5, 2.25, 10.0]) == ["≤ 1.5", "1.5 – 2.25", "2.25 – 10", "> 10", "(missing)"]
    assert bin_labels([]) == ["all values", "(missing)"]


def test_axis_ticks_are_round_and_cover_the_data():
    assert nice_ticks(0.0, 0.42) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert nice_ticks(0.63, 0.82) == [0.6, 0.65, 0.7, 0.75, 0.8, 0.85]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.0, 0.01) == [0.0, 0.002, 0.004, 0.006, 0.008, 0.01]


def test_many_categories_show_the_largest_and_sum_the_rest(report):
    entry = report["features"]["addr_state"]  # 50-odd states
    labels, before, now = category_bars(entry)
    known = [name for name in entry["reference_shares"] if name not in ("(new)", "(missing)")]
    assert labels[-3:] == [f"(other {len(known) - TOP_CATEGORIES})", "(new)", "(missing)"]
    assert sum(before) == pytest.approx(1, abs=1e-4) and sum(now) == pytest.approx(1, abs=1e-4)
    largest = max(known, key=lambda name: entry["reference_shares"][name])
    assert labels[0] == largest and before[0] == entry["reference_shares"][largest]
    assert min(max(entry["reference_shares"][n], entry["shares"][n]) for n in labels[:TOP_CATEGORIES]) >= max(
        max(entry["reference_shares"][n], entry["shares"][n]) for n in known if n not in labels)


def test_the_quality_section_shows_every_window_the_bound_and_calibration(report):
    page = Page(render_html(report))
    assert page.windows == ["2026-11-14", "2026-11-15", "2026-11-16"]
    assert report["quality"]["status"] == "breach"
    assert page.banners[1] == {"status": "breach", "reasons": report["quality"]["reasons"]}
    roc = page.plots["quality:roc_auc"]
    assert roc["svg"] == 1 and roc["circle"] == 2  # the one-class window has no ROC AUC: a gap, no point
    assert page.plots["quality:calibration"]["circle"] == len(report["quality"]["calibration"])
    assert f"breach bound {report['quality']['bound']:.3f}" in "".join(page.text)
    assert {"features", "quality-overall", "quality-windows"} <= set(page.tables)


def test_data_values_are_escaped(report, loans):
    html = render_html(report)
    assert SCRIPT in report["features"]["emp_length"]["new_categories"]
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert SCRIPT in "".join(Page(html).text)  # shown as text, not run
    odd = {ODD_NAME: numeric_drift(loans["int_rate"].iloc[:6000], loans["int_rate"].iloc[6000:] + 5)}
    page_html = render_html(monitoring_report(mark(odd), None, None))
    page = Page(page_html)
    assert page.tags["img"] == 0 and page.rows == [(ODD_NAME, "drifting")]
    assert f"feature:{ODD_NAME}" in page.plots


def test_nothing_to_compare_renders_the_message_without_tables():
    report = {**monitoring_report({}, None, None), "status": "nothing_to_compare", "breach": False, "reasons": [],
              "message": "no rows were scored between 2026-11-14 and 2026-11-21", "drifting_share": 0.0,
              "rows": {"total": 0, "batch": 0, "served": 0}, "mlflow_run_id": None}
    page = Page(render_html(report))
    assert page.banners == [{"status": "nothing_to_compare", "reasons": []}]
    assert "no rows were scored between 2026-11-14 and 2026-11-21" in "".join(page.text)
    assert page.tables == [] and page.plots == {} and page.rows == []


def test_a_25_feature_report_plots_at_most_the_cap(loans):
    inputs = loans.drop(columns="Class").assign(extra_1=loans["funded_amnt"] * 2, extra_2=loans["annual_inc"] / 12,
                                                extra_3=loans["revol_util"] + 1)
    categorical = [column for column in inputs.columns if not pd.api.types.is_numeric_dtype(inputs[column])]
    current = inputs.iloc[6000:].copy()
    numeric = [column for column in inputs.columns if column not in categorical]
    current[numeric] = current[numeric] * 1.5 + 3  # every numeric feature drifts
    for column in categorical:
        current.iloc[:1500, current.columns.get_loc(column)] = "unseen"
    features = mark(feature_drift(inputs.iloc[:6000], current, categorical))
    assert len(features) == 25 and all(entry["drifting"] for entry in features.values())
    html = render_html(monitoring_report(features, None, None))
    page = Page(html)
    assert len(page.rows) == 25 and len(page.plots) == MAX_FEATURE_PLOTS
    assert f"{25 - MAX_FEATURE_PLOTS} more drifting features are in the table but not plotted" in "".join(page.text)
    assert "No model scores to compare." in "".join(page.text)
    assert len(html) < 600_000  # light: no raster images
