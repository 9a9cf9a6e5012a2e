"""How often the verdict calls identical code bad, how often it calls a real slowdown good,
and how many runs a step the re-run policy spends, when whole runs shift as real ones do:
the table in the README's verdict section.

Synthetic runs (sim/synthetic.py) are drawn from a recorded run of the simulated site
(tests/data/recorded-run.json, 120 s at 600 RPM, 20 blocks), each block drifting a little
and each run shifted as a whole by a lognormal factor shared by every page (the run-to-run
spread of the table).  A step is what examples/bisect-step.sh does: one run of the commit
judged against the baseline runs, then, while the answer is unsure and the comparison says
more runs would decide, one more run pooled with the earlier ones, up to MAX_RUNS; with one
baseline run, always a second run (one run a side cannot see the run-to-run spread).  For each
spread, tolerance and number of baseline runs it counts, over the trials:

- identical code called bad (must stay at most alpha, 5 %);
- one page slower by 1.5 times the tolerance called good (must stay at most 5 %);
- the same slowdown called bad, and steps left unsure (125, a bisect skips them);
- the mean runs a step spent.

A second table does the same for ``--judge work``: each page's CPU time per answer drawn
as Moodle's footer gives it (per-request scatter, 10 ms ticks read before and after, a small
run-to-run shift of the work), while the wall time shifts 6 % run to run, as on a busy
machine; the slowdown is 1.5 tolerances more CPU on one page.

Seeded: the same tables every time.  With FULL_TRIALS trials or more it writes
bench/results/calibration.md, the table the docs cite; a shorter (smoke) run prints its
rows and writes nothing unless given --output, so it never overwrites that result.

    .venv/bin/python bench/calibration.py [--trials 300] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from moodleload.judging.compare import Thresholds, compare_documents  # noqa: E402
from moodleload.judging.runcompare import compare_runs  # noqa: E402
from moodleload.results.comparison import Judge  # noqa: E402
from sim.synthetic import synthetic_run  # noqa: E402

PAGE = "course"
MAX_RUNS = 6
FULL_TRIALS = 300
# CPU time per answer of the recorded run's pages (ms), as on a real 2-core Moodle, and the
# wall time's run-to-run spread of a busy machine that the work must see through.
CPU_MS = {"dashboard": 60.0, "course": 80.0, "forum": 70.0, "profile": 40.0}
BUSY_WALL_SPREAD = 0.06


def draw(recorded, rng, slowdown: float, spread: float, judge: str):
    """One synthetic run: ``spread`` is the time's run-to-run spread under --judge time,
    the work's under --judge work (the time's is then a busy machine's)."""
    if judge == "work":
        cpu = {**CPU_MS, PAGE: CPU_MS[PAGE] * slowdown}
        return synthetic_run(recorded, rng, run_shift_sd=BUSY_WALL_SPREAD, cpu_ms=cpu, cpu_shift_sd=spread)
    return synthetic_run(recorded, rng, {PAGE: slowdown} if slowdown != 1.0 else None, run_shift_sd=spread)


def step(recorded, rng, bases: list, tolerance: float, slowdown: float, spread: float,
         judge: str = "both") -> tuple[str, int]:
    """One bisect step with the re-run policy: (overall verdict, runs spent)."""
    thresholds = Thresholds(max_regression_pct=tolerance, judge=Judge(judge))
    news = []
    while True:
        news.append(draw(recorded, rng, slowdown, spread, judge))
        if len(bases) + len(news) > 2:
            comparison = compare_runs(bases, news, thresholds)
        else:
            comparison = compare_documents(bases[0], news[0], thresholds)
        if len(bases) == 1 and len(news) == 1:
            continue  # bisect-step.sh's policy: one baseline run's block verdict is never the last word
        if comparison.verdict != "unsure" or len(news) >= MAX_RUNS:
            return comparison.verdict, len(news)
        if comparison.more_runs.candidate is None and comparison.method == "runs":
            return comparison.verdict, len(news)


