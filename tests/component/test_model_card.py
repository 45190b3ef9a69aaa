"""The model card of a registered version: written by the real register step from a real run, logged on the version's
MLflow run, tagged on the version, re-rendered with a real monitoring report; binary, regression and multiclass."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from mlpipe.core import uris
from mlpipe.core.lines import checks_line
from mlpipe.core.results import Analyze, Ingest, Register, Split, Train, Validate
from mlpipe.core.settings import MODEL_CARD
from mlpipe.core.tasks import RULES
from mlpipe.registry import model_card
from mlpipe.registry.model_card import (
    CARD_FOLDER,
    CARD_MARKDOWN_TAG,
    CARD_TAG,
    COVERAGE_FILE,
    HTML_FILE,
    MARKDOWN_FILE,
    CardFiles,
    refresh,
)
from mlpipe.registry.noise_band import NoiseBand, record, recorded
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from mlpipe.store.runs import Run
from tests.conftest import DATA_PATH
from tests.fixtures.analysis import TRAINED, clone, run_steps

# Thresholds the fast model passes, fairness kept (its groups' approval rates are in the card).
PASSING = {"thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0,
           "thresholds.fairness.min_disparate_impact": 0.5}
ESCAPED = re.compile(r"\\([\\`*_\[\]<>|#&])")


class Page(HTMLParser):
    """An HTML page's text (entities resolved), image sources and link targets."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        found = dict(attrs)
        if "src" in found:
            self.images.append(found["src"])
        if "href" in found:
            self.links.append(found["href"])

    def handle_data(self, data):
        self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def plain(markdown: str) -> str:
    """The Markdown's text with its escapes undone."""
    return ESCAPED.sub(r"\1", markdown)


def tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The card's Markdown tables by caption: each row as header -> cell (the text with its escapes undone)."""
    found: dict[str, list[dict[str, str]]] = {}
    for caption, header, body in re.findall(r"\*\*(.+?)\*\*\n\n(\| .+\|)\n\|(?:---\|)+\n((?:\| .*\|\n)*)", text):
        names = [cell.strip() for cell in header.strip("|").split(" | ")]
        found[caption] = [dict(zip(names, (cell.strip() for cell in line.strip("|").split(" | ")), strict=True))
                          for line in body.splitlines()]
    return found


def row(table: list[dict[str, str]], first: str) -> dict[str, str]:
    """The row of ``table`` whose first cell is ``first``."""
    return next(cells for cells in table if next(iter(cells.values())) == first)


def card_of(result: dict) -> tuple[str, Page]:
    """The stored card of a register ``result``: its Markdown (unescaped) and its HTML page."""
    return plain(storage.read_bytes(result["model_card_md"]).decode()), \
        Page(storage.read_bytes(result["model_card_html"]).decode())


def logged_card(run_id: str, folder: Path) -> dict[str, bytes]:
    """The card files on MLflow run ``run_id``, downloaded through MLflow."""
    local = Path(download_artifacts(run_id=run_id, artifact_path=CARD_FOLDER, dst_path=str(folder)))
    return {path.name: path.read_bytes() for path in local.iterdir()}


@pytest.fixture(scope="module")
def carded(analyzed_run) -> tuple[str, dict]:
    """The analyzed run registered (``carded`` version 1, promoted): its URI and the register result."""
    uri = clone(analyzed_run, "carded", TRAINED, model_name="carded", **PASSING)
    result = run_step("register", uri)
    assert result["promoted"] is True
    return uri, result


def test_register_writes_the_card_under_its_folder_and_records_it(carded):
    uri, result = carded
    folder = Run(uri).path("register", CARD_FOLDER)
    assert result["model_card_md"] == uris.join(folder, MARKDOWN_FILE)
    assert result["model_card_html"] == uris.join(folder, HTML_FILE)
    stored = Run(uri).result(Register)
    assert (stored.model_card_md, stored.model_card_html) == (result["model_card_md"], result["model_card_html"])
    kept = storage.read_json(uris.join(folder, COVERAGE_FILE))  # the snapshot's coverage, for later refreshes
    bad = (pd.read_csv(DATA_PATH)["Class"] == "bad").mean()
    assert kept["rows"] == Run(uri).result(Ingest).rows and kept["dates"] == {}
    assert kept["target"]["positive_rate"] == pytest.approx(bad)


