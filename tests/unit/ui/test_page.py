"""The Models page: what it shows of a pipeline, in which order, and that nothing it shows can inject markup."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pandas as pd
import pytest

from mlpipe.core import uris
from mlpipe.core.tasks import Task
from mlpipe.monitoring.drift import feature_drift
from mlpipe.store import audit, runs, storage
from mlpipe.ui import overview, render
from mlpipe.ui.overview import Pipeline, Registry, Version
from tests.conftest import DATA_PATH

XSS = '<script>alert("x")</script>'
CATEGORICAL = ["term", "sub_grade", "addr_state", "verification_status", "emp_length"]


def sample_report(pipeline: str = "loan_default") -> dict:
    """A monitoring report as the monitor step writes it: real drift statistics of the bundled data.

    The current window is the second half of the loans with the interest rate raised by four points
    and a third of the states replaced by one the reference never had.
    """
    loans = pd.read_csv(DATA_PATH).drop(columns=["Class"])
    reference, current = loans.iloc[:5000], loans.iloc[5000:].copy()
    current["int_rate"] = current["int_rate"] + 4
    current.loc[current.index[::3], "addr_state"] = "ZZ"
    features = feature_drift(reference, current, CATEGORICAL)
    for stats in features.values():
        stats["drifting"] = stats["psi"] > 0.25
        stats["why"] = [f"PSI {stats['psi']:.3f} > 0.25"] if stats["drifting"] else []
    drifting = sorted(name for name, stats in features.items() if stats["drifting"])
    return {
        "pipeline": pipeline, "model_name": pipeline, "champion_version": 2,
        "monitoring_run": "file:///store/loan_default/monitoring/m1", "generated_at": "2026-11-23T18:00:00+00:00",
        "window": {"start": "2026-11-16T18:00:00+00:00", "end": "2026-11-23T18:00:00+00:00", "days": 7},
        "status": "breach", "breach": True, "reasons": [f"{len(drifting)} features drift {XSS}"],
        "message": "drift over the limit", "rows": {"total": len(current), "batch": len(current), "served": 0},
        "features": features, "drifting_features": drifting, "drifting_share": len(drifting) / len(features),
        "score": None, "quality": {"status": "ok", "labels": 812, "breach": False,
                                   "overall": {"roc_auc": 0.7312, "pr_auc": 0.12, "brier": 0.04, "ece": 0.01,
                                               "rows": 812, "positives": 40}, "windows": []},
        "mlflow_run_id": None, "report_html": "file:///store/loan_default/monitoring/m1/monitor/report.html",
    }


@pytest.fixture(scope="module")
def report() -> dict:
    return sample_report()


def version(number: int, auc: float, aliases: list[str], **tags: str) -> Version:
    return Version(number, aliases, {"mlpipe.analysis_roc_auc": str(auc), "mlpipe.baseline_roc_auc": "0.7321",
                                     "mlpipe.lift": str(round(auc - 0.7321, 4)), "mlpipe.threshold": "0.68",
                                     **tags}, datetime(2026, 11, 20 + number, tzinfo=UTC))


def registry() -> Registry:
    champion = version(3, 0.7512, ["champion"], **{"mlpipe.notes": XSS})
    challenger = version(4, 0.7401, ["challenger"], **{"mlpipe.promotion_reasons": "lift 0.01 < 0.02 <b>x</b>"})
    previous = version(2, 0.7487, ["previous-champion"])
    return Registry("loan_default", champion, challenger, previous,
                    [challenger, champion, previous, version(1, 0.7301, [])])


def page(found: dict, may_rollback: bool = True) -> str:
    section = render.section(found, may_rollback, "" if may_rollback else "watcher may not roll back loan_default")
    return render.models_page([section], "ops<b>", "/mlpipe", "/dags/pipelines")


def found(**parts) -> dict:
    base = {"pipeline": Pipeline("loan_default", "loan_default", "loan_default.yaml"),
            "dag_id": "loan_default_training", "registry": registry(), "training": None, "monitoring": None,
            "history": []}
    for key in ("registry", "training", "monitoring", "history"):
        base[f"{key}_error"] = None
    return {**base, **parts}


def test_champion_and_challenger_side_by_side_with_their_metrics():
    html = page(found())
    table = html[html.index('class="side-by-side"'):html.index("</table>")]
    assert re.search(r'data-role="champion">\s*<a [^>]*>v3</a>', table)
    assert re.search(r'data-role="challenger">\s*<a [^>]*>v4</a>', table)
    auc_row = re.search(r"<th>Analysis ROC AUC</th>(.*?)</tr>", table, re.S).group(1)
    assert re.findall(r">([\d.]+)<", auc_row) == ["0.7512", "0.7401", "0.7487"]
    assert "/#/models/loan_default/versions/3" in table


def test_every_value_is_escaped():
    html = page(found(monitoring={**sample_report(), "run_uri": "u"},
                      history=[{"time": "t", "action": "rollback", "version": 3, "from_version": 3, "to_version": 2,
                                "actor": '"><img src=x onerror=alert(1)>', "reason": XSS}]))
    assert "<script>" not in html and "<img src=x" not in html and "<b>x</b>" not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 3  # notes tag, reasons, audit reason
    assert "ops&lt;b&gt;" in html


def test_the_trend_chart_has_a_point_per_version_oldest_first():
    html = page(found())
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert re.findall(r">v(\d+)</text>", svg) == ["1", "2", "3", "4"]
    assert svg.count('data-series="analysis ROC AUC"') == 1 and svg.count("<circle") == 8
    assert 'r="5"' in svg  # the champion's point is ringed


def test_a_regression_pipeline_shows_its_rmse_side_by_side_and_in_the_trend_without_a_threshold():
    def rmse_version(number: int, rmse: float, aliases: list[str]) -> Version:
        return Version(number, aliases, {"mlpipe.analysis_rmse": str(rmse), "mlpipe.baseline_rmse": "3.7",
                                         "mlpipe.lift": str(round(3.7 - rmse, 4))}, datetime(2026, 11, 20 + number,
                                                                                            tzinfo=UTC))

    champion, challenger = rmse_version(2, 3.58, ["champion"]), rmse_version(3, 3.61, ["challenger"])
    html = page(found(pipeline=Pipeline("loan_rate", "loan_rate", "loan_rate.yaml", task=Task.REGRESSION),
                      registry=Registry("loan_rate", champion, challenger, None, [challenger, champion])))
    table = html[html.index('class="side-by-side"'):html.index("</table>")]
    row = re.search(r"<th>Analysis RMSE</th>(.*?)</tr>", table, re.S).group(1)
    assert re.findall(r">([\d.]+)<", row) == ["3.5800", "3.6100"]
    assert "<th>Baseline RMSE</th>" in table and "Decision threshold" not in table and "ROC AUC" not in html
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert 'data-series="analysis RMSE"' in svg and "RMSE of loan_rate by version" in svg


def test_no_monitoring_run_yet_and_no_history(pipeline_env):
    assert overview.monitoring("loan_default") is None
    html = page(found())
    assert "no monitoring run yet" in html and "no promotions, rollbacks or deploys yet" in html


def test_latest_monitoring_report_drift_table_sorted_by_psi(pipeline_env, loan_spec, report):
    older = runs.start(loan_spec, "scheduled__1", kind=runs.MONITORING)
    storage.write_json(uris.join(older, "monitor", "report.json"), {**report, "status": "ok"})
    latest = runs.start(loan_spec, "scheduled__2", kind=runs.MONITORING)
    os.utime(uris.local_path(uris.join(older, "spec.json")), (1, 1))  # the older run started first
    storage.write_json(uris.join(latest, "monitor", "report.json"), report)
    shown = overview.monitoring("loan_default")
    assert shown["status"] == "breach" and shown["run_uri"] == latest
    rows = overview.drift_rows(shown)
    drifting = [r for r in rows if r["drifting"]]
    assert {"int_rate", "addr_state"} <= {r["feature"] for r in drifting}
    assert rows[: len(drifting)] == drifting  # drifting first ...
    for part in (drifting, rows[len(drifting):]):  # ... each part by PSI, highest first
        assert [r["psi"] for r in part] == sorted((r["psi"] for r in part), reverse=True)
    html = page(found(monitoring=shown, drift=rows))
    table = html[html.index('class="drift"'):]
    assert re.findall(r'<tr class="drifting"><td>(\w+)</td>', table) == [r["feature"] for r in drifting]
    assert "/mlpipe/artifact?uri=file%3A%2F%2F%2Fstore%2Floan_default%2Fmonitoring%2Fm1%2Fmonitor%2Freport.html" in html
    assert "roc_auc 0.7312" in html and "on 812 labelled rows" in html


def test_a_monitoring_run_without_a_report_says_so(pipeline_env, loan_spec):
    runs.start(loan_spec, "scheduled__3", kind=runs.MONITORING)
    shown = overview.monitoring("loan_default")
    assert "has no report" in shown["missing"]
    assert "has no report (still running, or it failed" in page(found(monitoring=shown))


def test_history_newest_first_with_who_and_why(pipeline_env):
    audit.record("loan_default", {"action": "promoted", "model": "loan_default", "version": 1, "forced": False,
                                  "reasons": ["no champion yet"], "actor": "register step of run r1"})
    audit.record("loan_default", {"action": "promoted", "model": "loan_default", "version": 2, "forced": True,
                                  "reasons": ["forced"], "actor": "register step of run r2"})
    audit.record("loan_default", {"action": "rollback", "model": "loan_default", "version": 2, "from_version": 2,
                                  "to_version": 1, "actor": "ops", "reason": "bad batch"})
    events = overview.history("loan_default")
    assert [e["action"] for e in events] == ["rollback", "promoted", "promoted"]
    html = page(found(history=events))
    rows = re.findall(r'<tr class="event" data-action="(\w+)">.*?<td class="actor">([^<]*)</td><td>(\w*)</td>',
                      html, re.S)
    assert rows == [("rollback", "ops", ""), ("promoted", "register step of run r2", "yes"),
                    ("promoted", "register step of run r1", "")]
    assert "v2 → v1" in html and "bad batch" in html


def test_the_rollback_form_only_for_those_allowed():
    allowed, refused = page(found(), True), page(found(), False)
    assert 'action="/mlpipe/rollback"' in allowed and "from v3 to v2" in allowed
    assert 'action="/mlpipe/rollback"' not in refused and "watcher may not roll back loan_default" in refused
    nothing = page(found(registry=Registry("loan_default", version(1, 0.73, ["champion"]), None, None, [])))
    assert "no previous champion to roll back to" in nothing and 'action="/mlpipe/rollback"' not in nothing


def test_unreadable_parts_and_broken_specs_are_shown_not_raised():
    html = page(found(registry=None, registry_error="cannot read the model registry: OSError: down",
                      training_error="cannot read the last training run: no database"))
    assert "OSError: down" in html and "no database" in html
    broken = render.section({"pipeline": Pipeline("bad", "bad", "bad.yaml", error=f"bad.yaml: name {XSS}"),
                             "spec_error": f"bad.yaml: name {XSS}"}, False)
    html = render.models_page([broken], "ops", "/mlpipe", "/dags/pipelines")
    assert "does not load: bad.yaml: name &lt;script&gt;" in html


def test_pipelines_are_discovered_from_the_specs_folder(tmp_path):
    from tests.conftest import SPEC_PATH

    (tmp_path / "loan_default.yaml").write_text(SPEC_PATH.read_text())
    (tmp_path / "broken.yaml").write_text("name: [")
    found_ = overview.pipelines(tmp_path)
    assert [p.name for p in found_] == ["broken", "loan_default"]
    assert found_[0].error and found_[1].model == "loan_default" and found_[1].error is None


def test_a_regression_champions_quality_on_late_outcomes_shows_its_own_metrics(report):
    quality = {"status": "ok", "labels": 240, "breach": False,
               "overall": {"rows": 240, "mean_actual": 151.2, "mean_predicted": 149.8, "rmse": 54.1, "mae": 43.9,
                           "mean_error": -1.4}}
    html = page(found(monitoring={**report, "quality": quality}, drift=[]))
    line = re.search(r'<p class="quality">(.*?)</p>', html, re.S).group(1)
    assert " ".join(line.split()).endswith("on 240 labelled rows : rmse 54.1000, mae 43.9000, mean_error -1.4000")
