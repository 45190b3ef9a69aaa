"""Reason codes from one record's contributions: the positive ones, largest first, ties in feature order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpipe.core import spec
from mlpipe.model.reasons import ReasonCodes, model_value

SCHEMA = {"columns": ["income", "rate", "state", "term", "grade"], "categorical": {"state": [], "term": []}}
TEXTS = {"income": "Annual income", "rate": "Interest rate on the requested loan", "term": "Length of the loan"}


def contributions(*rows: list[float]) -> np.ndarray:
    """Rows of SHAP values as XGBoost gives them: float32, the bias last."""
    return np.array([[*row, -1.5] for row in rows], dtype=np.float32)


ROW = [52_000, 13.99, "4f2a9c0e1b7d3a55", "term_60", None]  # income, rate, state (hashed), term, grade


def test_the_largest_positive_contributions_in_order_with_texts_values_and_the_column_name_fallback():
    codes = ReasonCodes(TEXTS, count=3)
    [found] = codes.of_rows(SCHEMA, contributions([0.2, 0.9, -0.4, 0.5, 0.7]), [ROW])
    assert found == [
        {"feature": "rate", "text": "Interest rate on the requested loan", "value": 13.99,
         "contribution": float(np.float32(0.9))},
        {"feature": "grade", "text": "grade", "value": None, "contribution": float(np.float32(0.7))},
        {"feature": "term", "text": "Length of the loan", "value": "term_60", "contribution": float(np.float32(0.5))},
    ]


def test_only_contributions_toward_the_positive_class_are_reasons():
    codes = ReasonCodes(TEXTS, count=4)
    few, none = codes.of_rows(SCHEMA, contributions([-0.1, 0.3, 0.0, -2.0, 0.0], [-0.1, -0.3, 0.0, -1.0, 0.0]),
                                 [ROW, ROW])
    assert [reason["feature"] for reason in few] == ["rate"]  # 0 pushes nowhere: not a reason
    assert none == []


def test_ties_are_broken_by_feature_order_whatever_the_row_holds():
    codes = ReasonCodes({}, count=4)
    tied = contributions([0.25, 0.5, 0.25, 0.5, 0.25])
    [found] = codes.of_rows(SCHEMA, tied, [ROW])
    assert [reason["feature"] for reason in found] == ["rate", "term", "income", "state"]
    rows = codes.of_rows(SCHEMA, np.repeat(tied, 50, axis=0), [ROW] * 50)
    assert all(row == found for row in rows)  # deterministic, row after row


def test_the_count_caps_the_reasons():
    row = contributions([0.1, 0.2, 0.3, 0.4, 0.5])
    assert [len(ReasonCodes({}, count=n).of_rows(SCHEMA, row, [ROW])[0]) for n in (1, 2, 5, 9)] == [1, 2, 5, 5]


def test_values_are_shown_as_the_model_saw_them():
    assert model_value(None, False) is None and model_value(math.nan, False) is None
    assert model_value(np.float32("nan"), True) is None
    assert model_value(np.int64(16100), False) == 16100.0 and isinstance(model_value(16100, False), float)
    assert model_value(True, True) == "True" and model_value("term_36", True) == "term_36"


def binary(**changes) -> spec.Spec:
    document = {"name": "loans", "data": {"source": "file:///loans.csv"},
                "target": {"column": "Class", "positive_class": "bad"}, **changes}
    return spec.parse(document)


def test_a_binary_spec_gives_reasons_unless_its_count_is_0():
    codes = ReasonCodes.of(binary(reasons={"int_rate": "Interest rate on the requested loan"}))
    assert codes == ReasonCodes({"int_rate": "Interest rate on the requested loan"}, count=4)
    assert ReasonCodes.of(binary(reason_count=0)) is None
    regression = spec.parse({"name": "rate", "data": {"source": "file:///loans.csv"},
                             "target": {"column": "int_rate", "task": "regression"}})
    assert ReasonCodes.of(regression) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"reasons": {"int_rate": "  "}}, r"reasons\.int_rate: the text of a reason .* cannot be blank"),
     ({"reasons": {"int_rate": 3}}, r"reasons\.int_rate: Input should be a valid string"),
     ({"reasons": ["int_rate"]}, r"reasons: Input should be a valid dictionary"),
     ({"reason_count": -1}, r"reason_count: Input should be greater than or equal to 0")],
)
def test_bad_reason_settings_name_the_field(changes, message):
    with pytest.raises(spec.SpecError, match=message):
        binary(**changes)
