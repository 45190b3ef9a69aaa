"""The model: XGBoost booster and baseline fitting, the tabular model and its MLflow pyfunc, evaluation,
slice metrics and the monitoring reference. Imports :mod:`mlpipe.data` and below."""
