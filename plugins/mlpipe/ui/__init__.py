"""The ops view inside the Airflow UI: the Models page, rollback and a metrics endpoint.

- :mod:`mlpipe.ui.app`: the FastAPI app the api-server mounts at :data:`mlpipe.core.urls.URL_PREFIX`
  (the Models page, the artifact route, rollback, ``/metrics``);
- :mod:`mlpipe.ui.plugin`: the AirflowPlugin that mounts it and adds the *Models* nav entry.

The step tasks' extra links (MLflow run, reports, model version) belong to the operators:
:mod:`mlpipe.orchestration.links`. Importing this package and :mod:`mlpipe.ui.plugin` is cheap: every
Airflow process loads the plugin. FastAPI, Jinja2, MLflow and prometheus_client are imported
only when the api-server first serves a request of the app.
"""
