"""The results of a run, as a typed model that owns its saved form (pyperf's lesson: the
data model owns its JSON).  ``Results.from_dict`` checks a saved document whole
(resultcheck) and builds the typed sections; ``to_dict`` gives it back with its summary;
``Results.merge`` adds shards after checking they ran one load; ``summary`` is computed
once.  The reports, the comparison and the verdict read these fields, never the keys."""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import socket
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from . import __version__
from .comparison import Comparison
from .config import CALL_ROW, PAGE_ROW
from .exits import UsageError
from .files import read_json, write_json_atomically
from .histogram import FineHistogram, Histogram, counter_median
from .moodle import TICK_MS
from .plan import start_at_text
from .resultcheck import document_problem
from .resultmerge import merge_raw
from .resultsummary import Summary, summarize

if TYPE_CHECKING:
    from .scheduler import LoadRun

# Format history (a reader refuses formats it does not know):
#   1  moodle_load.py 0.2-0.4: metadata, logins, generator, per-URL counts, histograms of
#      response and service time, per-block service histograms, footer tallies, timeline.
#      0.3 added metadata.http_client; 0.4 dropped metadata.moodle_release (it was
#      always null), added logins.retried and the urls' blocks_service_fine_ms (each
#      block's service times again in 0.2 % buckets).  0.5 added work_done (what the
#      journeys' successful writes counted; absent or {} without journeys) and rows for
#      journey steps and web-service calls among the urls.  0.7 added generator.due_in_window
#      and generator.paused_s (what was asked, and how long the generator stood still).
#      0.7 also added statements (--query-stats: per-statement deltas of the window) and
#      metrics (--metrics: the servers' exporters as a timeline).
#      0.7 also added row_kinds (page, journey step or web-service call: the reports' headings),
#      the footer tallies cpu_ticks and cpu_unreadable and the urls' blocks_cpu_ticks (the
#      PHP worker's CPU time per answer, per block).
#      Readers take all of them.
RESULTS_FORMAT = 1

DERIVED_KEYS = ("summary", "comparison")  # recomputed by readers: not part of what a run measured


@dataclass(frozen=True)
class MoodleUnderTest:
    """What --moodle-dir recorded of the Moodle under test (moodletree.describe)."""

    release: str | None = None
    version: str | None = None
    branch: str | None = None
    layout: str | None = None  # "5.1+: web code under public/" or "up to 5.0: code at the top"
    commit: str | None = None
    uncommitted_changes: bool | None = None

    @classmethod
    def from_dict(cls, raw: dict | None) -> MoodleUnderTest | None:
        if not raw:
            return None
        return cls(raw.get("release"), raw.get("version"), raw.get("branch"), raw.get("layout"), raw.get("commit"),
                   raw.get("uncommitted_changes"))

    @property
    def label(self) -> str:
        """One line naming it: release, version and commit."""
        parts = [self.release or "release unknown"]
        if self.version:
            parts.append(f"version {self.version}")
        if self.commit:
            parts.append(f"commit {self.commit[:12]}" + (" with uncommitted changes" if self.uncommitted_changes
                                                         else ""))
        return ", ".join(parts)


@dataclass(frozen=True)
class Metadata:
    """What load was run, where and when: what a merge and a comparison check first."""

    rpm: float
    duration_s: float
    warmup_s: float
    measured_seconds: float
    blocks: int
    concurrency: int
    seed: int
    config_sha256: str
    interrupted: bool
    shards: tuple[str, ...] = ("1/1",)
    block_seconds: float | None = None
    http_client: str | None = None
    target: str | None = None
    started_at: str | None = None
    version: str | None = None
    argv: tuple[str, ...] = ()
    host: str | None = None
    python: str | None = None
    moodle: MoodleUnderTest | None = None  # --moodle-dir, else None
    start_at: str | None = None  # --start-at (UTC), where every shard opened its schedule
    start_offsets_s: tuple[tuple[str, float], ...] = ()  # per shard: how late it opened it

    @classmethod
    def from_dict(cls, raw: dict) -> Metadata:
        return cls(raw["rpm"], raw["duration_s"], raw["warmup_s"], raw["measured_seconds"], raw["blocks"],
                   raw["concurrency"], raw["seed"], raw["config_sha256"], raw["interrupted"], tuple(raw["shards"]),
                   raw.get("block_seconds"), raw.get("http_client"), raw.get("target"), raw.get("started_at"),
                   raw.get("version"), tuple(raw.get("argv") or ()), raw.get("host"), raw.get("python"),
                   MoodleUnderTest.from_dict(raw.get("moodle")), raw.get("start_at"),
                   tuple(sorted((raw.get("start_offsets_s") or {}).items())))


@dataclass(frozen=True)
class Logins:
    ok: int
    relogins: int = 0
    retried: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # why -> how many users

    @classmethod
    def from_dict(cls, raw: dict) -> Logins:
        return cls(raw["ok"], raw["relogins"], raw.get("retried", 0), dict(raw["failed"]))


