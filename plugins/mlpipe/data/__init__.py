"""Tabular data: reading datasets, feature kinds and matrices, PII masking, unique ids, the reference
profile and synthetic loans. Imports :mod:`mlpipe.store` and :mod:`mlpipe.core`."""
