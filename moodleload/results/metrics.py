"""The saved ``metrics`` section of a results file (each exporter's points over the run):
its check and its typed form; ``load.metrics`` scrapes the exporters that fill it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_POINTS = 20_000  # a week at one scrape each 30 s: the results stay bounded
POINT_KEYS = ("t", "cpu_busy", "load1", "memory_used_bytes", "disk_bytes_per_s", "net_bytes_per_s", "db_connections")
MAX_METRIC = 1e18  # beyond it an exporter's value is damage, not a measurement


def metric_value_ok(value: object) -> bool:
    """What a metrics point may hold: the writer's and the reader's one test."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and abs(value) <= MAX_METRIC


def metrics_problem(section: object) -> str | None:
    """What is wrong with a results file's ``metrics`` section, or None."""
    if not isinstance(section, dict) or not isinstance(section.get("hosts"), dict) or len(section["hosts"]) > 64:
        return "metrics: not a section this tool writes"
    for host in section["hosts"].values():
        points = host.get("points") if isinstance(host, dict) else None
        if not isinstance(points, list) or len(points) > MAX_POINTS:
            return "metrics: a host without its points, or too many"
        for point in points:
            if not isinstance(point, dict) or set(point) != set(POINT_KEYS):
                return "metrics: a point without its values"
            for value in point.values():
                if value is not None and not metric_value_ok(value):
                    return "metrics: a value that is not a number"
    return None


@dataclass(frozen=True)
class MetricsPoint:
    """One scrape of one exporter: seconds into the measured window (negative in the
    warm-up), and what it read (None where the exporter did not say)."""

    t: float
    cpu_busy: float | None = None
    load1: float | None = None
    memory_used_bytes: float | None = None
    disk_bytes_per_s: float | None = None
    net_bytes_per_s: float | None = None
    db_connections: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MetricsPoint:
        return cls(*(raw[key] for key in POINT_KEYS))

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in POINT_KEYS}


@dataclass(frozen=True)
class HostMetrics:
    url: str | None
    points: tuple[MetricsPoint, ...]
    failed_scrapes: int = 0

    @property
    def measured(self) -> tuple[MetricsPoint, ...]:
        """The scrapes of the measured window (the warm-up's have t < 0)."""
        return tuple(point for point in self.points if point.t >= 0)


@dataclass(frozen=True)
class Metrics:
    """The saved ``metrics`` section: each exporter's scrapes over the run (--metrics)."""

    interval_s: float | None
    hosts: dict[str, HostMetrics]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Metrics:
        return cls(raw.get("interval_s"), {
            label: HostMetrics(host.get("url"), tuple(MetricsPoint.from_dict(point) for point in host["points"]),
                               host.get("failed_scrapes", 0)) for label, host in raw["hosts"].items()})

    def to_dict(self) -> dict[str, Any]:
        return {"interval_s": self.interval_s, "hosts": {
            label: {"url": host.url, "points": [point.to_dict() for point in host.points],
                    "failed_scrapes": host.failed_scrapes} for label, host in self.hosts.items()}}
