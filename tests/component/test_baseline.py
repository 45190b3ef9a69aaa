"""The baseline a careful analyst fits (:mod:`mlpipe.model.baseline`), with real scikit-learn.

Synthetic books (seeded, a few thousand rows, ~5% positives) where class weighting hurts or helps,
where regularization matters or not, where missingness carries the signal; and the bundled loans
split (seed 42), on which the old baseline (balanced weights, ``C=1``) scored below a plain
unweighted logistic regression.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline

from mlpipe.core import uris
from mlpipe.core.results import Split
from mlpipe.core.tasks import Task
from mlpipe.data import datasets, features
from mlpipe.model import baseline as baseline_module
from mlpipe.model.baseline import C_GRID, Baseline, fit_baseline, preprocessing, search_rows, weighted_search
from mlpipe.steps import run_step
from mlpipe.store.runs import Run

SEED = 0
ROWS = 3000
REGIONS = ["north", "south", "east", "west"]


def book(numbers: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """A raw frame of the numeric columns ``x0..`` plus a categorical ``region`` (noise) and the target."""
    frame = pd.DataFrame(numbers, columns=[f"x{i}" for i in range(numbers.shape[1])])
    frame["region"] = rng.choice(REGIONS, size=len(frame))
    frame["target"] = y
    schema = {"columns": [*frame.columns[:-1]], "categorical": {"region": REGIONS}}
    return frame, schema


def split_book(make, rows: int = ROWS, seed: int = SEED) -> tuple[tuple, tuple, dict]:
    """(train, validation) inputs of :func:`fit_baseline` (feature matrix, labels) and the schema."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(2):
        frame, schema = book(*make(rng, rows), rng)
        parts.append((features.matrix(frame, schema), frame["target"].to_numpy()))
    return parts[0], parts[1], schema


