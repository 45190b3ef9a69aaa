"""From a dataset to model inputs, the same way in training, analysis, scoring and serving.

Categorical columns become pandas categories with the *training* levels fixed, so a
level unseen in training is treated as missing instead of shifting the codes. The levels are
ordered by their training rows (most first; ties in order of first appearance), never by their
text: a column hashed with the secret PII key then gets the same codes whatever the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpipe.core.errors import Refused
from mlpipe.core.tasks import Task
from mlpipe.data.columns import feature_kinds, with_kinds

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlpipe.core.spec import Spec


def labels(frame: pd.DataFrame, spec: Spec, classes: list[str] | None = None) -> np.ndarray:
    """The target of each row as the model learns it (:class:`~mlpipe.core.tasks.Task`): binary, 1 where it is (one
    of) the positive class, else 0, compared as text; multiclass, the index of its class in ``classes`` (as text;
    default ``target.classes``); regression, the number.

    Refused, naming the column: a multiclass row whose class is not one of ``classes``, a regression target
    that is not numeric; either with a missing value.
    """
    import pandas as pd

    name, task = spec.target.column, spec.target.task
    target = frame[name]
    if task == Task.BINARY:
        return target.astype(str).isin(spec.target.positive_values).to_numpy(dtype="int8")
    if target.isna().any():
        raise Refused(f"target.column {name!r}: {int(target.isna().sum())} rows have no value")
    if task == Task.REGRESSION:
        values = pd.to_numeric(target, errors="coerce")
        if values.isna().any():
            raise Refused(f"target.column {name!r}: a regression target must be numeric, got "
                          f"{target[values.isna()].iloc[0]!r}")
        return values.to_numpy(dtype="float64")
    classes = classes if classes is not None else class_names(spec)
    codes = pd.Categorical(target.astype(str), categories=classes).codes
    if (codes < 0).any():
        unseen = sorted(set(target[codes < 0].astype(str)))
        raise Refused(f"target.column {name!r}: classes {unseen[:10]} are not among the model's classes {classes}")
    return codes.astype("int32")


def class_names(spec: Spec) -> list[str]:
    """``target.classes`` as text (how they are compared with the target's values); refused when absent."""
    if spec.target.classes is None:
        raise Refused(f"target.column {spec.target.column!r}: the classes of a multiclass target are not known here")
    return [str(value) for value in spec.target.classes]


def count_levels(values: pd.Series, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Rows per distinct non-missing value of a column, as text (how categories are compared), in order
    of first appearance; added to ``counts`` (e.g. of the batches before) when given."""
    import numpy as np
    import pandas as pd

    codes, found = pd.factorize(values.dropna().astype(str))
    counts = {} if counts is None else counts
    for level, rows in zip(found.tolist(), np.bincount(codes, minlength=len(found)).tolist(), strict=True):
        counts[level] = counts.get(level, 0) + rows
    return counts


def ordered_levels(counts: dict[str, int]) -> list[str]:
    """The levels of :func:`count_levels` most frequent first, ties in order of first appearance.

    Not sorted by text: the order (hence XGBoost's category codes) must not depend on the PII key.
    """
    return sorted(counts, key=lambda level: -counts[level])


def schema_of(names: list[str], levels: dict[str, dict[str, int]], spec: Spec) -> dict[str, Any]:
    """The feature schema of a dataset with columns ``names`` whose categorical columns hold ``levels``
    (rows per level, :func:`count_levels`)."""
    columns = spec.feature_columns(names)
    return {"columns": columns,
            "categorical": {c: ordered_levels(levels[c]) for c in columns if c in spec.features.categorical}}


def schema(frame: pd.DataFrame, spec: Spec) -> dict[str, Any]:
    """The feature schema learned from training data in memory: column order and categorical levels, each
    feature's kind from the spec or else from the data (:func:`mlpipe.data.columns.feature_kinds`)."""
    resolved = with_kinds(spec, feature_kinds(frame, spec))
    return schema_of(list(frame.columns), {c: count_levels(frame[c]) for c in resolved.features.categorical},
                     resolved)


def matrix(frame: pd.DataFrame, feature_schema: dict[str, Any]) -> pd.DataFrame:
    """The model's input frame: schema columns in order, categories with the training levels."""
    import pandas as pd

    missing = [c for c in feature_schema["columns"] if c not in frame.columns]
    if missing:
        raise KeyError(f"missing feature columns: {missing}")
    out = {}
    for column in feature_schema["columns"]:
        values = frame[column]
        if column in feature_schema["categorical"]:
            out[column] = categorical(values, feature_schema["categorical"][column])
        else:
            out[column] = pd.to_numeric(values, errors="raise").astype("float32")
    return pd.DataFrame(out, index=frame.index)


def categorical(values: pd.Series, levels: list[str]) -> pd.Categorical:
    """``values`` (as text) coded by the training ``levels``; unseen levels and missing values become missing.

    Each distinct value is looked up once (factorize), not each row: scoring millions of rows stays cheap.
    """
    import numpy as np
    import pandas as pd

    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    position = {level: index for index, level in enumerate(levels)}
    lookup = np.array([position.get(str(value), -1) for value in distinct] + [-1], dtype=np.int32)
    return pd.Categorical.from_codes(lookup[codes], categories=levels)  # code -1 (missing) picks the last: -1
