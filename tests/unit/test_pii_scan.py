"""PII never leaves ingest in clear: planted values are searched for in everything a run writes.

Every ``addr_state`` (a ``hash`` PII column of the bundled spec) is replaced by a marked value,
then the whole training pipeline and a batch scoring run go through the real steps. Every file
under the store, the MLflow artifact root and the MLflow database is scanned (Parquet files
decoded, everything else as bytes), and so are the steps' log records: no marked value and not
the PII hash key may appear anywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from mlpipe import runs, storage
from mlpipe.steps import run_step
from tests.conftest import DATA_PATH
from tests.planted_secrets import files_under, hits
from tests.unit.analysis_fixtures import module_env_fixture, start  # noqa: F401 (pytest fixture)

MARK = "PLANTEDPII"
TRAINING = ("ingest", "validate", "split", "validate_split", "train", "analyze", "register")


@pytest.fixture(scope="module")
def planted(module_env, tmp_path_factory) -> Path:
    """The bundled loans with every state replaced by a marked value; the CSV's path."""
    loans = pd.read_csv(DATA_PATH)
    loans["addr_state"] = MARK + loans["addr_state"]
    path = tmp_path_factory.mktemp("planted") / "loans.csv"
    loans.to_csv(path, index=False)
    return path


def test_no_planted_pii_value_nor_the_key_in_any_artifact_or_log(module_env, planted, caplog):
    caplog.set_level(logging.DEBUG)
    training = start("pii_scan", **{"data.source": planted.as_uri(), "tuning.enabled": False,
                                    "thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0,
                                    "thresholds.fairness": None})  # promoted: the scoring run needs a champion
    for step in TRAINING:
        run_step(step, training)
    scoring = runs.start(runs.Run(training).spec, "pii_scan_score", options={"input_uri": planted.as_uri()},
                         kind=runs.SCORING)
    assert run_step("score", scoring)["rows"] == 9857
    files = files_under(*(storage.local_path(module_env[name]) for name in ("MLPIPE_STORE", "MLPIPE_MLFLOW_ARTIFACTS")),
                        Path(module_env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")))
    assert len(files) > 50  # snapshots, splits, models, reports, plots, MLflow's copies, predictions...
    assert hits((MARK, module_env["MLPIPE_PII_KEY"]), files, log=caplog.text) == []
