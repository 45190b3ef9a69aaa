"""The artifact route serves reports from the store and nothing outside it."""

from __future__ import annotations

import pytest

from mlpipe.core import uris
from mlpipe.ui import artifacts


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    report = root / "loan_default" / "runs" / "r1" / "validate" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>report</html>")
    (tmp_path / "secret.html").write_text("not yours")
    return uris.normalize(root)


def test_a_report_under_the_store_is_served_with_its_pipeline(store):
    found = artifacts.resolve(f"{store}/loan_default/runs/r1/validate/report.html", store)
    assert (found.pipeline, found.media_type) == ("loan_default", "text/html; charset=utf-8")
    assert artifacts.read(found) == b"<html>report</html>"
    assert "sandbox" in artifacts.HEADERS["Content-Security-Policy"]


@pytest.mark.parametrize("tail", [
    "/../secret.html",
    "/loan_default/../../secret.html",
    "/loan_default/%2e%2e/%2e%2e/secret.html",
    "/loan_default/runs/r1/validate/report.html?x=1",
])
def test_climbing_out_of_the_store_is_refused(store, tail):
    with pytest.raises(artifacts.ArtifactRefused):
        artifacts.resolve(store + tail, store)


def test_other_places_and_kinds_are_refused(store, tmp_path):
    for uri in (uris.normalize(tmp_path / "secret.html"), "s3://bucket/loan_default/x.html",
                "http://example.com/loan_default/x.html", f"{store}-other/loan_default/r.html",
                f"{store}/report.html", f"{store}/loan_default/runs/r1/ingest/snapshot.parquet",
                f"{store}/loan_default/runs/r1/spec.py", ""):
        with pytest.raises(artifacts.ArtifactRefused):
            artifacts.resolve(uri, store)


def test_a_symlink_out_of_the_store_is_refused(store, tmp_path):
    link = uris.local_path(store) / "loan_default" / "leak.html"
    link.symlink_to(tmp_path / "secret.html")
    with pytest.raises(artifacts.ArtifactRefused, match="leads out"):
        artifacts.resolve(f"{store}/loan_default/leak.html", store)


def test_an_s3_store_serves_only_its_own_prefix():
    found = artifacts.resolve("s3://bucket/mlpipe/loan_default/monitoring/m/monitor/report.html", "s3://bucket/mlpipe")
    assert found.pipeline == "loan_default"
    for uri in ("s3://bucket/other/loan_default/report.html", "s3://bucket/mlpipe/../x/loan_default/r.html",
                "s3://other/mlpipe/loan_default/r.html"):
        with pytest.raises(artifacts.ArtifactRefused):
            artifacts.resolve(uri, "s3://bucket/mlpipe")
