"""Airflow's entry to the mlpipe ops view: the plugin loader imports the top-level files of the plugins folder.

``plugins/.airflowignore`` keeps the loader out of ``mlpipe/`` (the package is imported, not scanned
file by file); the plugin itself lives in :mod:`mlpipe.ui.plugin`.
"""

from mlpipe.ui.plugin import MlpipeUiPlugin

__all__ = ["MlpipeUiPlugin"]
