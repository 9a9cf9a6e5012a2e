"""Servers beside the load: Prometheus text-format endpoints (node_exporter on the web and
database hosts, postgres_exporter, mysqld_exporter) scraped every few seconds during a run.

A run's numbers are the code's only while the site had room: a web host whose CPU was
busy all run long shaped them as much as the commit did.  The scrapes give, per host, CPU
busy, load, memory in use, disk and network bytes per second and database connections;
the results keep them as a timeline and the report names a host that saturated.

Parsing is prometheus-client's (the format has escapes, labels, exemplars and comments
enough to get wrong by hand); everything after the parse is pure."""

from __future__ import annotations

import http.client
import math
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from moodleload.console import printable
from moodleload.database.families import FAMILIES
from moodleload.exits import UsageError
from moodleload.load.clock import Clock
from moodleload.results.metrics import MAX_POINTS, HostMetrics, Metrics, MetricsPoint, metric_value_ok

if TYPE_CHECKING:
    import aiohttp

SCRAPE_SECONDS = 2.0
SCRAPE_TIMEOUT_SECONDS = 8.0  # a saturated host answers late: its scrape is the one that matters
MAX_SCRAPE_BYTES = 16 * 1024 * 1024
SATURATED_BUSY = 0.9  # a host's CPU share busy from which more load would queue
SATURATED_SHARE = 0.5  # of the measured window's scrapes, for a host to be named


def host_label(url: str) -> str:
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else url


def shown_url(url: str) -> str:
    """An exporter's URL as results, reports and messages show it: the values of its query
    (``?token=...``, a secret some exporters' proxies ask for) hidden, their names kept."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)] or ["(query)"]
    return urlunsplit(parts._replace(query="&".join(f"{name}=(hidden)" for name in names)))


def argv_shown(argv: list[str]) -> list[str]:
    """The command line as the results keep it: each --metrics URL through shown_url."""
    shown = []
    after_flag = False
    for word in argv:
        if after_flag:
            word = shown_url(word)
        elif word.startswith("--metrics="):
            word = "--metrics=" + shown_url(word.removeprefix("--metrics="))
        after_flag = word == "--metrics"
        shown.append(word)
    return shown


CHECK_SECONDS = 10.0  # the whole answer of an exporter checked before the load, however it trickles


def read_answer(url: str) -> str:
    """An exporter's whole answer, within CHECK_SECONDS in all (a timeout per read would let a
    trickling answer wait for ever); what is not HTTP is the user's to fix, said in one line
    without the bytes it sent."""
    deadline = time.monotonic() + CHECK_SECONDS
    chunks: list[bytes] = []
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  http(s) checked by the caller
            while chunk := response.read1(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_SCRAPE_BYTES:
                    raise UsageError(f"--metrics {host_label(url)}: the answer is larger than "
                                     f"{MAX_SCRAPE_BYTES >> 20} MB")
                if time.monotonic() > deadline:
                    raise UsageError(f"--metrics {host_label(url)}: the answer did not end within "
                                     f"{CHECK_SECONDS:g} s (an exporter that trickles, or not an exporter)")
    except http.client.HTTPException as error:
        raise UsageError(f"--metrics {host_label(url)}: did not answer in HTTP ({type(error).__name__}): is it an "
                         f"exporter's port?") from None
    except (OSError, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise UsageError(f"--metrics {host_label(url)}: could not be read ({printable(reason)[:200]}); is the "
                         f"exporter running there?") from None
    return b"".join(chunks).decode("utf-8", "replace")


def check_metrics_urls(urls: Sequence[str]) -> None:
    """Each --metrics URL answers with Prometheus text before any load (one line otherwise)."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError("--metrics needs the Python package prometheus-client: pip install -r requirements.txt") \
            from None
    labels = [host_label(url) for url in urls]
    if len(set(labels)) != len(labels):
        raise UsageError("--metrics: the same host:port is given twice; give each exporter once")
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise UsageError(f"--metrics {shown_url(url)}: not an http(s) URL of an exporter, e.g. "
                             f"http://web1:9100/metrics")
        if urlsplit(url).username or urlsplit(url).password:
            raise UsageError(f"--metrics {host_label(url)}: credentials in the URL would land in the results; "
                             f"scrape through a URL without them")
        text = read_answer(url)
        try:
            sample = parse_sample(text)
        except ValueError as error:
            raise UsageError(f"--metrics {shown_url(url)}: not Prometheus text format ({error})") from None
        if all(value is None for value in sample.values()):
            raise UsageError(f"--metrics {shown_url(url)}: none of the metrics this tool reads is there "
                             f"(node_exporter's node_cpu_seconds_total, "
                             + ", ".join(f"{family.exporter}'s {family.exporter_connections}"
                                         for family in FAMILIES.values()) + ")")


