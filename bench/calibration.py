"""How often the verdict calls identical code bad, and how often it calls a real slowdown,
when whole runs shift as real ones do: the table in the README's verdict section.

Synthetic runs (sim/synthetic.py) are drawn from a recorded run of the simulated site
(tests/data/recorded-run.json, 120 s at 600 RPM, 20 blocks), each block drifting a little
and each run shifted as a whole by a lognormal factor shared by every page.  For each
spread and tolerance it judges 3 baseline runs against one candidate run (several-runs
verdict) and one baseline run against one candidate (the block verdict, one run a side).
Seeded: the same table every time.  Writes bench/results/calibration.md.

    .venv/bin/python bench/calibration.py [--trials 100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from moodleload.compare import Thresholds, compare_documents  # noqa: E402
from moodleload.runs import compare_runs  # noqa: E402
from sim.synthetic import synthetic_run  # noqa: E402

SLOWDOWNS = (1.0, 1.05, 1.10, 1.15, 1.20)
PAGE = "course"


def rate(recorded, spread: float, tolerance: float, slowdown: float, trials: int, runs: bool, seed: int) -> float:
    rng = random.Random(seed)
    called = 0
    for _ in range(trials):
        bases = [synthetic_run(recorded, rng, run_shift_sd=spread) for _ in range(3 if runs else 1)]
        candidate = synthetic_run(recorded, rng, {PAGE: slowdown} if slowdown != 1.0 else None, run_shift_sd=spread)
        thresholds = Thresholds(max_regression_pct=tolerance)
        comparison = compare_runs(bases, [candidate], thresholds) if runs \
            else compare_documents(bases[0], candidate, thresholds)
        if slowdown == 1.0:
            called += comparison["verdict"] == "regression"
        else:
            called += comparison["urls"][PAGE]["verdict"] == "regression"
    return called / trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    with open(os.path.join(ROOT, "tests", "data", "recorded-run.json"), encoding="utf-8") as handle:
        recorded = json.load(handle)
    header = "| run-to-run spread | verdict | tolerance | identical code called bad | " + \
        " | ".join(f"{PAGE} {round((s - 1) * 100)} % slower: called" for s in SLOWDOWNS[1:]) + " |"
    lines = [f"# Verdict calibration ({args.trials} trials per cell, seeded)", "", header,
             "|" + "---|" * (4 + len(SLOWDOWNS) - 1)]
    for spread in (0.0, 0.01, 0.02):
        for runs, label in ((False, "1 baseline run, blocks"), (True, "3 baseline runs")):
            for tolerance in (5, 10):
                cells = [rate(recorded, spread, tolerance, slowdown, args.trials, runs, seed=int(spread * 1000) + 7)
                         for slowdown in SLOWDOWNS]
                lines.append(f"| {spread:.0%} | {label} | {tolerance} % | "
                             + " | ".join(f"{cell:.0%}" for cell in cells) + " |")
                print(lines[-1], flush=True)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "calibration.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
