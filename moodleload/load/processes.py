"""--processes N: the same load as N shard processes on this machine, results merged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from types import FrameType

from moodleload.exits import (
    EXIT_BAD,
    EXIT_CANNOT_JUDGE,
    EXIT_FAULT,
    EXIT_GOOD,
    EXIT_USAGE,
    STOPPING_SIGNALS,
    exit_for_signal,
)
from moodleload.needs import IMPORT_ROOT
from moodleload.results.model import Results, load_document

_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from moodleload.cli import main; "
          "sys.exit(main(sys.argv[2:]))")

# What a child is given: the load it sends, where it reads settings from, and the limits of
# its own shard's verdict.  An allow-list, as pyperf builds its worker command: an option added
# later reaches no child until it is named here (tests/test_options.py fails until every option
# is either here or known to be the parent's).  The parent alone judges against a baseline,
# saves, reports and exports the merged results; the export formats that a child may write
# come from their exporters (options.child_options).
CHILD_OPTIONS = frozenset({
    # the load
    "config", "rpm", "duration", "concurrency", "warmup", "drain", "blocks", "seed", "start_at",
    "http_client", "insecure", "login_timeout", "request_timeout", "max_body_mb",
    # where the site's settings and the database's statistics come from
    "moodle_config", "db_type", "db_host", "db_port", "db_socket", "db_name", "db_user", "db_pass_file",
    "metrics", "query_stats", "in_bisect",
    # the limits of the shard's own verdict
    "judge", "alpha", "max_regression", "max_db_reads_increase", "max_other_cpu", "max_failure_rise",
    "max_p95_ms", "max_p99_ms", "max_error_rate", "min_rpm_ratio", "cannot_judge_error_rate",
    "max_login_failures",
})


def run_processes(count: int, child_argv: list[str]) -> tuple[Results | None, int | None, int | None, list[str]]:
    """Run ``count`` shards of ``child_argv``; returns (merged results, the exit status of a
    child's usage mistake or fault, the status of the signal that interrupted them, what went
    wrong with shards that died: a dead shard silently lowers the rate, so the run cannot judge)."""
    with tempfile.TemporaryDirectory(prefix="moodle-load-") as tmp:
        outputs = [os.path.join(tmp, f"shard-{k}.json") for k in range(1, count + 1)]
        children = [subprocess.Popen([sys.executable, "-c", _CHILD, IMPORT_ROOT, *child_argv,
                                      "--shard", f"{k}/{count}", "--output", outputs[k - 1],
                                      "--progress", "0", "--quiet", "--shard-process"])
                    for k in range(1, count + 1)]
        interrupted = []

        def forward(signum: int, _frame: FrameType | None) -> None:
            interrupted.append(signum)
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        previous = {signum: signal.signal(signum, forward) for signum in STOPPING_SIGNALS}
        try:
            codes = [child.wait() for child in children]
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if any(code == EXIT_USAGE for code in codes):
            return None, EXIT_USAGE, None, []
        if any(code == EXIT_FAULT for code in codes):
            return None, EXIT_FAULT, None, []
        stopped = exit_for_signal(interrupted[0]) if interrupted else None
        expected = {EXIT_GOOD, EXIT_BAD, EXIT_CANNOT_JUDGE} | ({stopped} if stopped else set())
        dead = []
        documents = []
        for shard, (code, path) in enumerate(zip(codes, outputs, strict=True), 1):
            if code < 0:
                dead.append(f"shard {shard}/{count} was killed by {signal.Signals(-code).name}")
            elif code not in expected:
                dead.append(f"shard {shard}/{count} ended with exit status {code}")
            elif not os.path.exists(path):
                dead.append(f"shard {shard}/{count} saved no results")
            else:
                documents.append(load_document(path))
        if not documents:
            return None, None, stopped, dead
        return Results.merge(documents), None, stopped, dead
