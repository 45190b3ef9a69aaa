"""PII rules of a spec, applied the same way wherever raw data enters: ingest, batch scoring, serving.

``hash`` replaces a value by a keyed HMAC-SHA256 token (the key is the secret
``$MLPIPE_PII_KEY``, never in code, specs or logs), which keeps the column usable as
a category; ``drop`` removes the column.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from mlpipe.core import settings
from mlpipe.core.errors import Refused

if TYPE_CHECKING:
    import pandas as pd

    from mlpipe.core.spec import PiiRule


def pseudonym(value: Any, key: bytes) -> str:
    """The keyed HMAC-SHA256 token of one value (hex, 16 chars)."""
    return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:16]


def keyed_hash(values: pd.Series, key: bytes) -> pd.Series:
    """The token of each value; missing values stay missing. Each distinct value is hashed once."""
    distinct = values.dropna().unique()
    return values.map(dict(zip(distinct, (pseudonym(value, key) for value in distinct), strict=True)))


def hash_key(rules: list[PiiRule]) -> bytes | None:
    """The secret key the ``hash`` rules need (``None`` when there are none); missing -> :class:`Refused`."""
    hashed = [rule.column for rule in rules if rule.action == "hash"]
    if not hashed:
        return None
    key = settings.pii_key()
    if not key:
        raise Refused(f"pii rule 'hash' for column {hashed[0]!r} needs the secret ${settings.PII_KEY}")
    return key.encode()


def mask_pii(frame: pd.DataFrame, rules: list[PiiRule]) -> dict[str, str]:
    """Apply the spec's PII rules to ``frame`` in place; return what was done to each column."""
    key = hash_key(rules)
    applied = {}
    for rule in rules:
        if rule.column not in frame.columns:
            raise Refused(f"pii rule for column {rule.column!r}: no such column in the data")
        if rule.action == "drop":
            frame.drop(columns=[rule.column], inplace=True)
        else:
            frame[rule.column] = keyed_hash(frame[rule.column], key)
        applied[rule.column] = rule.action
    return applied


def mask_records(records: list[dict[str, Any]], rules: list[PiiRule], key: bytes | None) -> list[dict[str, Any]]:
    """Records (e.g. of a serving request) with the ``hash`` rules applied; ``key`` from :func:`hash_key`."""
    hashed = [rule.column for rule in rules if rule.action == "hash"]
    return [{**record, **{column: pseudonym(record[column], key) for column in hashed
                          if record.get(column) is not None}} for record in records]
