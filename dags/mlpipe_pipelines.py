"""
Airflow DAGs of each pipeline spec in `dags/pipelines/*.yaml`: `<name>_training`, `_scoring` and `_monitoring`.

A second model is a second YAML file. Training runs ingest → validate → split → validate split → tune
(parallel trials) → train → analyze → register → deploy; scoring scores a batch with the champion;
monitoring measures the champion's drift and quality and, on a breach, alerts and retrains. See each
DAG's own docs for its data, schedule and thresholds.

The DAGs are chained by data: each pipeline's assets (`<name>.training_data`, `.incoming_batch`,
`.champion`, `.predictions`, `.monitoring_report`; Airflow ▸ Assets) are the tasks' inlets and outlets, and
a spec's `on_assets` runs a DAG on their events (alone or with its cron schedule, whichever comes first).

A broken spec hides no other pipeline: this file builds the DAGs of every spec that builds and leaves the
others out, and `mlpipe_spec_errors.py` fails to import with one line per broken spec naming its file and
field (Browse ▸ DAG import errors, `airflow dags list-import-errors`), e.g.
`churn.yaml: target.column: Field required`. The error has a file of its own because Airflow keys an
import error to a Python DAG file and marks every DAG of that file stale: raised here, it would hide
every pipeline.
"""

from pathlib import Path

from mlpipe.orchestration.factory import pipeline_dags

globals().update(pipeline_dags(Path(__file__).parent / "pipelines"))
