"""``/mlpipe/metrics``: the latest monitoring figures as Prometheus text, parsed back with prometheus_client."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlpipe.ui.metrics import exposition
from tests.unit.ui.test_page import sample_report


def samples(text: bytes) -> dict[tuple, float]:
    """Every sample of the exposition: ``(name, sorted labels) -> value``."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


@pytest.fixture(scope="module")
def report() -> dict:
    return sample_report()


def test_the_latest_report_as_metrics(report):
    found = samples(exposition([("loan_default", report, 3)]))
    pipeline = (("pipeline", "loan_default"),)
    assert found[("mlpipe_monitoring_breach", pipeline)] == 1.0
    assert found[("mlpipe_monitoring_status", (("pipeline", "loan_default"), ("status", "breach")))] == 1.0
    assert found[("mlpipe_drifting_features", pipeline)] == len(report["drifting_features"]) >= 2
    assert found[("mlpipe_drifting_share", pipeline)] == pytest.approx(report["drifting_share"])
    for feature, stats in report["features"].items():
        key = ("mlpipe_feature_psi", (("feature", feature), ("pipeline", "loan_default")))
        assert found[key] == pytest.approx(stats["psi"])
    assert found[("mlpipe_quality_roc_auc", pipeline)] == 0.7312
    assert found[("mlpipe_quality_labels", pipeline)] == 812
    assert found[("mlpipe_monitoring_rows", (("part", "total"), ("pipeline", "loan_default")))] == 4857
    assert found[("mlpipe_champion_version", pipeline)] == 3  # the registry's, not the report's (2)
    generated = datetime(2026, 11, 23, 18, tzinfo=UTC).timestamp()
    assert found[("mlpipe_monitoring_generated_timestamp_seconds", pipeline)] == generated


def test_missing_parts_are_left_out_not_invented(report):
    nothing = {"status": "nothing_to_compare", "breach": False, "reasons": [], "features": {}, "quality": None,
               "score": None, "champion_version": None}
    found = samples(exposition([("quiet", nothing, None), ("new", None, None), ("old", {**report, "quality": None},
                                                                                None)]))
    assert found[("mlpipe_monitoring_breach", (("pipeline", "quiet"),))] == 0.0
    assert found[("mlpipe_drifting_features", (("pipeline", "quiet"),))] == 0.0
    assert not any(labels == (("pipeline", "new"),) for _, labels in found)  # never monitored: no figures
    assert not any(name.startswith("mlpipe_quality") and dict(labels)["pipeline"] in ("quiet", "old")
                   for name, labels in found)
    assert found[("mlpipe_champion_version", (("pipeline", "old"),))] == 2  # the report's when no registry answer


def test_the_quality_of_a_regression_and_a_multiclass_champion(report):
    regression = {**report, "quality": {"status": "ok", "labels": 240, "overall": {
        "rows": 240, "mean_actual": 151.2, "mean_predicted": 149.8, "rmse": 54.1, "mae": 43.9, "mean_error": -1.4}}}
    multiclass = {**report, "quality": {"status": "breach", "labels": 178, "overall": {
        "rows": 178, "accuracy": 0.61, "log_loss": 1.284}}}
    found = samples(exposition([("rates", regression, 1), ("grades", multiclass, 1)]))
    quality = {(name, dict(labels)["pipeline"]): value for (name, labels), value in found.items()
               if name.startswith("mlpipe_quality_") and name != "mlpipe_quality_labels"}
    assert quality == {("mlpipe_quality_rmse", "rates"): 54.1, ("mlpipe_quality_mae", "rates"): 43.9,
                       ("mlpipe_quality_mean_error", "rates"): -1.4, ("mlpipe_quality_log_loss", "grades"): 1.284,
                       ("mlpipe_quality_accuracy", "grades"): 0.61}
