"""PII rules of a spec, applied the same way wherever raw data enters: ingest, batch scoring, serving.

``hash`` replaces a value by a keyed HMAC-SHA256 token (the key is the secret
``$MLPIPE_PII_KEY``, never in code, specs or logs), which keeps the column usable as
a category; ``drop`` removes the column.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Any

from mlpipe.steps import StepError

if TYPE_CHECKING:
    import pandas as pd

    from mlpipe.spec import PiiRule

PII_KEY_ENV = "MLPIPE_PII_KEY"


def keyed_hash(values: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 of each value (hex, 16 chars); missing values stay missing."""
    def digest(value: Any) -> str:
        return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:16]

    return values.map(digest, na_action="ignore")


def mask_pii(frame: pd.DataFrame, rules: list[PiiRule]) -> dict[str, str]:
    """Apply the spec's PII rules to ``frame`` in place; return what was done to each column."""
    applied = {}
    for rule in rules:
        if rule.column not in frame.columns:
            raise StepError(f"pii rule for column {rule.column!r}: no such column in the data")
        if rule.action == "drop":
            frame.drop(columns=[rule.column], inplace=True)
        else:
            key = os.environ.get(PII_KEY_ENV)
            if not key:
                raise StepError(f"pii rule 'hash' for column {rule.column!r} needs the secret ${PII_KEY_ENV}")
            frame[rule.column] = keyed_hash(frame[rule.column], key.encode())
        applied[rule.column] = rule.action
    return applied
