"""
Airflow training DAGs, one per pipeline spec in `dags/pipelines/*.yaml` (`<name>_training`).

A second model is a second YAML file. Each DAG runs ingest → validate → split →
validate split → train → analyze → register; see the DAG's own docs for its data,
schedule and promotion thresholds. A spec with an error fails this file's import
with the file and field named (Browse ▸ DAG import errors).
"""

from pathlib import Path

from mlpipe.orchestration.factory import training_dags

globals().update(training_dags(Path(__file__).parent / "pipelines"))
