"""--processes N: the same load as N shard processes on this machine, results merged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

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

# The parent alone judges, saves and reports the merged results; each child is one shard.
PARENT_ONLY = {"processes", "moodle_dir", "output", "baseline", "rerun", "report", "export_csv", "export_junit",
               "shard", "progress", "quiet",
               "shard_process"}


def run_processes(count: int, child_argv: list) -> tuple[Results | None, int | None, int | None, list]:
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

        def forward(signum, _frame):
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
