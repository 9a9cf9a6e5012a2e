"""The saved ``metrics`` section of a results file (each exporter's points over the run)
and its check; ``load.metrics`` scrapes the exporters that fill it."""

from __future__ import annotations

import math

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
