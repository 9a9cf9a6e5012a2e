"""Latency histograms: within 1 %, bounded memory, mergeable."""

import math
import random

from moodleload.results.histogram import Histogram


def test_histogram_percentiles_are_within_one_percent():
    rng = random.Random(5)
    values = sorted(rng.lognormvariate(4.5, 0.7) for _ in range(20000))
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    for q in (50, 90, 95, 99, 99.9):
        exact = values[math.ceil(q / 100 * len(values)) - 1]  # the nearest-rank percentile
        assert abs(histogram.percentile(q) - exact) / exact <= 0.01
    assert histogram.maximum == values[-1] and histogram.count == 20000


def test_histogram_memory_does_not_grow_with_the_number_of_values():
    histogram = Histogram()
    rng = random.Random(1)
    for _ in range(100000):
        histogram.record(rng.uniform(1, 10000))
    assert len(histogram.counts) < 500


def test_merged_histograms_equal_one_histogram_of_all_values():
    rng = random.Random(2)
    a, b, whole = Histogram(), Histogram(), Histogram()
    for n in range(5000):
        value = rng.expovariate(1 / 80)
        (a if n % 2 else b).record(value)
        whole.record(value)
    merged = Histogram.from_dict(a.to_dict()).merge(Histogram.from_dict(b.to_dict()))
    assert merged.counts == whole.counts
    assert merged.percentile(99) == whole.percentile(99)