def cell(recorded, spread: float, tolerance: float, base_runs: int, trials: int, seed: int,
         judge: str = "both") -> dict:
    rng = random.Random(seed)
    counts = {"identical bad": 0, "identical good": 0, "slow good": 0, "slow bad": 0, "slow unsure": 0}
    runs = []
    for _ in range(trials):
        bases = [draw(recorded, rng, 1.0, spread, judge) for _ in range(base_runs)]
        verdict, spent = step(recorded, rng, bases, tolerance, 1.0, spread, judge)
        counts["identical bad"] += verdict == "regression"
        counts["identical good"] += verdict == "same"
        runs.append(spent)
        verdict, spent = step(recorded, rng, bases, tolerance, 1 + 1.5 * tolerance / 100, spread, judge)
        counts["slow good"] += verdict in ("same", "improvement")
        counts["slow bad"] += verdict == "regression"
        counts["slow unsure"] += verdict == "unsure"
        runs.append(spent)
    return {key: value / trials for key, value in counts.items()} | {"runs": sum(runs) / len(runs)}


HEADER = ("| {spread} | tolerance | baseline runs | identical code called bad | identical code called good | "
          "1.5x tolerance slower called good | called bad | left unsure | mean runs a step |")


def table(recorded, judge: str, spreads: tuple, baseline_runs: list, trials: int) -> list:
    what = "CPU time's run-to-run spread" if judge == "work" else "run-to-run spread"
    lines = [HEADER.format(spread=what), "|---|---|---|---|---|---|---|---|---|"]
    for spread in spreads:
        for tolerance in (5, 10):
            for base_runs in baseline_runs:
                seed = int(spread * 1000) * 100 + tolerance * 10 + base_runs + (7 if judge == "work" else 0)
                rates = cell(recorded, spread, tolerance, base_runs, trials, seed, judge)
                lines.append(f"| {spread:.1%} | {tolerance} % | {base_runs} | {rates['identical bad']:.0%} | "
                             f"{rates['identical good']:.0%} | {rates['slow good']:.0%} | {rates['slow bad']:.0%} | "
                             f"{rates['slow unsure']:.0%} | {rates['runs']:.1f} |")
                print(lines[-1], flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=FULL_TRIALS)
    parser.add_argument("--baseline-runs", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--tables", nargs="+", choices=("time", "work"), default=["time", "work"])
    parser.add_argument("--output", help=f"where to write the tables (default: bench/results/calibration.md, "
                                         f"and only with --trials {FULL_TRIALS} or more)")
    args = parser.parse_args()
    with open(os.path.join(ROOT, "tests", "data", "recorded-run.json"), encoding="utf-8") as handle:
        recorded = json.load(handle)
    lines = [f"# Verdict calibration ({args.trials} trials per cell, seeded; a step re-runs up to {MAX_RUNS} runs)",
             "", "## --judge time (and both): service time", ""]
    if "time" in args.tables:
        lines += table(recorded, "both", (0.01, 0.02, 0.04, 0.08), args.baseline_runs, args.trials)
    lines += ["", f"## --judge work: CPU time per answer, the wall time shifting {BUSY_WALL_SPREAD:.0%} run to run",
              "", "Pages of 40-80 ms CPU, about 300 answers a page a run, 10 ms ticks.", ""]
    if "work" in args.tables:
        lines += table(recorded, "work", (0.005, 0.01, 0.02), args.baseline_runs, args.trials)
    output = args.output
    if output is None and args.trials >= FULL_TRIALS and len(args.tables) == 2:
        output = os.path.join(ROOT, "bench", "results", "calibration.md")
    if output is None:
        print(f"[calibration] {args.trials} trials is a smoke run: nothing written (--output FILE to keep it; "
              f"bench/results/calibration.md holds only runs of {FULL_TRIALS} trials or more)")
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
