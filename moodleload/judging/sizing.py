"""How many runs a bisect needs, from the noise measured: the sizing a bisect step and its
baseline read before they spend another run, and the cost said before a bisect starts.

    python -m moodleload.judging.sizing baseline --max-regression 5 [--max-runs 6] [--commits 1200]
        [--seconds-per-run 150] baseline-1.json baseline-2.json baseline-3.json
    python -m moodleload.judging.sizing next RESULTS

Both print shell assignments on standard output (for ``eval`` in bisect-step.sh) and say
in words on standard error what they found."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

from moodleload.exits import EXIT_USAGE, UsageError
from moodleload.judging.compare import Thresholds
from moodleload.judging.runs import MAX_EXTRA_RUNS, Evidence, Spread, analyse_spread, decided, log_grids
from moodleload.judging.work import JUDGE_BOTH, JUDGE_CHOICES, good_measure
from moodleload.results.comparison import Judge
from moodleload.results.model import Results, load_document


def baseline_spread(bases: list[Results], thresholds: Thresholds) -> tuple[Spread | None, list[str]]:
    """The run-to-run spread of the baseline's own runs, and the pages it was read from."""
    names = [name for name in bases[0].urls if all(name in document.urls for document in bases)]
    spread = analyse_spread(log_grids(bases, [], names, thresholds, good_measure(thresholds.judge))[:1])
    return spread, names


def runs_for_identical_code(bases: list[Results], thresholds: Thresholds, extra_baseline: int = 0) -> int | None:
    """The fewest runs of a commit with code identical to the baseline's that would call it
    good at the baseline's spread (None: not within MAX_EXTRA_RUNS).  Identical code is the
    hard case for a bisect: a slowdown decides sooner, as bad."""
    spread, names = baseline_spread(bases, thresholds)
    if spread is None or not names:
        return None
    base_runs = len(bases) + extra_baseline
    failures = {}
    for name in names:
        failed = sum(document.urls[name].failure for document in bases) * base_runs / len(bases)
        requests = sum(document.urls[name].requests for document in bases) * base_runs / len(bases)
        failures[name] = (failed, requests, failed / base_runs, requests / base_runs)
    alpha = thresholds.alpha / len(names)
    for runs in range(1, MAX_EXTRA_RUNS + 1):
        grown = {name: (bf, bt, nf * runs, nt * runs) for name, (bf, bt, nf, nt) in failures.items()}
        evidence = Evidence({name: 0.0 for name in names}, spread.grown(extra_baseline + runs - 1), base_runs,
                            runs, grown)
        if decided(evidence, thresholds, alpha):
            return runs
    return None


def plan_baseline(bases: list[Results], thresholds: Thresholds, max_runs: int) -> tuple[int | None, int | None]:
    """(runs a step needs, baseline runs still to record so that a step needs at most
    ``max_runs``): (k, 0) when the baseline is enough, (k, m) when m more would make it so,
    (None, None) when not even MAX_EXTRA_RUNS more would."""
    for extra in range(0, MAX_EXTRA_RUNS + 1):
        runs = runs_for_identical_code(bases, thresholds, extra)
        if runs is not None and runs <= max_runs:
            return runs, extra
    return None, None


def cost_line(runs: int, seconds_per_run: float | None, commits: int | None, tolerance: float) -> str:
    """What a bisect will cost, said before it starts."""
    line = f"calling {tolerance:g} % needs about {runs} run{'s' * (runs > 1)} a step"
    if seconds_per_run:
        step_minutes = runs * seconds_per_run / 60.0
        line += f", {step_minutes:.0f} minutes a step"
        if commits and commits > 1:
            steps = math.ceil(math.log2(commits + 1))
            line += f", about {steps * step_minutes / 60.0:.1f} hours for a bisect of {commits} commits ({steps} steps)"
    return line


@dataclass(frozen=True)
class BaselinePlan:
    """What the baseline's runs support: baseline runs still to record (None: not even
    MAX_EXTRA_RUNS more would do), runs a step needs, and the line that says so."""

    extra_baseline_runs: int | None
    runs_per_step: int | None
    line: str


