"""Where a pipeline keeps its files: the artifact store (one backend per URI scheme), run folders,
leases and the audit log. Imports only :mod:`mlpipe.core`."""
