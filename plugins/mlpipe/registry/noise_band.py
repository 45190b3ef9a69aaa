"""The noise of a pipeline's headline metric over split seeds, as ``tests/benchmarks/bench_seeds.py --record``
measured it: the model card of each later version quotes it among its known limitations.

One split's analysis set is small (the bundled book's holds ~100 bad loans), so its ROC AUC, and the lift over the
baseline, move by a few hundredths from one split seed to another. ``bench_seeds.py`` trains the spec on several
split seeds; with ``--record`` it keeps what it measured as ``<store>/<pipeline>/noise_band.json`` (the latest
measurement replaces the one before). The card says when, on which data and code it was measured: a band measured
on other data is only a guide.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlpipe.core import uris
from mlpipe.store import storage
from mlpipe.store.runs import store_uri

log = logging.getLogger(__name__)

NOISE_BAND_FILE = "noise_band.json"


class NoiseBand(BaseModel):
    """What one ``bench_seeds.py`` run measured: per split seed (in ``seeds``' order) the analysis set's headline
    ``metric`` of the model and of the baseline and the lift; whether it ``tuned``; the data ``source`` and the
    code (``commit``) it measured, and when."""

    model_config = ConfigDict(frozen=True)

    metric: str
    seeds: list[int] = Field(min_length=2)
    model: list[float]
    baseline: list[float]
    lift: list[float]
    tuned: bool
    source: str
    commit: str
    measured_at: datetime

    @model_validator(mode="after")
    def one_value_per_seed(self) -> NoiseBand:
        for name in ("model", "baseline", "lift"):
            if len(values := getattr(self, name)) != len(self.seeds):
                raise ValueError(f"{name}: one value per seed ({len(self.seeds)}), got {len(values)}")
        return self


def band_file(pipeline: str, store: str | None = None) -> str:
    return uris.join(store or store_uri(), pipeline, NOISE_BAND_FILE)


def record(pipeline: str, band: NoiseBand, store: str | None = None) -> str:
    """Keep ``band`` as ``pipeline``'s noise band (in ``store``, default ``$MLPIPE_STORE``); return its URI."""
    return storage.write_bytes(band_file(pipeline, store), band.model_dump_json(indent=2).encode())


def recorded(pipeline: str, metric: str) -> NoiseBand | None:
    """``pipeline``'s latest noise band of ``metric``, or ``None`` when none was recorded (or it is of another
    metric: the spec's task changed since)."""
    uri = band_file(pipeline)
    if not storage.exists(uri):
        return None
    try:
        band = NoiseBand.model_validate_json(storage.read_bytes(uri))
    except ValidationError as error:
        log.warning("%s is not a noise band bench_seeds.py wrote; the card leaves it out: %s", uri, error)
        return None
    return band if band.metric == metric else None
