"""The real-time model server (``mlpipe serve``): FastAPI + uvicorn in front of ``models:/<name>@champion``.

- :mod:`mlpipe.serving.loader`: the served model versions (``champion``, ``challenger``), loaded from the
  MLflow registry, request validation and feature encoding, atomic reloads.
- :mod:`mlpipe.serving.capture`: sampled request/response capture to the artifact store, in batches.
- :mod:`mlpipe.serving.app`: the HTTP API, metrics, auth, A/B and shadow routing; :func:`~mlpipe.serving.app.serve`.
- :mod:`mlpipe.serving.limits`: the request body limit (413), enforced before the body is read.
- :mod:`mlpipe.serving.openapi`: the OpenAPI schema, with the champion's request body and the error answers.

These modules exist only for the server process, so they import their heavy dependencies at the top.
"""