def test_the_card_is_logged_on_the_versions_mlflow_run_and_tagged(carded, tmp_path):
    uri, result = carded
    version = MlflowClient().get_model_version("carded", "1")
    assert version.run_id == Run(uri).result(Train).mlflow_run_id
    assert (version.tags[CARD_TAG], version.tags[CARD_MARKDOWN_TAG]) == (result["model_card_html"],
                                                                         result["model_card_md"])
    assert logged_card(version.run_id, tmp_path) == {MARKDOWN_FILE: storage.read_bytes(result["model_card_md"]),
                                                     HTML_FILE: storage.read_bytes(result["model_card_html"])}


def test_the_card_holds_the_runs_lineage_and_data(carded):
    uri, result = carded
    text, page = card_of(result)
    run, ingest = Run(uri), Run(uri).result(Ingest)
    bad = (pd.read_csv(DATA_PATH)["Class"] == "bad").mean()
    for expected in ("# Model card: carded version 1", f"**Owner:** {run.spec.owner}",
                     f"**Purpose:** {run.spec.description}", f"**Data version:** {ingest.data_version}",
                     f"**Source:** {ingest.source}", f"{ingest.rows} rows x {ingest.columns} columns",
                     f"**Label rate:** {bad:.2%} of {ingest.rows:,} rows have Class 'bad'",
                     "**Date range:** none: the data has no date or time column",
                     f"analysis {run.result(Split).rows['analysis']}",
                     f"**MLflow run:** [{run.result(Train).mlflow_run_id}]",
                     "PII: addr_state replaced by a keyed HMAC-SHA256 at ingest",
                     "| addr_state | categorical | replaced by a keyed HMAC-SHA256 at ingest |",
                     "| int_rate | numeric | none |",
                     "not monitored yet"):
        assert expected in text
    assert f"Data version {ingest.data_version}" in page.text and "Model card: carded version 1" in page.text


def test_the_card_holds_the_analysis_slices_fairness_and_shap(carded):
    uri, result = carded
    text, page = card_of(result)
    found = tables(text)
    analyze = Run(uri).result(Analyze)
    m = analyze.metrics
    metrics = found["Metrics"]
    assert row(metrics, "roc_auc") == {"metric": "roc_auc", "model": f"{m['roc_auc']:.4f}",
                                       "baseline": f"{m['baseline_roc_auc']:.4f}"}
    assert row(metrics, "pr_auc")["model"] == f"{m['pr_auc']:.4f}"
    assert row(metrics, "lift over the baseline")["model"] == f"{m['lift']:.4f}"
    assert {cells["metric"] for cells in metrics} == {*m} - {"baseline_roc_auc", "lift"} | {"lift over the baseline"}
    matrix = analyze.confusion_matrix
    confusion = found[f"Confusion matrix at threshold {m['threshold']:.4f}"]
    assert row(confusion, "actual positive")["predicted positive"] == f"{matrix['tp']:,}"
    for column, values in analyze.slices.items():
        table = found[f"By {column}"]
        assert [cells[column] for cells in table] == list(values)
        for value, stats in values.items():
            assert row(table, value)["rows"] == f"{stats['rows']:,}"
            assert row(table, value)["positive_rate"] == f"{stats['positive_rate']:.4f}"
    comparison = storage.read_json(result["audit"])["comparison"]
    groups = comparison["fairness"]["groups"]
    assert comparison["fairness"]["column"] == "emp_length" and groups
    assert found["Approval rate by emp_length"] == [
        {"emp_length": group, "rows": f"{stats['rows']:,}", "model": f"{stats['challenger']:.4f}", "champion": "—"}
        for group, stats in groups.items()]
    assert f"**Disparate impact:** {result['metrics']['disparate_impact']['challenger']:.4f}" in text
    shap = found["Largest mean |SHAP|"]
    assert [(cells["feature"], cells["mean |SHAP|"]) for cells in shap] == \
        [(name, f"{value:.6f}") for name, value in analyze.top_features]
    for reason in result["reasons"]:
        assert f"- reason: {reason}" in text and reason in page.text
    analysis_rows = Run(uri).result(Split).rows["analysis"]
    assert f"The analysis set holds {analysis_rows:,} rows, {matrix['tp'] + matrix['fn']:,} of them positive" in text
    assert ("Noise of the ROC AUC over split seeds: not measured for this pipeline (tests/benchmarks/bench_seeds.py "
            "--record measures it).") in text


