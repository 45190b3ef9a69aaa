"""One pass over a labelled dataset in batches: labels, models' scores and a few kept columns.

Training's validation metrics, the analysis and the promotion gate score whole splits (millions of
rows at scale) this way: memory holds one batch of raw rows plus, for every row, the label, the scorer's
float32 output (one float; a multiclass model's one per class) and the ``keep`` columns (slices, the
fairness attribute), never the whole split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlpipe.data import datasets
from mlpipe.data.features import labels

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlpipe.core.spec import Spec

Scorer = Callable[["pd.DataFrame"], "np.ndarray"]


@dataclass
class Evaluated:
    """What :func:`evaluate` kept: ``y`` (the labels, :func:`mlpipe.data.features.labels`), ``scores[name]`` per
    scorer (a row each), ``kept`` (the ``keep`` columns)."""

    y: np.ndarray
    scores: dict[str, np.ndarray]
    kept: pd.DataFrame

    def __len__(self) -> int:
        return len(self.y)


def evaluate(uri: str, spec: Spec, scorers: dict[str, Scorer], keep: list[str] = (),
             classes: list[str] | None = None) -> Evaluated:
    """Labels, each scorer's scores and the ``keep`` columns of every row of the dataset at ``uri``; a multiclass
    target's labels index ``classes`` (the model's; default ``target.classes``)."""
    import numpy as np
    import pandas as pd

    ys, scores, kept = [], {name: [] for name in scorers}, []
    for frame in datasets.batches(uri, spec.data.batch_rows):
        ys.append(labels(frame, spec, classes))
        for name, scorer in scorers.items():
            scores[name].append(np.asarray(scorer(frame), dtype="float32"))
        kept.append(frame[list(keep)])
    return Evaluated(y=np.concatenate(ys), scores={name: np.concatenate(parts) for name, parts in scores.items()},
                     kept=pd.concat(kept, ignore_index=True))