@dataclass(frozen=True)
class Generator:
    """How the generator itself did: its CPU, how late it ran, what it could not send."""

    cpu_seconds: float = 0.0
    run_seconds: float = 0.0
    lateness_ms: Histogram = field(default_factory=Histogram)
    loop_lag_ms: Histogram = field(default_factory=Histogram)
    tokens_waited_for_worker: int = 0
    tokens_dropped: int = 0
    tokens_unsent: int = 0
    sent_in_window: int = 0
    due_in_window: int | None = None  # None in results before 0.7
    paused_s: float = 0.0
    request_errors_suppressed: int = 0

    @classmethod
    def from_dict(cls, raw: dict) -> Generator:
        return cls(raw["cpu_seconds"], raw["run_seconds"], Histogram.from_dict(raw.get("lateness_ms")),
                   Histogram.from_dict(raw.get("loop_lag_ms")), raw["tokens_waited_for_worker"],
                   raw["tokens_dropped"], raw["tokens_unsent"], raw["sent_in_window"], raw.get("due_in_window"),
                   raw.get("paused_s", 0.0), raw["request_errors_suppressed"])

    @property
    def cores_used(self) -> float | None:
        return self.cpu_seconds / self.run_seconds if self.run_seconds else None


def tally_mean_ms(tally: dict[str, int]) -> float | None:
    """The mean of a tally of CPU ticks, in ms (None when empty)."""
    count = sum(tally.values())
    if not count:
        return None
    return sum(float(ticks) * times for ticks, times in tally.items()) * TICK_MS / count


@dataclass(frozen=True)
class UrlRecord:
    """One row's recorded results (a page, a journey step or a web-service call)."""

    requests: int
    success: int
    failure: int
    failures: dict[str, int] = field(default_factory=dict)
    redirects: dict[str, int] = field(default_factory=dict)
    response_ms: Histogram = field(default_factory=Histogram)  # every answer
    service_ms: Histogram = field(default_factory=Histogram)  # successful answers, from the actual send
    blocks_service_ms: tuple[Histogram, ...] = ()  # one per time block
    blocks_service_fine_ms: tuple[Histogram, ...] | None = None  # the same in 0.2 % buckets (0.4+)
    footer_tallies: dict[str, dict[str, int]] = field(default_factory=dict)  # db_reads: {"33": 58, ...}
    footer_times: dict[str, Histogram] = field(default_factory=dict)  # server_time_ms, ...
    blocks_cpu_ticks: tuple[dict[str, int], ...] | None = None  # the worker's CPU ticks, tallied per block (0.7+)

    @classmethod
    def from_dict(cls, raw: dict) -> UrlRecord:
        fine = raw.get("blocks_service_fine_ms")
        cpu_blocks = raw.get("blocks_cpu_ticks")
        footer = raw["footer"]
        return cls(raw["requests"], raw["success"], raw["failure"], dict(raw["failures"]), dict(raw["redirects"]),
                   Histogram.from_dict(raw["response_ms"]), Histogram.from_dict(raw["service_ms"]),
                   tuple(Histogram.from_dict(block) for block in raw["blocks_service_ms"]),
                   None if fine is None else tuple(FineHistogram.from_dict(block) for block in fine),
                   {name: dict(value) for name, value in footer.items() if not name.endswith("_ms")},
                   {name: Histogram.from_dict(value) for name, value in footer.items()
                    if name.endswith("_ms") and value},
                   None if cpu_blocks is None else tuple(dict(block) for block in cpu_blocks))

    def footer_median(self, name: str) -> float | None:
        """The median of a footer tally (db_reads, ...), None where no page showed one."""
        return counter_median(self.footer_tallies.get(name) or {})

    @property
    def footers(self) -> int:
        """How many answers carried Moodle's performance footer (every counter is one tally)."""
        return max((sum(tally.values()) for tally in self.footer_tallies.values()), default=0)

    @property
    def cpu_requests(self) -> int:
        """Answers whose footer gave a readable CPU time."""
        return sum((self.footer_tallies.get("cpu_ticks") or {}).values())

    @property
    def cpu_unreadable(self) -> int:
        """Answers whose footer's CPU line could not be true (moodle.cpu_ticks)."""
        return sum((self.footer_tallies.get("cpu_unreadable") or {}).values())

    @property
    def cpu_ms_mean(self) -> float | None:
        """The worker's mean CPU time per answer, ms: the work the page did.  A mean, not a
        median: each answer is rounded to a 10 ms tick, and only the mean of many is finer."""
        return tally_mean_ms(self.footer_tallies.get("cpu_ticks") or {})

    def block_cpu_means(self, minimum_count: int = 3) -> list[float]:
        """Per time block, the mean CPU time per answer (ms), for blocks with enough answers."""
        means = [tally_mean_ms(block) for block in self.blocks_cpu_ticks or ()
                 if sum(block.values()) >= minimum_count]
        return [value for value in means if value is not None]

    @property
    def block_histograms(self) -> tuple[Histogram, ...]:
        """Each block's service times, finest recorded first."""
        return self.blocks_service_fine_ms if self.blocks_service_fine_ms is not None else self.blocks_service_ms


