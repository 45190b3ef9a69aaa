"""
Airflow DAGs of every pipeline spec in `dags/pipelines/*.yaml`: `<name>_training` and `<name>_scoring`.

A second model is a second YAML file. Training runs ingest → validate → split →
validate split → train → analyze → register; scoring scores a batch with the
champion. See each DAG's own docs for its data, schedule and thresholds. A spec
with an error fails this file's import with the file and field named
(Browse ▸ DAG import errors).
"""

from pathlib import Path

from mlpipe.orchestration.factory import pipeline_dags

globals().update(pipeline_dags(Path(__file__).parent / "pipelines"))
