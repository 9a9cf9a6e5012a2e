"""Latency histograms: bounded memory, mergeable, within 1 %."""

from __future__ import annotations

import math
from typing import Any

from moodleload.exits import UsageError


class Histogram:
    """Log-bucketed latency histogram: bounded memory for any run length, values within
    1 % (buckets are 2 % wide, a value is reported at its bucket's geometric middle),
    and mergeable by adding counts, so shards and processes make one distribution."""

    BASE = 1.02
    _LOG_BASE = math.log(BASE)

    __slots__ = ("counts", "count", "total", "minimum", "maximum")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = 0.0

    @classmethod
    def bucket_of(cls, value_ms: float) -> int:
        return int(math.log(max(value_ms, 0.001) * 1000.0) / cls._LOG_BASE)

    def record(self, value_ms: float, bucket: int | None = None) -> None:
        """Count a value; ``bucket`` may be given when the caller already computed it."""
        value_ms = max(value_ms, 0.001)
        if bucket is None:
            bucket = int(math.log(value_ms * 1000.0) / self._LOG_BASE)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.count += 1
        self.total += value_ms
        if value_ms < self.minimum:
            self.minimum = value_ms
        if value_ms > self.maximum:
            self.maximum = value_ms

    def merge(self, other: Histogram) -> Histogram:
        for bucket, count in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + count
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        return self

    def added(self, other: Histogram) -> Histogram:
        """A new histogram of both (this one is left as it is): how typed sections merge."""
        both = type(self)()
        both.counts = dict(self.counts)
        both.count, both.total, both.minimum, both.maximum = self.count, self.total, self.minimum, self.maximum
        return both.merge(other)

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                middle = self.BASE ** (bucket + 0.5) / 1000.0
                return min(max(middle, self.minimum), self.maximum)
        return self.maximum

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.BASE, "unit": "ms", "count": self.count, "sum": round(self.total, 3),
                "min": round(self.minimum, 3) if self.count else None, "max": round(self.maximum, 3),
                "buckets": {str(k): v for k, v in sorted(self.counts.items())}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Histogram:
        histogram = cls()
        if not raw:
            return histogram
        if raw.get("base") != cls.BASE:
            raise UsageError(f"results: histogram base {raw.get('base')} is not {cls.BASE}")
        histogram.counts = {int(k): int(v) for k, v in raw.get("buckets", {}).items()}
        histogram.count = int(raw.get("count", sum(histogram.counts.values())))
        histogram.total = float(raw.get("sum", 0.0))
        histogram.minimum = raw["min"] if raw.get("min") is not None else math.inf
        histogram.maximum = float(raw.get("max", 0.0))
        return histogram


class FineHistogram(Histogram):
    """Buckets 0.2 % wide: each time block's median service time within 0.1 %, so a
    comparison can call slowdowns of a few percent; still bounded (by the range of
    values, not their number) and mergeable by adding counts."""

    BASE = 1.002
    _LOG_BASE = math.log(BASE)

    __slots__ = ()


def counter_median(counts: dict[str, int]) -> float | None:
    """Median of a {value: how many times} tally."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0
    for value in sorted(counts, key=float):
        seen += counts[value]
        if seen * 2 >= total:
            return float(value)
    return None