Sample = dict[str, float | None]  # one scrape's totals by name (parse_sample), None: not exported
# The database exporters' series of open connections, each family's own.
CONNECTION_SERIES = tuple(family.exporter_connections for family in FAMILIES.values())


def parse_sample(text: str) -> Sample:
    """One scrape's totals: counters as they stand, gauges as they are (None: not exported)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}

    def add(key: str, value: float) -> None:
        total = found.get(key, 0.0) + value
        if math.isfinite(total):  # two huge counters may sum to infinity: left out, not written
            found[key] = total

    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, float(sample.value)
                if name == "node_cpu_seconds_total":
                    add("cpu_total", value)
                    if labels.get("mode") in ("idle", "iowait"):
                        add("cpu_idle", value)
                elif name == "node_load1":
                    add("load1", value)
                elif name in ("node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes"):
                    add(name[12:-6].lower(), value)  # memtotal, memavailable
                elif name in ("node_disk_read_bytes_total", "node_disk_written_bytes_total"):
                    add("disk_bytes", value)
                elif name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total") \
                        and labels.get("device") != "lo":
                    add("net_bytes", value)
                elif name in CONNECTION_SERIES:
                    add("db_connections", value)
    except Exception as error:  # noqa: BLE001  the parser raises what it likes on bad input
        raise ValueError(str(error).splitlines()[0][:200] if str(error) else type(error).__name__) from None
    return {key: found.get(key) for key in ("cpu_total", "cpu_idle", "load1", "memtotal", "memavailable",
                                            "disk_bytes", "net_bytes", "db_connections")}


def point_between(previous: Sample | None, current: Sample, seconds: float, t: float) -> MetricsPoint:
    """The timeline point for a scrape: rates over the interval since the previous one."""
    def change(key: str) -> float | None:
        before, now = (previous or {}).get(key), current.get(key)
        return None if before is None or now is None else now - before

    def rate(key: str) -> float | None:
        moved = change(key)
        if seconds <= 0 or moved is None:
            return None
        return round(moved / seconds, 1) if moved >= 0 else None  # a restarted exporter starts again

    def kept(value: float | None) -> float | None:
        # What the reader would refuse is never written: an absurd value is a lost value.
        return value if value is None or metric_value_ok(value) else None

    busy = None
    total, idle = change("cpu_total"), change("cpu_idle")
    if total is not None and idle is not None and total > 0 and 0 <= idle <= total:
        busy = round(1.0 - idle / total, 4)
    memory_total, available = current.get("memtotal"), current.get("memavailable")
    memory = None if memory_total is None or available is None else memory_total - available
    return MetricsPoint(round(t, 2), kept(busy), kept(current.get("load1")), kept(memory),
                        kept(rate("disk_bytes")), kept(rate("net_bytes")), kept(current.get("db_connections")))


def saturation_notes(metrics: Metrics | None) -> list[str]:
    """The hosts whose CPU was busy beyond SATURATED_BUSY for at least SATURATED_SHARE of the
    measured window's scrapes, named with how busy and for how long."""
    notes = []
    for label, host in (metrics.hosts if metrics is not None else {}).items():
        busy = [point.cpu_busy for point in host.measured if point.cpu_busy is not None]
        if not busy:
            continue
        share = sum(value >= SATURATED_BUSY for value in busy) / len(busy)
        if share >= SATURATED_SHARE:
            notes.append(f"host {label} CPU {statistics.median(busy):.0%} busy for {share:.0%} of the run: the "
                         f"site's capacity, not only the code, shaped these numbers")
    return notes


