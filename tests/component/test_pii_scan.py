"""PII never leaves ingest in clear: planted values are searched for in everything a run or the server writes.

Every ``addr_state`` (a ``hash`` PII column of the bundled spec) is replaced by a marked value,
and a marked ``applicant_name`` column is added with a ``drop`` rule; then the whole training
pipeline and a batch scoring run go through the real steps. Every file under the store, the
MLflow artifact root and the MLflow database is scanned (Parquet files decoded, everything
else as bytes), and so are the steps' log records: no marked value and not the PII hash key
may appear anywhere.

The model server is sent the same raw rows, PII in clear as clients have it: ``addr_state`` is
hashed before the record is scored or captured; a request carrying the dropped
``applicant_name`` is refused (422 naming the field, an unknown one to the model, without
echoing its value), as is one past the record limit (413). The captured requests, the server's
log records and every answer hold no marked value.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest

from mlpipe.core import spec, uris
from mlpipe.data.pii import pseudonym
from mlpipe.serving.app import create_app
from mlpipe.serving.capture import Capture
from mlpipe.steps import run_step
from mlpipe.store import runs
from tests.conftest import DATA_PATH
from tests.fixtures.analysis import start
from tests.fixtures.serving import records, running, wait_ready
from tests.planted_secrets import files_under, hits

MARK = "PLANTEDPII"
TRAINING = ("ingest", "validate", "split", "validate_split", "train", "analyze", "register")
PII_RULES = [{"column": "addr_state", "action": "hash"}, {"column": "applicant_name", "action": "drop"}]


@contextmanager
def logged() -> Iterator[io.StringIO]:
    """Every log record (DEBUG and up) written while the block runs, as text."""
    text, root = io.StringIO(), logging.getLogger()
    handler, level = logging.StreamHandler(text), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield text
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def planted(module_env, tmp_path_factory) -> Path:
    """The bundled loans with every state replaced by a marked value and a marked name added; the CSV's path."""
    loans = pd.read_csv(DATA_PATH)
    loans["addr_state"] = MARK + loans["addr_state"]
    loans["applicant_name"] = [f"{MARK} applicant {number}" for number in range(len(loans))]
    path = tmp_path_factory.mktemp("planted") / "loans.csv"
    loans.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def training(module_env, planted) -> tuple[str, str]:
    """The training run on the planted loans, promoted (the scoring run and the server need a champion):
    its URI and its steps' log text."""
    uri = start("pii_scan", **{"data.source": planted.as_uri(), "pii": PII_RULES, "tuning.enabled": False,
                               "thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0,
                               "thresholds.fairness": None})
    with logged() as log:
        for step in TRAINING:
            run_step(step, uri)
    return uri, log.getvalue()


def test_no_planted_pii_value_nor_the_key_in_any_artifact_or_log(module_env, planted, training, caplog):
    caplog.set_level(logging.DEBUG)
    scoring = runs.start(runs.Run(training[0]).spec, "pii_scan_score", options={"input_uri": planted.as_uri()},
                         kind=runs.SCORING)
    assert run_step("score", scoring)["rows"] == 9857
    files = files_under(*(uris.local_path(module_env[name]) for name in ("MLPIPE_STORE", "MLPIPE_MLFLOW_ARTIFACTS")),
                        Path(module_env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")))
    assert len(files) > 50  # snapshots, splits, models, reports, plots, MLflow's copies, predictions...
    assert hits((MARK, module_env["MLPIPE_PII_KEY"]), files, log=training[1] + caplog.text) == []


def test_server_requests_with_planted_pii_are_captured_without_it(module_env, planted, training, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    served = spec.with_overrides(runs.Run(training[0]).spec, {"serving.max_records": 50})
    loans = pd.read_csv(planted).head(100)
    features = served.feature_columns(list(loans.columns))  # the model's: no target, no applicant_name
    rows = records(loans, features)
    app = create_app(served, poll_seconds=3600, token="", capture=Capture(uris.normalize(tmp_path), 1.0))
    with running(app) as url:
        wait_ready(url)
        answers = [httpx.post(f"{url}/predict", json={"records": rows[start:start + 10]}, timeout=30)
                   for start in range(0, 100, 10)]
        answers.append(httpx.post(f"{url}/explain", json={"records": rows[:5]}, timeout=30))
        answers.append(httpx.post(f"{url}/predict", json={"records": records(loans.head(1),
                                                                               [*features, "applicant_name"])}))
        answers.append(httpx.post(f"{url}/predict", json={"records": rows[:51]}))
    assert [answer.status_code for answer in answers] == [200] * 11 + [422, 413]
    assert answers[-2].json() == {"detail": [{"type": "extra_forbidden", "loc": ["body", "records", 0,
                                                                                "applicant_name"],
                                              "msg": "Extra inputs are not permitted"}]}
    files = sorted(tmp_path.glob("*/*.jsonl"))  # written on shutdown
    captured = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    key = module_env["MLPIPE_PII_KEY"].encode()
    assert [row["record"]["addr_state"] for row in captured] == [
        pseudonym(row["addr_state"], key) for row in rows + rows[:5]]  # hashed, exactly as at ingest
    responses = {f"response {number}": answer.text for number, answer in enumerate(answers)}
    assert hits([MARK], files, log=caplog.text, **responses) == []