def well_specified_wide(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A true logistic model on 4 of 40 columns: weighting cannot fix a misfit, it only adds variance
    (each positive counts ~10x), which the choice of ``C`` does not fully take back."""
    x = rng.normal(size=(rows, 40))
    logit = -3.5 + x[:, :4] @ [0.8, -0.6, 0.5, 0.4]
    return x, (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)


def spread_positives(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Positives spread wide along x0 (both sides), negatives narrow: no linear score fits all of them.

    Unweighted, the fit follows the few high-risk rows; balanced, it follows the bulk of the
    positives, which ranks them better.
    """
    y = (rng.random(rows) < 0.05).astype(int)
    x = rng.normal(size=(rows, 2))
    return np.where(y[:, None] == 1, x * [3.5, 1.0] + [0.5, -1.0], x * [0.6, 2.0]), y


def test_no_weighting_where_weighting_hurts_on_validation():
    train, validation, schema = split_book(well_specified_wide)
    settings = fit_baseline(Task.BINARY, train, validation, schema, SEED).settings
    found = settings["candidates"]
    assert found["balanced"]["validation_roc_auc"] < found["none"]["validation_roc_auc"]
    assert settings["class_weight"] == "none"
    assert settings["C"] == found["none"]["C"]


def test_balanced_weighting_where_it_helps_on_validation():
    train, validation, schema = split_book(spread_positives)
    baseline = fit_baseline(Task.BINARY, train, validation, schema, SEED)
    found = baseline.settings["candidates"]
    assert found["balanced"]["validation_roc_auc"] > found["none"]["validation_roc_auc"] + 0.01
    assert baseline.settings["class_weight"] == "balanced"
    regression = baseline.pipeline[-1]
    assert regression.class_weight == "balanced"
    assert regression.C == baseline.settings["C"] == found["balanced"]["C"]


def noisy_wide(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Weak signals on 20 of 100 columns, ~50 positives to fit them: the unshrunk fit chases noise."""
    x = rng.normal(size=(rows, 100))
    return x, (rng.random(rows) < 1 / (1 + np.exp(-(-3 + 0.25 * x[:, :20].sum(axis=1))))).astype(int)


def clean_contrast(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A strong signal in the difference of two highly correlated columns: shrinking loses the contrast."""
    shared = rng.normal(size=(rows, 1))
    x = np.hstack([shared + 0.2 * rng.normal(size=(rows, 2)), rng.normal(size=(rows, 2))])
    logit = -3.5 + 4 * (x[:, 0] - x[:, 1]) + 0.3 * x[:, 2]
    return x, (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)


def test_regularization_strength_comes_from_cross_validation_on_the_training_rows():
    chosen = {}
    for name, make, rows in (("noisy", noisy_wide, 1500), ("clean", clean_contrast, 3000)):
        train, validation, schema = split_book(make, rows=rows)
        baseline = fit_baseline(Task.BINARY, train, validation, schema, SEED)
        chosen[name] = baseline.settings["C"]
        assert chosen[name] in C_GRID
        assert chosen[name] == baseline.pipeline[-1].C
    assert chosen["noisy"] * 100 <= chosen["clean"], chosen  # much stronger regularization (C is its inverse)


def test_the_fit_is_seeded_and_deterministic():
    train, validation, schema = split_book(well_specified_wide)
    fits = [fit_baseline(Task.BINARY, train, validation, schema, SEED) for _ in range(2)]
    assert fits[0].settings == fits[1].settings
    np.testing.assert_array_equal(fits[0].scores(validation[0]), fits[1].scores(validation[0]))


def test_the_search_fits_a_seeded_subsample_and_the_chosen_model_all_the_rows(monkeypatch):
    train, validation, schema = split_book(well_specified_wide)
    monkeypatch.setattr(baseline_module, "SEARCH_ROWS", 1000)
    picked = search_rows(len(train[1]), SEED)
    assert len(picked) == 1000 == len(set(picked)) and list(picked) == sorted(picked)
    np.testing.assert_array_equal(picked, search_rows(len(train[1]), SEED))
    assert search_rows(1000, SEED) == slice(None)  # small enough: all of them
    baseline = fit_baseline(Task.BINARY, train, validation, schema, SEED)
    chosen = baseline.settings
    # The search saw the subsample alone: its cross-validated AUCs are those of the same search on those rows
    # (features scaled as on all the rows), never of the full data.
    features_all = preprocessing(schema).fit(train[0])
    x_train, x_valid = features_all.transform(train[0]), features_all.transform(validation[0])
    folds = StratifiedKFold(n_splits=baseline_module.CV_FOLDS, shuffle=True, random_state=SEED)
    assert chosen["candidates"]["none"] == weighted_search(None, (x_train[picked], train[1][picked]),
                                                           (x_valid, validation[1]), folds)
    # The chosen model is fitted on every train row, not on the subsample.
    regression = LogisticRegression(C=chosen["C"], class_weight=None if chosen["class_weight"] == "none" else
                                    "balanced", solver="newton-cholesky", max_iter=1000)
    regression.fit(x_train, train[1])
    np.testing.assert_allclose(baseline.pipeline[-1].coef_, regression.coef_)


def informative_nulls(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """x0 is missing for most positives and few negatives; its values, where present, are noise."""
    y = (rng.random(rows) < 0.05).astype(int)
    x = rng.normal(size=(rows, 2))
    x[rng.random(rows) < np.where(y == 1, 0.6, 0.05), 0] = np.nan
    return x, y


def test_a_column_with_nulls_gets_a_missing_indicator_which_carries_its_signal(tmp_path):
    train, validation, schema = split_book(informative_nulls)
    baseline = fit_baseline(Task.BINARY, train, validation, schema, SEED)
    assert roc_auc_score(validation[1], baseline.scores(validation[0])) > 0.7  # median imputation alone: ~0.5
    # Saved and loaded, it scores the same; unseen levels and nulls in a column without nulls in training
    # (no indicator for it) are scored too.
    loaded = Baseline.load(baseline.save(uris.normalize(tmp_path / "baseline")))
    odd = validation[0].head(3).assign(region=pd.Categorical([None] * 3, categories=REGIONS), x1=np.nan)
    np.testing.assert_array_equal(loaded.scores(validation[0]), baseline.scores(validation[0]))
    assert np.isfinite(loaded.scores(odd)).all()


@pytest.fixture
def loans_split(start_run) -> Run:
    """The bundled loans, ingested and split with the spec's seed (42), in a temporary store."""
    uri = start_run("test_baseline")
    for step in ("ingest", "split"):
        run_step(step, uri)
    return Run(uri)


def test_on_the_bundled_loans_it_scores_at_least_a_plain_logistic_regression(loans_split):
    spec, parts = loans_split.spec, loans_split.result(Split)
    assert spec.split.seed == 42
    frames = {part: datasets.read(parts.folder(part)) for part in ("train", "validation")}
    schema = features.schema(frames["train"], spec)
    train, validation = ((features.matrix(frame, schema), features.labels(frame, spec)) for frame in frames.values())
    plain = make_pipeline(preprocessing(schema), LogisticRegression(max_iter=1000)).fit(*train)
    plain_auc = roc_auc_score(validation[1], plain.predict_proba(validation[0])[:, 1])
    baseline = fit_baseline(Task.BINARY, train, validation, schema, spec.split.seed)
    assert roc_auc_score(validation[1], baseline.scores(validation[0])) >= plain_auc
