"""The README's "Add a model" path, as a newcomer takes it: their own data, a minimal spec, the README's
commands verbatim, a champion.

The data is this test's own: loan applications with text columns nobody lists as categorical, a
true/false column, an id, missing values, and a target named ``status`` whose positive value is
``defaulted``; its signal is non-linear (a U in age, a cliff in the debt ratio, renting on a low income),
as real credit data often is. The reader's own step (the ``console`` block that copies their CSV into
place) is done by writing this data where that block puts it; the section's ``sh`` blocks then run as
written in a fresh copy of the project (:mod:`tests.readme`).
"""

from __future__ import annotations

import shlex

import numpy as np
import pandas as pd
import pytest
import yaml

from tests import readme
from tests.readme import ROOT

pytestmark = pytest.mark.integration
SECTION = "Add a model"


def applications(rows: int = 3000, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.7, 0.55, rows).round(-2)
    age = rng.integers(19, 80, rows)
    purpose = rng.choice(["car", "home improvement", "debt consolidation", "holiday", "freelance tools"], rows)
    housing = rng.choice(["own", "rent", "mortgage"], rows, p=[0.3, 0.4, 0.3])
    debt_ratio = rng.uniform(0, 1, rows).round(3)
    logit = (-3.1 + 1.6 * (debt_ratio > 0.75) + 0.0016 * (age - 45) ** 2
             + 1.4 * ((housing == "rent") & (income < 35_000)) + 0.7 * (purpose == "holiday"))
    return pd.DataFrame({
        "applicant_id": [f"A{i:06d}" for i in range(rows)], "income": income, "age": age, "purpose": purpose,
        "housing": housing, "employer": rng.choice(["acme", "globex", "initech", "umbrella", "hooli", None], rows),
        "debt_ratio": debt_ratio, "has_phone": rng.random(rows) < 0.7,
        "status": np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "defaulted", "repaid")})


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    """A fresh copy with this test's data where the README's console block puts the reader's CSV, after
    the section's sh blocks ran in order (each must exit 0)."""
    project = readme.fresh_copy(tmp_path_factory.mktemp("newcomer") / "mlpipe")
    [copy_step] = readme.blocks(SECTION, readme.SHOWN)
    destination = project / shlex.split(copy_step.strip())[-1]  # cp <your file> <where the spec reads it>
    applications().to_csv(destination, index=False)
    outputs = []
    for block in readme.blocks(SECTION):
        out = readme.run_block(block, project)
        assert out.returncode == 0, f"README block under {SECTION!r} exited {out.returncode}:\n{block}\n" \
                                    f"{out.stdout[-5000:]}"
        outputs.append(out.stdout)
    return project, "".join(outputs)


def test_the_spec_is_minimal_and_names_no_categorical_nor_fairness_column(added):
    project, _ = added
    shipped = {path.name for path in (ROOT / "dags" / "pipelines").glob("*.yaml")}  # the project's own specs
    [written] = [path for path in (project / "dags" / "pipelines").glob("*.yaml") if path.name not in shipped]
    spec = yaml.safe_load(written.read_text())
    assert set(spec) <= {"name", "data", "target", "id_columns"}
    assert spec["target"]["column"] == "status"


def test_the_first_run_writes_the_profile_with_every_feature_kind_inferred(added):
    project, output = added
    assert "reference profile: wrote" in output
    assert "features: categorical employer, has_phone, housing, purpose; numeric age, debt_ratio, income" in output
    assert (project / "dags" / "pipelines" / "applicants.profile.json").exists()


def test_a_champion_is_promoted_through_airflow(added):
    _, output = added
    assert "Traceback" not in output, output[-5000:]
    [registry] = [line for line in output.splitlines() if line.startswith("  registry:")]
    assert "applicants version 1 [challenger, champion], promoted to champion" in registry, output[-3000:]
    [analysis] = [line for line in output.splitlines() if line.startswith("  analysis:")]
    lift = float(analysis.rsplit("lift ", 1)[1])
    assert lift > 0, analysis  # non-linear data: XGBoost beats the logistic-regression baseline
