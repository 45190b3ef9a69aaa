"""Great Expectations suites built from a spec and its profile, run batch by batch with one merged
result, and the one-line failures a user reads. Imports :mod:`mlpipe.data` and below."""
