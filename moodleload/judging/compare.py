"""Comparing a run with its baseline, URL by URL."""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from moodleload.console import round_or_none
from moodleload.judging.stats import normal_quantile
from moodleload.judging.work import JUDGE_WORK, WORK, combine, cpu_judged, cpu_problem
from moodleload.load.machine import contended, contention_shift, neighbours_shift
from moodleload.results.comparison import Comparison, ComparisonRow, Judge, MoreRuns, RowVerdict, WorkRow

if TYPE_CHECKING:
    from moodleload.results.model import Results
    from moodleload.results.sections import UrlRecord

# ---- comparing two runs

def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation with tie
    correction and continuity correction); fine from about 8 values a side."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return 1.0
    combined = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(combined)
    tie_term = 0.0
    i = 0
    while i < len(combined):
        j = i
        while j + 1 < len(combined) and combined[j + 1][0] == combined[i][0]:
            j += 1
        average = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[k] = average
        ties = j - i + 1
        tie_term += ties ** 3 - ties
        i = j + 1
    rank_sum_a = sum(rank for rank, (_, side) in zip(ranks, combined, strict=True) if side == 0)
    u = rank_sum_a - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2.0) - 0.5) / math.sqrt(variance)
    return max(0.0, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0))))


def block_medians(record: UrlRecord, minimum_count: int = 3) -> list[float]:
    """Per time block, the median service time: the unit of evidence (requests within a
    run are autocorrelated, blocks much less so).  From the block's 0.2 % histogram where
    the run kept one (within 0.1 %), else from its 2 % one (within 1 %)."""
    return [median for histogram in record.block_histograms
            if histogram.count >= minimum_count and (median := histogram.percentile(50)) is not None]


@dataclass
class Thresholds:
    max_regression_pct: float = 10.0
    alpha: float = 0.05
    max_db_reads_increase: float = 2.0
    min_blocks: int = 6
    max_other_cpu: float | None = None  # share of the load machine other processes may use (None: no limit)
    judge: Judge = Judge.BOTH  # what decides (work.py: time, work or both)
    failure_margin: float = 0.02  # a rise of failures (share of requests) good needs ruled out (--max-failure-rise)

    def more_db_reads(self, before: float, after: float) -> bool:
        """The DB-read rule, the one place every judge reads it: a page reading more than
        ``max_db_reads_increase`` more DB reads per answer does more work, however fast it was.
        The count is deterministic (the footer's), so no statistics are needed."""
        return after - before > self.max_db_reads_increase


