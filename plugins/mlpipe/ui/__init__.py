"""The ops view inside the Airflow UI: step links, the Models page, rollback and a metrics endpoint.

- :mod:`mlpipe.ui.links`: operator extra links of the step tasks (MLflow run, validation and
  monitoring reports, model version), computed on the worker from the task's XCom result;
- :mod:`mlpipe.ui.app`: the FastAPI app the api-server mounts at :data:`URL_PREFIX` (the Models
  page, the artifact route, rollback, ``/metrics``);
- :mod:`mlpipe.ui.plugin`: the AirflowPlugin that mounts it and adds the *Models* nav entry.

Importing this package (and :mod:`mlpipe.ui.links`, :mod:`mlpipe.ui.plugin`) is cheap: every
Airflow process loads the plugin. FastAPI, Jinja2, MLflow and prometheus_client are imported
only when the api-server first serves a request of the app.
"""

URL_PREFIX = "/mlpipe"
ARTIFACT_ROUTE = "/artifact"
