"""Recording what happened while the load runs."""

from __future__ import annotations

from collections import Counter
from math import log

from moodleload.config import Config
from moodleload.footer import FOOTER_COUNTERS, FOOTER_TIMES, Footer, FooterCounter, FooterTime
from moodleload.results.histogram import FineHistogram, Histogram
from moodleload.results.sections import TimelinePoint as TimelineRecord
from moodleload.results.sections import UrlRecord

_COARSE, _FINE = Histogram._LOG_BASE, FineHistogram._LOG_BASE



class UrlStats:
    """Everything measured for one URL of the config."""

    def __init__(self, blocks: int):
        self.requests = 0
        self.success = 0
        self.failures: Counter[str] = Counter()  # "http_404", "timeout", "connection", ...
        self.redirects: Counter[str] = Counter()  # final path -> count, when redirected
        self.response = Histogram()
        self.service = Histogram()
        self.blocks = [Histogram() for _ in range(blocks)]  # service time per time block
        # The same again in 0.2 % buckets: block medians fine enough to call slowdowns of a few percent.
        self.blocks_fine = [FineHistogram() for _ in range(blocks)]
        # Discrete counters are tallied value by value; times go into histograms.
        self.footer_counts: dict[FooterCounter, Counter[float]] = {name: Counter() for name in FOOTER_COUNTERS}
        self.footer_times: dict[FooterTime, Histogram] = {name: Histogram() for name in FOOTER_TIMES}
        # The PHP worker's CPU ticks per time block, tallied: the work a page did, which a
        # busy machine hardly inflates, with the same blocks as service time.
        self.blocks_cpu: list[Counter[float]] = [Counter() for _ in range(blocks)]

    def record_footer(self, footer: Footer, block: int) -> None:
        for name, value in footer.counters():
            self.footer_counts[name][value] += 1
        if footer.cpu_ticks is not None:
            self.blocks_cpu[block][footer.cpu_ticks] += 1
        for time, milliseconds in footer.times():
            self.footer_times[time].record(milliseconds)

    def record(self) -> UrlRecord:
        """What this row measured, as the results keep it."""
        tallies: dict[str, dict[str, int]] = {name: saved_tally(tally)
                                              for name, tally in self.footer_counts.items() if tally}
        return UrlRecord(
            self.requests, self.success, self.requests - self.success, dict(sorted(self.failures.items())),
            dict(self.redirects.most_common()), settled(self.response), settled(self.service),
            tuple(map(settled, self.blocks)), tuple(map(settled, self.blocks_fine)), tallies,
            {name: settled(histogram) for name, histogram in self.footer_times.items() if histogram.count},
            tuple(map(saved_tally, self.blocks_cpu)) if tallies.get("cpu_ticks") else None)


def saved_tally(tally: Counter[float]) -> dict[str, int]:
    """A tally of footer values as the results keep it: the values in order, as text."""
    return {str(value): count for value, count in sorted(tally.items())}


def settled(histogram: Histogram) -> Histogram:
    """A histogram as its saved form keeps it (sum and extremes to the microsecond), so a
    run's own report and one read back from its file say the same."""
    return type(histogram).from_dict(histogram.to_dict())


class TimelinePoint:
    """What happened in one slice of the measured time, by the moment requests were sent."""

    __slots__ = ("sent", "ok", "failures", "response", "service", "cpu_seconds")

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.response = Histogram()
        self.service = Histogram()
        self.cpu_seconds = 0.0

    def record(self, index: int, seconds: float) -> TimelineRecord:
        """This slice as the results keep it (the index-th slice of ``seconds``)."""
        return TimelineRecord(round(index * seconds, 3), self.sent, self.ok, round(self.cpu_seconds, 4),
                              dict(self.failures), settled(self.response), settled(self.service))


class Recorder:
    """Collects results while the load runs; its document is the run's results."""

    def __init__(self, config: Config, blocks: int, block_seconds: float, timeline_seconds: float = 1.0):
        self.config = config
        self.block_seconds = block_seconds
        self.timeline_seconds = timeline_seconds
        self.timeline: dict[int, TimelinePoint] = {}
        self.blocks = blocks
        self.urls = {name: UrlStats(blocks) for name in config.row_names()}
        self.work_done: Counter[str] = Counter()  # what the journeys' writes did (e.g. replies posted)
        self.lateness = Histogram()  # actual send minus intended start
        self.loop_lag = Histogram()  # how late a sleeping worker woke: the generator's own delay
        self.tokens_waited = 0  # already due when a worker became free
        self.tokens_dropped = 0
        self.tokens_unsent = 0  # never sent: the backlog's time ran out, or the run was stopped
        self.sent = 0
        self.due_in_window = 0  # positions that fell due in the measured window: what was asked
        self.paused_seconds = 0.0  # the generator stood still in the window (PauseDetector)
        self.sent_in_window = 0  # sent before the measured window closed: the observed rate
        self.interval = Histogram()
        self.interval_done = 0
        self.interval_failed = 0
        self.request_errors_printed = 0
        self.request_errors_suppressed = 0

    def point(self, offset: float) -> TimelinePoint:
        index = max(0, int(offset / self.timeline_seconds))
        point = self.timeline.get(index)
        if point is None:
            point = self.timeline[index] = TimelinePoint()
        return point

    def record(self, url_name: str, measured_offset: float | None, *, response_ms: float | None = None,
               service_ms: float | None = None, failure: str | None = None,
               redirected_to: str | None = None, footer: Footer | None = None,
               sent_offset: float | None = None, extra: bool = False) -> None:
        """``extra``: a request that rides along with a step (a page's browser calls): it
        has its own row, but the rate, the progress lines and the timeline count steps."""
        if measured_offset is None:  # warm-up: executed, not counted
            return
        stats = self.urls.get(url_name)
        if stats is None:  # a browser call first seen on a page
            stats = self.urls[url_name] = UrlStats(self.blocks)
        stats.requests += 1
        if not extra:
            self.interval_done += 1
            point = self.point(measured_offset if sent_offset is None else sent_offset)
            point.sent += 1
        if redirected_to is not None:
            stats.redirects[redirected_to] += 1
        if failure is not None:
            stats.failures[failure] += 1
            if not extra:
                point.failures[failure] += 1
                self.interval_failed += 1
            return
        stats.success += 1
        assert response_ms is not None and service_ms is not None  # a success has both times
        response_bucket = Histogram.bucket_of(response_ms)
        service_log = log(max(service_ms, 0.001) * 1000.0)  # one logarithm for both bucket widths
        service_bucket = int(service_log / _COARSE)
        stats.response.record(response_ms, response_bucket)
        stats.service.record(service_ms, service_bucket)
        if not extra:
            point.ok += 1
            # The timeline only draws charts: five buckets in one (values within 5 %) keep its up to
            # 600 points small, so memory stays flat over a long run.
            point.response.record(response_ms, response_bucket - response_bucket % 5 + 2)
            point.service.record(service_ms, service_bucket - service_bucket % 5 + 2)
            self.interval.record(response_ms, response_bucket)
        block = max(min(int(measured_offset / self.block_seconds), len(stats.blocks) - 1), 0)
        stats.blocks[block].record(service_ms, service_bucket)
        stats.blocks_fine[block].record(service_ms, int(service_log / _FINE))
        if footer:
            stats.record_footer(footer, block)
