"""The typed sections of a results document (metadata, logins, generator, each row's
record, the timeline), each read from its saved form; ``model.Results`` holds them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from moodleload.footer import FooterCounter, FooterTime
from moodleload.results.histogram import FineHistogram, Histogram, counter_median
from moodleload.site.moodle import TICK_MS
from moodleload.site.moodletree import MoodleUnderTest


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
    def from_dict(cls, raw: dict[str, Any]) -> Metadata:
        return cls(raw["rpm"], raw["duration_s"], raw["warmup_s"], raw["measured_seconds"], raw["blocks"],
                   raw["concurrency"], raw["seed"], raw["config_sha256"], raw["interrupted"], tuple(raw["shards"]),
                   raw.get("block_seconds"), raw.get("http_client"), raw.get("target"), raw.get("started_at"),
                   raw.get("version"), tuple(raw.get("argv") or ()), raw.get("host"), raw.get("python"),
                   MoodleUnderTest.from_dict(raw.get("moodle")), raw.get("start_at"),
                   tuple(sorted((raw.get("start_offsets_s") or {}).items())))

    def to_dict(self) -> dict[str, Any]:
        saved: dict[str, Any] = {
            "version": self.version, "argv": list(self.argv), "started_at": self.started_at, "target": self.target,
            "config_sha256": self.config_sha256, "seed": self.seed, "rpm": self.rpm, "duration_s": self.duration_s,
            "warmup_s": self.warmup_s, "measured_seconds": self.measured_seconds, "blocks": self.blocks,
            "block_seconds": self.block_seconds, "concurrency": self.concurrency, "http_client": self.http_client,
            "shards": list(self.shards), "interrupted": self.interrupted, "host": self.host, "python": self.python}
        if self.start_at is not None:
            saved["start_at"] = self.start_at
            saved["start_offsets_s"] = dict(self.start_offsets_s)
        if self.moodle is not None:
            saved["moodle"] = self.moodle.to_dict()
        return saved

    def added(self, other: Metadata) -> Metadata:
        """Two shards of one run (merge checks that they are): their rates, workers and shards
        add up, the measured time is the longest, either interrupted interrupts the whole."""
        return replace(self, rpm=self.rpm + other.rpm, measured_seconds=max(self.measured_seconds,
                                                                            other.measured_seconds),
                       concurrency=self.concurrency + other.concurrency, shards=self.shards + other.shards,
                       interrupted=self.interrupted or other.interrupted,
                       start_offsets_s=tuple(sorted({**dict(self.start_offsets_s),
                                                     **dict(other.start_offsets_s)}.items())))


@dataclass(frozen=True)
class Logins:
    ok: int
    relogins: int = 0
    retried: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # why -> how many users

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Logins:
        return cls(raw["ok"], raw["relogins"], raw.get("retried", 0), dict(raw["failed"]))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": dict(self.failed), "relogins": self.relogins, "retried": self.retried}

    def added(self, other: Logins) -> Logins:
        return Logins(self.ok + other.ok, self.relogins + other.relogins, self.retried + other.retried,
                      added_tallies(self.failed, other.failed))


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
    def from_dict(cls, raw: dict[str, Any]) -> Generator:
        return cls(raw["cpu_seconds"], raw["run_seconds"], Histogram.from_dict(raw.get("lateness_ms")),
                   Histogram.from_dict(raw.get("loop_lag_ms")), raw["tokens_waited_for_worker"],
                   raw["tokens_dropped"], raw["tokens_unsent"], raw["sent_in_window"], raw.get("due_in_window"),
                   raw.get("paused_s", 0.0), raw["request_errors_suppressed"])

    def to_dict(self) -> dict[str, Any]:
        saved: dict[str, Any] = {
            "cpu_seconds": self.cpu_seconds, "run_seconds": self.run_seconds,
            "lateness_ms": self.lateness_ms.to_dict(), "loop_lag_ms": self.loop_lag_ms.to_dict(),
            "tokens_waited_for_worker": self.tokens_waited_for_worker, "tokens_dropped": self.tokens_dropped,
            "tokens_unsent": self.tokens_unsent, "sent_in_window": self.sent_in_window}
        if self.due_in_window is not None:
            saved["due_in_window"] = self.due_in_window
        saved["paused_s"] = self.paused_s
        saved["request_errors_suppressed"] = self.request_errors_suppressed
        return saved

    def added(self, other: Generator) -> Generator:
        """Two shards' generators: their CPU and counts add up, the run lasted the longest
        one's time; what was due is known for the whole only where every shard said."""
        both_due = None if self.due_in_window is None or other.due_in_window is None \
            else self.due_in_window + other.due_in_window
        return Generator(round(self.cpu_seconds + other.cpu_seconds, 3), max(self.run_seconds, other.run_seconds),
                         self.lateness_ms.added(other.lateness_ms), self.loop_lag_ms.added(other.loop_lag_ms),
                         self.tokens_waited_for_worker + other.tokens_waited_for_worker,
                         self.tokens_dropped + other.tokens_dropped, self.tokens_unsent + other.tokens_unsent,
                         self.sent_in_window + other.sent_in_window, both_due, max(self.paused_s, other.paused_s),
                         self.request_errors_suppressed + other.request_errors_suppressed)

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
    def from_dict(cls, raw: dict[str, Any]) -> UrlRecord:
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

    def to_dict(self) -> dict[str, Any]:
        footer: dict[str, Any] = {name: dict(tally) for name, tally in self.footer_tallies.items()}
        footer.update((name, histogram.to_dict()) for name, histogram in self.footer_times.items())
        saved: dict[str, Any] = {
            "requests": self.requests, "success": self.success, "failure": self.failure,
            "failures": dict(self.failures), "redirects": dict(self.redirects),
            "response_ms": self.response_ms.to_dict(), "service_ms": self.service_ms.to_dict(),
            "blocks_service_ms": [block.to_dict() for block in self.blocks_service_ms]}
        if self.blocks_service_fine_ms is not None:
            saved["blocks_service_fine_ms"] = [block.to_dict() for block in self.blocks_service_fine_ms]
        saved["footer"] = footer
        if self.blocks_cpu_ticks is not None:
            saved["blocks_cpu_ticks"] = [dict(tally) for tally in self.blocks_cpu_ticks]
        return saved

    def added(self, other: UrlRecord) -> UrlRecord:
        """One row of two shards: block k of each covers the same seconds, so blocks add up
        one by one; the fine blocks and CPU ticks only where both shards have them (a shard
        of an older version, or whose pages showed no CPU line, has none)."""
        fine = None if self.blocks_service_fine_ms is None or other.blocks_service_fine_ms is None else tuple(
            mine.added(theirs) for mine, theirs in zip(self.blocks_service_fine_ms, other.blocks_service_fine_ms,
                                                       strict=True))
        cpu_blocks = self.blocks_cpu_ticks
        if other.blocks_cpu_ticks is not None:
            cpu_blocks = tuple(added_tallies(mine, theirs) for mine, theirs in zip(
                cpu_blocks or tuple({} for _ in other.blocks_cpu_ticks), other.blocks_cpu_ticks, strict=True))
        tallies = {name: added_tallies(self.footer_tallies.get(name, {}), other.footer_tallies.get(name, {}))
                   for name in {**self.footer_tallies, **other.footer_tallies}}
        times = {name: self.footer_times[name].added(other.footer_times[name]) if name in self.footer_times
                 and name in other.footer_times else self.footer_times.get(name) or other.footer_times[name]
                 for name in {**self.footer_times, **other.footer_times}}
        return UrlRecord(self.requests + other.requests, self.success + other.success, self.failure + other.failure,
                         added_tallies(self.failures, other.failures), added_tallies(self.redirects, other.redirects),
                         self.response_ms.added(other.response_ms), self.service_ms.added(other.service_ms),
                         tuple(mine.added(theirs) for mine, theirs in zip(self.blocks_service_ms,
                                                                          other.blocks_service_ms, strict=True)),
                         fine, tallies, times, cpu_blocks)

    def footer_median(self, name: FooterCounter) -> float | None:
        """The median of a footer tally (db_reads, ...), None where no page showed one."""
        return counter_median(self.footer_tallies.get(name) or {})

    def footer_time(self, name: FooterTime) -> Histogram | None:
        """A footer time's histogram (server_time_ms, ...), None where no page showed it."""
        return self.footer_times.get(name)

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
    def from_dict(cls, raw: dict[str, Any]) -> TimelinePoint:
        return cls(raw["t"], raw["sent"], raw["ok"], raw.get("cpu_seconds", 0.0), dict(raw["failures"]),
                   Histogram.from_dict(raw["response_ms"]), Histogram.from_dict(raw["service_ms"]))

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "sent": self.sent, "ok": self.ok, "failures": dict(self.failures),
                "response_ms": self.response_ms.to_dict(), "service_ms": self.service_ms.to_dict(),
                "cpu_seconds": self.cpu_seconds}

    def added(self, other: TimelinePoint) -> TimelinePoint:
        return TimelinePoint(self.t, self.sent + other.sent, self.ok + other.ok, self.cpu_seconds + other.cpu_seconds,
                             added_tallies(self.failures, other.failures), self.response_ms.added(other.response_ms),
                             self.service_ms.added(other.service_ms))


