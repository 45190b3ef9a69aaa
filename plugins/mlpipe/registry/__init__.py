"""MLflow as the system of record: tracking, the registry's names (aliases, tags), the promotion gate
and rollback. Imports :mod:`mlpipe.model` and below."""
