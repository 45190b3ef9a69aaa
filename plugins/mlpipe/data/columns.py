"""What each column of a pipeline's data is, decided before anything is trained.

- :func:`check_named`: every column the spec names (target, ids, features, PII rules, slices,
  fairness) must be in the data; the error names the spec key and the column.
  :func:`reason_warnings`: the features a binary spec gives no reason text (their reason codes show
  the column name), and the texts of columns that are no feature (unused). Reason texts are wording, never a
  reason to refuse data: a column missing from a batch is the validation step's to name.
- :func:`feature_kinds`: each feature is ``categorical`` or ``numeric``. The spec decides first
  (``features.categorical`` / ``features.numeric``), then the reviewed reference profile (which
  records every column's kind), then the data: text and true/false columns are categorical,
  numbers numeric (integers with at most ``features.max_code_levels`` values are codes, hence
  categorical). A column the model cannot use (dates, no values at all, text that is mostly
  numbers, an id-like text column) is refused, naming the column and what to do.

``mlpipe profile`` and the ingest step both use these, so a mistake in a spec fails in seconds,
never in register after the model was trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpipe.core.spec import Spec, SpecError

if TYPE_CHECKING:
    import pandas as pd

CATEGORICAL, NUMERIC = "categorical", "numeric"
NUMBER_LIKE_SHARE = 0.5  # a text column whose values are mostly numbers is a numeric column with stray text
ID_LIKE_SHARE, ID_LIKE_MIN_LEVELS = 0.5, 50  # a text column with a new value in most rows is an id or free text
SHOWN = 3  # example values in a message


def named_columns(spec: Spec) -> dict[str, list[str]]:
    """Spec key -> the data columns it names (``pii[1].column``, ``thresholds.fairness.column``...)."""
    named = {"target.column": [spec.target.column], "id_columns": spec.id_columns,
             "features.exclude": spec.features.exclude, "features.categorical": spec.features.categorical,
             "features.numeric": spec.features.numeric, "slices": spec.slices}
    if isinstance(spec.features.include, list):
        named["features.include"] = spec.features.include
    named |= {f"pii[{index}].column": [rule.column] for index, rule in enumerate(spec.pii)}
    if spec.thresholds.fairness:
        named["thresholds.fairness.column"] = [spec.thresholds.fairness.column]
    return {key: columns for key, columns in named.items() if columns}


def not_columns(key: str, missing: list[str], source: str) -> str:
    """The problem of spec key ``key`` whose columns ``missing`` are not in the data (one line)."""
    if len(missing) > 1:
        return f"{key}: {missing} are not columns of {source}"
    return f"{key}: {missing[0]!r} is not a column of {source}"


def check_named(spec: Spec, columns: list[str], source: str) -> None:
    """Raise :class:`SpecError` naming each spec key whose column is not among the data's ``columns``."""
    present = set(columns)
    problems = [not_columns(key, missing, source) for key, names in named_columns(spec).items()
                if (missing := [name for name in names if name not in present])]
    if problems:
        raise SpecError("\n".join([*problems, f"(the columns of {source}: {', '.join(columns)})"]))


def reason_warnings(spec: Spec, features: list[str]) -> list[str]:
    """What a spec that gives reasons (binary, ``reason_count`` above 0) leaves unsaid: one warning per feature
    without a text in ``reasons`` (its reason codes show the column name), and one per text of a column that
    is no feature (an id, excluded, dropped PII, or no column of the data at all, e.g. misspelt: not an error,
    the words are never shown), unused."""
    if not spec.gives_reasons:
        return []
    return ([f"reasons: feature {name!r} has no text; its reason codes show the column name"
             for name in features if name not in spec.reasons]
            + [f"reasons.{name}: {name!r} is not a feature of the model (an id, excluded, dropped PII or no column "
               "of the data); its text is not used" for name in spec.reasons if name not in features])


def _numbers(values: pd.Series) -> pd.Series:
    """Which of the (text) ``values`` read as numbers."""
    import pandas as pd

    return pd.to_numeric(values, errors="coerce").notna()