@dataclass(frozen=True)
class Timeline:
    seconds: float = 1.0
    points: tuple[TimelinePoint, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Timeline:
        return cls(raw["seconds"], tuple(TimelinePoint.from_dict(point) for point in raw["points"]))

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "points": [point.to_dict() for point in self.points]}

    def added(self, other: Timeline) -> Timeline:
        """Two shards' timelines: the slices that started at one time add up."""
        by_time = {point.t: point for point in self.points}
        for point in other.points:
            by_time[point.t] = by_time[point.t].added(point) if point.t in by_time else point
        return Timeline(self.seconds, tuple(by_time[t] for t in sorted(by_time)))


@dataclass(frozen=True)
class Machine:
    """The load machine beside the run (load.machine.summarise): the cores busy in all,
    those busy with other processes than the generator, the hypervisor's steal."""

    busy_cores: float
    other_busy_cores: float
    cpus: float | None = None
    steal_share: float = 0.0
    load_average: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Machine:
        return cls(raw["busy_cores"], raw["other_busy_cores"], raw.get("cpus"), raw.get("steal_share") or 0.0,
                   raw.get("load_average"))

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "busy_cores": self.busy_cores, "other_busy_cores": self.other_busy_cores,
                "steal_share": self.steal_share, "load_average": self.load_average}

    @property
    def cores(self) -> float:
        """The machine's cores (1 where the run did not record them)."""
        return self.cpus or 1.0

    @property
    def load_per_core(self) -> float | None:
        return None if self.load_average is None else self.load_average / self.cores


def added_tallies(mine: dict[str, int], theirs: dict[str, int]) -> dict[str, int]:
    """Two tallies (key -> count) as one."""
    both = dict(mine)
    for key, count in theirs.items():
        both[key] = both.get(key, 0) + count
    return both
