"""The shared vocabulary at the bottom of the package: errors, settings, URLs, the spec and the step names.

Nothing here imports another mlpipe package; every other package may import it.
"""