def ratio_interval(base_blocks: list[float], new_blocks: list[float], resamples: int = 400,
                   seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the ratio of block medians (new / base), resampling blocks,
    not requests; seeded, so the same runs always give the same interval."""
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        base = statistics.median(rng.choices(base_blocks, k=len(base_blocks)))
        new = statistics.median(rng.choices(new_blocks, k=len(new_blocks)))
        ratios.append(new / base if base > 0 else math.inf)
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def failure_increase_p(base_failed: int, base_total: int, new_failed: int, new_total: int) -> float:
    """One-sided p-value that the new failure rate is above the baseline's: the two-proportion
    z-test with a pooled rate (and 1.0 where there is nothing to test)."""
    if not base_total or not new_total:
        return 1.0
    pooled = (base_failed + new_failed) / (base_total + new_total)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / base_total + 1 / new_total))
    difference = new_failed / new_total - base_failed / base_total
    if spread == 0:
        return 1.0 if difference <= 0 else 0.0
    return 0.5 * math.erfc(difference / spread / math.sqrt(2.0))


MIN_FAILURE_INCREASE = 0.01  # a rise of under one percentage point is not called, however certain
# Good needs a rise above two points ruled out.  Between the two is an indifference zone, as
# in Wald's sequential test: 0 failures in 240 requests rule out about 1 %, in 100 only 3 %.
FAILURE_MARGIN = 0.02


def failure_rise_upper(base_failed: float, base_total: float, new_failed: float, new_total: float,
                       alpha: float) -> float:
    """The one-sided (1 - alpha) upper bound of the rise in the failure rate (Agresti and
    Caffo's interval: one failure and one success added to each side, so that 0 failures in
    n requests still leaves room for the rate that n requests cannot see)."""
    if not new_total:
        return 1.0
    base_rate = (base_failed + 1) / (base_total + 2)
    new_rate = (new_failed + 1) / (new_total + 2)
    error = math.sqrt(base_rate * (1 - base_rate) / (base_total + 2) + new_rate * (1 - new_rate) / (new_total + 2))
    return new_rate - base_rate + normal_quantile(1 - alpha) * error


def judge_counts(base_failed: int, base_total: int, new_failed: int, new_total: int, base_reads: float | None,
                 new_reads: float | None, thresholds: Thresholds, alpha: float, failure_kinds: dict[str, int],
                 name: str = "") -> ComparisonRow:
    """The start of a URL's row: what needs no clock.  More failures (a proportions test, and
    a rise of at least a point) or more DB reads per page is a regression on its own."""
    verdict, reasons = RowVerdict.SAME, []
    base_rate = base_failed / base_total if base_total else 0.0
    new_rate = new_failed / new_total if new_total else 0.0
    failures_p = failure_increase_p(base_failed, base_total, new_failed, new_total)
    rise_upper = failure_rise_upper(base_failed, base_total, new_failed, new_total, alpha)
    if new_rate - base_rate >= MIN_FAILURE_INCREASE and failures_p <= alpha:
        verdict = RowVerdict.REGRESSION
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(failure_kinds.items()))
        reasons.append(f"failures {base_rate:.1%} -> {new_rate:.1%} of requests (p={failures_p:.2g}"
                       f"{'; ' + kinds if kinds else ''})")
    if base_reads is not None and new_reads is not None and thresholds.more_db_reads(base_reads, new_reads):
        verdict = RowVerdict.REGRESSION
        reasons.append(f"DB reads {base_reads:g} -> {new_reads:g} per page")
    return ComparisonRow(name, verdict, tuple(reasons), db_reads=(base_reads, new_reads),
                         failure_rate=(round(base_rate, 4), round(new_rate, 4)),
                         failure_rise_upper=round(rise_upper, 4),
                         failures_ruled_out=rise_upper < thresholds.failure_margin,
                         failure_margin=thresholds.failure_margin)


Counts = tuple[RowVerdict, tuple[str, ...]]  # what a row's counters (failures, DB reads) alone said


def counted(row: ComparisonRow) -> Counts:
    return row.verdict, row.reasons


def compare_url(name: str, base: UrlRecord, new: UrlRecord, thresholds: Thresholds, alpha: float,
                kind: str = "page", doubt: str | None = None,
                waiting: tuple[str, str] | None = None) -> ComparisonRow:
    """Verdict for one URL: 'regression', 'improvement', 'same' or 'unsure' (plus why), by
    service time, by the work (CPU time per answer) or by both, as thresholds.judge says.
    ``doubt``: why the work cannot be compared; ``waiting``: why the time cannot (waiting_doubt)."""
    row = judge_counts(base.failure, base.requests, new.failure, new.requests, base.footer_median("db_reads"),
                       new.footer_median("db_reads"), thresholds, alpha, new.failures, name)
    counts = counted(row)
    row = doubt_time(time_row(row, base, new, thresholds, alpha), counts, waiting)
    return combine(row, block_work(base, new, kind, thresholds, alpha), thresholds.judge, counts, failure_gap(row),
                   doubt)


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def neighbour_cores(document: Results) -> float | None:
    """The cores the load machine's other processes kept busy during a run (machine.py), less
    Moodle's own PHP time where the site answered on this machine (a loopback address) and
    its footer counted it: the neighbours' part, which a commit does not change."""
    machine = document.machine
    if machine is None:
        return None
    busy = machine.other_busy_cores
    target, seconds = document.metadata.target, document.metadata.measured_seconds
    if target and urlsplit(target).hostname in LOOPBACK_HOSTS and seconds > 0:
        site_ms = sum(record.cpu_ms_mean * record.cpu_requests for record in document.urls.values()
                      if record.cpu_ms_mean is not None)
        busy = max(0.0, busy - site_ms / 1000.0 / seconds)
    return busy


