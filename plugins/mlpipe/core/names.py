"""The names every layer shares: the pipeline's steps and the three parts the split deals rows to."""

from __future__ import annotations

from enum import StrEnum


class Step(StrEnum):
    """A step of a pipeline run; its value is the step's folder in the run and its Airflow task id."""

    INGEST = "ingest"
    VALIDATE = "validate"
    SPLIT = "split"
    VALIDATE_SPLIT = "validate_split"
    TUNE_PREPARE = "tune_prepare"
    TUNE_TRIALS = "tune_trials"
    TUNE = "tune"
    TRAIN = "train"
    ANALYZE = "analyze"
    REGISTER = "register"
    DEPLOY = "deploy"
    SCORE = "score"
    MONITOR = "monitor"


PARTS = ("train", "validation", "analysis")  # the split's parts: fit, early stopping and threshold, held out
