#!/usr/bin/env python3
"""Open-loop load generator for a Moodle site, made for ``git bisect run``.

Logs test users in through Moodle's logintoken form, then releases requests at a
target rate on an absolute timeline (a token bucket that a slow server cannot slow
down) to worker tasks that hold one user session each, and reports what happened:
observed rate, successes and failures by kind, latency percentiles per URL, and the
counters of Moodle's performance footer.  The exit status is a verdict bisect reads.

Usage:
    moodle_load.py --config config.json --rpm 600 --duration 600 [--concurrency 30]
                   [--warmup 30] [--seed 1] [--output run.json] [--baseline base.json]
                   [--max-p95-ms 800] [--max-regression 10] [--insecure]
    moodle_load.py --compare base.json new.json       # judge two saved runs, no load
    moodle_load.py --merge a.json b.json --output all.json   # add runs (shards) together
    moodle_load.py --report report.html run.json      # the HTML report of a saved run

Exit status:
    0    good: no gate breached, no regression against the baseline
    1    bad: a gate breached or a regression found
    125  cannot judge this commit (site unreachable, no login succeeded, most requests
         failed, or the comparison is inconclusive): git bisect skips it
    128  usage or config mistake: git bisect stops instead of marking a commit bad
    129  hung up (SIGHUP), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); the report
         of what was measured is still printed and saved
    200  a fault of the tool itself, or results that could not be saved where asked:
         git bisect stops (what was measured is saved to a file the message names)

Latency, in milliseconds, is measured two ways.  *Response time* runs from the moment
the schedule intended the request to start (so time spent waiting for a free worker
or session counts, as in wrk2; this is ``latency_ms_*``).  *Service time* runs from
sending the request to the last byte of the body (``service_ms_*``).  Both count
successful requests; failures are counted by kind.
"""

import sys

from moodleload.cli import main

if __name__ == "__main__":
    sys.exit(main())