def common_time_ratio(bases: list[Results], news: list[Results]) -> float | None:
    """How the pages' service times moved together, this commit's runs against the
    baseline's: the median over the pages both sides answered of the ratio of their runs'
    mean log block medians (the judge's own unit).  A machine's waiting moves every page at
    once; one commit rarely does."""
    def log_median(document: Results, name: str) -> float | None:
        blocks = block_medians(document.urls[name]) if name in document.urls else []
        median = statistics.median(blocks) if blocks else None
        return math.log(median) if median else None

    ratios = []
    for name in news[0].urls:
        sides = [[value for value in (log_median(document, name) for document in documents) if value is not None]
                 for documents in (bases, news)]
        if sides[0] and sides[1]:
            ratios.append(math.exp(statistics.fmean(sides[1]) - statistics.fmean(sides[0])))
    return statistics.median(ratios) if ratios else None


def waiting_doubt(bases: list[Results], news: list[Results], tolerance_pct: float) -> tuple[str, str] | None:
    """neighbours_shift over these runs: ("busier" or "quieter", why) or None.  The machine
    moves the pages' times only where they wait on its cores, and then it moves them all: the
    doubt holds when the pages as a whole got slower (busier) or faster (quieter) by more than
    half the tolerance.  A site whose pages do not wait on the load machine's cores, or one
    page that moved alone, leaves its times to be judged."""
    cpus = next((document.machine.cores for document in bases + news if document.machine is not None), 1.0)
    shift = neighbours_shift([neighbour_cores(document) for document in bases],
                             [neighbour_cores(document) for document in news], cpus)
    if shift is None:
        return None
    common = common_time_ratio(bases, news)
    moved = common is not None and (common > 1 + tolerance_pct / 200.0 if shift.direction == "busier"
                                    else common < 1 - tolerance_pct / 200.0)
    return (shift.direction, shift.line(f"; the pages as a whole x{common:.3f}")) if moved else None


def doubt_time(row: ComparisonRow, counts: Counts, doubt: tuple[str, str] | None) -> ComparisonRow:
    """The time side of a row under a shift of the machine (waiting_doubt): on a busier machine
    a slowdown by time is not the commit's, on a quieter one a time that held is not shown to,
    so the row says neither (the counters, failures and DB reads, still decide on their own,
    and under --judge both the work may still call it bad)."""
    if doubt is None:
        return row
    direction, why = doubt
    if direction == "busier" and row.verdict == RowVerdict.REGRESSION and counts[0] != RowVerdict.REGRESSION:
        return replace(row, verdict=RowVerdict.UNSURE, reasons=(*counts[1], f"service time not judged: {why}"))
    if direction == "quieter" and row.verdict in (RowVerdict.SAME, RowVerdict.IMPROVEMENT):
        return replace(row, verdict=RowVerdict.UNSURE, reasons=(*row.reasons, f"service time not judged: {why}"))
    return row


