"""Reason codes of a declined record (adverse action, US ECOA / Regulation B): why the score was too high.

A binary model declines a record whose score is at or above its decision threshold. Its principal reasons
are the features whose SHAP contributions (:meth:`mlpipe.model.tabular.TabularModel.contribution_values`)
pushed its score most toward the positive class: those above 0, largest first, a tie in the order of the
model's features, at most ``reason_count`` (``spec.reason_count``). Each reason is::

    {"feature": "int_rate", "text": "Interest rate on the requested loan", "value": 13.99, "contribution": 0.41}

``text`` is the spec's ``reasons`` text of the feature, or its column name; ``value`` the record's value as the
model saw it: PII already masked (a hashed column shows its token, never the clear value), a category as text,
a number as a float, a missing value as ``None``; ``contribution`` in log-odds. The server (``/predict``) and
batch scoring both call :meth:`ReasonCodes.of_rows` on the masked values, so a record gets the same reasons
from both. Approved records get none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from mlpipe.core.spec import Spec

Reason = dict[str, Any]  # {"feature", "text", "value", "contribution"}


def model_value(value: Any, categorical: bool) -> str | float | None:
    """A feature value as the model saw it, in JSON: ``None`` when missing, text for a category (the model codes
    categories by their text), else a float."""
    if value is None or value != value:  # None, NaN
        return None
    return str(value) if categorical else float(value)


@dataclass(frozen=True)
class ReasonCodes:
    """How a spec wants declines explained: each feature's text (the column name when it gives none), and how
    many reasons at most."""

    texts: Mapping[str, str]
    count: int

    @classmethod
    def of(cls, spec: Spec) -> ReasonCodes | None:
        """The reason codes of ``spec``; ``None`` when it gives none (not binary, or ``reason_count`` 0)."""
        if not spec.gives_reasons:
            return None
        return cls(texts=dict(spec.reasons), count=spec.reason_count)

    def of_rows(self, schema: dict[str, Any], contributions: np.ndarray,
                rows: Sequence[Sequence[Any]]) -> list[list[Reason]]:
        """The reasons of each of ``rows`` (the masked values of the ``schema``'s columns, in its order; ``None`` or
        NaN when missing) from its row of ``contributions`` (rows x (columns + bias),
        :meth:`~mlpipe.model.tabular.TabularModel.contribution_values`)."""
        import numpy as np

        columns, categorical = schema["columns"], schema["categorical"]
        shares = contributions[:, :len(columns)]
        # descending contributions, ties in feature order: a stable sort of the negated values
        ranked = np.argsort(-shares, axis=1, kind="stable")[:, :self.count]
        return [[{"feature": columns[at], "text": self.texts.get(columns[at], columns[at]),
                  "value": model_value(values[at], columns[at] in categorical), "contribution": float(share[at])}
                 for at in order if share[at] > 0]
                for order, share, values in zip(ranked, shares, rows, strict=True)]
