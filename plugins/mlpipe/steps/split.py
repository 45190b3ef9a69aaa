"""split: stratified, seeded train / validation / analysis sets, written batch by batch.

The analysis set is held out: training, early stopping and tuning never see it.

The sets are stratified by the target's class (binary, multiclass) or, for a regression target,
by its decile among the first batch's rows (:func:`strata`).

The snapshot is read ``data.batch_rows`` rows at a time. Within each batch, the rows of each
class (stratum) are shuffled (seeded by ``split.seed`` and the batch number) and dealt to the three sets
so that, over all batches so far, each set holds its share of each class, rounded to a row
(:class:`Dealer`). Each batch adds one part to each set's folder, ``<run>/split/<set>/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpipe.core.names import PARTS
from mlpipe.core.results import Ingest, Split
from mlpipe.core.tasks import Task
from mlpipe.data import datasets
from mlpipe.data.features import labels
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlpipe.core.spec import Spec



STRATA_BINS = 10  # a regression target's strata: its deciles


def strata(frame: pd.DataFrame, spec: Spec, edges: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Each row's stratum: its class as text (binary: positive or not), or, for a regression target, its bin
    between ``edges``: the first batch's deciles (``None``: this is the first batch); and the edges."""
    import numpy as np

    y = labels(frame, spec) if spec.target.task != Task.MULTICLASS else frame[spec.target.column].astype(str)
    if spec.target.task != Task.REGRESSION:
        return np.asarray(y), edges
    if edges is None:
        edges = np.unique(np.quantile(y, np.linspace(0, 1, STRATA_BINS + 1)[1:-1]))
    return np.searchsorted(edges, y, side="right"), edges


class Dealer:
    """Deals rows to the sets by class, keeping every set's share of every class exact over all batches."""

    def __init__(self, shares: dict[str, float], seed: int) -> None:
        self.shares, self.seed = shares, seed
        self.seen: dict[int, int] = {}  # class -> rows so far
        self.dealt: dict[tuple[int, str], int] = {}  # (class, set) -> rows so far

    def deal(self, y: np.ndarray, batch: int) -> np.ndarray:
        """The index (into :data:`PARTS`) of the set each row of a batch goes to; ``y``: each row's stratum."""
        import numpy as np

        rng = np.random.default_rng([self.seed, batch])
        out = np.empty(len(y), dtype=np.int8)
        for label in np.unique(y):
            rows = rng.permutation(np.flatnonzero(y == label))
            seen = self.seen[label] = self.seen.get(label, 0) + len(rows)
            start = 0
            for index, part in reversed(list(enumerate(PARTS))):  # held-out sets first; train takes the rest
                due = len(rows) - start if index == 0 else round(seen * self.shares[part]) - self.dealt.get(
                    (label, part), 0)
                out[rows[start:start + due]] = index
                self.dealt[label, part] = self.dealt.get((label, part), 0) + due
                start += due
        return out


def split(run: Run) -> Split:
    spec = run.spec
    shares = {"validation": spec.split.validation, "analysis": spec.split.analysis}
    dealer = Dealer({"train": 1 - sum(shares.values()), **shares}, spec.split.seed)
    writers = {part: datasets.PartWriter(run.path("split", part)) for part in PARTS}
    positives = dict.fromkeys(PARTS, 0)
    binary, edges = spec.target.task == Task.BINARY, None
    with writers["train"], writers["validation"], writers["analysis"]:
        for number, frame in enumerate(datasets.batches(run.result(Ingest).snapshot, spec.data.batch_rows)):
            y, edges = strata(frame, spec, edges)
            dealt = dealer.deal(y, number)
            for index, part in enumerate(PARTS):
                chosen = dealt == index
                if chosen.any():
                    writers[part].write(frame[chosen].reset_index(drop=True))
                    positives[part] += int(y[chosen].sum()) if binary else 0
    rows = {part: writers[part].rows for part in PARTS}
    rates = {part: round(positives[part] / max(rows[part], 1), 6) for part in PARTS} if binary else {}
    return Split(**{part: writers[part].folder for part in PARTS}, rows=rows,
                 parts={part: len(writers[part].uris) for part in PARTS}, positive_rate=rates)
