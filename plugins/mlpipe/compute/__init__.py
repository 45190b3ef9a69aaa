"""Where work runs: the node pools a step's pod is placed on and training on a Dask cluster.
Imports :mod:`mlpipe.data` and below."""
