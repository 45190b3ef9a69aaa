"""The linear baseline a careful analyst would fit; the model's lift is measured against it.

Per task (:mod:`mlpipe.core.tasks`): a logistic regression (binary), a multinomial logistic regression
(multiclass; ``C`` chosen by cross-validated log loss, no class weighting), a ridge regression (regression;
its ``alpha`` chosen by efficient leave-one-out cross-validation over :data:`ALPHA_GRID`). The binary one:

A weak baseline overstates the lift (the class-weighted regression with a fixed ``C=1`` once scored
0.03 ROC AUC below a plain one on the same split), so every choice an analyst would make is made
on data, never on the analysis set:

- features: one-hot categoricals over the training levels (an unseen level gets no indicator);
  numbers median-imputed, with a missing indicator for each column that has nulls in training
  (missingness often carries signal in credit files), then standardized;
- L2 strength ``C``: chosen by stratified k-fold cross-validation on the training rows, scored by
  ROC AUC, over a log grid (:data:`C_GRID`);
- class weighting (none or ``balanced``): chosen by ROC AUC on the validation rows, each weighting
  with its own cross-validated ``C``; ``balanced`` only where it scores strictly higher.

Both choices are made on a seeded subsample of at most :data:`SEARCH_ROWS` train rows, the final
fit uses them all: the search is 130 fits, the final fit one (measured on 200k train rows of 10M
synthetic loans: 29.8 s -> 9.7 s, the same ``C`` and weighting chosen, so the same model; 25,000
rows chose another ``C``).

Fitting is seeded (the folds) and deterministic. The saved form (:meth:`Baseline.save`) is a
scikit-learn pipeline (preprocessing + ``LogisticRegression``) in the skops format, no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlpipe.core import uris
from mlpipe.core.results import Train
from mlpipe.core.tasks import RULES, Task, undone
from mlpipe.data.features import matrix
from mlpipe.model.metrics import headline
from mlpipe.model.tabular import SCHEMA_FILE
from mlpipe.store import storage

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlpipe.store.runs import Run

BASELINE_FILE = "pipeline.skops"
BASELINE_TRUSTED = ["numpy.dtype"]
C_GRID = tuple(10.0 ** (exponent / 2) for exponent in range(-8, 5))  # 1e-4 .. 1e2, half a decade apart
ALPHA_GRID = tuple(10.0 ** (exponent / 2) for exponent in range(-6, 9))  # 1e-3 .. 1e4 (ridge; standardized inputs)
CV_FOLDS = 5
SEARCH_ROWS = 50_000  # train rows C and the class weighting are chosen on (a seeded subsample)
MAX_ITER = 1000
# Newton steps on the Cholesky-factored Hessian: a few iterations per C (~100 columns), 4-5x faster than lbfgs here
SOLVER = "newton-cholesky"
WEIGHTINGS = {"none": None, "balanced": "balanced"}  # the first wins ties: weighting only where it helps


@dataclass
class Baseline:
    """The baseline: a scikit-learn pipeline over the model's feature matrix.

    ``settings`` says how it was chosen (``C``, ``class_weight``, the cross-validated and validation
    ROC AUC of each weighting); it is known when fitted and recorded by the train step (result and
    MLflow params), not saved with the pipeline.
    """

    pipeline: Any
    schema: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """What the model predicts for each row of a raw frame, like ``TabularModel.scores``: the probability of the
        positive class (binary), of each class (multiclass: one column per class of the schema), the value."""
        return predictions(self.pipeline, matrix(frame, self.schema), self.schema)

    def save(self, folder: str) -> str:
        """Write the pipeline (skops format, no pickle) and the feature schema under ``folder``."""
        import skops.io

        storage.write_bytes(uris.join(folder, BASELINE_FILE), skops.io.dumps(self.pipeline))
        storage.write_json(uris.join(folder, SCHEMA_FILE), self.schema)
        return folder

    @classmethod
    def load(cls, folder: str) -> Baseline:
        import skops.io

        pipeline = skops.io.loads(storage.read_bytes(uris.join(folder, BASELINE_FILE)),
                                  trusted=BASELINE_TRUSTED)
        return cls(pipeline=pipeline, schema=storage.read_json(uris.join(folder, SCHEMA_FILE)))


def preprocessing(feature_schema: dict[str, Any]):
    """One-hot categoricals (training levels; unseen: no indicator) and imputed, standardized numbers.

    Missing numbers get the training median, plus a missing indicator for each column with nulls
    in training; a column empty in training is kept (imputed 0) so the columns match the schema.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    levels = feature_schema["categorical"]
    numeric = [c for c in feature_schema["columns"] if c not in levels]
    encode = OneHotEncoder(categories=list(levels.values()), handle_unknown="ignore")
    impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    return ColumnTransformer([("categorical", encode, list(levels)),
                              ("numeric", make_pipeline(impute, StandardScaler()), numeric)])


