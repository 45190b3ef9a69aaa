"""One plausible result of every step (:mod:`mlpipe.core.results`), with every field set, for tests that need one
without running the step."""

from __future__ import annotations

from mlpipe.core.names import Step
from mlpipe.core.results import (
    Analyze,
    Deploy,
    Ingest,
    Monitor,
    Register,
    Score,
    Split,
    StepResult,
    Train,
    Tune,
    TunePrepare,
    TuneTrials,
    Validate,
    ValidateSplit,
)

RUN = "file:///s/loan_default/runs/r1"
PARTS = {"train": 700, "validation": 150, "analysis": 150}
CHECKS = {"success": True, "evaluated": 87, "failed": 0, "report": f"{RUN}/validate/report.html",
          "result": f"{RUN}/validate/validation.json"}

EXAMPLES: dict[Step, StepResult] = {example.step: example for example in (
    Ingest(source="file:///data/loans.csv", snapshot=f"{RUN}/ingest/snapshot", data_version="f244a2187f5f81f3",
           rows=1000, columns=23, parts=1, pii={"ssn": "hashed"}, categorical=["term", "grade"]),
    Validate(**CHECKS, profile="loan_default.profile.json", data_version="f244a2187f5f81f3"),
    Split(train=f"{RUN}/split/train", validation=f"{RUN}/split/validation", analysis=f"{RUN}/split/analysis",
          rows=PARTS, parts=dict.fromkeys(PARTS, 1), positive_rate=dict.fromkeys(PARTS, 0.2)),
    ValidateSplit(**{**CHECKS, "report": f"{RUN}/validate_split/report.html"}, positive_rate=0.2),
    TunePrepare(study="loan_default-r1", storage="journal:///tmp/optuna.journal", trials_budget=8, workers=2,
                warm_start="spec", tuning_run_id="tuning1", skipped=False),
    TuneTrials(shard=1, trials_run=4, best_value_seen=0.71, skipped=False),
    Tune(best_params={"eta": 0.1, "max_depth": 4}, best_value=0.71, best_trial=3, best_rounds=120,
         objective="4-fold cross-validated ROC AUC on train + validation",
         trials={"complete": 6, "pruned": 2, "failed": 0}, tuning_run_id="tuning1", skipped=False),
    Train(mlflow_run_id="3fbc851a22c34740be01bd9ca4a2fcb0", model_uri="runs:/3fbc851a22c34740be01bd9ca4a2fcb0/model",
          model_folder=f"{RUN}/train/model", baseline=f"{RUN}/train/baseline",
          reference=f"{RUN}/train/reference.parquet", device="cpu", rows={"train": 700, "validation": 150},
          external_memory=False, best_iteration=119, num_trees=120, round_rule="tuned", rounds="120 tuned rounds",
          scale_pos_weight=4.0, validation={"roc_auc": 0.7, "logloss": 0.45, "baseline_roc_auc": 0.66},
          train_seconds=0.5, data_version="f244a2187f5f81f3", tuned=True,
          baseline_settings={"C": 1.0, "class_weight": "balanced", "candidates": {}}),
    Analyze(metrics={"roc_auc": 0.7, "pr_auc": 0.4, "f1": 0.45, "threshold": 0.31, "baseline_roc_auc": 0.66,
                     "lift": 0.04},
            confusion_matrix={"tn": 90, "fp": 30, "fn": 10, "tp": 20},
            slices={"grade": {"A": {"rows": 50, "roc_auc": 0.7}}}, sensitivity={"income": {"flipped": 0.01}},
            top_features=[("grade", 0.3), ("income", 0.1)], sample_rows=150,
            plots={"roc": f"{RUN}/analyze/plots/roc.png"}, metrics_uri=f"{RUN}/analyze/metrics.json",
            mlflow_run_id="3fbc851a22c34740be01bd9ca4a2fcb0"),
    Register(model_name="loan_default", version=7, aliases=["challenger", "champion"], promoted=True, forced=False,
             reasons=["beats the champion"], notes=[], compared_with=6, replaced=6,
             metrics={"roc_auc": {"challenger": 0.7, "champion": 0.68}}, audit="file:///s/loan_default/audit/1.json",
             champion_version=7),
    Deploy(deployed=False, server=None, version=7, smoke_rows=0,
           skipped="$MLPIPE_SERVER_URL is not set: no model server to deploy to"),
    Score(source="file:///data/batch.csv", rows=1000, chunks=1, model_name="loan_default", model_version=7,
          threshold=0.31, positive_decisions=120, value_issues={"grade: unexpected": 2},
          seconds_by_phase={"read": 0.1, "score": 0.2}, predictions=f"{RUN}/score/predictions",
          inputs=f"{RUN}/score/inputs"),
    Monitor(status="breach", breach=True, reasons=["income drifts"], message="income drifts",
            drifting_features=["income"], rows={"total": 1000, "batch": 800, "served": 200}, champion_version=7,
            report=f"{RUN}/monitor/report.json", report_html=f"{RUN}/monitor/report.html", mlflow_run_id="mon1",
            retrain_notes="monitoring breach of loan_default v7 (monitoring run m1): income drifts"),
)}


def stored(step: Step, run: str = RUN, seconds: float = 1.25) -> dict:
    """The ``result.json`` of ``step``'s example, as :func:`mlpipe.steps.run_step` writes it."""
    return EXAMPLES[step].model_copy(update={"run": run, "seconds": seconds}).stored()