def cpu_busy_series(metrics: Metrics | None) -> dict[str, tuple[list[float], list[float]]]:
    """host label -> (seconds into the window, CPU busy share) of the scrapes that measured it."""
    series = {}
    for label, host in (metrics.hosts if metrics is not None else {}).items():
        shown = [(point.t, point.cpu_busy) for point in host.points if point.cpu_busy is not None]
        series[label] = ([t for t, _ in shown], [busy for _, busy in shown])
    return series


def host_lines(metrics: Metrics | None) -> list[str]:
    """One line per host for the text report."""
    lines = []
    for label, host in (metrics.hosts if metrics is not None else {}).items():
        points = host.measured
        parts = []
        busy = [p.cpu_busy for p in points if p.cpu_busy is not None]
        if busy:
            parts.append(f"CPU busy median {statistics.median(busy):.0%}, max {max(busy):.0%}")
        load = [p.load1 for p in points if p.load1 is not None]
        if load:
            parts.append(f"load max {max(load):.1f}")
        memory = [p.memory_used_bytes for p in points if p.memory_used_bytes is not None]
        if memory:
            parts.append(f"memory used max {max(memory) / 2 ** 30:.1f} GiB")
        connections = [p.db_connections for p in points if p.db_connections is not None]
        if connections:
            parts.append(f"database connections max {max(connections):.0f}")
        if host.failed_scrapes:
            parts.append(f"{host.failed_scrapes} scrapes failed")
        lines.append(f"Server {label}: " + (", ".join(parts) if parts else "no scrape in the measured window"))
    return lines


class Scraper:
    """Scrapes each endpoint every SCRAPE_SECONDS while a run lasts (LoadRun drives it)."""

    def __init__(self, urls: Sequence[str]):
        self.urls = list(urls)
        self.points: dict[str, list[MetricsPoint]] = {host_label(url): [] for url in self.urls}
        self.failed_scrapes: dict[str, int] = {host_label(url): 0 for url in self.urls}
        self._last: dict[str, tuple[float, Sample]] = {}

    async def run(self, clock: Clock, measure_from: float) -> None:
        import asyncio

        import aiohttp

        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=True) as session:
            while True:
                started = clock.now()
                await asyncio.gather(*(self._scrape(session, url, clock, measure_from) for url in self.urls))
                await clock.sleep(max(0.1, SCRAPE_SECONDS - (clock.now() - started)))

    async def _scrape(self, session: aiohttp.ClientSession, url: str, clock: Clock, measure_from: float) -> None:
        import asyncio

        label = host_label(url)
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    raise ValueError(f"status {response.status}")
                chunks, size = [], 0
                while chunk := await response.content.read(1 << 16):  # read(n) gives what has arrived, not n
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_SCRAPE_BYTES:
                        raise ValueError("too large")
                body = b"".join(chunks)
            now = clock.now()
            sample = await asyncio.to_thread(parse_sample, body.decode("utf-8", "replace"))
        except (Exception, asyncio.TimeoutError):  # noqa: BLE001  a lost scrape is counted, the load goes on
            self.failed_scrapes[label] += 1
            return
        previous = self._last.get(url)
        self._last[url] = (now, sample)
        if len(self.points[label]) < MAX_POINTS:
            self.points[label].append(point_between(previous[1] if previous else None, sample,
                                                    now - previous[0] if previous else 0.0, now - measure_from))

    def result(self) -> Metrics:
        return Metrics(SCRAPE_SECONDS, {
            label: HostMetrics(shown_url(url), tuple(self.points[label]), self.failed_scrapes[label])
            for url in self.urls if (label := host_label(url))})