def test_the_html_is_self_contained_with_the_plots_inline(carded):
    uri, result = carded
    html = storage.read_bytes(result["model_card_html"]).decode()
    page = Page(html)
    assert not {"script", "link", "iframe", "object"} & page.tags
    assert all(link.startswith(("#", "http://", "https://")) for link in page.links)
    prefix = "data:image/png;base64,"
    assert all(src.startswith(prefix) for src in page.images)
    plots = Run(uri).result(Analyze).plots
    assert sorted(base64.b64decode(src.removeprefix(prefix)) for src in page.images) == \
        sorted(storage.read_bytes(plot) for plot in plots.values())
    assert "url(" not in html  # no stylesheet resource either


def test_a_version_compared_with_the_champion_shows_both(carded, analyzed_run):
    second = clone(analyzed_run, "carded_again", TRAINED, model_name="carded", **PASSING)
    result = run_step("register", second)
    text, _ = card_of(result)
    assert result["compared_with"] == 1
    assert "**Compared with:** champion version 1" in text
    slices = storage.read_json(result["audit"])["comparison"]["slices"]
    shown = tables(text)["Slices against the champion"]
    assert [cells["slice"] for cells in shown] == [stats["slice"] for stats in slices]
    for stats, cells in zip(slices, shown, strict=True):
        assert cells["rows"] == f"{stats['rows']:,}"
        assert cells["drop"] == (f"{stats['drop']:.4f}" if stats["compared"] else "not compared")
        if stats["compared"]:
            assert (cells["this version"], cells["champion"]) == (f"{stats['challenger']:.4f}",
                                                                  f"{stats['champion']:.4f}")
    headline = result["metrics"]["roc_auc"]
    assert row(tables(text)["Side by side on this run's analysis set"], "roc_auc") == {
        "metric": "roc_auc", "this version": f"{headline['challenger']:.4f}", "champion": f"{headline['champion']:.4f}"}


def test_a_recorded_noise_band_is_quoted_by_the_cards_after_it(analyzed_run):
    uri = clone(analyzed_run, "noisy", TRAINED, name="noisy", model_name="noisy", **PASSING)
    band = NoiseBand(metric="roc_auc", seeds=[42, 1, 2], model=[0.70, 0.74, 0.72], baseline=[0.69, 0.70, 0.71],
                     lift=[0.01, 0.04, 0.01], tuned=False, source="s3://elsewhere/loans.csv", commit="abc1234",
                     measured_at=datetime(2026, 12, 6, 9, tzinfo=UTC))
    assert record("noisy", band) == uris.join(runs.store_uri(), "noisy", "noise_band.json")
    text = plain(storage.read_bytes(run_step("register", uri)["model_card_md"]).decode())
    assert ("Noise of the ROC AUC over split seeds 42, 1, 2 (tests/benchmarks/bench_seeds.py, 2026-12-06, untuned, "
            "commit abc1234): the model 0.7200 (0.7000 to 0.7400), the baseline 0.7000 (0.6900 to 0.7100), the lift "
            "+0.0200 (+0.0100 to +0.0400). A difference smaller than that range is within the noise of one split. It "
            "was measured on s3://elsewhere/loans.csv, not on this version's data: a guide only.") in text
    assert recorded("noisy", "rmse") is None  # a band of another metric (the task changed) is not quoted


