"""The typed sections of a results document (metadata, logins, generator, each row's
record, the timeline), each read from its saved form; ``model.Results`` holds them."""

from __future__ import annotations

from dataclasses import dataclass, field

from moodleload.results.histogram import FineHistogram, Histogram, counter_median
from moodleload.site.moodle import TICK_MS


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
