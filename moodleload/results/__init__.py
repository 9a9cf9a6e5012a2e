"""Results as data: the one JSON document a run is saved as, written, read and checked here.

Rooms: ``model`` (``Results``: typed sections only, the saved form both ways), ``sections``
(its typed sections: metadata, logins, generator, each row's record, the timeline, the load
machine; each reads and writes its saved form and adds itself to another shard's),
``check`` (a saved document checked whole before anything reads it), ``merge`` (what shards
must share to be one run, and the machine they shared), ``summary`` (counts and
percentiles computed from the histograms, pure), ``histogram`` (the log-bucketed latency
histograms), ``statements`` and ``metrics`` (the saved query-statistics and exporter
sections, their checks and typed forms), ``comparison`` (a saved comparison of two sets of
runs, checked field by field, and its typed rows).
"""
