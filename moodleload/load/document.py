"""A run that has ended, as its results: what the scheduler measured, in the typed sections
``results.model`` owns (and saves)."""

from __future__ import annotations

import platform
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from moodleload import __version__
from moodleload.config import CALL_ROW, Config
from moodleload.load.recording import settled
from moodleload.results.model import Results
from moodleload.results.sections import Generator, Logins, Metadata, Timeline
from moodleload.shards import start_at_text

if TYPE_CHECKING:
    from moodleload.load.scheduler import LoadRun


def build_document(run: LoadRun, argv: list[str], config_sha256: str) -> Results:
    """The results of a run that has ended, as typed sections."""
    settings = run.settings
    recorder = run.recorder
    shard = f"{settings.shard[0]}/{settings.shard[1]}"
    metadata = Metadata(
        rpm=settings.rpm / settings.shard[1], duration_s=settings.duration, warmup_s=settings.warmup,
        measured_seconds=round(run.measured_seconds, 3), blocks=settings.blocks,
        concurrency=run.effective_concurrency, seed=settings.seed, config_sha256=config_sha256,
        interrupted=run.interrupted_by is not None, shards=(shard,), block_seconds=run.block_seconds,
        http_client=settings.http_client, target=run.config.base_url,
        started_at=run.started_at.isoformat(timespec="seconds") if run.started_at else None,
        version=__version__, argv=tuple(argv), host=socket.gethostname(), python=platform.python_version(),
        start_at=None if settings.start_at is None else start_at_text(settings.start_at),
        start_offsets_s=() if settings.start_at is None or run.start_offset_s is None
        else ((shard, round(run.start_offset_s, 4)),))
    generator = Generator(
        cpu_seconds=round(run.cpu_seconds, 3), run_seconds=round(run.run_seconds, 3),
        lateness_ms=settled(recorder.lateness), loop_lag_ms=settled(recorder.loop_lag),
        tokens_waited_for_worker=recorder.tokens_waited,
        tokens_dropped=recorder.tokens_dropped, tokens_unsent=recorder.tokens_unsent,
        sent_in_window=recorder.sent_in_window, due_in_window=recorder.due_in_window,
        paused_s=round(recorder.paused_seconds, 3), request_errors_suppressed=recorder.request_errors_suppressed)
    return Results(
        metadata, Logins(run.logins_ok, sum(s.relogins for s in run.sessions), run.login_retries,
                         dict(run.login_failures)),
        generator, {name: stats.record() for name, stats in recorder.urls.items()},
        row_kinds=row_kinds(run.config, recorder.urls),
        # What the journeys wrote (e.g. replies posted) in the measured window: two runs that
        # did different work are not the same load.
        work_done=dict(sorted(recorder.work_done.items())),
        timeline=Timeline(run.timeline_seconds, tuple(point.record(index, run.timeline_seconds)
                                                      for index, point in sorted(recorder.timeline.items()))),
        machine=run.machine, metrics=None if run.metrics_scraper is None else run.metrics_scraper.result(),
        statements=None if run.window_watch is None else run.window_watch.result)


def row_kinds(config: Config, names: Iterable[str]) -> dict[str, str]:
    """What each row is (page, journey step, web-service call); a row the config does not
    name was a page's browser call, first seen during the run."""
    kinds = config.row_kinds()
    return {name: kinds.get(name, CALL_ROW) for name in names}
