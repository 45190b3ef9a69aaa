"""The Airflow side of mlpipe: DAG factory and step runtimes. Import-light by rule:
nothing here imports pandas, xgboost, great_expectations or mlflow."""