@dataclass(frozen=True)
class TimelinePoint:
    """One slice (``Timeline.seconds`` long) of the measured window."""

    t: float
    sent: int
    ok: int
    cpu_seconds: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)
    response_ms: Histogram = field(default_factory=Histogram)
    service_ms: Histogram = field(default_factory=Histogram)

    @classmethod
    def from_dict(cls, raw: dict) -> TimelinePoint:
        return cls(raw["t"], raw["sent"], raw["ok"], raw.get("cpu_seconds", 0.0), dict(raw["failures"]),
                   Histogram.from_dict(raw["response_ms"]), Histogram.from_dict(raw["service_ms"]))


@dataclass(frozen=True)
class Timeline:
    seconds: float = 1.0
    points: tuple[TimelinePoint, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict) -> Timeline:
        return cls(raw["seconds"], tuple(TimelinePoint.from_dict(point) for point in raw["points"]))


class Results:
    """One run's results (or a merge of its shards), checked when built."""

    def __init__(self, raw: dict, comparison: Comparison | None = None):
        """``raw``: a document ``document_problem`` found nothing wrong with; use from_dict."""
        self._raw = {key: value for key, value in raw.items() if key not in DERIVED_KEYS}
        self.metadata = Metadata.from_dict(raw["metadata"])
        self.logins = Logins.from_dict(raw["logins"])
        self.generator = Generator.from_dict(raw["generator"])
        self.urls = {name: UrlRecord.from_dict(url) for name, url in raw["urls"].items()}
        self.row_kinds: dict[str, str] = dict(raw.get("row_kinds", {}))
        self.work_done: dict[str, int] = dict(raw.get("work_done") or {})
        self.timeline = Timeline.from_dict(raw.get("timeline", {"seconds": 1.0, "points": []}))
        self.machine: dict | None = raw.get("machine")  # machine.summarise's table (the load machine beside the run)
        self.metrics: dict | None = raw.get("metrics")  # metrics.py's format (--metrics)
        self.statements: dict | None = raw.get("statements")  # statements.py's format (--query-stats)
        self.comparison = comparison  # compare's verdict against a baseline, where one was judged

    @classmethod
    def from_dict(cls, raw, where: str = "results") -> Results:
        if not isinstance(raw, dict) or raw.get("tool", "moodle_load.py") != "moodle_load.py" or "urls" not in raw:
            raise UsageError(f"{where} is not a moodle_load.py results file (format {RESULTS_FORMAT})")
        if raw.get("format") != RESULTS_FORMAT:
            raise UsageError(f"{where} has format {raw.get('format')!r}; this moodle_load.py "
                             f"reads format {RESULTS_FORMAT}")
        problem = document_problem(raw)
        if problem:
            raise UsageError(f"{where} is damaged: {problem}")
        comparison = raw.get("comparison")
        return cls(raw, None if comparison is None else Comparison.from_dict(comparison, f"{where}: its comparison"))

    def to_dict(self) -> dict:
        """The saved form: what was measured, its summary, and the comparison where there is one."""
        document = copy.deepcopy(self._raw)
        document["summary"] = self.summary.to_dict()
        if self.comparison is not None:
            document["comparison"] = self.comparison.to_dict()
        return document

    @cached_property
    def summary(self) -> Summary:
        return summarize(self)

    def row_kind(self, name: str) -> str:
        return self.row_kinds.get(name, PAGE_ROW)  # results before 0.7 know only pages

    def with_moodle(self, moodle: dict) -> Results:
        """These results with the Moodle under test recorded (--moodle-dir)."""
        raw = copy.deepcopy(self._raw)
        raw["metadata"]["moodle"] = moodle
        return Results(raw, self.comparison)

    @classmethod
    def merge(cls, shards: list[Results]) -> Results:
        """The shards of one run as one run; refuses runs of different loads or a shard twice."""
        return cls(merge_raw([shard._raw for shard in shards]))

    def identity(self) -> str:
        """What makes a run that run: a digest of all it measured.  Two files with one
        identity are one run (a copy, or one file named twice), and count once."""
        return hashlib.sha256(json.dumps(self._raw, sort_keys=True).encode()).hexdigest()


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


def load_document(path: str) -> Results:
    """A saved results file, checked whole: every field a comparison, merge or report reads
    is there with its type, so a bad file is one line now, not a crash later."""
    try:
        document = read_json(path, "results")
    except FileNotFoundError:
        raise UsageError(f"results: {path} not found") from None
    return Results.from_dict(document, f"results: {path}")


def check_distinct(documents: dict) -> None:
    """Refuse runs given twice (``documents``: label -> Results): each run is one
    observation of the run-to-run spread, and a copy would shrink it to nothing."""
    seen: dict = {}
    for label, results in documents.items():
        identity = results.identity()
        if identity in seen:
            started = results.metadata.started_at or "at an unknown time"
            raise UsageError(f"{seen[identity]} and {label} are the same run (started {started}): each run "
                             f"counts once; give each results file once, or record another run")
        seen[identity] = label


def save_document(path: str, results: Results) -> None:
    write_json_atomically(path, results.to_dict(), indent=1)
