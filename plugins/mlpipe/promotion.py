"""The promotion decision: does a newly registered model version become the ``champion``?

:func:`decide` is a pure function of the spec, the challenger's analysis metrics and
what is known of the current champion, so the rule can be tested and changed alone.
Today's rule: with no champion yet, a challenger that passes the spec's thresholds
is promoted; with a champion, nothing is promoted automatically (the
champion/challenger comparison gate comes later and gets ``champion`` to compare with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlpipe.spec import Spec


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)


def threshold_failures(spec: Spec, metrics: dict[str, Any]) -> list[str]:
    """Why ``metrics`` fail the spec's thresholds (empty when they pass)."""
    failures = []
    minimum = spec.thresholds.min_roc_auc
    if metrics["roc_auc"] < minimum:
        failures.append(f"analysis roc_auc {metrics['roc_auc']:.4f} < thresholds.min_roc_auc {minimum}")
    minimum = spec.thresholds.min_lift_over_baseline
    if metrics["lift"] < minimum:
        failures.append(f"lift over baseline {metrics['lift']:.4f} "
                        f"< thresholds.min_lift_over_baseline {minimum}")
    return failures


def decide(spec: Spec, challenger_metrics: dict[str, Any], champion: dict[str, Any] | None,
           force: bool = False) -> Decision:
    """Promote the challenger or not, and why.

    ``challenger_metrics`` are the analysis metrics (``roc_auc``, ``lift``, ...);
    ``champion`` is ``None`` when the model has no champion, else what the registry
    knows of it (``version``, ``tags``). ``force`` (the ``force_promote`` trigger
    option) promotes regardless, keeping the reasons it overrides.
    """
    if force:
        overridden = decide(spec, challenger_metrics, champion)
        return Decision(promote=True, reasons=["forced by the force_promote trigger option",
                                               *([] if overridden.promote else overridden.reasons)])
    failures = threshold_failures(spec, challenger_metrics)
    if failures:
        return Decision(promote=False, reasons=failures)
    if champion is not None:
        return Decision(promote=False, reasons=[
            f"version {champion['version']} is the champion; the champion/challenger gate comes later, "
            "so nothing is promoted automatically"])
    return Decision(promote=True, reasons=["no champion yet and the spec thresholds pass "
                                           f"(roc_auc {challenger_metrics['roc_auc']:.4f}, "
                                           f"lift {challenger_metrics['lift']:.4f})"])
