"""What was scored in a time window: batch-scoring runs and the model server's captured requests.

- batch: every scoring run (``<store>/<pipeline>/scoring/<run>/``) whose ``score`` step finished
  inside the window gives its ``inputs/`` (the masked features and the model's outputs) and its
  ``predictions/`` (ids, the outputs, model version, scoring time, for joining late outcomes);
- served: the captured ``/predict`` and ``/explain`` rows (:mod:`mlpipe.serving.capture`) of the
  window's days, as the records' features and the answering model's outputs.

The model's outputs are the columns of its drift reference (:func:`mlpipe.model.reference.output_columns`):
``score`` (a binary model's probability, a regression model's value) or a multiclass model's
``probability_<class>`` for each class, which a captured answer holds as ``probabilities`` (class -> probability).

Each row carries ``model_version`` (which model scored it) and ``window`` (the UTC day it was
scored), so drift of scores and quality can be judged per model and per day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlpipe.core import uris
from mlpipe.core.results import Score
from mlpipe.model.tabular import PROBABILITY
from mlpipe.store import runs, storage
from mlpipe.store.runs import RESULT

if TYPE_CHECKING:
    import pandas as pd

BATCH, SERVED = "batch", "served"
VERSION, WINDOW, SCORE = "model_version", "window", "score"


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[start, end)`` (aware datetimes)."""

    start: datetime
    end: datetime

    @classmethod
    def last(cls, days: float, end: datetime) -> Window:
        return cls(end - timedelta(days=days), end)

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def days(self) -> list[str]:
        """The UTC days (``YYYY-MM-DD``) the window touches."""
        first, last = self.start.date(), self.end.date()
        return [str(first + timedelta(days=n)) for n in range((last - first).days + 1)]

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "days": round((self.end - self.start).total_seconds() / 86400, 4)}


@dataclass
class Scored:
    """The rows scored in a window, and where they came from."""

    inputs: pd.DataFrame  # feature columns + the model's outputs, model_version, window
    predictions: pd.DataFrame  # id columns + the model's outputs, model_version, window (batch rows only)
    sources: list[dict[str, Any]] = field(default_factory=list)

    def rows(self, kind: str) -> int:
        return sum(source["rows"] for source in self.sources if source["kind"] == kind)


def _stamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def batch_runs(pipeline: str, window: Window) -> list[tuple[Score, datetime]]:
    """The results of the scoring runs of ``pipeline`` that finished inside ``window`` and when, oldest first."""
    folder = uris.join(runs.store_uri(), pipeline, runs.SCORING)
    found = []
    for name in storage.children(folder):
        result_uri = uris.join(folder, name, Score.step.value, RESULT)
        if storage.exists(result_uri) and window.holds(finished := _stamp(storage.modified(result_uri))):
            found.append((Score.parse(storage.read_json(result_uri), result_uri), finished))
    return sorted(found, key=lambda found: found[1])


def _parts(folder: str, columns: list[str] | None) -> pd.DataFrame | None:
    import pandas as pd

    frames = [storage.read_parquet(uris.join(folder, name), columns)
              for name in storage.children(folder) if name.endswith(".parquet")]
    return pd.concat(frames, ignore_index=True) if frames else None


def _labelled(frame: pd.DataFrame, version: int, day: str) -> pd.DataFrame:
    frame[VERSION] = version
    frame[WINDOW] = day
    return frame


def batch_rows(results: list[tuple[Score, datetime]], features: list[str], id_columns: list[str],
               outputs: list[str]) -> tuple[list, list, list]:
    """The inputs and predictions (the ``outputs`` columns) of each scoring run (with when it finished), and one
    source entry per run."""
    inputs, predictions, sources = [], [], []
    for result, finished in results:
        day, version = f"{finished:%Y-%m-%d}", result.model_version
        scored = _parts(result.inputs, [*features, *outputs])
        if scored is None:
            continue
        inputs.append(_labelled(scored, version, day))
        if id_columns and (ids := _parts(result.predictions, [*id_columns, *outputs])) is not None:
            predictions.append(_labelled(ids, version, day))
        sources.append({"kind": BATCH, "uri": result.run, "rows": len(scored), "model_version": version,
                        "finished": finished.isoformat()})
    return inputs, predictions, sources


def answer(row: dict[str, Any], outputs: list[str]) -> dict[str, float] | None:
    """What a captured ``row``'s model answered, as the output columns ``outputs``: its ``score``, or each class's
    probability (``probability_<class>``, from its ``probabilities``); ``None`` when it lacks one of them (the
    answer of a model of another task or with other classes)."""
    given = {SCORE: row[SCORE]} if SCORE in row else {
        f"{PROBABILITY}_{name}": probability for name, probability in (row.get("probabilities") or {}).items()}
    return {column: given[column] for column in outputs} if all(column in given for column in outputs) else None


def served_rows(pipeline: str, window: Window, features: list[str],
                outputs: list[str]) -> tuple[pd.DataFrame | None, dict | None]:
    """The captured requests of ``window`` as features + the model's ``outputs`` (:func:`answer`) + model version +
    day; one source entry."""
    import pandas as pd

    rows = []
    root = runs.captured_folder(pipeline)
    for day in window.days():
        for name in storage.children(uris.join(root, day)):
            if not name.endswith(".jsonl"):
                continue
            for line in storage.read_bytes(uris.join(root, day, name)).splitlines():
                row = json.loads(line)
                if (given := answer(row, outputs)) is not None and window.holds(datetime.fromisoformat(row["time"])):
                    rows.append({**{c: row["record"].get(c) for c in features}, **given,
                                 VERSION: int(row["model"]["version"]), WINDOW: row["time"][:10]})
    if not rows:
        return None, None
    return pd.DataFrame.from_records(rows), {"kind": SERVED, "uri": root, "rows": len(rows)}


def scored_in(pipeline: str, window: Window, features: list[str], id_columns: list[str],
              outputs: tuple[str, ...] = (SCORE,)) -> Scored:
    """Everything ``pipeline`` scored inside ``window``: batch runs, then served requests; ``outputs``, the model's
    output columns (a multiclass model's: each class's probability)."""
    import pandas as pd

    inputs, predictions, sources = batch_rows(batch_runs(pipeline, window), features, id_columns, list(outputs))
    served, source = served_rows(pipeline, window, features, list(outputs))
    if served is not None:
        inputs.append(served)
        sources.append(source)
    columns = [*features, *outputs, VERSION, WINDOW]
    return Scored(pd.concat(inputs, ignore_index=True) if inputs else pd.DataFrame(columns=columns),
                  pd.concat(predictions, ignore_index=True) if predictions
                  else pd.DataFrame(columns=[*id_columns, *outputs, VERSION, WINDOW]), sources)
