"""The monitor's judgement: which features drift (by the spec's thresholds) and whether that is a breach.

A feature *drifts* when any of its rule's thresholds is crossed (:func:`why_drifting`):
PSI at or above ``psi``; for numeric features, a KS statistic at or above ``ks`` that is also
significant (p below ``ks_pvalue``: with few rows a large KS can be chance); for categorical
ones, more than ``new_category_share`` of rows in categories the reference never had; for
both, the missing rate up by ``missing_increase`` or more. The run is a *breach*
(:func:`breach_reasons`) when more than ``max_drifting_share`` of the features drift, when
any one feature's PSI reaches ``major_psi``, or when the champion's score distribution drifts
(``drift.score``); a quality breach from late outcomes (:mod:`mlpipe.monitoring.quality`) is added by the
monitor step.
"""

from __future__ import annotations

from typing import Any

from mlpipe.core.spec import Drift, DriftRule


def why_drifting(stats: dict[str, Any], rule: DriftRule) -> list[str]:
    """The thresholds of ``rule`` that a feature's drift statistics cross, as readable reasons."""
    reasons = []
    if stats["psi"] >= rule.psi:
        reasons.append(f"PSI {stats['psi']:.3f} >= {rule.psi:g}")
    if stats["kind"] == "numeric" and stats["ks"] is not None and stats["ks"] >= rule.ks \
            and stats["ks_pvalue"] < rule.ks_pvalue:
        reasons.append(f"KS {stats['ks']:.3f} >= {rule.ks:g} (p {stats['ks_pvalue']:.2g})")
    if stats["kind"] == "categorical" and stats["new_share"] > rule.new_category_share:
        shown = ", ".join(stats["new_categories"][:5]) + (" ..." if len(stats["new_categories"]) > 5 else "")
        reasons.append(f"{stats['new_share']:.1%} of rows in unseen categories ({shown}) > "
                       f"{rule.new_category_share:.1%}")
    rise = stats["missing_current"] - stats["missing_reference"]
    if rise >= rule.missing_increase:
        reasons.append(f"missing {stats['missing_reference']:.1%} -> {stats['missing_current']:.1%}")
    return reasons


def judged(statistics: dict[str, dict[str, Any]], drift: Drift) -> dict[str, dict[str, Any]]:
    """Each feature's statistics with ``drifting`` and ``why`` added, by its own rule."""
    return {name: {**stats, "why": (why := why_drifting(stats, drift.rule(name))), "drifting": bool(why)}
            for name, stats in statistics.items()}


def drifting(features: dict[str, dict[str, Any]]) -> list[str]:
    """The drifting features, the largest PSI first."""
    return sorted((name for name, stats in features.items() if stats["drifting"]),
                  key=lambda name: -features[name]["psi"])


def breach_reasons(features: dict[str, dict[str, Any]], score: dict[str, Any] | None, drift: Drift) -> list[str]:
    """Why the drift of these judged features (and score) is a breach; empty when it is not."""
    moved = drifting(features)
    reasons = []
    if features and (share := len(moved) / len(features)) > drift.max_drifting_share:
        reasons.append(f"{len(moved)} of {len(features)} features drift ({share:.0%} > "
                       f"{drift.max_drifting_share:.0%}): {', '.join(moved)}")
    reasons += [f"{name}: PSI {features[name]['psi']:.3f} >= major_psi {drift.major_psi:g} "
                f"({'; '.join(features[name]['why'])})"
                for name in moved if features[name]["psi"] >= drift.major_psi]
    if drift.score and score is not None and score["drifting"]:
        reasons.append(f"the champion's scores drift: {'; '.join(score['why'])}")
    return reasons
