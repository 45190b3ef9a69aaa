"""The registry's vocabulary: the aliases a pipeline moves and the tags its model versions carry."""

from __future__ import annotations

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
PROMOTED_TAG = "mlpipe.promoted"
REASONS_TAG = "mlpipe.promotion_reasons"
NOTES_OF_GATE_TAG = "mlpipe.promotion_notes"
FORCED_TAG = "mlpipe.promotion_forced"
COMPARED_TAG = "mlpipe.compared_with_version"
COMPARISON_TAG = "mlpipe.promotion_comparison"  # JSON: challenger vs champion, metric by metric
REPLACED_TAG = "mlpipe.replaced_version"  # the champion this version replaced when promoted
AUDIT_TAG = "mlpipe.promotion_audit"
THRESHOLD_TAG = "mlpipe.threshold"