def plan_for(bases: list[Results], thresholds: Thresholds, max_runs: int, seconds_per_run: float | None = None,
             commits: int | None = None) -> BaselinePlan:
    """The sizing a bisect's baseline reads after each of its runs."""
    tolerance = thresholds.max_regression_pct
    spread, _ = baseline_spread(bases, thresholds)
    if spread is None:
        return BaselinePlan(1, None, "the baseline has too few runs with data to know its spread: record at least two")
    runs, extra = plan_baseline(bases, thresholds, max_runs)
    what = "CPU time per answer" if good_measure(thresholds.judge) == "work" else "service time"
    noise = f"{what}: {math.exp(spread.total) - 1:.1%} a page run to run, {math.exp(spread.site) - 1:.1%} for the site"
    if runs is None:
        return BaselinePlan(None, None, f"at this spread ({noise}) not even {MAX_EXTRA_RUNS} more baseline runs "
                                        f"would let {max_runs} runs a step call {tolerance:g} %: lower the noise (a "
                                        f"quieter machine, longer runs) or raise --max-regression")
    if extra:
        return BaselinePlan(extra, runs, f"at this spread ({noise}) the {len(bases)} baseline runs cannot support "
                                         f"{tolerance:g} % within {max_runs} runs a step: about {extra} more baseline "
                                         f"run{'s' * (extra > 1)} would")
    return BaselinePlan(0, runs, f"at this spread ({noise}), " + cost_line(runs, seconds_per_run, commits, tolerance))


def more_runs_of(document: Results) -> tuple[int | None, str | None]:
    """What the comparison in a step's results says more runs of the commit would do: (how
    many would decide, None where none would; why it is undecided, where it says)."""
    comparison = document.comparison
    if comparison is None:
        return None, None
    return comparison.more_runs.candidate, comparison.undecided


def thresholds_of(max_regression: float, alpha: float, judge: str, max_failure_rise: float) -> Thresholds:
    return Thresholds(max_regression_pct=max_regression, alpha=alpha, judge=Judge(judge),
                      failure_margin=max_failure_rise / 100.0)


def _baseline(args: argparse.Namespace) -> int:
    thresholds = thresholds_of(args.max_regression, args.alpha, args.judge, args.max_failure_rise)
    plan = plan_for([load_document(path) for path in args.results], thresholds, args.max_runs,
                    args.seconds_per_run, args.commits)
    print(f"[bisect] {plan.line}", file=sys.stderr)
    print(f"extra_baseline_runs={'' if plan.extra_baseline_runs is None else plan.extra_baseline_runs}\n"
          f"runs_per_step={'' if plan.runs_per_step is None else plan.runs_per_step}")
    return 0


def _next(args: argparse.Namespace) -> int:
    """What the comparison in a results file says more runs would do."""
    candidate, undecided = more_runs_of(load_document(args.results[0]))
    print(f"more_runs={'' if candidate is None else candidate}")
    if undecided:
        print(f"[bisect] {undecided}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moodleload.judging.sizing", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("baseline", "next"))
    parser.add_argument("results", nargs="+", metavar="RESULTS")
    parser.add_argument("--max-regression", type=float, default=10.0)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--max-failure-rise", type=float, default=2.0, metavar="PCT")
    parser.add_argument("--judge", choices=JUDGE_CHOICES, default=JUDGE_BOTH,
                        help="the measure the steps decide good by: work sizes from the CPU time's spread")
    parser.add_argument("--max-runs", type=int, default=6, help="runs a bisect step may spend on one commit")
    parser.add_argument("--seconds-per-run", type=float, help="wall time of one prepared run")
    parser.add_argument("--commits", type=int, help="commits the bisect spans")
    args = parser.parse_args(argv)
    try:
        return _baseline(args) if args.what == "baseline" else _next(args)
    except UsageError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
