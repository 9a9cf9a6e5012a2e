"""Change points in a series of commits: where a page's time (or its DB reads) stepped.

A bisect finds one commit where good turns bad; a range between two releases holds
several steps, and an improvement inside it can send a bisect the wrong way.  The
systems that watch performance over many commits look at the whole series first (MongoDB's
E-Divisive means, ICPE 2020; Apache Otava, formerly Hunter, which replaced E-Divisive's
permutation test with a Student's t-test so that the same series always gives the same
answer).  This module does what Otava does, on log values:

- binary segmentation: in a segment, every split point is tried and the one with the
  largest Student's t (pooled variance) between the values before and after it is the candidate;
- it is kept when its two-sided p-value, Bonferroni-corrected for the split points tried,
  is below alpha and the step is at least ``min_step`` (a relative change: a step smaller
  than the run-to-run noise is not worth a bisect); then both halves are searched again;
- each step is named with its size, the interval of commits it lies between (the last
  commit before and the first after) and its p-value.

Pure: series in, steps out.  ``python -m moodleload.scan.changepoints RESULTS...`` (results
files in commit order) prints the steps of every page."""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from enum import StrEnum

from moodleload.judging.stats import student_t_cdf
from moodleload.results.model import Results

MIN_SEGMENT = 3  # values on each side of a split: fewer, and one outlier at an end reads as a step



class Direction(StrEnum):
    """Which way a series stepped between two measured commits: saved as its text."""

    REGRESSION = "regression"  # slower, or more work
    IMPROVEMENT = "improvement"

@dataclass(frozen=True)
class Step:
    """A change between commit ``before`` (the last of the old level) and ``after`` (the first of the new)."""

    before: int
    after: int
    ratio: float  # new level / old level (for counters: the difference is in ``change``)
    change: float  # new level - old level, on the series' own scale (log for times)
    p_value: float


def welch(left: list[float], right: list[float]) -> tuple[float, float]:
    """(t, two-sided p) of the difference of means right - left, with the two sides'
    variance pooled: the noise of one series is the same before and after a step, and a
    pooled estimate does not collapse on a short side the way Welch's does (two values that
    happen to agree would make any split at the ends look certain)."""
    mean_left, mean_right = statistics.fmean(left), statistics.fmean(right)
    freedom = len(left) + len(right) - 2
    squares = sum((v - mean_left) ** 2 for v in left) + sum((v - mean_right) ** 2 for v in right)
    difference = mean_right - mean_left
    error_squared = squares / freedom * (1 / len(left) + 1 / len(right))
    if error_squared <= 0:
        return (math.copysign(math.inf, difference) if difference else 0.0), (0.0 if difference else 1.0)
    t = difference / math.sqrt(error_squared)
    return t, 2.0 * (1.0 - student_t_cdf(abs(t), freedom))


def best_split(values: list[float]) -> tuple[int, float, float] | None:
    """(split, t, p): the values before ``split`` against those from it, the largest |t|."""
    best = None
    for split in range(MIN_SEGMENT, len(values) - MIN_SEGMENT + 1):
        t, p = welch(values[:split], values[split:])
        if best is None or abs(t) > abs(best[1]):
            best = (split, t, p)
    return best


def find_steps(values: list[float], alpha: float = 0.01, min_step: float = 0.03,
               log_scale: bool = True) -> list[Step]:
    """The steps of one series (values in commit order; for times give log values and
    log_scale=True, so min_step is relative), earliest first."""
    threshold = math.log1p(min_step) if log_scale else min_step
    steps: list[Step] = []

    def search(start: int, end: int) -> None:
        segment = values[start:end]
        if len(segment) < 2 * MIN_SEGMENT:
            return
        found = best_split(segment)
        if found is None:
            return
        split, _, p_value = found
        tried = len(segment) - 2 * MIN_SEGMENT + 1
        change = statistics.fmean(segment[split:]) - statistics.fmean(segment[:split])
        if min(1.0, p_value * tried) >= alpha or abs(change) < threshold:
            return
        at = start + split
        steps.append(Step(at - 1, at, math.exp(change) if log_scale else math.nan, change, min(1.0, p_value * tried)))
        search(start, at)
        search(at, end)

    search(0, len(values))
    return sorted(steps, key=lambda step: step.after)


