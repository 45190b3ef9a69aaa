"""Watching a champion: drift, quality from late outcomes, scored windows, the breach judgement and the
HTML report. Imports :mod:`mlpipe.model` and below."""
