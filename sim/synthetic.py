"""Runs of the simulated site without running it: results documents drawn from a recorded
run's per-page service-time distributions, with the drifts real runs have.  Each block
drifts a little (runs are autocorrelated) and, like the real Moodle site between two
prepared runs, the whole run shifts by a factor of a few percent that every page shares.
With ``cpu_ms`` each page also gets the PHP worker's CPU time per answer, drawn as the real
footer shows it: the work varies a little request to request and, much less than wall time,
run to run, and each reading is two counters rounded down to a 10 ms tick.
Used to calibrate the verdicts (tests/test_runs.py, tests/test_work.py, bench/calibration.py)."""

from __future__ import annotations

import copy
import random

from moodleload.results.histogram import FineHistogram, Histogram
from moodleload.results.model import Results


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


def cpu_reading(work_ms: float, rng: random.Random) -> int:
    """One footer's CPU ticks for ``work_ms`` of work: posix_times() read before and after,
    each rounded down to a 10 ms tick, at a phase the request does not choose."""
    phase = rng.random()
    return int(phase + work_ms / 10.0)


def _cpu_blocks(raw: dict, mean_ms: float, rng: random.Random, jitter_sd: float) -> list:
    blocks = []
    for block in raw["blocks_service_ms"]:
        tally: dict[str, int] = {}
        for _ in range(block.get("count", 0)):
            ticks = str(cpu_reading(mean_ms * rng.lognormvariate(0.0, jitter_sd), rng))
            tally[ticks] = tally.get(ticks, 0) + 1
        blocks.append(dict(sorted(tally.items(), key=lambda item: int(item[0]))))
    return blocks


def synthetic_run(recorded: dict, rng: random.Random, slowdown: dict | None = None, run_shift_sd: float = 0.02,
                  block_drift_sd: float = 0.03, cpu_ms: dict | None = None, cpu_shift_sd: float = 0.01,
                  cpu_jitter_sd: float = 0.2) -> Results:
    """A run like ``recorded``: the same requests per block, service times drawn from its
    distributions, times ``slowdown[page]`` for the pages named, a per-block drift and a
    run-level shift shared by every page (lognormal, ``run_shift_sd`` on the log scale).
    ``cpu_ms`` (page -> mean CPU ms per answer, slowdowns included) adds the footer's CPU
    ticks, with a run-level shift of ``cpu_shift_sd`` and a per-request one of ``cpu_jitter_sd``."""
    run = copy.deepcopy(recorded)
    shift = rng.lognormvariate(0.0, run_shift_sd)
    if cpu_ms:
        cpu_shift = rng.lognormvariate(0.0, cpu_shift_sd)
        for name, mean_ms in cpu_ms.items():
            raw = run["urls"][name]
            raw["blocks_cpu_ticks"] = _cpu_blocks(raw, mean_ms * cpu_shift, rng, cpu_jitter_sd)
            total: dict[str, int] = {}
            for block in raw["blocks_cpu_ticks"]:
                for ticks, count in block.items():
                    total[ticks] = total.get(ticks, 0) + count
            raw["footer"]["cpu_ticks"] = total
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
