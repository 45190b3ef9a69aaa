"""The drift reference of a trained model: a seeded sample of its training rows, with the model's scores.

The train step writes it beside the model (``<run>/train/reference.parquet``); the monitor
compares recent scoring inputs and scores with the champion's reference. The rows are the
train split's, already PII-masked at ingest, limited to the model's input columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpipe.core.results import ResultError, Train
from mlpipe.model.tabular import PROBABILITY
from mlpipe.store import storage
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import pandas as pd

    from mlpipe.model.tabular import TabularModel

SCORE = "score"


def reference_sample(frame: pd.DataFrame, model: TabularModel, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame`` (a seeded sample when it has more), the model's columns and scores (a
    multiclass model's: each class's probability, :meth:`TabularModel.class_columns`)."""
    sample = frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)
    reference = sample[model.schema["columns"]].reset_index(drop=True)
    scores = model.scores(reference)
    if scores.ndim == 2:
        reference[model.class_columns()] = scores
    else:
        reference[SCORE] = scores
    return reference


def output_columns(reference: pd.DataFrame) -> list[str]:
    """The columns of a drift reference that hold the model's outputs, not its inputs: ``score``, or a multiclass
    model's ``probability_<class>``."""
    return [c for c in reference.columns if c == SCORE or c.startswith(f"{PROBABILITY}_")]


def write(frame: pd.DataFrame, model: TabularModel, rows: int, seed: int, uri: str) -> str:
    """Write the reference of ``model`` trained on ``frame`` to ``uri``; return the URI."""
    return storage.write_parquet(reference_sample(frame, model, rows, seed), uri)


def load(training_run: str) -> pd.DataFrame:
    """The reference the train step of ``training_run`` wrote; a :class:`KeyError` when it wrote none."""
    try:
        trained = Run(training_run).result(Train)
    except ResultError as error:  # e.g. trained before monitoring, without a reference
        raise KeyError(f"the train step of {training_run} kept no drift reference we can read: {error}") from None
    return storage.read_parquet(trained.reference)