def series_of(documents: list[Results], minimum_blocks: int = 8) -> dict[str, list[float]]:
    """page -> per-commit values: the log of each run's value (the median of its block medians),
    the log of its CPU time per answer ("<page> CPU", where every run's footer gave enough of
    it) and the median DB reads ("<page> DB reads"), for pages every document has."""
    from moodleload.judging.runs import run_value
    from moodleload.judging.work import MIN_CPU_ANSWERS

    names = [name for name in documents[0].urls if all(name in document.urls for document in documents)]
    series = {}
    for name in names:
        times = [run_value(document.urls[name], minimum_blocks) for document in documents]
        positive = [value for value in times if value is not None and value > 0]
        if len(positive) == len(times):
            series[name] = [math.log(value) for value in positive]
        work = [value for document in documents
                if document.urls[name].cpu_requests >= MIN_CPU_ANSWERS and not document.urls[name].cpu_unreadable
                and (value := document.urls[name].cpu_ms_mean) is not None and value > 0]
        if len(work) == len(documents):
            series[name + CPU_SUFFIX] = [math.log(value) for value in work]
        reads = [document.urls[name].footer_median("db_reads")
                 for document in documents]
        known = [float(median) for median in reads if median is not None]
        if len(known) == len(reads):
            series[name + COUNTER_SUFFIX] = known
    return series


COUNTER_SUFFIX = " DB reads"  # a series of a page's DB reads is named "<page> DB reads"
CPU_SUFFIX = " CPU"  # and one of its CPU time per answer (Moodle's footer) "<page> CPU"


def is_counter(series: str) -> bool:
    return series.endswith(COUNTER_SUFFIX)


def is_work(series: str) -> bool:
    """A series of the work a page did (its CPU time per answer), judged with --judge work."""
    return series.endswith(CPU_SUFFIX)


@dataclass(frozen=True)
class Found:
    """One step of one series: ``series`` is a page name, "<page> CPU" or "<page> DB reads"."""

    series: str
    step: Step
    counter: bool

    @property
    def direction(self) -> Direction:
        return Direction.REGRESSION if self.step.change > 0 else Direction.IMPROVEMENT


def find_all(documents: list[Results], alpha: float = 0.01, min_step_pct: float = 3.0,
             min_reads: float = 2.0) -> list[Found]:
    """Every step of every series of ``documents`` (results in commit order), series by series."""
    found = []
    for name, values in series_of(documents).items():
        counter = is_counter(name)
        for step in find_steps(values, alpha, min_reads if counter else min_step_pct / 100.0, log_scale=not counter):
            found.append(Found(name, step, counter))
    return found


def describe(name: str, step: Step, labels: list[str], counter: bool) -> str:
    between = f"between {labels[step.before]} and {labels[step.after]}"
    if counter:
        return f"{name}: {step.change:+.1f} {between} (p {step.p_value:.2g})"
    word = "slower" if step.ratio > 1 else "faster"
    return f"{name}: x{step.ratio:.3f} ({abs(step.ratio - 1):.1%} {word}) {between} (p {step.p_value:.2g})"


def main(argv: list[str] | None = None) -> int:
    from moodleload.exits import EXIT_USAGE, UsageError
    from moodleload.results.model import load_document

    parser = argparse.ArgumentParser(prog="python -m moodleload.scan.changepoints", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="RESULTS", help="results files, one per commit, in commit order")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--min-step", type=float, default=3.0, metavar="PCT", help="smallest step named (default 3 %%)")
    parser.add_argument("--min-reads-step", type=float, default=2.0, metavar="N",
                        help="smallest step of DB reads named (default 2)")
    args = parser.parse_args(argv)
    try:
        if len(args.results) < 2 * MIN_SEGMENT:
            raise UsageError(f"a change point needs at least {2 * MIN_SEGMENT} commits' results")
        documents = [load_document(path) for path in args.results]
    except UsageError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return EXIT_USAGE
    found = find_all(documents, args.alpha, args.min_step, args.min_reads_step)
    for item in found:
        print(describe(item.series, item.step, args.results, item.counter))
    if not found:
        print("no step: every page stayed level across these commits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
