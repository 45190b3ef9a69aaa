"""mlpipe: keep a tabular model trained, checked, deployed and watched with Airflow 3 and MLflow."""

__version__ = "0.1.0"
