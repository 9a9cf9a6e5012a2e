"""The summary of a results document: its headline numbers, recomputed from the recorded
histograms (so a merge summarises as a single run does), computed once per document by
``Results.summary``.  ``to_dict`` writes the product's keys (``req_per_min_observed``,
``latency_ms_p95``, ...) first; readers use the fields."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moodleload.console import round_or_none
from moodleload.footer import FOOTER_TIMES, FooterCounter, FooterName
from moodleload.results.histogram import Histogram, counter_median

if TYPE_CHECKING:
    from moodleload.results.sections import UrlRecord

PERCENTILES = (50, 90, 95, 99, 99.9)
# Footer numbers summarised per URL: tallies of page values, and histograms of times.
# The footer's counters a summary shows (the CPU's are shown as cpu_ms_mean).
FOOTER_TALLIES: tuple[FooterCounter, ...] = ("db_reads", "db_writes", "included_files", "memory_peak_mb",
                                             "session_size_kb")


@dataclass(frozen=True)
class Percentiles:
    """A histogram's percentiles (ms, None without values), as the summary keys name them."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, histogram: Histogram) -> Percentiles:
        p50, p90, p95, p99, p99_9 = (round_or_none(histogram.percentile(q)) for q in PERCENTILES)
        return cls(p50, p90, p95, p99, p99_9, round_or_none(histogram.maximum if histogram.count else None))

    def to_dict(self, prefix: str) -> dict[str, Any]:
        return {f"{prefix}_p50": self.p50, f"{prefix}_p90": self.p90, f"{prefix}_p95": self.p95,
                f"{prefix}_p99": self.p99, f"{prefix}_p99_9": self.p99_9, f"{prefix}_max": self.max}


@dataclass(frozen=True)
class Spread:
    """A footer number's median and maximum over one URL's pages."""

    median: float | None
    max: float | None


@dataclass(frozen=True)
class UrlSummary:
    """One URL's headline numbers (latency of every answer, service time of the successes)."""

    requests: int
    success: int
    failure: int
    latency_ms: Percentiles = Percentiles()
    service_ms: Percentiles = Percentiles()
    footer: dict[str, Spread] = field(default_factory=dict)  # db_reads, server_time_ms, ... where recorded
    cpu_ms_mean: float | None = None  # the PHP worker's mean CPU time per answer (footer), where it showed one

    def footer_median(self, name: FooterName) -> float | None:
        spread = self.footer.get(name)
        return spread.median if spread is not None else None

    def footer_max(self, name: FooterName) -> float | None:
        spread = self.footer.get(name)
        return spread.max if spread is not None else None

    def to_dict(self) -> dict[str, Any]:
        summary = {"requests": self.requests, "success": self.success, "failure": self.failure,
                   **self.latency_ms.to_dict("latency_ms"), **self.service_ms.to_dict("service_ms")}
        for name, spread in self.footer.items():
            summary[f"{name}_median"] = spread.median
            summary[f"{name}_max"] = spread.max
        if self.cpu_ms_mean is not None:
            summary["cpu_ms_mean"] = self.cpu_ms_mean
        return summary


@dataclass(frozen=True)
class Summary:
    """The run's headline numbers: the rate asked for and observed, counts, percentiles."""

    req_per_min_target: float
    req_per_min_observed: float
    requests: int
    success: int
    latency_ms: Percentiles = Percentiles()
    service_ms: Percentiles = Percentiles()
    failures: dict[str, int] = field(default_factory=dict)
    urls: dict[str, UrlSummary] = field(default_factory=dict)
    work_done: dict[str, int] = field(default_factory=dict)

    @property
    def failure(self) -> int:
        return self.requests - self.success

    @property
    def error_rate(self) -> float | None:
        return round(self.failure / self.requests, 4) if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        summary = {
            "req_per_min_target": self.req_per_min_target,
            "req_per_min_observed": self.req_per_min_observed,
            "requests": self.requests,
            "success": self.success,
            "failure": self.failure,
            "latency_ms_p50": self.latency_ms.p50,
            "latency_ms_p95": self.latency_ms.p95,
            "latency_ms_p99": self.latency_ms.p99,
            **self.latency_ms.to_dict("latency_ms"),
            **self.service_ms.to_dict("service_ms"),
            "error_rate": self.error_rate,
            "failures": dict(self.failures),
            "urls": {name: url.to_dict() for name, url in self.urls.items()},
        }
        if self.work_done:
            summary["work_done"] = dict(self.work_done)
        return summary


def url_summary(record: UrlRecord) -> UrlSummary:
    footer: dict[str, Spread] = {}
    for name in FOOTER_TALLIES:
        tally = record.footer_tallies.get(name)
        if tally:
            footer[name] = Spread(counter_median(tally), max(float(value) for value in tally))
    for time in FOOTER_TIMES:
        histogram = record.footer_time(time)
        if histogram is not None:
            footer[time] = Spread(round_or_none(histogram.percentile(50)), round_or_none(histogram.maximum))
    cpu = record.cpu_ms_mean
    return UrlSummary(record.requests, record.success, record.failure, Percentiles.of(record.response_ms),
                      Percentiles.of(record.service_ms), footer, None if cpu is None else round(cpu, 2))


def summarize(rpm: float, measured_seconds: float, sent_in_window: int, urls: dict[str, UrlRecord],
              work_done: dict[str, int]) -> Summary:
    """The run's summary.  Pure: from the recorded histograms, whether one run or a merge."""
    response, service = Histogram(), Histogram()
    failures: Counter[str] = Counter()
    requests = success = 0
    for record in urls.values():
        response.merge(record.response_ms)
        service.merge(record.service_ms)
        requests += record.requests
        success += record.success
        failures.update(record.failures)
    # The observed rate counts requests actually sent inside the measured window: a generator
    # that fell behind and worked off its backlog later did not reach the target.
    observed = sent_in_window / measured_seconds * 60.0 if measured_seconds > 0 else 0.0
    return Summary(rpm, round(observed, 1), requests, success, Percentiles.of(response),
                   Percentiles.of(service), dict(sorted(failures.items())),
                   {name: url_summary(record) for name, record in urls.items()},
                   dict(work_done))
