"""A run that has ended, as its results document: what the scheduler measured, written in
the saved form ``results.model`` owns and reads back."""

from __future__ import annotations

import platform
import socket
from typing import TYPE_CHECKING

from moodleload import __version__
from moodleload.config import CALL_ROW
from moodleload.results.model import RESULTS_FORMAT, Results
from moodleload.shards import start_at_text

if TYPE_CHECKING:
    from moodleload.load.scheduler import LoadRun


def build_document(run: LoadRun, argv: list, config_sha256: str) -> Results:
    """The results of a run that has ended."""
    return Results(_run_document(run, argv, config_sha256))


def _run_document(run: LoadRun, argv: list, config_sha256: str) -> dict:
    settings = run.settings
    recorder = run.recorder
    return {
        "format": RESULTS_FORMAT,
        "tool": "moodle_load.py",
        "metadata": {
            "version": __version__,
            "argv": argv,
            "started_at": run.started_at.isoformat(timespec="seconds") if run.started_at else None,
            "target": run.config.base_url,
            "config_sha256": config_sha256,
            "seed": settings.seed,
            "rpm": settings.rpm / settings.shard[1],
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
            "measured_seconds": round(run.measured_seconds, 3),
            "blocks": settings.blocks,
            "block_seconds": run.block_seconds,
            "concurrency": run.effective_concurrency,
            "http_client": settings.http_client,
            "shards": [f"{settings.shard[0]}/{settings.shard[1]}"],
            "interrupted": run.interrupted_by is not None,
            "host": socket.gethostname(),
            "python": platform.python_version(),
            **({} if settings.start_at is None else {
                "start_at": start_at_text(settings.start_at),
                "start_offsets_s": {} if run.start_offset_s is None else {
                    f"{settings.shard[0]}/{settings.shard[1]}": round(run.start_offset_s, 4)}}),
        },
        "machine": run.machine,
        "logins": {"ok": run.logins_ok, "failed": dict(run.login_failures),
                   "relogins": sum(s.relogins for s in run.sessions), "retried": run.login_retries},
        "generator": {
            "cpu_seconds": round(run.cpu_seconds, 3),
            "run_seconds": round(run.run_seconds, 3),
            "lateness_ms": recorder.lateness.to_dict(),
            "loop_lag_ms": recorder.loop_lag.to_dict(),
            "tokens_waited_for_worker": recorder.tokens_waited,
            "tokens_dropped": recorder.tokens_dropped,
            "tokens_unsent": recorder.tokens_unsent,
            "sent_in_window": recorder.sent_in_window,
            "due_in_window": recorder.due_in_window,
            "paused_s": round(recorder.paused_seconds, 3),
            "request_errors_suppressed": recorder.request_errors_suppressed,
        },
        "urls": {name: stats.to_dict() for name, stats in recorder.urls.items()},
        "row_kinds": row_kinds(run.config, recorder.urls),
        **({"statements": run.window_watch.result}
           if run.window_watch is not None and run.window_watch.result is not None else {}),
        **({"metrics": run.metrics_scraper.result()} if run.metrics_scraper is not None else {}),
        # What the journeys wrote (e.g. replies posted) in the measured window: two runs that
        # did different work are not the same load.
        "work_done": dict(sorted(recorder.work_done.items())),
        "timeline": {"seconds": run.timeline_seconds,
                     "points": [point.to_dict(index, run.timeline_seconds)
                                for index, point in sorted(recorder.timeline.items())]},
    }


def row_kinds(config, names) -> dict:
    """What each row is (page, journey step, web-service call); a row the config does not
    name was a page's browser call, first seen during the run."""
    kinds = config.row_kinds()
    return {name: kinds.get(name, CALL_ROW) for name in names}
