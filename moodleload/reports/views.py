"""What the reports show, computed once from a results document: the per-URL rows, the
comparison rows and the trust signals.  The text and HTML reports only render these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from moodleload.config import PAGE_ROW, ROW_KINDS
from moodleload.console import printable, round_or_none

if TYPE_CHECKING:
    from moodleload.results.comparison import Comparison
    from moodleload.results.model import Results


def shorten(name: str, width: int) -> str:
    """A name cut to ``width`` characters, with "..." where it was cut; its control
    characters as "?" (a page name is shown in terminals, logs and charts)."""
    name = printable(name)
    return name if len(name) <= width else name[:width - 3] + "..."


@dataclass(frozen=True)
class UrlRow:
    """One URL's line in the per-URL tables (times in ms of successful requests)."""

    name: str
    requests: int
    success: int
    failure: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_max: float | None
    service_p50: float | None
    service_p95: float | None
    db_reads: float | None
    db_writes: float | None
    failures: dict[str, int]
    redirects: dict[str, int]
    kind: str = PAGE_ROW  # page, journey step or web-service call (results before 0.7 know only pages)
    cpu_ms: float | None = None  # the PHP worker's mean CPU time per answer (footer), where shown


ROW_HEADINGS = {"page": "pages", "journey step": "journey steps", "web-service call": "web-service calls"}


def url_rows(document: Results) -> list[UrlRow]:
    """The rows of the per-URL tables, grouped by kind (pages, journey steps, web-service
    calls), each group in the order of the results."""
    rows = []
    for name, row in document.summary.urls.items():
        record = document.urls[name]
        rows.append(UrlRow(name, row.requests, row.success, row.failure, row.latency_ms.p50, row.latency_ms.p95,
                           row.latency_ms.p99, row.latency_ms.max, row.service_ms.p50, row.service_ms.p95,
                           row.footer_median("db_reads"), row.footer_median("db_writes"), dict(record.failures),
                           dict(record.redirects), document.row_kind(name), row.cpu_ms_mean))
    return sorted(rows, key=lambda row: ROW_KINDS.index(row.kind))


@dataclass(frozen=True)
class TrustSignals:
    """Can these numbers be trusted to describe the site?  The generator's own CPU use, how
    late it ran, how long requests waited inside it, and why it, not Moodle, was the
    bottleneck where it was (empty when it was not)."""

    cpu_cores_used: float | None
    lateness_ms_p50: float | None
    lateness_ms_p99: float | None
    loop_lag_ms_p99: float | None
    tokens_waited_for_worker: int
    tokens_dropped: int
    tokens_unsent: int
    warmup_excluded_s: float
    error_rate: float | None
    bottleneck: tuple[str, ...] = ()  # the generator's own limits: its CPU, its event loop
    # Every worker waiting on a slow site (the generator itself idle): the site's saturation,
    # which needs another remedy than the generator's own limits.
    saturated: tuple[str, ...] = ()


def trust_signals(document: Results) -> TrustSignals:
    generator, summary = document.generator, document.summary
    cores = generator.cores_used
    processes = len(document.metadata.shards)
    lateness_p50 = round_or_none(generator.lateness_ms.percentile(50), 2)
    loop_lag_p99 = round_or_none(generator.loop_lag_ms.percentile(99), 2)
    reasons = []
    if cores is not None and cores >= 0.9 * processes:
        reasons.append(f"its CPU use was {cores / processes:.0%} of a core per process")
    if loop_lag_p99 is not None and loop_lag_p99 > 50:
        reasons.append(f"its event loop woke up to {loop_lag_p99:.0f} ms late (p99)")
    service_p50 = summary.service_ms.p50 or 0.0
    waited = bool(summary.requests and lateness_p50 is not None and lateness_p50 > max(service_p50, 10.0))
    saturated: tuple[str, ...] = ()
    if waited and not reasons and generator.tokens_waited_for_worker:
        saturated = (site_saturation(document, lateness_p50 or 0.0, service_p50),)
    elif waited:
        reasons.append(f"half the requests waited over {lateness_p50:.0f} ms inside the generator, "
                       f"longer than the site took to answer ({service_p50:.0f} ms)")
    return TrustSignals(None if cores is None else round(cores, 3), lateness_p50,
                        round_or_none(generator.lateness_ms.percentile(99), 2), loop_lag_p99,
                        generator.tokens_waited_for_worker, generator.tokens_dropped, generator.tokens_unsent,
                        document.metadata.warmup_s, summary.error_rate, tuple(reasons), saturated)


def site_saturation(document: Results, lateness_p50: float, service_p50: float) -> str:
    """Why the workers were all busy while the generator idled, with Little's law: at the
    target rate and the site's service time, the load needs that many requests in flight."""
    rate = document.metadata.rpm * len(document.metadata.shards) / 60.0
    answered = sum(record.service_ms.count for record in document.urls.values())
    service_mean = sum(record.service_ms.total for record in document.urls.values()) / answered if answered \
        else service_p50
    needed = rate * service_mean / 1000.0  # Little's law: requests in flight = rate x time in the site
    workers = document.metadata.concurrency
    return (f"every worker was waiting on the site: it answered in {service_p50:.0f} ms (median), so "
            f"{rate:g} requests a second need about {needed:.0f} in flight and the run had {workers}; half the "
            f"requests waited over {lateness_p50:.0f} ms for a free worker while the generator itself idled")


def bottleneck_warning(signals: TrustSignals) -> str | None:
    if signals.saturated:
        return ("The site set the pace, not the generator: " + "; ".join(signals.saturated) + ". The load asked "
                "for could not be sent as scheduled. " + SATURATION_REMEDY)
    if not signals.bottleneck:
        return None
    return ("The generator was the bottleneck (" + "; ".join(signals.bottleneck) + "): these numbers describe "
            "the generator, not Moodle. Raise --concurrency if its workers were busy, or spread the load with "
            "--processes N (or --shard K/N on more machines) if it was short of CPU.")


SATURATION_REMEDY = ("Lower --rpm, raise --concurrency (with as many users) if the site can serve more at once, or, "
                     "where the site answers slower than it does alone (a busy machine), run where it has its cores "
                     "to itself.")


def good_grounds(document: Results, comparison: Comparison | None) -> list[str]:
    """What a good verdict rests on, in the run's own numbers: the load was delivered, how
    few requests failed, and against a baseline the slowdowns the data rule out (or, with
    no baseline, that only the absolute gates judged it)."""
    summary, generator = document.summary, document.generator
    due, sent = generator.due_in_window, generator.sent_in_window
    lines = [f"the load asked for was delivered: {sent} of the {due} requests due in the measured window were sent"
             if due else f"{sent} requests were sent in the measured window"]
    if summary.requests and summary.error_rate is not None:
        lines.append(f"{summary.failure} of {summary.requests} requests failed ({summary.error_rate:.2%})")
    if comparison is None:
        lines.append("no baseline was given, so only the absolute gates (--max-p95-ms, --max-error-rate, ...) "
                     "judged this run; give --baseline runs of the good commit to judge a slowdown")
        return lines
    rules_out, tolerance = comparison.rules_out_pct, comparison.max_regression_pct
    if rules_out is not None:
        lines.append(f"against the baseline every page's slowdown above {rules_out:.1f} % is ruled out, within the "
                     f"tolerance of {tolerance:g} %")
    if comparison.site_rules_out_pct is not None:
        lines.append(f"and the site's as a whole above {comparison.site_rules_out_pct:.1f} %")
    return lines