def test_no_card_when_turned_off(analyzed_run, monkeypatch):
    monkeypatch.setenv(MODEL_CARD, "0")
    uri = clone(analyzed_run, "uncarded", TRAINED, model_name="uncarded", **PASSING)
    result = run_step("register", uri)
    assert "model_card_md" not in result and Run(uri).result(Register).model_card_html is None
    assert not storage.exists(Run(uri).path("register", CARD_FOLDER, MARKDOWN_FILE))
    version = MlflowClient().get_model_version("uncarded", "1")
    assert CARD_TAG not in version.tags and CARD_MARKDOWN_TAG not in version.tags


def test_monitoring_re_renders_the_card_with_drift(carded, tmp_path, monkeypatch):
    batch = tmp_path / "batch.csv"
    pd.read_csv(DATA_PATH).drop(columns=["Class"]).to_csv(batch, index=False)
    spec = Run(carded[0]).spec
    run_step("score", runs.start(spec, "card_scoring", options={"input_uri": batch.as_uri()}, kind=runs.SCORING))
    monitoring = Run(runs.start(spec, "card_monitoring", kind=runs.MONITORING))

    def snapshot_read(*_):
        raise AssertionError("a refresh read the training snapshot again")

    monkeypatch.setattr(model_card, "coverage", snapshot_read)  # the refresh reads the coverage register kept
    report = storage.read_json(run_step("monitor", monitoring.uri)["report"])  # the step re-renders the card
    version = report["champion_version"]
    assert report["status"] in ("ok", "breach") and version is not None
    registered = Run(carded[0]).result(Register).model_card_md
    files = CardFiles(monitoring.path("monitor", CARD_FOLDER, MARKDOWN_FILE),
                      monitoring.path("monitor", CARD_FOLDER, HTML_FILE))
    assert storage.exists(files.html)
    text = plain(storage.read_bytes(files.markdown).decode())
    assert f"**Status:** {report['status']}: {report['message']}" in text
    assert f"total {report['rows']['total']:,}" in text
    assert f"**Drifting features:** {', '.join(report['drifting_features']) or 'none'}" in text
    assert f"**Report:** {report['report_html']}" in text and "not monitored yet" not in text
    assert f"by monitoring run {monitoring.uri}" in text
    bad = (pd.read_csv(DATA_PATH)["Class"] == "bad").mean()
    assert f"**Label rate:** {bad:.2%} of {Run(carded[0]).result(Ingest).rows:,} rows have Class 'bad'" in text
    tags = MlflowClient().get_model_version("carded", str(version)).tags
    assert (tags[CARD_MARKDOWN_TAG], tags[CARD_TAG]) == files
    run_id = MlflowClient().get_model_version("carded", str(version)).run_id
    assert logged_card(run_id, tmp_path)[MARKDOWN_FILE] == storage.read_bytes(files.markdown)
    assert "not monitored yet" in plain(storage.read_bytes(registered).decode())  # the registered card stays


def test_a_version_without_lineage_gets_no_refreshed_card(carded, tmp_path):
    client = MlflowClient()
    train = Run(carded[0]).result(Train)
    client.create_registered_model("by_hand")
    client.create_model_version("by_hand", train.model_uri, run_id=train.mlflow_run_id)
    assert refresh("by_hand", 1, {"status": "ok"}, uris.normalize(tmp_path / "card")) is None
    assert not (tmp_path / "card").exists()


