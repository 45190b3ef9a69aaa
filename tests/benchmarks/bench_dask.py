"""Benchmark: XGBoost on 2 local Dask workers (``mlpipe.compute.distributed``) against single-node ``fit_booster``.

    python tests/benchmarks/bench_dask.py [--rows 1000000] [--workers 2] [--rounds 500]

The table: ``--rows`` loans drawn (seeded, with replacement) from the bundled data, every numeric
column jittered by seeded noise (so rows are not exact copies), and a *planted* target: the log-odds
of ``bad`` are a fixed function of interest rate, term, income and revolving utilisation plus logistic
noise, so the achievable AUC is known to be well above chance and the same for both sides. It is split
70/15/15 into train / validation / analysis; train and validation are written as Parquet shards.

Both sides train with the bundled spec's booster params (``scale_pos_weight`` from the training labels,
device cpu) for at most ``--rounds`` rounds, early-stopped on the validation set:

- single: read the shards, encode (``train.inputs``), ``fit_booster`` (``QuantileDMatrix`` + ``xgboost.train``);
- dask: ``train_on_dask`` on a ``LocalCluster`` of ``--workers`` one-thread processes, each reading its
  own shards (cluster start-up is measured apart).

Printed: the rounds each trained, AUC on the analysis part for both, |ΔAUC| (bar <= 0.005), and the
seconds of training alone (DMatrix excluded on the single side; the dask side builds its quantile
matrices inside ``xgboost.dask.train``) and end to end (from the shards to the booster), with the
ratio dask/single. On a 2-core machine both sides use 2 cores: the ratio is the cost of distribution,
not a speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "dags" / "pipelines" / "loan_default.yaml"
DATA = ROOT / "dags" / "pipelines" / "data" / "lending_club.csv"
AUC_BAR = 0.005
SHARDS = {"train": 8, "validation": 2}
SPLIT = {"train": 0.7, "validation": 0.15, "analysis": 0.15}


def make_table(rows: int, seed: int = 7):
    """``rows`` loans drawn with replacement, numeric columns jittered, and a planted ``Class`` (bad/good)."""
    import numpy as np
    import pandas as pd

    source = pd.read_csv(DATA)
    rng = np.random.default_rng(seed)
    table = source.iloc[rng.integers(0, len(source), rows)].reset_index(drop=True)
    for column in table.columns:
        if column != "Class" and pd.api.types.is_numeric_dtype(table[column]):
            values = table[column].astype("float64")
            table[column] = values + rng.normal(0.0, 0.05 * (values.std() or 1.0), rows)

    def z(column: str) -> np.ndarray:
        values = table[column].fillna(table[column].median()).to_numpy()
        return (values - values.mean()) / values.std()

    logit = (-3.2 + 0.9 * z("int_rate") + 0.5 * (table["term"] == "term_60").to_numpy()
             - 0.4 * np.log1p(table["annual_inc"].clip(lower=0).fillna(0)).pipe(lambda s: (s - s.mean()) / s.std())
             + 0.3 * z("revol_util") + rng.logistic(0.0, 1.0, rows) * 0.6)
    table["Class"] = np.where(logit > 0, "bad", "good")
    return table


def split(table, seed: int = 7) -> dict:
    """Train / validation / analysis parts of ``table`` (seeded shuffle)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(table))
    cuts = np.cumsum([0, *(int(share * len(table)) for share in SPLIT.values())])
    cuts[-1] = len(table)
    return {part: table.iloc[order[cuts[i]:cuts[i + 1]]].reset_index(drop=True) for i, part in enumerate(SPLIT)}


def single(params, shards, feature_schema, pipeline) -> tuple:
    """The single-node path: read every shard here, encode, fit. Booster, training and end-to-end seconds."""
    import pandas as pd

    from mlpipe.model.booster import fit_booster, inputs
    from mlpipe.store import storage

    started = time.perf_counter()
    parts = {part: pd.concat([storage.read_parquet(uri) for uri in uris], ignore_index=True)
             for part, uris in shards.items()}
    booster, _, seconds = fit_booster(params, *(inputs(parts[p], feature_schema, pipeline, p) for p in SHARDS),
                                      pipeline.training)
    return booster, seconds, time.perf_counter() - started


def on_dask(client, params, shards, feature_schema, pipeline) -> tuple:
    """The distributed path: the workers read their shards. Booster, training and end-to-end seconds."""
    from mlpipe.compute.distributed import train_on_dask

    started = time.perf_counter()
    booster, _, seconds = train_on_dask(client, params, shards["train"], shards["validation"], feature_schema,
                                        pipeline)
    return booster, seconds, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=500, help="num_boost_round (early stopping: rounds / 10)")
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from mlpipe.compute.distributed import local_cluster, write_shards
    from mlpipe.core import spec
    from mlpipe.data.features import labels, schema
    from mlpipe.model.booster import booster_params, scale_pos_weight
    from mlpipe.model.tabular import TabularModel

    pipeline = spec.with_overrides(spec.load(SPEC), {"training.num_boost_round": args.rounds,
                                                     "training.early_stopping_rounds": max(1, args.rounds // 10)})
    parts = split(make_table(args.rows))
    feature_schema = schema(parts["train"], pipeline)
    train_labels = labels(parts["train"], pipeline)
    params = booster_params(pipeline.training, scale_pos_weight(len(train_labels), int(train_labels.sum()), "auto"),
                            "cpu")
    analysis, y = parts["analysis"], labels(parts["analysis"], pipeline)
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as folder:
        shards = {part: write_shards(parts[part], str(Path(folder) / part), count) for part, count in SHARDS.items()}
        results = {"single": single(params, shards, feature_schema, pipeline)}
        started = time.perf_counter()
        with local_cluster(args.workers) as client:
            startup = time.perf_counter() - started
            results["dask"] = on_dask(client, params, shards, feature_schema, pipeline)
    auc = {side: float(roc_auc_score(y, TabularModel(r[0], feature_schema).scores(analysis)))
           for side, r in results.items()}
    delta = abs(auc["dask"] - auc["single"])
    print(f"rows: {args.rows:,} (train {len(parts['train']):,} in {SHARDS['train']} shards, validation "
          f"{len(parts['validation']):,} in {SHARDS['validation']}, analysis {len(analysis):,}); positives "
          f"{y.mean():.1%}; dask: {args.workers} workers x 1 thread (start-up {startup:.1f} s, not counted)")
    print(f"{'side':<8}{'rounds':>8}{'best':>6}{'analysis AUC':>14}{'train s':>10}{'end-to-end s':>14}")
    for side, (booster, seconds, whole) in results.items():
        print(f"{side:<8}{booster.num_boosted_rounds():>8}{booster.best_iteration:>6}{auc[side]:>14.4f}"
              f"{seconds:>10.1f}{whole:>14.1f}")
    (_, single_train, single_whole), (_, dask_train, dask_whole) = results["single"], results["dask"]
    print(f"|ΔAUC| = {delta:.4f} (bar <= {AUC_BAR}: {'met' if delta <= AUC_BAR else 'MISSED'}); "
          f"time ratio dask/single: training {dask_train / single_train:.2f}x, end-to-end "
          f"{dask_whole / single_whole:.2f}x")


if __name__ == "__main__":
    main()
