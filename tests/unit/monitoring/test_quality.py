"""Quality from late outcomes against sklearn and hand-computed cases, on a score of the bundled loans."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from mlpipe.monitoring.quality import (
    breach_bound,
    calibration_table,
    expected_calibration_error,
    outcome_metrics,
    quality,
    window_metrics,
)
from tests.conftest import DATA_PATH

WINDOWS = ("2026-11-18", "2026-11-19", "2026-11-20", "2026-11-21")


@pytest.fixture(scope="module")
def joined() -> pd.DataFrame:
    """A logistic score of int_rate and the real outcome (bad = 1), in four consecutive windows."""
    loans = pd.read_csv(DATA_PATH)
    score = 1 / (1 + np.exp(-(loans["int_rate"].to_numpy(float) - 22) / 3))
    window = np.array(WINDOWS)[np.arange(len(loans)) * len(WINDOWS) // len(loans)]
    # Listed out of window order, so that sorting is the module's job.
    return pd.DataFrame({"score": score, "label": (loans["Class"] == "bad").astype(int).to_numpy(),
                         "window": window}).iloc[::-1].reset_index(drop=True)


def test_metrics_match_sklearn(joined):
    y, s = joined["label"].to_numpy(), joined["score"].to_numpy()
    got = outcome_metrics(s, y)
    assert got["rows"] == len(joined) == 9857 and got["positives"] == 517
    assert got["positive_rate"] == pytest.approx(517 / 9857, abs=1e-6)
    assert got["mean_score"] == pytest.approx(s.mean(), abs=1e-6)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert got["brier"] == pytest.approx(brier_score_loss(y, s), abs=1e-6)
    assert 0.6 < got["roc_auc"] < 0.8  # int_rate alone ranks defaults, far from perfectly


def test_ece_and_calibration_table_of_a_hand_computed_case():
    # bin [0, .1): score .05, rate 0 -> |.05|; bin [.1, .2): mean .15, rate .5 -> .35; bin [.9, 1]: .95 vs 1 -> .05
    scores, labels = np.array([0.05, 0.1, 0.2, 1.0]), np.array([0, 1, 0, 1])
    scores[1:3] = [0.1, 0.2 - 1e-9]  # 0.1 opens bin 1 (left-closed); just under 0.2 stays in it
    assert expected_calibration_error(np.array([0.05, 0.15, 0.15, 0.95]), labels) == pytest.approx(
        (1 * 0.05 + 2 * 0.35 + 1 * 0.05) / 4)
    table = calibration_table(scores, labels)
    assert [(row["low"], row["high"], row["rows"]) for row in table] == [(0.0, 0.1, 1), (0.1, 0.2, 2), (0.9, 1.0, 1)]
    assert table[1]["mean_score"] == pytest.approx(0.15, abs=1e-6) and table[1]["positive_rate"] == 0.5
    assert table[2]["mean_score"] == 1.0 and table[2]["positive_rate"] == 1.0  # a score of 1 is in the last bin


def test_ece_weights_bins_by_rows_on_real_scores(joined):
    y, s = joined["label"].to_numpy(), joined["score"].to_numpy()
    table = calibration_table(s, y)
    assert sum(row["rows"] for row in table) == len(joined)
    by_hand = sum(row["rows"] * abs(row["mean_score"] - row["positive_rate"]) for row in table) / len(joined)
    assert outcome_metrics(s, y)["ece"] == pytest.approx(by_hand, abs=1e-5)


def test_one_class_windows_have_no_auc_but_the_rest():
    frame = pd.DataFrame({"score": [0.2, 0.4, 0.9, 0.1, 0.7], "label": [0, 0, 1, 0, 1],
                          "window": ["b", "b", "a", "a", "a"]})
    windows = window_metrics(frame)
    assert [w["window"] for w in windows] == ["a", "b"]
    assert windows[0]["roc_auc"] == 1.0 and windows[0]["pr_auc"] == 1.0
    assert windows[1] == {"window": "b", "rows": 2, "positives": 0, "positive_rate": 0.0, "mean_score": 0.3,
                          "roc_auc": None, "pr_auc": None, "brier": pytest.approx((0.04 + 0.16) / 2),
                          "ece": pytest.approx(0.3)}


def test_windows_match_sklearn_per_window(joined):
    got = quality(joined, champion_roc_auc=None, min_labels=100, max_roc_auc_drop=0.05)
    assert [w["window"] for w in got["windows"]] == list(WINDOWS)
    for entry in got["windows"]:
        rows = joined[joined["window"] == entry["window"]]
        assert entry["rows"] == len(rows)
        assert entry["roc_auc"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-6)
    assert got["status"] == "ok" and got["bound"] is None and got["reasons"] == []


def test_the_bound_takes_the_larger_known_part():
    assert breach_bound(0.75, 0.05) == pytest.approx(0.70)
    assert breach_bound(0.75, 0.05, min_roc_auc=0.72) == 0.72
    assert breach_bound(0.75, 0.05, min_roc_auc=0.6) == pytest.approx(0.70)
    assert breach_bound(None, 0.05, min_roc_auc=0.6) == 0.6
    assert breach_bound(None, 0.05) is None


def test_flipped_labels_breach_and_the_reason_names_the_numbers(joined):
    champion = roc_auc_score(joined["label"], joined["score"])
    healthy = quality(joined, champion_roc_auc=champion, min_labels=500, max_roc_auc_drop=0.05)
    assert healthy["status"] == "ok" and not healthy["breach"] and healthy["reasons"] == []
    flipped = joined.assign(label=1 - joined["label"])
    got = quality(flipped, champion_roc_auc=champion, min_labels=500, max_roc_auc_drop=0.05)
    assert got["status"] == "breach" and got["breach"] is True
    assert got["overall"]["roc_auc"] == pytest.approx(1 - champion, abs=1e-6)
    assert got["bound"] == pytest.approx(champion - 0.05, abs=1e-6)
    assert got["reasons"] == [f"ROC AUC {1 - champion:.3f} on 9,857 outcomes is below {champion - 0.05:.3f} "
                              f"(champion {champion:.3f} - 0.050)"]
    floor = quality(flipped, champion_roc_auc=champion, min_labels=500, max_roc_auc_drop=0.5, min_roc_auc=0.5)
    assert floor["bound"] == 0.5 and floor["reasons"][0].endswith("is below 0.500 (minimum 0.500)")


def test_too_few_labels_is_no_breach_even_when_bad(joined):
    few = joined.iloc[:40].assign(label=lambda f: 1 - f["label"])
    got = quality(few, champion_roc_auc=0.9, min_labels=500, max_roc_auc_drop=0.05)
    assert got["status"] == "not_enough_labels" and got["breach"] is False and got["labels"] == 40
    assert got["reasons"] == ["only 40 outcomes have arrived; 500 are needed to judge the model"]
    assert got["overall"]["rows"] == 40  # the metrics are still reported
    one_class = joined[joined["label"] == 0].iloc[:600]
    single = quality(one_class, champion_roc_auc=0.9, min_labels=500, max_roc_auc_drop=0.05)
    assert single["status"] == "not_enough_labels" and not single["breach"]
    assert single["reasons"] == ["all 600 outcomes are of one class (0 positive): ROC AUC needs both"]


def test_no_outcomes_at_all_gives_nones_not_nans():
    empty = pd.DataFrame({"score": pd.Series([], dtype=float), "label": pd.Series([], dtype=int),
                          "window": pd.Series([], dtype=str)})
    got = quality(empty, champion_roc_auc=0.75, min_labels=1, max_roc_auc_drop=0.05)
    assert got["status"] == "not_enough_labels" and got["windows"] == [] and got["calibration"] == []
    assert {key for key, value in got["overall"].items() if value is None} == {
        "positive_rate", "mean_score", "roc_auc", "pr_auc", "brier", "ece"}
    json.dumps(got, allow_nan=False)


def test_the_report_survives_strict_json_with_its_exact_shape(joined):
    champion = np.float64(roc_auc_score(joined["label"], joined["score"]))  # a numpy float, as callers pass
    got = quality(joined.assign(label=1 - joined["label"]), champion, min_labels=500, max_roc_auc_drop=np.float64(0.05))
    assert json.loads(json.dumps(got, allow_nan=False)) == got
    assert set(got) == {"status", "labels", "champion_roc_auc", "bound", "overall", "windows", "calibration",
                        "breach", "reasons"}
    assert set(got["overall"]) == {"rows", "positives", "positive_rate", "mean_score", "roc_auc", "pr_auc",
                                   "brier", "ece"}
    assert all(set(row) == {"low", "high", "rows", "mean_score", "positive_rate"} for row in got["calibration"])
    assert type(got["champion_roc_auc"]) is float and type(got["bound"]) is float


@pytest.mark.parametrize(("change", "message"), [
    ({"label": [0, 2]}, r"labels must be 0 or 1, found \['2'\]"),
    ({"score": [0.5, float("nan")]}, r"scores must be probabilities"),
    ({"score": [0.5, 1.2]}, r"scores must be probabilities"),
])
def test_bad_outcomes_are_refused(change, message):
    frame = pd.DataFrame({"score": [0.5, 0.5], "label": [0, 1], "window": ["a", "a"], **change})
    with pytest.raises(ValueError, match=message):
        quality(frame, champion_roc_auc=0.7, min_labels=1, max_roc_auc_drop=0.05)
    with pytest.raises(ValueError, match=r"lack the columns \['window'\]"):
        quality(frame.drop(columns="window"), champion_roc_auc=0.7, min_labels=1, max_roc_auc_drop=0.05)