def test_the_ops_page_links_each_versions_card(carded):
    from mlpipe.core.urls import URL_PREFIX, artifact_url
    from mlpipe.ui import overview, render

    registry = overview.registry("carded")
    pipeline = overview.Pipeline("loan_default", "carded", "loan_default.yaml")
    page = render.models_page([render.section({"pipeline": pipeline, "registry": registry}, False)], "ops",
                              URL_PREFIX, "pipelines")
    cells = re.findall(r'<td class="model-card">(.*?)</td>', page)
    shown = [registry.champion, registry.challenger, registry.previous]
    assert len(cells) == 3 and all(version is not None for version in shown)
    for version, cell in zip(shown, cells, strict=True):
        links = re.findall(r'<a href="([^"]+)"[^>]*>(HTML|Markdown)</a>', cell)
        assert links == [(artifact_url(version.tags[CARD_TAG]).replace("&", "&amp;"), "HTML"),
                         (artifact_url(version.tags[CARD_MARKDOWN_TAG]).replace("&", "&amp;"), "Markdown")]


@pytest.fixture(scope="module")
def task_cards(task_runs) -> dict[str, tuple[str, dict]]:
    """The regression and multiclass runs analyzed and registered: task -> (run URI, register result)."""
    return {task: (run_steps(uri, ("analyze",)), run_step("register", uri)) for task, uri in task_runs.items()}


def check_task_card(uri: str, result: dict) -> tuple[str, dict[str, list[dict[str, str]]]]:
    """What every task's card holds (headline metric and baseline, validation, plots inline); its text and tables."""
    text, page = card_of(result)
    run, analyze = Run(uri), Run(uri).result(Analyze)
    headline = RULES[run.spec.target.task].headline
    found = tables(text)
    assert row(found["Metrics"], headline) == {"metric": headline, "model": f"{analyze.metrics[headline]:.4f}",
                                               "baseline": f"{analyze.metrics[f'baseline_{headline}']:.4f}"}
    assert f"**Data checks:** {checks_line(run.result(Validate))}" in text
    assert f"Noise of the {RULES[run.spec.target.task].label} over split seeds: not measured" in text
    assert f"**Kept out:** {', '.join(run.spec.id_columns)}" in text
    assert len(page.images) == len(analyze.plots) and all(src.startswith("data:image/png;base64,")
                                                          for src in page.images)
    for reason in result["reasons"]:
        assert f"- reason: {reason}" in text
    return text, found


def test_a_regression_card(task_cards):
    uri, result = task_cards["regression"]
    text, found = check_task_card(uri, result)
    data = pd.read_csv(Run(uri).spec.data.source.removeprefix("file://"))
    assert f"**Target:** target: mean {data['target'].mean():.4f} over {len(data):,} rows" in text
    deciles = Run(uri).result(Analyze).deciles
    assert [(cells["decile"], cells["rows"], cells["rmse"]) for cells in found["Errors by decile of the prediction"]] \
        == [(str(d["decile"]), f"{d['rows']:,}", f"{d['rmse']:.4f}") for d in deciles]
    slices = Run(uri).result(Analyze).slices["sex"]
    assert {cells["sex"]: cells["rmse"] for cells in found["By sex"]} == \
        {value: f"{stats['rmse']:.4f}" for value, stats in slices.items()}
    assert "Predicts:** regression: the value of target" in text


def test_a_multiclass_card(task_cards):
    uri, result = task_cards["multiclass"]
    text, found = check_task_card(uri, result)
    data = pd.read_csv(Run(uri).spec.data.source.removeprefix("file://"))
    shares = data["cultivar"].value_counts(normalize=True).sort_index()
    assert f"**Target:** cultivar over {len(data):,} rows: " + ", ".join(
        f"{name} {value:.2%}" for name, value in shares.items()) in text
    per_class = Run(uri).result(Analyze).per_class
    assert {cells["class"]: (cells["support"], cells["f1"]) for cells in found["Per class"]} == \
        {name: (f"{stats['support']:,}", f"{stats['f1']:.4f}") for name, stats in per_class.items()}
    confusion = Run(uri).result(Analyze).confusion_matrix
    shown = found["Confusion matrix (rows: actual class, columns: predicted)"]
    assert {cells["actual"]: {k: int(v) for k, v in cells.items() if k != "actual"} for cells in shown} == confusion
