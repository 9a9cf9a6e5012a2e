"""Results as data: the one JSON document a run is saved as, written, read and checked here.

Rooms: ``model`` (``Results``, the saved form both ways), ``sections`` (its typed sections:
metadata, logins, generator, each row's record, the timeline), ``check`` (a saved document
checked whole before anything reads it), ``merge`` (shards of one run as one run, their
metadata checked), ``summary`` (counts and percentiles computed from the histograms, pure),
``histogram`` (the log-bucketed latency histograms), ``statements`` and ``metrics`` (the
saved query-statistics and exporter sections, and their checks), ``comparison`` (a saved
comparison of two sets of runs, checked field by field).
"""
