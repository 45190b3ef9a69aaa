"""The noise band bench_seeds.py records for a pipeline: kept in the store, read back by the model card."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mlpipe.registry.noise_band import NoiseBand, band_file, record, recorded

BAND = NoiseBand(metric="rmse", seeds=[42, 1], model=[3.6, 3.7], baseline=[3.8, 3.7], lift=[0.2, 0.0], tuned=True,
                 source="file:///data/loans.csv", commit="abc1234", measured_at=datetime(2026, 12, 6, tzinfo=UTC))


def test_a_recorded_band_is_read_back_and_replaced_by_the_next(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPIPE_STORE", str(tmp_path))
    assert recorded("loans", "rmse") is None
    assert record("loans", BAND) == (tmp_path / "loans" / "noise_band.json").as_uri()
    assert recorded("loans", "rmse") == BAND and recorded("other", "rmse") is None
    later = BAND.model_copy(update={"seeds": [1, 2], "model": [1.0, 2.0],
                                    "measured_at": datetime(2026, 12, 7, tzinfo=UTC)})
    record("loans", later)
    assert recorded("loans", "rmse") == later


def test_a_file_that_is_no_band_is_left_out_with_a_warning_naming_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLPIPE_STORE", str(tmp_path))
    (tmp_path / "loans").mkdir()
    (tmp_path / "loans" / "noise_band.json").write_text('{"metric": "rmse", "seeds": [42]}')
    with caplog.at_level(logging.WARNING):
        assert recorded("loans", "rmse") is None
    assert caplog.messages[0].startswith(f"{band_file('loans')} is not a noise band bench_seeds.py wrote; the card "
                                         "leaves it out: ")
    assert "seeds" in caplog.messages[0] and "at least 2 items" in caplog.messages[0]


def test_one_seed_is_no_band_and_each_figure_has_a_value_per_seed():
    with pytest.raises(ValidationError, match="seeds"):
        BAND.model_validate({**BAND.model_dump(), "seeds": [42]})
    with pytest.raises(ValidationError, match=r"lift: one value per seed \(2\), got 3"):
        BAND.model_validate({**BAND.model_dump(), "lift": [0.1, 0.2, 0.3]})
