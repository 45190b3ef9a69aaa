"""``/mlpipe/metrics``: the latest monitoring figures of each pipeline in Prometheus' text format.

One scrape reads each pipeline's latest monitoring ``report.json`` (and the champion alias from
the registry) and exposes, labelled by ``pipeline``:

| metric | meaning |
|---|---|
| ``mlpipe_monitoring_breach`` | 1 when the latest monitoring run found a breach |
| ``mlpipe_monitoring_status{status}`` | 1 for the report's status (ok, breach, nothing_to_compare) |
| ``mlpipe_monitoring_generated_timestamp_seconds`` | when that report was written |
| ``mlpipe_monitoring_rows{part}`` | rows compared (total, batch, served) |
| ``mlpipe_drifting_features`` / ``mlpipe_drifting_share`` | how many features drift, and their share |
| ``mlpipe_feature_psi{feature}`` | PSI of each feature against the champion's training reference |
| ``mlpipe_score_psi`` | PSI of the champion's scores |
| ``mlpipe_quality_<metric>`` | quality on late labels, when there are some (``overview.QUALITY_METRICS``) |
| ``mlpipe_quality_labels`` | labelled rows behind those |
| ``mlpipe_champion_version`` | the version ``champion`` points at now (the report's when the registry is unreachable) |
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mlpipe.ui.overview import QUALITY_METRICS, number


def families(figures: Iterable[tuple[str, dict[str, Any] | None, int | None]]) -> Iterator[Any]:
    """Metric families from ``(pipeline, latest report or None, champion version or None)`` triples."""
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=["pipeline", *labels])

    made = {
        "breach": gauge("mlpipe_monitoring_breach", "1 when the latest monitoring run found a breach"),
        "status": gauge("mlpipe_monitoring_status", "The latest monitoring report's status (1 for it)", ("status",)),
        "generated": gauge("mlpipe_monitoring_generated_timestamp_seconds", "When the latest report was written"),
        "rows": gauge("mlpipe_monitoring_rows", "Rows compared by the latest monitoring run", ("part",)),
        "drifting": gauge("mlpipe_drifting_features", "Features drifting in the latest monitoring run"),
        "share": gauge("mlpipe_drifting_share", "Share of features drifting in the latest monitoring run"),
        "psi": gauge("mlpipe_feature_psi", "PSI of a feature against the champion's training reference",
                     ("feature",)),
        "score_psi": gauge("mlpipe_score_psi", "PSI of the champion's scores against its training reference"),
        **{k: gauge(f"mlpipe_quality_{k}", f"{k} of the champion on late labels") for k in QUALITY_METRICS},
        "labels": gauge("mlpipe_quality_labels", "Labelled rows behind the quality figures"),
        "champion": gauge("mlpipe_champion_version", "The model version the champion alias points at"),
    }
    for pipeline, report, champion in figures:
        report = report or {}
        champion = champion if champion is not None else report.get("champion_version")
        if isinstance(champion, int):
            made["champion"].add_metric([pipeline], champion)
        if "status" not in report:
            continue
        made["breach"].add_metric([pipeline], 1.0 if report.get("breach") else 0.0)
        made["status"].add_metric([pipeline, str(report["status"])], 1.0)
        if stamp := _timestamp(report.get("generated_at")):
            made["generated"].add_metric([pipeline], stamp)
        for part, rows in (report.get("rows") or {}).items():
            if (value := number(rows)) is not None:
                made["rows"].add_metric([pipeline, str(part)], value)
        made["drifting"].add_metric([pipeline], float(len(report.get("drifting_features") or [])))
        if (share := number(report.get("drifting_share"))) is not None:
            made["share"].add_metric([pipeline], share)
        for feature, stats in sorted((report.get("features") or {}).items()):
            if isinstance(stats, dict) and (psi := number(stats.get("psi"))) is not None:
                made["psi"].add_metric([pipeline, str(feature)], psi)
        if isinstance(report.get("score"), dict) and (psi := number(report["score"].get("psi"))) is not None:
            made["score_psi"].add_metric([pipeline], psi)
        quality = report.get("quality") if isinstance(report.get("quality"), dict) else {}
        overall = quality.get("overall") if isinstance(quality.get("overall"), dict) else {}
        for key in QUALITY_METRICS:
            if (value := number(overall.get(key))) is not None:
                made[key].add_metric([pipeline], value)
        if (labels := number(quality.get("labels"))) is not None:
            made["labels"].add_metric([pipeline], labels)
    yield from made.values()


def _timestamp(text: Any) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(text)).timestamp() if text else None
    except ValueError:
        return None


def exposition(figures: Iterable[tuple[str, dict[str, Any] | None, int | None]]) -> bytes:
    """The Prometheus text exposition of :func:`families` of ``figures``."""
    from prometheus_client import CollectorRegistry, generate_latest

    class Collector:
        def collect(self) -> Iterator[Any]:
            return families(figures)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)
