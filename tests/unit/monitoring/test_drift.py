"""Drift statistics against hand-computed cases and scipy, and on drift planted in the bundled data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from mlpipe.monitoring.drift import FLOOR, categorical_drift, feature_drift, numeric_counts, numeric_drift, psi


def test_psi_of_a_hand_computed_case():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi(np.array([50, 50]), np.array([25, 75])) == pytest.approx(
        -0.25 * math.log(0.5) + 0.25 * math.log(1.5), rel=1e-12)
    assert psi(np.array([1, 2, 3]), np.array([10, 20, 30])) == 0.0  # counts or shares: the same distribution


def test_an_emptied_bin_counts_with_the_floor():
    expected = (FLOOR - 0.5) * math.log(FLOOR / 0.5) + (1 - 0.5) * math.log(1 / 0.5)
    assert psi(np.array([5, 5]), np.array([0, 10])) == pytest.approx(expected, rel=1e-9)


def test_numeric_bins_are_right_closed_with_missing_last():
    values = pd.Series([1.0, 2.0, 2.0, 3.0, None, 9.0])
    assert numeric_counts(values, np.array([2.0, 3.0])).tolist() == [3, 1, 1, 1]


def test_numeric_drift_matches_scipy_and_sees_a_shift(loans):
    reference, current = loans["int_rate"].iloc[:5000], loans["int_rate"].iloc[5000:]
    same = numeric_drift(reference, current)
    scipy_ks = ks_2samp(reference.dropna(), current.dropna())
    assert (same["ks"], same["ks_pvalue"]) == pytest.approx((scipy_ks.statistic, scipy_ks.pvalue))
    assert same["psi"] < 0.05 and same["ks_pvalue"] > 0.01  # two halves of one book: stable
    shifted = numeric_drift(reference, current * 1.3 + 2)
    assert shifted["psi"] > 0.25 and shifted["ks_pvalue"] < 1e-6
    holes = current.copy()
    holes.iloc[: len(holes) // 5] = np.nan
    assert numeric_drift(reference, holes)["missing_current"] == pytest.approx(0.2, abs=0.001)


def test_categorical_drift_matches_scipy_and_finds_new_categories(loans):
    reference = loans["emp_length"].iloc[:5000]
    current = loans["emp_length"].iloc[5000:].copy()
    stable = categorical_drift(reference, current)
    assert stable["psi"] < 0.05 and stable["new_categories"] == []
    current.iloc[:1000] = "emp_unknown"  # a category mix change, with a level training never saw
    moved = categorical_drift(reference, current)
    assert moved["new_categories"] == ["emp_unknown"]
    assert moved["new_share"] == pytest.approx(1000 / len(current))
    shares = np.array(list(moved["shares"].values()))
    before = reference.astype(str).value_counts(normalize=True).reindex(list(moved["shares"])[:-2]).to_numpy()
    before = np.append(before, [0.0, 0.0])
    assert moved["js"] == pytest.approx(jensenshannon(before, shares, base=2) ** 2, abs=1e-6)
    assert moved["psi"] > 0.25


def test_feature_drift_covers_every_reference_column_and_names_missing_ones(loans):
    columns = ["int_rate", "annual_inc", "term", "emp_length"]
    report = feature_drift(loans[columns].iloc[:5000], loans[columns].iloc[5000:], categorical=["term", "emp_length"])
    assert {name: entry["kind"] for name, entry in report.items()} == {
        "int_rate": "numeric", "annual_inc": "numeric", "term": "categorical", "emp_length": "categorical"}
    with pytest.raises(KeyError, match=r"lacks the reference columns \['term'\]"):
        feature_drift(loans[columns], loans[["int_rate", "annual_inc", "emp_length"]], categorical=["term"])


def test_a_feature_missing_in_every_current_row_drifts_by_its_missing_rate(loans):
    from mlpipe.core.spec import Drift
    from mlpipe.monitoring.judge import why_drifting

    gone = numeric_drift(loans["int_rate"], pd.Series([np.nan] * 500))
    assert (gone["ks"], gone["ks_pvalue"], gone["missing_current"]) == (None, None, 1.0)
    assert why_drifting(gone, Drift().rule("int_rate"))[-1] == "missing 0.0% -> 100.0%"
