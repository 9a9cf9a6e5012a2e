"""Judging: whether a commit made the site slower, and how sure that is.

Rooms: ``stats`` (distributions and tests, pure), ``work`` (what a commit changes: Moodle's
CPU time per request, DB reads; the measure each page is judged by), ``compare`` (one run
against one run, page by page), ``runs`` and ``runcompare`` (several runs a side: the
run-to-run spread, pooled ratios), ``baseline`` (a commit's runs judged against its baseline,
whichever way the runs allow, with the statements that changed), ``statements`` (which statements changed, per request),
``pairs`` (alternating pairs that confirm a culprit), ``sizing`` (how many runs a bisect
step needs), ``verdict`` (the exit status ``git bisect run`` reads, and why).
"""