def time_row(row: ComparisonRow, base: UrlRecord, new: UrlRecord, thresholds: Thresholds,
             alpha: float) -> ComparisonRow:
    """The service-time side of a URL's row, one run a side: block medians compared."""
    base_blocks, new_blocks = block_medians(base), block_medians(new)
    tolerance = thresholds.max_regression_pct / 100.0
    row = replace(row, blocks=(len(base_blocks), len(new_blocks)))
    if len(base_blocks) < thresholds.min_blocks or len(new_blocks) < thresholds.min_blocks:
        if row.verdict == RowVerdict.SAME:
            row = replace(row, verdict=RowVerdict.UNSURE, reasons=(
                *row.reasons, f"too few blocks with data ({len(base_blocks)} vs {len(new_blocks)}, need "
                              f"{thresholds.min_blocks} with 3 answers each): run longer, at a higher rate, or with "
                              f"fewer --blocks"))
        return row
    base_median = statistics.median(base_blocks)
    new_median = statistics.median(new_blocks)
    ratio = new_median / base_median if base_median > 0 else math.inf
    p_value = mann_whitney_p(base_blocks, new_blocks)
    low, high = ratio_interval(base_blocks, new_blocks)
    verdict, reasons = row.verdict, row.reasons
    if ratio > 1 + tolerance:
        if p_value <= alpha:
            verdict = RowVerdict.REGRESSION
            reasons = (*reasons, f"median service time x{ratio:.3f} (p={p_value:.2g} <= {alpha:.2g})")
        elif p_value <= max(0.1, 2 * alpha) and verdict == RowVerdict.SAME:
            # Pinpoint's third answer: a large change the blocks cannot yet confirm.
            verdict = RowVerdict.UNSURE
            reasons = (*reasons, f"median service time x{ratio:.3f} but p={p_value:.2g}: run longer")
    elif ratio < 1 - tolerance and p_value <= alpha and verdict == RowVerdict.SAME:
        verdict = RowVerdict.IMPROVEMENT
    row = replace(row, verdict=verdict, reasons=reasons, base_ms=round(base_median, 2), new_ms=round(new_median, 2),
                  ratio=round(ratio, 4), interval=(round(low, 4), round(high, 4)), p_value=round(p_value, 6),
                  alpha=round(alpha, 6), rules_out_pct=round((high - 1) * 100, 2))
    return unshown(row, high, tolerance)


def block_work(base: UrlRecord, new: UrlRecord, kind: str, thresholds: Thresholds, alpha: float) -> WorkRow | None:
    """One run a side: the CPU time per answer of each time block, compared block by block
    (Mann-Whitney and a bootstrap of the ratio of block medians, as service time is)."""
    if not cpu_judged(base, kind) and not cpu_judged(new, kind):
        return None
    tolerance = thresholds.max_regression_pct / 100.0
    problems = [f"{which}: {problem}" for which, record in (("baseline", base), ("this run", new))
                if (problem := cpu_problem(record, kind, thresholds.max_regression_pct)) is not None]
    cpu_ms = (round_or_none(base.cpu_ms_mean, 2), round_or_none(new.cpu_ms_mean, 2))
    if problems:
        return WorkRow(cpu_ms, RowVerdict.UNSURE, (f"CPU time not judged ({'; '.join(problems)})",))
    base_blocks, new_blocks = base.block_cpu_means(), new.block_cpu_means()
    if len(base_blocks) < thresholds.min_blocks or len(new_blocks) < thresholds.min_blocks:
        return WorkRow(cpu_ms, RowVerdict.UNSURE, (
            f"CPU time: too few blocks with data ({len(base_blocks)} vs {len(new_blocks)}, need "
            f"{thresholds.min_blocks}): run longer or with fewer --blocks",))
    base_median, new_median = statistics.median(base_blocks), statistics.median(new_blocks)
    ratio = new_median / base_median if base_median > 0 else math.inf
    p_value = mann_whitney_p(base_blocks, new_blocks)
    low, high = ratio_interval(base_blocks, new_blocks)
    verdict = RowVerdict.UNSURE
    reasons: tuple[str, ...] = ()
    if ratio > 1 + tolerance and p_value <= alpha:
        verdict, reasons = RowVerdict.REGRESSION, (f"CPU time per answer {base_median:.1f} -> {new_median:.1f} ms, "
                                                   f"x{ratio:.3f} (p={p_value:.2g} <= {alpha:.2g})",)
    elif high < 1 + tolerance:
        verdict = RowVerdict.IMPROVEMENT if ratio < 1 - tolerance and p_value <= alpha else RowVerdict.SAME
    else:
        reasons = (f"CPU time rises up to {high - 1:.1%} not ruled out (tolerance {tolerance:.0%})",)
    return WorkRow(cpu_ms, verdict, reasons, ratio=round(ratio, 4), interval=(round(low, 4), round(high, 4)),
                   p_value=round(p_value, 6), rules_out_pct=round((high - 1) * 100, 2))