def _examples(values: pd.Series) -> str:
    return ", ".join(repr(value) for value in values.drop_duplicates().head(SHOWN))


def unusable(name: str, values: pd.Series, kind: str, inferred: bool) -> str | None:
    """Why the model cannot use the feature ``name`` (a batch of its ``values``) as ``kind``, or ``None``.

    A kind the spec forced skips the guesses (text of numbers, id-like text) that an ``inferred`` one gets.
    """
    from pandas.api import types

    present = values.dropna()
    if present.empty:
        return f"feature {name!r} has no values in {len(values)} rows: exclude it (features.exclude)"
    if types.is_datetime64_any_dtype(values) or types.is_timedelta64_dtype(values):
        return (f"feature {name!r} holds dates or durations ({values.dtype}), which the model cannot use: "
                "exclude it (features.exclude) or derive a number from it")
    if types.is_numeric_dtype(values) or types.is_bool_dtype(values):
        return None
    text = present.astype(str)
    numbers = _numbers(text)
    if kind == NUMERIC:
        return None if numbers.all() else (
            f"feature {name!r} is numeric (features.numeric) but holds text such as {_examples(text[~numbers])}: "
            "make those values empty (missing) or list the column in features.categorical")
    if not inferred:
        return None
    if numbers.mean() >= NUMBER_LIKE_SHARE:
        return (f"feature {name!r} is text, but {numbers.mean():.0%} of its values are numbers; the others are "
                f"not, such as {_examples(text[~numbers])}: make those empty (missing) to use it as a number, "
                "or list it in features.categorical to use it as categories")
    levels = text.nunique()
    if levels >= ID_LIKE_MIN_LEVELS and levels > ID_LIKE_SHARE * len(text):
        return (f"feature {name!r} is text with {levels} distinct values in {len(text)} rows, like an id or free "
                "text, which the model cannot learn from: list it in id_columns or features.exclude (or in "
                "features.categorical to use it anyway)")
    return None


def inferred_kind(values: pd.Series, max_code_levels: int) -> str:
    """``categorical`` for text, true/false and integer codes of at most ``max_code_levels`` values;
    else ``numeric``."""
    from pandas.api import types

    if types.is_bool_dtype(values) or not types.is_numeric_dtype(values):
        return CATEGORICAL
    present = values.dropna()
    integral = types.is_integer_dtype(values) or bool((present == present.round()).all())
    if max_code_levels and integral and present.nunique() <= max_code_levels:
        return CATEGORICAL
    return NUMERIC


def feature_kinds(frame: pd.DataFrame, spec: Spec, profiled: dict[str, dict[str, Any]] | None = None,
                  source: str = "the data") -> dict[str, str]:
    """Feature column -> ``categorical`` or ``numeric``: the spec's lists, else the ``profiled`` (reviewed)
    kind, else inferred from ``frame``, a batch of the PII-masked data.

    Raises :class:`SpecError` naming every feature the model cannot use.
    """
    profiled = profiled or {}
    forced = {**dict.fromkeys(spec.features.categorical, CATEGORICAL),
              **dict.fromkeys(spec.features.numeric, NUMERIC)}
    kinds, problems = {}, []
    for name in spec.feature_columns(list(map(str, frame.columns))):
        reviewed = profiled.get(name, {}).get("kind")
        if name in forced or reviewed not in (CATEGORICAL, NUMERIC):
            kind = forced.get(name) or inferred_kind(frame[name], spec.features.max_code_levels)
            if problem := unusable(name, frame[name], kind, inferred=name not in forced):
                problems.append(problem)
        else:
            kind = reviewed
        kinds[name] = kind
    if problems:
        raise SpecError("\n".join(f"{problem} ({source})" for problem in problems))
    return kinds


def with_kinds(spec: Spec, kinds: dict[str, str]) -> Spec:
    """``spec`` with ``features.categorical`` listing every categorical feature of ``kinds``."""
    categorical = [name for name, kind in kinds.items() if kind == CATEGORICAL]
    return spec.model_copy(update={"features": spec.features.model_copy(update={"categorical": categorical})})
