"""The load: one run of the open-loop schedule against the site.

Rooms: ``plan`` (the timeline's arithmetic and the seeded draws, pure), ``clock`` (real and
simulated time), ``scheduler`` (logins, then tokens released on the timeline to worker
sessions), ``journeys`` (multi-step user journeys, one step per timeline position, run in the
context the steps wing's kinds need),
``recording`` (what each answer adds to the run's histograms), ``document`` (the ended run
as its results document), ``machine`` (the load machine beside the run), ``metrics``
(Prometheus exporters scraped during the run), ``statements`` (the database's statement
statistics, snapshotted around the measured window), ``processes`` (``--processes N``:
shards as child processes, merged).
"""