def deciding(row: ComparisonRow, judge: Judge) -> ComparisonRow | WorkRow | None:
    """The part of a row whose bounds decide good: its work row under --judge work (None
    where it has none), else the row."""
    return row.work if judge == JUDGE_WORK else row


def failure_gap(row: ComparisonRow) -> str | None:
    """A rise of failures the row's data cannot rule out, in words, or None."""
    if row.failures_ruled_out is None or row.failures_ruled_out or row.failure_rise_upper is None:
        return None
    margin = FAILURE_MARGIN if row.failure_margin is None else row.failure_margin
    return f"a rise of failures up to {row.failure_rise_upper:.1%} of requests not ruled out " \
           f"(margin {margin:.0%}, --max-failure-rise)"


def unshown(row: ComparisonRow, upper_ratio: float, tolerance: float) -> ComparisonRow:
    """A row that found nothing is "same" only when its data rule out a slowdown beyond the
    tolerance and a rise of failures beyond the margin; otherwise "unsure", saying which
    bound is too wide.  "No significant difference" is not "no regression"."""
    if row.verdict not in (RowVerdict.SAME, RowVerdict.IMPROVEMENT):
        return row
    gaps = []
    if upper_ratio >= 1 + tolerance:
        gaps.append(f"slowdowns up to {upper_ratio - 1:.1%} not ruled out (tolerance {tolerance:.0%})")
    gap = failure_gap(row)
    if gap:
        gaps.append(gap)
    if gaps:
        return replace(row, verdict=RowVerdict.UNSURE, reasons=(*row.reasons, *gaps))
    return row


def compare_documents(base: Results, new: Results, thresholds: Thresholds) -> Comparison:
    """Compare a run with its baseline URL by URL.  Bonferroni: with k URLs each test
    runs at alpha/k, so the chance of a false alarm on some URL stays near alpha."""
    names = [name for name in new.urls if name in base.urls]
    missing = sorted(set(base.urls) ^ set(new.urls))
    alpha = thresholds.alpha / max(1, len(names))
    doubt = contention_shift([base.machine], [new.machine])
    waiting = waiting_doubt([base], [new], thresholds.max_regression_pct)
    rows = {name: compare_url(name, base.urls[name], new.urls[name], thresholds, alpha, new.row_kind(name), doubt,
                              waiting)
            for name in names}
    verdicts = [row.verdict for row in rows.values()]
    if RowVerdict.REGRESSION in verdicts:
        overall = RowVerdict.REGRESSION
    elif not rows or RowVerdict.UNSURE in verdicts:
        overall = RowVerdict.UNSURE
    else:
        overall = RowVerdict.SAME
    notes = []
    if missing:
        notes.append(f"URLs in only one run, not compared: {', '.join(missing)}")
    notes += work_notes([base], [new]) + release_notes([base], [new])
    differences = incomparable(base, new) + contended([base.machine], [new.machine], thresholds.max_other_cpu)
    if differences:
        overall = RowVerdict.NOT_COMPARABLE
    rules_out = [value for row in rows.values()
                 if (part := deciding(row, thresholds.judge)) is not None and (value := part.rules_out_pct) is not None]
    unsure = overall == RowVerdict.UNSURE
    comparison = Comparison(
        verdict=overall, method="blocks", judge=thresholds.judge, alpha_per_url=alpha,
        max_regression_pct=thresholds.max_regression_pct, rows=rows, notes=tuple(notes),
        not_comparable=tuple(differences), baseline_runs=1, candidate_runs=1,
        rules_out_pct=max(rules_out) if rules_out else None,
        # one run a side says nothing of the run-to-run spread: the remedy is baseline runs
        more_runs=MoreRuns(candidate=1 if unsure else None, baseline=2 if unsure else None))
    if unsure:
        comparison = replace(comparison, undecided=f"{undecided_head(comparison)}; {ONE_RUN_REMEDY}")
    return comparison


