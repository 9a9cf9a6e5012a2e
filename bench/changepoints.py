"""How often moodleload/scan/changepoints.py finds a step of each size in a series of 40
commits, and how often it names a step in a series that only scatters, at run-level
noise of 1-4 % (lognormal, one value per commit, as one run per commit gives).  A step
counts as found when it is named within one commit of where it is.  Seeded: the same
table every time.  Writes bench/results/changepoints.md.

    .venv/bin/python bench/changepoints.py [--trials 300]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from moodleload.scan.changepoints import find_steps  # noqa: E402

COMMITS = 40
STEPS = (0.03, 0.05, 0.10, 0.15)
NOISES = (0.01, 0.02, 0.03, 0.04)


def series(rng: random.Random, noise: float, step: float, at: int) -> list:
    return [math.log1p(step if commit >= at else 0.0) + rng.gauss(0.0, noise) for commit in range(COMMITS)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args()
    lines = [f"# Change points: {COMMITS} commits, one value each, {args.trials} series per cell, seeded "
             f"(alpha 0.01, smallest step named 3 %)", "",
             "| run-level noise | false step on a level series | "
             + " | ".join(f"{step:.0%} step found" for step in STEPS) + " |", "|---|---|" + "---|" * len(STEPS)]
    for noise in NOISES:
        rng = random.Random(int(noise * 1000))
        false = sum(bool(find_steps(series(rng, noise, 0.0, 0))) for _ in range(args.trials)) / args.trials
        found = []
        for step in STEPS:
            hits = 0
            for _ in range(args.trials):
                at = rng.randrange(5, COMMITS - 5)
                hits += any(abs(s.after - at) <= 1 for s in find_steps(series(rng, noise, step, at)))
            found.append(hits / args.trials)
        lines.append(f"| {noise:.0%} | {false:.1%} | " + " | ".join(f"{rate:.0%}" for rate in found) + " |")
        print(lines[-1], flush=True)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "changepoints.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
