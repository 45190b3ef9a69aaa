"""
Airflow import errors of the broken pipeline specs in `dags/pipelines/*.yaml`; this file defines no DAGs.

`mlpipe_pipelines.py` leaves out the DAGs of a spec that does not build (an invalid field, a pipeline
name another spec has, a value Airflow refuses). This file then fails to import with one line per such
spec, naming its file and field, so the mistake shows in Browse ▸ DAG import errors while the other
pipelines' DAGs keep running; it imports cleanly once every spec builds.
"""

from pathlib import Path

from mlpipe.core.spec import SpecError
from mlpipe.orchestration.factory import spec_errors

if errors := spec_errors(Path(__file__).parent / "pipelines"):
    raise SpecError("\n".join(errors))