ONE_RUN_REMEDY = "one run a side cannot know the run-to-run spread: record three baseline runs (--baseline)"


def undecided_head(comparison: Comparison) -> str:
    """The first half of the line that says why runs cannot call a commit good: what they
    rule out.  The second half, what would decide, depends on how many runs there were."""
    tolerance = comparison.max_regression_pct
    rules_out = comparison.rules_out_pct
    what = "rises of CPU time per answer" if comparison.judge == WORK else "slowdowns"
    if rules_out is None:
        head = f"these runs cannot bound the {what}"
    elif rules_out >= tolerance:
        head = f"these runs rule out only {what} above {rules_out:.1f} %"
    else:
        margin = FAILURE_MARGIN if comparison.failure_margin is None else comparison.failure_margin
        head = (f"these runs rule out {what} above {rules_out:.1f} % but not a rise of failures above "
                f"{margin:.0%} of requests (--max-failure-rise)")
    return head


# What must be the same for two runs to say anything about two commits: the load itself.
COMPARABLE = (("config_sha256", "config"), ("rpm", "target rate (--rpm)"), ("concurrency", "concurrency"),
              ("http_client", "HTTP client"), ("block_seconds", "block length (--duration / --blocks)"),
              ("seed", "seed"), ("warmup_s", "warm-up"))


WORK_TOLERANCE = 0.05  # open-loop runs of one load do the same work within a few percent


def work_notes(bases: list[Results], news: list[Results]) -> list[str]:
    """What the journeys wrote (work_done), per measured minute, when the two sides differ by
    more than a few percent: a commit that stops some writes also changes what the pages
    read afterwards.  The writes that failed are already judged as failures of their step."""
    def per_minute(documents: list[Results]) -> dict[str, float]:
        totals: dict[str, float] = {}
        minutes = sum(document.metadata.measured_seconds for document in documents) / 60.0
        for document in documents:
            for name, count in document.work_done.items():
                totals[name] = totals.get(name, 0) + count
        return {name: count / minutes for name, count in totals.items()} if minutes > 0 else {}

    before, after = per_minute(bases), per_minute(news)
    notes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, 0.0), after.get(name, 0.0)
        if abs(new - old) > WORK_TOLERANCE * max(old, new):
            notes.append(f"the runs did different work: {name} {old:.1f} and {new:.1f} a minute")
    return notes


def release_notes(bases: list[Results], news: list[Results]) -> list[str]:
    """A note when the two sides ran different Moodle releases (as --moodle-dir recorded)."""
    def releases(documents: list[Results]) -> set[str]:
        return {document.metadata.moodle.release for document in documents
                if document.metadata.moodle and document.metadata.moodle.release is not None}
    before, after = releases(bases), releases(news)
    if before and after and before != after:
        return [f"the two sides ran different Moodle releases: {', '.join(sorted(before))} and "
                f"{', '.join(sorted(after))}"]
    return []


def incomparable(base: Results, new: Results) -> list[str]:
    """Why two runs cannot be compared, or []: a different load, or a run cut short."""
    reasons = []
    for key, label in COMPARABLE:
        before, after = getattr(base.metadata, key), getattr(new.metadata, key)
        if before is not None and after is not None and before != after:
            shown = (before[:12], after[:12]) if isinstance(before, str) and len(before) > 20 else (before, after)
            reasons.append(f"the runs differ in {label}: {shown[0]} and {shown[1]}")
    for document, which in ((base, "the baseline"), (new, "this run")):
        if document.metadata.interrupted:
            reasons.append(f"{which} was interrupted before its end")
    return reasons
