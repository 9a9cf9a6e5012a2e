"""Confirming a culprit: runs of the commit's parent and of the commit, made in alternation
on freshly prepared sites, judged pair by pair.  A pair's ratio (culprit over parent, per
page) cancels what drifts slowly across the pairs (the machine, the neighbours), the lesson
of randomized multiple interleaved trials (Abedi and Brecht, ICPE 2017) and of duet
benchmarking; Student's t over the pairs' log ratios gives the interval, at alpha split over
the pages (Bonferroni).  Confirmed: some page slower than the tolerance, shown so (or its DB
reads up in every pair).  Not confirmed: every page's upper bound below the tolerance and no
DB reads added.  Otherwise: cannot tell, with how many more pairs would."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from moodleload.exits import EXIT_BAD, EXIT_CANNOT_JUDGE, EXIT_GOOD, UsageError
from moodleload.judging.compare import Thresholds
from moodleload.judging.runs import run_value
from moodleload.judging.stats import student_t_cdf, student_t_quantile
from moodleload.judging.verdict import Verdict, VerdictWord
from moodleload.judging.work import TIME, WORK, cpu_judged, good_measure, measures
from moodleload.results.comparison import Measure
from moodleload.results.model import Results

MAX_EXTRA_PAIRS = 20


PairValues = tuple[float | None, float | None, float | None]  # (log ratio, DB reads parent, DB reads culprit)


def pair_values(parents: list[Results], culprits: list[Results], thresholds: Thresholds,
                measure: Measure = TIME) -> dict[str, list[PairValues]]:
    """page -> per pair (log ratio of run values of ``measure`` or None, DB reads parent, DB
    reads culprit); under work, the pages whose work is judged (not web-service calls)."""
    names = [name for name in culprits[0].urls
             if all(name in document.urls for document in parents + culprits)]
    if measure == WORK:
        names = [name for name in names if cpu_judged(culprits[0].urls[name], culprits[0].row_kind(name))]
    pages = {}
    for name in names:
        pairs: list[PairValues] = []
        for parent, culprit in zip(parents, culprits, strict=True):
            before, after = (run_value(document.urls[name], thresholds.min_blocks, measure, document.row_kind(name),
                                       thresholds.max_regression_pct) for document in (parent, culprit))
            ratio = math.log(after / before) if before and after else None
            reads = [document.urls[name].footer_median("db_reads")
                     for document in (parent, culprit)]
            pairs.append((ratio, reads[0], reads[1]))
        pages[name] = pairs
    return pages


@dataclass(frozen=True)
class PairRow:
    """One page over the ABAB pairs (judge_page): the mean ratio, its interval, what they show."""

    pairs: int
    slower_in: int  # pairs whose culprit run was the slower
    more_db_reads: bool  # in every pair, by the DB-read rule
    same_reads: bool  # in no pair more DB reads
    db_reads: tuple[float, float] | None  # mean (parent, culprit) over the pairs with both
    ratio: float | None = None  # None with fewer than two pairs with data
    interval: tuple[float, float] | None = None
    p_value: float | None = None
    shown_slower: bool = False
    shown_within: bool = False
    sd: float = 0.0  # of the log ratios (for pairs_needed)


def judge_page(pairs: list[PairValues], thresholds: Thresholds, alpha: float) -> PairRow:
    """One page over the pairs: the mean log ratio, its interval, and what it shows."""
    tolerance = math.log1p(thresholds.max_regression_pct / 100.0)
    logs = [ratio for ratio, _, _ in pairs if ratio is not None]
    reads = [(before, after) for _, before, after in pairs if before is not None and after is not None]
    more_reads = bool(reads) and len(reads) == len(pairs) and all(
        thresholds.more_db_reads(before, after) for before, after in reads)
    same_reads = not reads or not any(thresholds.more_db_reads(before, after) for before, after in reads)
    db_reads = (round(sum(before for before, _ in reads) / len(reads), 1),
                round(sum(after for _, after in reads) / len(reads), 1)) if reads else None
    row = PairRow(len(pairs), sum(log > 0 for log in logs), more_reads, same_reads, db_reads)
    if len(logs) < 2:
        return row
    mean = sum(logs) / len(logs)
    sd = max(math.sqrt(sum((log - mean) ** 2 for log in logs) / (len(logs) - 1)), 0.002)
    freedom = len(logs) - 1
    error = sd / math.sqrt(len(logs))
    p = 1.0 - student_t_cdf(mean / error, freedom)
    half = student_t_quantile(1 - alpha, freedom) * error
    return replace(row, ratio=round(math.exp(mean), 4),
                   interval=(round(math.exp(mean - half), 4), round(math.exp(mean + half), 4)),
                   p_value=float(f"{p:.3g}"), shown_slower=mean > tolerance and p <= alpha,
                   shown_within=mean + half < tolerance, sd=sd)


def confirm(parents: list[Results], culprits: list[Results],
            thresholds: Thresholds) -> tuple[Verdict, dict[str, PairRow]]:
    """The confirmation's verdict (0 confirmed, 1 not confirmed, 125 cannot tell) and its rows:
    by service time, by the work (CPU time per answer) or by both, as thresholds.judge says
    (under both, either confirms; clearing needs the time)."""
    if len(parents) != len(culprits) or len(parents) < 2:
        raise UsageError("--pairs needs PARENT CULPRIT PARENT CULPRIT ...: at least two pairs")
    confirmed: list[str] = []
    rows: dict[str, PairRow] = {}
    good_alpha = thresholds.alpha
    for measure in measures(thresholds.judge):
        pages = pair_values(parents, culprits, thresholds, measure)
        alpha = thresholds.alpha / max(1, len(pages))
        judged = {name: judge_page(pairs, thresholds, alpha) for name, pairs in pages.items()}
        what = "CPU time per answer " if measure == WORK else ""
        confirmed += [f"{name} {what}x{row.ratio:.2f} ({row.interval[0]:.2f}-{row.interval[1]:.2f}) in "
                      f"{row.slower_in} of {row.pairs} pairs" for name, row in judged.items()
                      if row.shown_slower and row.ratio is not None and row.interval is not None]
        if measure == good_measure(thresholds.judge):
            rows, good_alpha = judged, alpha
    if not rows:
        raise UsageError("the --pairs runs have no URL in common" if thresholds.judge != WORK else
                         "the --pairs runs have no page in common whose footer shows its CPU time")
    confirmed += [f"{name} DB reads {row.db_reads[0]:g} -> {row.db_reads[1]:g} in every pair"
                  for name, row in rows.items() if row.more_db_reads and row.db_reads is not None]
    if confirmed:
        return Verdict(EXIT_GOOD, VerdictWord.CONFIRMED, tuple(confirmed)), rows
    if all(row.shown_within and row.same_reads for row in rows.values()):
        cleared = [f"{name} x{row.ratio:.3f} ({row.interval[0]:.3f}-{row.interval[1]:.3f}), within "
                   f"{thresholds.max_regression_pct:g} %" for name, row in rows.items()
                   if row.ratio is not None and row.interval is not None]
        return Verdict(EXIT_BAD, VerdictWord.NOT_CONFIRMED, tuple(cleared)), rows
    more = pairs_needed(rows, thresholds, good_alpha)
    reasons = [f"{name} x{row.ratio:.3f} ({row.interval[0]:.3f}-{row.interval[1]:.3f})"
               if row.ratio and row.interval else f"{name}: too few pairs with data" for name, row in rows.items()]
    tail = f"about {more} more pairs would decide" if more else f"not even {MAX_EXTRA_PAIRS} more pairs would decide"
    return Verdict(EXIT_CANNOT_JUDGE, VerdictWord.CANNOT_TELL, (tail, *reasons)), rows


def pairs_needed(rows: dict[str, PairRow], thresholds: Thresholds, alpha: float) -> int | None:
    """More pairs that would decide if each page's mean and scatter stayed as measured."""
    tolerance = math.log1p(thresholds.max_regression_pct / 100.0)
    for extra in range(1, MAX_EXTRA_PAIRS + 1):
        decided_all = True
        for row in rows.values():
            if row.ratio is None:
                return None
            n = row.pairs + extra
            mean, error = math.log(row.ratio), row.sd / math.sqrt(n)
            quantile = student_t_quantile(1 - alpha, n - 1)
            if mean > tolerance and mean / error > quantile:
                return extra
            decided_all = decided_all and mean + quantile * error < tolerance
        if decided_all:
            return extra
    return None
