"""The MLflow flavor of a :class:`~mlpipe.model.tabular.TabularModel`: a pyfunc model that returns scores.

A logged model holds the TabularModel's files (booster + feature schema) as the
pyfunc artifact ``tabular_model``; :class:`ServingModel` loads them back and its
``predict`` returns the positive-class probability of each row (column ``score``).
The raw feature columns are the signature's inputs (categoricals as strings,
numbers as doubles, so that missing values are allowed everywhere), and a request
is checked before it reaches the model. JSON requests are cast to these types by
MLflow; an in-process DataFrame with int64 columns must be cast first
(:func:`as_inputs`), as MLflow does not convert int64 to double by itself.

    loaded = mlflow.pyfunc.load_model("runs:/<run id>/model")
    loaded.predict(as_inputs(frame, schema))        # pandas Series "score"
    loaded.unwrap_python_model().model              # the TabularModel (.contributions, ...)

Loading needs the ``mlpipe`` package installed (the task and serving images have it);
the model's ``requirements.txt`` pins the third-party packages it runs on.

Unlike the rest of the package this module imports MLflow (and pandas, which MLflow
imports anyway) at the top, because it defines a ``PythonModel`` subclass whose type
hints MLflow reads: import it only where MLflow is used anyway.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import pandas as pd

from mlpipe.core import uris
from mlpipe.core.tasks import Task
from mlpipe.model.tabular import PREDICTED_CLASS, TabularModel

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

ARTIFACT = "tabular_model"
OUTPUT = "score"
# Packages whose exact versions the served model needs (mlpipe itself is installed by the image).
REQUIREMENTS = ("mlflow", "xgboost", "pandas", "numpy")


class ServingModel(mlflow.pyfunc.PythonModel):
    """Scores rows with the TabularModel stored in the logged model's artifacts."""

    model: TabularModel

    def load_context(self, context: Any) -> None:

        self.model = TabularModel.load(uris.normalize(context.artifacts[ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.Series | pd.DataFrame:
        """What the model predicts for each row of a DataFrame of raw feature columns: the positive-class
        probability (binary) or the value (regression) as ``score``; multiclass, each class's probability and the
        predicted class (:meth:`TabularModel.class_frame`)."""
        scores = self.model.scores(model_input)
        if self.model.task == Task.MULTICLASS:
            return self.model.class_frame(scores, model_input.index)
        return pd.Series(scores, index=model_input.index, name=OUTPUT)


def load_version(name: str, version: int | str) -> TabularModel:
    """The TabularModel of version ``version`` of registered model ``name`` (by number, not alias)."""
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model


def signature(schema: dict[str, Any]) -> ModelSignature:
    """Inputs: the raw feature columns (categoricals as strings, numbers as doubles); outputs: the score, or a
    multiclass model's class probabilities and predicted class."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("string" if column in schema["categorical"] else "double", column)
              for column in schema["columns"]]
    outputs = [ColSpec("float", OUTPUT)]
    if schema.get("task") == Task.MULTICLASS:
        model = TabularModel(None, schema)
        outputs = [*(ColSpec("float", name) for name in model.class_columns()), ColSpec("string", PREDICTED_CLASS)]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def as_inputs(frame: pd.DataFrame, schema: dict[str, Any]) -> pd.DataFrame:
    """The raw feature columns of ``frame`` with the signature's types: numbers as float64, categories as text
    (a true/false column as ``"True"``/``"False"``, how the model compares categories), missing kept."""
    numeric = {c: "float64" for c in schema["columns"] if c not in schema["categorical"]}
    inputs = frame[schema["columns"]].astype(numeric)
    for column in schema["categorical"]:
        values = inputs[column]
        inputs[column] = values.astype(str).astype(object).where(values.notna(), None)
    return inputs


def pip_requirements() -> list[str]:
    """Pinned requirements from the imported versions, so logging never resolves an environment.

    Each package's own ``__version__``, not its distribution's: the CPU task image installs XGBoost as the
    ``xgboost-cpu`` distribution, and a model trained there needs ``xgboost`` of that version all the same.
    """
    return [f"{name}=={importlib.import_module(name).__version__}" for name in REQUIREMENTS]


def log_model(model: TabularModel, input_example: pd.DataFrame, name: str = "model") -> ModelInfo:
    """Log ``model`` as a pyfunc model named ``name`` in the active MLflow run, with a few example rows."""

    with tempfile.TemporaryDirectory(prefix="mlpipe-model-") as scratch:
        folder = model.save(uris.normalize(Path(scratch, ARTIFACT)))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ServingModel(),
            artifacts={ARTIFACT: str(uris.local_path(folder))},
            signature=signature(model.schema),
            input_example=as_inputs(input_example, model.schema),
            pip_requirements=pip_requirements(),
        )
