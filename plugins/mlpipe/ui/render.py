"""HTML of the ops app: the Models page, the rollback confirmation and message pages.

Every value is escaped by Jinja2's autoescaping (names, tags, reasons and messages come from
specs, the registry, the audit log and reports, none of which is trusted markup); the only
markup inserted as is, the trend chart, is built by :mod:`mlpipe.ui.chart`, which escapes its text.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from mlpipe.core import urls
from mlpipe.core.tasks import RULES
from mlpipe.ui.chart import trend_svg
from mlpipe.ui.overview import CARD_LINKS, QUALITY_METRICS, VERSION_FACTS, Pipeline
from mlpipe.ui.templates import TEMPLATES

if TYPE_CHECKING:
    from jinja2 import Environment


@cache
def environment() -> Environment:
    """The Jinja2 environment of the app's templates (autoescape on)."""
    from jinja2 import DictLoader, Environment, select_autoescape

    return Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True,
                                                                                   default_for_string=True))


def trend(registry: Any, pipeline: Pipeline) -> str:
    """The trend chart of the registry's recent versions (oldest first): the task's headline metric (binary: ROC
    AUC) of the model and of the baseline on the analysis set."""
    ordered = sorted(registry.versions, key=lambda v: v.number)
    champion = registry.champion.number if registry.champion else None
    label, (analysis, baseline) = RULES[pipeline.task].label, pipeline.headline_tags
    return trend_svg([v.number for v in ordered],
                     [(f"analysis {label}", [v.metric(analysis) for v in ordered]),
                      (f"baseline {label}", [v.metric(baseline) for v in ordered])],
                     highlight=champion, title=f"{label} of {registry.model} by version")


def section(found: dict[str, Any], may_rollback: bool, refusal: str = "") -> dict[str, Any]:
    """One pipeline's part of the page: :func:`mlpipe.ui.overview.overview` plus columns, chart and rights."""
    from markupsafe import Markup

    registry = found.get("registry")
    prepared = {**found, "may_rollback": may_rollback, "refusal": refusal, "columns": [], "chart": "",
                "metrics": found["pipeline"].version_metrics}
    if registry is not None and not registry.error:
        prepared["columns"] = [("champion", registry.champion), ("challenger", registry.challenger),
                               ("previous champion", registry.previous)]
        prepared["chart"] = Markup(trend(registry, found["pipeline"]))  # noqa: S704 - built by chart.trend_svg, which escapes
    return prepared


def models_page(sections: list[dict[str, Any]], user: str, base: str, folder: str) -> str:
    """The Models page: one section per pipeline (:func:`section`)."""
    from airflow.configuration import conf

    return environment().get_template("models").render(
        sections=sections, user=user, base=base, folder=folder, facts=VERSION_FACTS, card_links=CARD_LINKS,
        quality_metrics=QUALITY_METRICS,
        mlflow_ui=urls.mlflow_ui(), airflow=conf.get("api", "base_url", fallback="").rstrip("/"),
        artifact=lambda uri: f"{base}/artifact?uri={_quote(uri)}")


def _quote(uri: str) -> str:
    from urllib.parse import quote

    return quote(uri, safe="")


def confirm_page(**values: Any) -> str:
    """The rollback confirmation: what moves, the reason, and the signed form that does it."""
    return environment().get_template("confirm").render(**values)


def message_page(heading: str, message: str, kind: str, user: str, base: str) -> str:
    """A page with one message (``kind``: ``success``, ``error`` or ``notice``) and a way back."""
    return environment().get_template("message").render(heading=heading, message=message, kind=kind, user=user,
                                                         base=base)