def weighted_search(weight: str | None, train: tuple[Any, np.ndarray], validation: tuple[Any, np.ndarray],
                    folds: Any) -> dict[str, float]:
    """One class weighting's ``C``: the one of :data:`C_GRID` with the best mean ROC AUC over ``folds`` of the
    preprocessed ``train`` rows; with that mean (``cv_roc_auc``) and the ROC AUC of the model it refits on all of
    ``train`` on the preprocessed ``validation`` rows (``validation_roc_auc``)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score

    search = LogisticRegressionCV(Cs=list(C_GRID), l1_ratios=(0.0,), cv=folds, scoring="roc_auc",
                                  class_weight=weight, solver=SOLVER, max_iter=MAX_ITER, use_legacy_attributes=False)
    search.fit(*train)
    validation_auc = roc_auc_score(validation[1], search.decision_function(validation[0]))
    return {"C": float(search.C_), "cv_roc_auc": round(float(search.scores_.mean(axis=0).max()), 6),
            "validation_roc_auc": round(float(validation_auc), 6)}


def search_rows(rows: int, seed: int) -> np.ndarray | slice:
    """The train rows the search of ``C`` and class weighting fits: all of them up to :data:`SEARCH_ROWS`, else that
    many chosen at random (seeded), in their order."""
    import numpy as np

    if rows <= SEARCH_ROWS:
        return slice(None)
    return np.sort(np.random.default_rng(seed).choice(rows, SEARCH_ROWS, replace=False))


def predictions(pipeline: Any, x: Any, feature_schema: dict[str, Any]) -> np.ndarray:
    """What a fitted estimator (or pipeline) predicts for the inputs ``x`` of a task's model (see
    :meth:`Baseline.scores`); a multiclass estimator gets a column for each class of the schema, 0 for a class
    it never saw."""
    import numpy as np

    task = Task(feature_schema.get("task", Task.BINARY))
    if task == Task.REGRESSION:
        return undone(feature_schema.get("transform"), pipeline.predict(x))
    found = pipeline.predict_proba(x)
    if task == Task.BINARY:
        return found[:, 1]
    full = np.zeros((len(found), len(feature_schema["classes"])))
    full[:, pipeline.classes_] = found
    return full


def fit_baseline(task: Task, train: tuple[pd.DataFrame, np.ndarray], validation: tuple[pd.DataFrame, np.ndarray],
                 feature_schema: dict[str, Any], seed: int) -> Baseline:
    """The baseline of ``task`` fitted on ``train``, its choices made as the module says; ``validation`` measures
    its headline metric (``validation_<metric>`` of its settings; binary: ``validation_roc_auc``).

    Both are (feature matrix (:func:`mlpipe.data.features.matrix`), labels) pairs, the labels as the booster learns
    them (:func:`mlpipe.model.booster.learned_labels`: a regression baseline learns a transformed target too, and
    predicts and is measured in the target's units); ``seed`` shuffles the cross-validation folds and draws the
    search's rows (:func:`search_rows`).
    """
    if task == Task.BINARY:
        return fit_binary(train, validation, feature_schema, seed)
    from sklearn.pipeline import Pipeline

    features = preprocessing(feature_schema)
    x_train, x_valid = features.fit_transform(train[0]), features.transform(validation[0])
    fit, settings = (fit_multinomial if task == Task.MULTICLASS else fit_ridge)(x_train, train[1], seed)
    truth = undone(feature_schema.get("transform"), validation[1])
    measured = headline(task, truth, predictions(fit, x_valid, feature_schema))
    settings[f"validation_{RULES[task].headline}"] = round(measured, 6)
    return Baseline(pipeline=Pipeline([("features", features), ("regression", fit)]), schema=feature_schema,
                    settings=settings)


def fit_multinomial(x: Any, y: np.ndarray, seed: int) -> tuple[Any, dict[str, Any]]:
    """A multinomial logistic regression, ``C`` the one of :data:`C_GRID` with the best mean log loss over
    :data:`CV_FOLDS` stratified folds of (at most :data:`SEARCH_ROWS` of) the rows; refitted on all of them."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    searched = search_rows(len(y), seed)
    counts = np.bincount(y[searched])
    smallest = int(counts[counts > 0].min())  # folds need a row of each class, where there are enough
    folds = StratifiedKFold(n_splits=min(CV_FOLDS, max(2, smallest)), shuffle=True, random_state=seed)
    search = LogisticRegressionCV(Cs=list(C_GRID), l1_ratios=(0.0,), cv=folds, scoring="neg_log_loss",
                                  solver=SOLVER, max_iter=MAX_ITER, use_legacy_attributes=False)
    search.fit(x[searched], y[searched])
    chosen = float(search.C_)
    fit = LogisticRegression(C=chosen, solver=SOLVER, max_iter=MAX_ITER).fit(x, y)
    return fit, {"kind": "multinomial_logistic_regression", "C": chosen,
                 "cv_log_loss": round(float(-search.scores_.mean(axis=0).max()), 6)}


def fit_ridge(x: Any, y: np.ndarray, seed: int) -> tuple[Any, dict[str, Any]]:
    """A ridge regression, ``alpha`` the one of :data:`ALPHA_GRID` with the least leave-one-out squared error
    (scikit-learn's efficient form: one fit for the whole grid); ``seed`` is unused (no folds to shuffle)."""
    from sklearn.linear_model import RidgeCV

    fit = RidgeCV(alphas=ALPHA_GRID).fit(x, y)
    return fit, {"kind": "ridge_regression", "alpha": float(fit.alpha_)}


def fit_binary(train: tuple[pd.DataFrame, np.ndarray], validation: tuple[pd.DataFrame, np.ndarray],
               feature_schema: dict[str, Any], seed: int) -> Baseline:
    """The binary baseline: fitted on ``train``, its class weighting chosen on ``validation``.

    For each weighting, ``C`` is the one of :data:`C_GRID` with the best mean ROC AUC over :data:`CV_FOLDS`
    stratified folds of the search's rows (:func:`search_rows`); the weighting kept is the one whose model
    scores the higher ROC AUC on ``validation`` (no weighting on a tie). The chosen model is then fitted on all
    of ``train``; its ROC AUC on ``validation`` is ``validation_roc_auc`` of its settings.

    The weightings are searched at once, each in a worker process (up to one per CPU): the search is
    single-threaded (its Hessians are sparse products) and was most of the train step's time besides boosting
    (~40 s of 200k rows); each worker computes exactly what a sequential search would.
    """
    from joblib import cpu_count
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.utils.parallel import Parallel, delayed

    features = preprocessing(feature_schema)
    x_train = features.fit_transform(train[0])
    x_valid = features.transform(validation[0])
    folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    searched = search_rows(len(train[1]), seed)
    searches = Parallel(n_jobs=min(len(WEIGHTINGS), cpu_count()))(
        delayed(weighted_search)(weight, (x_train[searched], train[1][searched]), (x_valid, validation[1]), folds)
        for weight in WEIGHTINGS.values())
    candidates = dict(zip(WEIGHTINGS, searches, strict=True))
    chosen = max(candidates, key=lambda name: candidates[name]["validation_roc_auc"])
    regression = LogisticRegression(C=candidates[chosen]["C"], class_weight=WEIGHTINGS[chosen], solver=SOLVER,
                                    max_iter=MAX_ITER)
    pipeline = Pipeline([("features", features), ("regression", regression.fit(x_train, train[1]))])
    measured = round(float(roc_auc_score(validation[1], regression.decision_function(x_valid))), 6)
    settings = {"kind": "logistic_regression", "C": candidates[chosen]["C"], "class_weight": chosen,
                "validation_roc_auc": measured, "candidates": candidates}
    return Baseline(pipeline=pipeline, schema=feature_schema, settings=settings)

def load_baseline(run: Run) -> Baseline:
    """The baseline trained in ``run``; its ``scores(frame)`` gives the positive-class probability per row."""
    return Baseline.load(run.result(Train).baseline)
