"""``mlpipe synth``: seeded synthetic loans shaped like the bundled Lending Club extract."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from mlpipe import cli
from mlpipe.core.errors import EXIT_REFUSED
from mlpipe.data import synth
from mlpipe.store import storage
from tests.conftest import DATA_PATH

CATEGORICAL = ["term", "sub_grade", "addr_state", "verification_status", "emp_length"]
MAIN_NUMERIC = ["funded_amnt", "int_rate", "annual_inc", "revol_util", "total_bal_il", "all_util",
                "num_il_tl", "total_il_high_credit_limit", "open_il_6m", "inq_last_12m"]


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    return pd.read_csv(DATA_PATH)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[dict, pd.DataFrame]:
    """100,000 rows written in three parts (40k, 40k, 20k), and the frame read back from them."""
    summary = synth.synth(100_000, str(tmp_path_factory.mktemp("synth") / "out"), seed=3, part_rows=40_000)
    frame = pd.concat([storage.read_parquet(uri) for uri in summary["uris"]], ignore_index=True)
    return summary, frame


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_parts_are_bounded_and_summarized(written):
    summary, frame = written
    assert summary["rows"] == len(frame) == 100_000
    assert summary["parts"] == 3
    assert [uri.rsplit("/", 1)[-1] for uri in summary["uris"]] == [f"part-0000{i}.parquet" for i in range(3)]
    assert [len(storage.read_parquet(uri, columns=["Class"])) for uri in summary["uris"]] == [40_000, 40_000, 20_000]
    assert summary["positive_rate"] == pytest.approx((frame["Class"] == "bad").mean(), abs=1e-6)
    json.dumps(summary)


def test_columns_and_dtypes_match_the_source(written, source):
    _, frame = written
    assert list(frame.columns) == list(source.columns)
    assert frame.dtypes.to_dict() == source.dtypes.to_dict()


def test_categories_and_shares_match_the_source(written, source):
    _, frame = written
    for column in [*CATEGORICAL, "Class"]:
        assert set(frame[column].unique()) <= set(source[column].unique()), column
    for column in CATEGORICAL:
        expected = source[column].value_counts(normalize=True)
        got = frame[column].value_counts(normalize=True).reindex(expected.index, fill_value=0.0)
        assert (got - expected).abs().max() < 0.02, column


def test_numeric_medians_ranges_and_missing_rates_match(written, source):
    _, frame = written
    for column in MAIN_NUMERIC:
        assert frame[column].median() == pytest.approx(source[column].median(), rel=0.1), column
    numeric = source.select_dtypes("number").columns
    assert (frame[numeric].min() >= source[numeric].min()).all()
    assert (frame[numeric].max() <= source[numeric].max()).all()
    assert (frame.isna().mean() - source.isna().mean()).abs().max() < 0.01
    # the copula keeps the strongest dependence of the source: sub_grade and int_rate move together
    grade_rate = frame.groupby(frame["sub_grade"].str[0])["int_rate"].median()
    assert grade_rate.is_monotonic_increasing


def test_positive_rate_is_like_the_source(written):
    summary, frame = written
    assert 0.04 <= (frame["Class"] == "bad").mean() <= 0.06
    assert 0.04 <= summary["positive_rate"] <= 0.06


def test_planted_signal_is_learnable(source):
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    generator = synth.model()

    def matrix(frame: pd.DataFrame) -> xgb.DMatrix:
        features = frame.drop(columns="Class")
        for column in CATEGORICAL:
            features[column] = pd.Categorical(features[column], categories=sorted(source[column].unique()))
        return xgb.DMatrix(features, label=(frame["Class"] == "bad").astype(int), enable_categorical=True)

    train, held_out = generator.part(11, 0, 50_000), generator.part(12, 0, 20_000)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "nthread": 2, "seed": 0},
                        matrix(train), num_boost_round=50)
    auc = roc_auc_score(held_out["Class"] == "bad", booster.predict(matrix(held_out)))
    assert auc > 0.7


def test_same_arguments_give_identical_parts_and_another_seed_differs(tmp_path):
    for name, seed in [("a", 5), ("b", 5), ("c", 6)]:
        synth.synth(2_500, str(tmp_path / name), seed=seed, part_rows=1_000)
    first = _digests(tmp_path / "a")
    assert list(first) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert _digests(tmp_path / "b") == first
    other = _digests(tmp_path / "c")
    assert all(other[name] != digest for name, digest in first.items())
    # rewriting the same folder with the same arguments (a retried task) gives the same files
    synth.synth(2_500, str(tmp_path / "a"), seed=5, part_rows=1_000)
    assert _digests(tmp_path / "a") == first


def test_part_k_depends_only_on_seed_and_k():
    generator = synth.model()
    pd.testing.assert_frame_equal(generator.part(9, 2, 300), generator.part(9, 2, 300))
    assert not generator.part(9, 1, 300).equals(generator.part(9, 2, 300))


def test_a_folder_with_more_parts_is_refused(tmp_path):
    synth.synth(30, str(tmp_path / "out"), part_rows=10)
    with pytest.raises(synth.SynthError, match="already holds other parts"):
        synth.synth(10, str(tmp_path / "out"), part_rows=10)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rows": 0}, "rows must be a positive integer"),
    ({"rows": 10, "part_rows": -1}, "part_rows must be a positive integer"),
    ({"rows": 10, "seed": -3}, "seed must be a non-negative integer"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(synth.SynthError, match=message):
        synth.synth(output=str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()


def test_writes_to_s3(s3_bucket):
    summary = synth.synth(1_500, f"s3://{s3_bucket}/synth/small", seed=1, part_rows=1_000)
    assert summary["uris"] == [f"s3://{s3_bucket}/synth/small/part-00000.parquet",
                               f"s3://{s3_bucket}/synth/small/part-00001.parquet"]
    assert storage.children(f"s3://{s3_bucket}/synth/small") == ["part-00000.parquet", "part-00001.parquet"]
    assert len(storage.read_parquet(summary["uris"][1])) == 500


def test_cli_prints_the_summary(tmp_path, capsys):
    assert cli.main(["synth", "--rows", "120", "--output", str(tmp_path / "out"), "--part-rows", "50"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 120 and summary["parts"] == 3


@pytest.mark.parametrize(("argv", "message"), [
    (["--rows", "0", "--output", "OUT"], "mlpipe synth: error: rows must be a positive integer, got 0"),
    (["--rows", "10", "--output", "ftp://host/x"], "mlpipe synth: error: ftp://host/x: unsupported URI scheme 'ftp'"),
])
def test_cli_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / "out") if arg == "OUT" else arg for arg in argv]
    assert cli.main(["synth", *argv]) == EXIT_REFUSED
    assert message in capsys.readouterr().err
