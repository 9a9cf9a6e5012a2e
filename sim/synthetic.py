"""Runs of the simulated site without running it: results documents drawn from a recorded
run's per-page service-time distributions, with the drifts real runs have.  Each block
drifts a little (runs are autocorrelated) and, like the real Moodle site between two
prepared runs, the whole run shifts by a factor of a few percent that every page shares.
Used to calibrate the verdicts (tests/test_runs.py, bench/calibration.py)."""

from __future__ import annotations

import copy
import random

from moodleload.histogram import FineHistogram, Histogram
from moodleload.results import Results


def _sampler(histogram: Histogram, rng: random.Random):
    buckets = sorted(histogram.counts)
    weights = [histogram.counts[bucket] for bucket in buckets]
    cumulative = []
    total = 0
    for weight in weights:
        total += weight
        cumulative.append(total)

    def draw() -> float:
        bucket = rng.choices(buckets, cum_weights=cumulative)[0]
        return Histogram.BASE ** (bucket + rng.random()) / 1000.0
    return draw


def synthetic_run(recorded: dict, rng: random.Random, slowdown: dict | None = None, run_shift_sd: float = 0.02,
                  block_drift_sd: float = 0.03) -> Results:
    """A run like ``recorded``: the same requests per block, service times drawn from its
    distributions, times ``slowdown[page]`` for the pages named, a per-block drift and a
    run-level shift shared by every page (lognormal, ``run_shift_sd`` on the log scale)."""
    run = copy.deepcopy(recorded)
    shift = rng.lognormvariate(0.0, run_shift_sd)
    for name, raw in run["urls"].items():
        draw = _sampler(Histogram.from_dict(recorded["urls"][name]["service_ms"]), rng)
        factor = (slowdown or {}).get(name, 1.0) * shift
        blocks, fine_blocks = [], []
        for block in recorded["urls"][name]["blocks_service_ms"]:
            drift = rng.lognormvariate(0.0, block_drift_sd)
            histogram, fine = Histogram(), FineHistogram()
            for _ in range(block["count"]):
                value = draw() * drift * factor
                histogram.record(value)
                fine.record(value)
            blocks.append(histogram.to_dict())
            fine_blocks.append(fine.to_dict())
        raw["blocks_service_ms"] = blocks
        raw["blocks_service_fine_ms"] = fine_blocks
    return Results.from_dict(run, "a synthetic run")
