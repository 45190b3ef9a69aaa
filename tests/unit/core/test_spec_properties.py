"""Property tests of the spec loader: whatever a spec file holds, the answer is a Spec or one SpecError.

Hypothesis breaks the shipped loan_default spec (keys deleted, values of other types, unknown keys, whole
sections replaced) and makes random documents and files. ``derandomize=True`` and fixed example counts keep
CI reproducible; a failure prints the smallest document that broke the property.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpipe import cli
from mlpipe.core import spec
from mlpipe.core.errors import EXIT_REFUSED
from tests.conftest import SPEC_PATH

SOURCE = "fuzz.yaml"
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
VALID = yaml.safe_load(SPEC_PATH.read_text())

# A line of a SpecError: "fuzz.yaml: <field>: <problem>" (the field dotted, or "(top level)"), or the one line
# parse gives a document that is not a mapping.
LINE = re.compile(rf"^{re.escape(SOURCE)}: (?:\S[^\n]*?: \S|a spec must be a mapping of keys to values, got \w+$)")

keys = st.text(min_size=0, max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1]),
    st.text(max_size=20), st.sampled_from(["auto", "all", "hash", "drop", "cpu", "cuda", "csv", "", "0.5", "1e400"]),
)
json_like = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                         max_leaves=15)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys / list indexes) into ``node``, parents before children."""
    found = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _parent(document: Any, path: tuple) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


@st.composite
def deleted_key(draw):
    document = copy.deepcopy(VALID)
    path = draw(st.sampled_from(_paths(document)))
    parent = _parent(document, path)
    del parent[path[-1]]  # dict key or list item
    return document


@st.composite
def replaced_value(draw):
    document = copy.deepcopy(VALID)
    path = draw(st.sampled_from(_paths(document)))
    _parent(document, path)[path[-1]] = draw(json_like)
    return document


@st.composite
def unknown_key(draw):
    document = copy.deepcopy(VALID)
    mappings = [()] + [path for path in _paths(document) if isinstance(_parent(document, (*path, None)), dict)]
    path = draw(st.sampled_from(mappings))
    target = _parent(document, (*path, None))
    target[draw(keys | st.integers() | st.none() | st.booleans())] = draw(json_like)
    return document


@st.composite
def replaced_section(draw):
    document = copy.deepcopy(VALID)
    section = draw(st.sampled_from(sorted(key for key, value in document.items() if isinstance(value, dict | list))))
    document[section] = draw(scalars | st.lists(json_like, max_size=3))
    return document


@st.composite
def several_changes(draw):
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(document, path)
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_like)
    return document


def _check(document: Any) -> None:
    """The property: a Spec, or a SpecError whose every line names the file and a field."""
    try:
        result = spec.parse(document, source=SOURCE)
    except spec.SpecError as error:
        lines = str(error).split("\n")
        assert lines, "an empty SpecError"
        for line in lines:
            assert LINE.match(line), f"badly formed SpecError line: {line!r}"
    else:
        assert isinstance(result, spec.Spec)


@pytest.mark.parametrize(
    "strategy",
    [deleted_key(), replaced_value(), unknown_key(), replaced_section(), several_changes()],
    ids=["deleted_key", "replaced_value", "unknown_key", "replaced_section", "several_changes"],
)
def test_a_broken_spec_is_a_spec_error_naming_its_field(strategy):
    @SETTINGS
    @given(strategy)
    def check(document):
        _check(document)

    check()


@SETTINGS
@given(json_like | st.dictionaries(keys, json_like, max_size=8))
def test_a_random_document_is_a_spec_error(document):
    _check(document)


def test_the_valid_document_still_parses():
    assert spec.parse(copy.deepcopy(VALID), source=SOURCE).name == "loan_default"


def _load(path: Path) -> None:
    try:
        spec.load(path)
    except spec.SpecError as error:
        assert str(error)


yaml_text = st.one_of(
    st.text(max_size=200),  # random unicode, mostly not YAML at all
    st.sampled_from(["", "~", "42", "- a\n- b\n", "name: [unclosed\n", "a: b: c\n", "\tname: x\n", "{", "&a [*a]",
                     "name: !!python/object:os.system x\n", "? [a, b]\n: c\n", "[" * 2000 + "]" * 2000,
                     "name: \x00\n", "%YAML 9.9\n---\na: 1\n", "'unterminated\n"]),
    json_like.map(lambda value: yaml.safe_dump(value, allow_unicode=True)),  # YAML of scalars, lists, mappings
    st.lists(st.sampled_from(SPEC_PATH.read_text().splitlines()), max_size=30).map("\n".join),  # shuffled lines
)


@SETTINGS
@given(text=yaml_text)
def test_a_random_spec_file_is_a_spec_error(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load(path)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_a_random_binary_file_is_a_spec_error(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    _load(path)


def test_a_folder_or_a_latin1_file_is_a_spec_error(tmp_path):
    with pytest.raises(spec.SpecError, match="cannot read the spec file"):
        spec.load(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(spec.SpecError, match="not UTF-8 text"):
        spec.load(latin1)


@pytest.mark.parametrize(
    "text",
    ["name: [unclosed\n", "- a\n- b\n", "just a string\n", "", "name: Loan Default\n", "[" * 2000 + "]" * 2000,
     "colour\u2028x: 1\n", SPEC_PATH.read_text().replace("target:", "target: 3\nx:", 1)],
    ids=["bad_yaml", "list", "scalar", "empty", "bad_fields", "deep", "line_separator_key", "scalar_section"],
)
def test_cli_start_on_a_broken_spec_exits_2_without_a_traceback(tmp_path, capsys, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    assert cli.main(["start", str(path), "--run-id", "x"]) == EXIT_REFUSED
    captured = capsys.readouterr()
    assert captured.err.startswith("mlpipe start: error: ")
    assert "Traceback" not in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("override", ["data.source.x=1", "tags.0=\"a\"", "thresholds.fairness.column.x=1",
                                      "split.seed.deeper.still=1"])
def test_cli_start_with_an_override_into_a_value_exits_2(capsys, override):
    assert cli.main(["start", str(SPEC_PATH), "--run-id", "x", "--set", override]) == EXIT_REFUSED
    captured = capsys.readouterr()
    assert captured.err.startswith("mlpipe start: error: trigger options: ")
    assert "Traceback" not in captured.err
