"""The trained model as one object: an XGBoost booster plus the feature schema it was trained on.

Training, analysis, scoring and the model server all go through :class:`TabularModel`,
so a frame is turned into model inputs one way only (:func:`mlpipe.data.features.matrix`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlpipe.core import uris
from mlpipe.core.tasks import Task, undone
from mlpipe.data.features import matrix
from mlpipe.store import storage

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

BOOSTER_FILE = "model.ubj"
SCHEMA_FILE = "feature_schema.json"
PROBABILITY, PREDICTED_CLASS = "probability", "predicted_class"  # a multiclass model's outputs


@dataclass
class TabularModel:
    booster: xgb.Booster
    schema: dict[str, Any]

    def dmatrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        import xgboost as xgb

        return xgb.DMatrix(matrix(frame, self.schema), enable_categorical=True)

    @property
    def task(self) -> Task:
        return Task(self.schema.get("task", Task.BINARY))

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        """What the model predicts for each row (``inplace_predict``: no DMatrix is built): the probability of the
        positive class (binary), of each class of ``schema["classes"]`` (multiclass: a column each), the value
        (regression: in the target's units, a ``transform`` undone)."""
        return self.predicted(self.booster.inplace_predict(matrix(frame, self.schema),
                                                           iteration_range=self.tree_range()))

    def predicted(self, raw: np.ndarray) -> np.ndarray:
        """The booster's predictions as the model's: a regression target's ``transform`` undone."""
        return undone(self.schema.get("transform"), raw)

    def class_columns(self) -> list[str]:
        """A multiclass model's output columns: ``probability_<class>`` for each class, in the model's order."""
        return [f"{PROBABILITY}_{name}" for name in self.schema["classes"]]

    def class_frame(self, scores: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """A multiclass model's ``scores`` as a frame: each class's probability (:meth:`class_columns`) and the
        most probable class (:data:`PREDICTED_CLASS`)."""
        import pandas as pd

        frame = pd.DataFrame(scores, columns=self.class_columns(), index=index)
        frame[PREDICTED_CLASS] = pd.Series(self.schema["classes"], dtype=object).to_numpy()[scores.argmax(axis=1)]
        return frame

    def contribution_values(self, frame: pd.DataFrame) -> np.ndarray:
        """XGBoost's SHAP contributions of each row, the bias last: rows x (features + 1); a multiclass model's rows x
        classes x (features + 1), in the log-odds of each class."""
        return self.booster.predict(self.dmatrix(frame), pred_contribs=True, iteration_range=self.tree_range())

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-feature SHAP contributions (log-odds; a regression model's: its units, or the log of them with a
        ``transform``) for each row, plus a ``bias`` column (a binary or regression model: one output)."""
        import pandas as pd

        return pd.DataFrame(self.contribution_values(frame), columns=[*self.schema["columns"], "bias"],
                            index=frame.index)

    def tree_range(self) -> tuple[int, int]:
        """The boosting rounds predictions use: up to the best iteration of early stopping."""
        best = self.booster.attributes().get("best_iteration")
        return (0, int(best) + 1) if best is not None else (0, 0)

    def save(self, folder: str) -> str:
        """Write the booster and schema under ``folder`` (a URI) and return it."""
        storage.write_bytes(uris.join(folder, BOOSTER_FILE), bytes(self.booster.save_raw("ubj")))
        storage.write_json(uris.join(folder, SCHEMA_FILE), self.schema)
        return folder

    @classmethod
    def load(cls, folder: str) -> TabularModel:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(storage.read_bytes(uris.join(folder, BOOSTER_FILE))))
        return cls(booster=booster, schema=json.loads(storage.read_bytes(uris.join(folder, SCHEMA_FILE))))
