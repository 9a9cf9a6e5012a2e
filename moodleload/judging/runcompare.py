"""The comparison document of several runs: each page's row (its change against the
run-to-run spread, what it rules out, its failures and DB reads), the notes that explain
the spread, and how many more runs would decide.  The statistics it rests on are in runs."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from moodleload.console import round_or_none
from moodleload.footer import FooterCounter
from moodleload.judging.compare import (
    ONE_RUN_REMEDY,
    Counts,
    Thresholds,
    counted,
    doubt_time,
    failure_gap,
    incomparable,
    judge_counts,
    release_notes,
    undecided_head,
    unshown,
    waiting_doubt,
    work_notes,
)
from moodleload.judging.compare import (
    deciding as decisive,
)
from moodleload.judging.runs import (
    MAX_EXTRA_RUNS,
    NOISY_SPREAD,
    Assessment,
    Evidence,
    SiteTest,
    Spread,
    analyse_spread,
    assess,
    log_grids,
    mean,
    more_runs,
)
from moodleload.judging.work import TIME, WORK, combine, cpu_judged, cpu_problem, good_measure
from moodleload.load.machine import Machine, contended, contention_shift, noise_notes
from moodleload.results.comparison import Comparison, ComparisonRow, Measure, MoreRuns, RowVerdict, WorkRow
from moodleload.results.histogram import counter_median
from moodleload.results.model import Results


def _pooled_tally(documents: list[Results], name: str, key: FooterCounter) -> dict[str, int]:
    tally: dict[str, int] = {}
    for document in documents:
        for value, count in document.urls[name].footer_tallies.get(key, {}).items():
            tally[value] = tally.get(value, 0) + count
    return tally


def _server_median(documents: list[Results], name: str) -> float | None:
    """The median over runs of each run's median server time from Moodle's footer."""
    medians = []
    for document in documents:
        histogram = document.urls[name].footer_time("server_time_ms")
        median = histogram.percentile(50) if histogram is not None and histogram.count else None
        if median is not None:
            medians.append(median)
    return round(statistics.median(medians), 2) if medians else None


def machines(documents: list[Results]) -> list[Machine | None]:
    """Each run's load machine (machine.py's Machine), None where it was not recorded."""
    return [document.machine for document in documents]


def common_mode(ratios: dict[str, float | None]) -> str | None:
    """A note when every page moved by about the same factor: more likely the environment
    or a change under every page than one page's regression.  Judged by the same rules."""
    logs = [math.log(ratio) for ratio in ratios.values() if ratio and ratio > 0 and math.isfinite(ratio)]
    if len(logs) < 2:
        return None
    middle = statistics.median(logs)
    if abs(middle) < 0.02 or max(logs) - min(logs) > 0.04 or not all(log * middle > 0 for log in logs):
        return None
    word = "slower" if middle > 0 else "faster"
    return (f"all {len(logs)} pages {abs(math.exp(middle) - 1):.0%} {word} at once: the environment (machine, "
            f"database state, caches) or a site-wide change, more likely than one page's")


@dataclass
class Side:
    """One measure's evidence over the runs: each page's log values per commit, their spread,
    and what assess made of them (None where there was too little)."""

    measure: Measure
    values: dict[str, list[list[float]]]  # page -> [baseline log values, this commit's log values]
    spread: Spread | None
    evidence: Evidence | None
    outcome: Assessment | None


Failures = tuple[int, int, int, int]  # (base failed, base requests, new failed, new requests)


def measure_side(bases: list[Results], news: list[Results], names: list[str], thresholds: Thresholds, alpha: float,
                 failures: dict[str, Failures], measure: Measure) -> Side:
    grids = log_grids(bases, news, names, thresholds, measure)
    values = {name: [[value for run in grid if (value := run[position]) is not None] for grid in grids]
              for position, name in enumerate(names)}
    spread = analyse_spread(grids)
    changes = {name: mean(groups[1]) - mean(groups[0]) for name, groups in values.items()
               if groups[0] and groups[1]}
    if spread is None or not changes:
        return Side(measure, values, spread, None, None)
    evidence = Evidence(changes, spread, len(bases), len(news), {k: failures[k] for k in changes})
    return Side(measure, values, spread, evidence, assess(evidence, thresholds, alpha))


def compare_runs(bases: list[Results], news: list[Results], thresholds: Thresholds) -> Comparison:
    """Compare one or more candidate runs with two or more baseline runs (or one baseline
    with two or more candidates), URL by URL, against the run-to-run spread: by service
    time, by the work (CPU time per answer) or by both, as thresholds.judge says."""
    names = [name for name in news[0].urls
             if all(name in document.urls for document in bases + news)]
    alpha = thresholds.alpha / max(1, len(names))
    failures: dict[str, Failures] = {
        name: (sum(document.urls[name].failure for document in bases),
               sum(document.urls[name].requests for document in bases),
               sum(document.urls[name].failure for document in news),
               sum(document.urls[name].requests for document in news)) for name in names}
    time_side = measure_side(bases, news, names, thresholds, alpha, failures, TIME)
    work_side = measure_side(bases, news, names, thresholds, alpha, failures, WORK)
    doubt = contention_shift(machines(bases), machines(news))
    waiting = waiting_doubt(bases, news, thresholds.max_regression_pct)
    rows = {}
    for name in names:
        row, counts = _judge_url(name, bases, news, time_side, thresholds, alpha, failures[name])
        row = doubt_time(row, counts, waiting)
        kind = news[0].row_kind(name)
        work = _judge_work(name, bases, news, work_side, thresholds, kind) \
            if any(cpu_judged(document.urls[name], kind) for document in bases + news) else None
        rows[name] = combine(row, work, thresholds.judge, counts, failure_gap(row), doubt)
    deciding = work_side if good_measure(thresholds.judge) == WORK else time_side
    return _comparison(bases, news, names, rows, thresholds, alpha, deciding, work_side)


def _comparison(bases: list[Results], news: list[Results], names: list[str], rows: dict[str, ComparisonRow],
                thresholds: Thresholds, alpha: float, deciding: Side, work_side: Side) -> Comparison:
    """The comparison document from the judged rows and the side whose bounds decide good."""
    verdicts = [row.verdict for row in rows.values()]
    overall = RowVerdict.REGRESSION if RowVerdict.REGRESSION in verdicts else \
        RowVerdict.UNSURE if not rows or RowVerdict.UNSURE in verdicts else RowVerdict.SAME
    tolerance = thresholds.max_regression_pct / 100.0
    outcome, spread = deciding.outcome, deciding.spread
    whole = outcome.whole if outcome else None
    if overall == RowVerdict.SAME and whole is not None and whole.upper >= math.log1p(tolerance):
        overall = RowVerdict.UNSURE
    site = outcome.site if outcome else None
    notes = run_notes(bases, news, spread, site if overall != RowVerdict.REGRESSION else None, rows, names,
                      deciding.measure)
    differences: list[str] = []
    for document in bases + news[1:]:
        differences += [reason for reason in incomparable(document, news[0]) if reason not in differences]
    differences += contended(machines(bases), machines(news), thresholds.max_other_cpu)
    needed = more_runs(deciding.evidence, thresholds, alpha) \
        if deciding.evidence is not None and overall == RowVerdict.UNSURE else MoreRuns()
    rules_out = [value for row in rows.values()
                 if (part := decisive(row, thresholds.judge)) is not None and (value := part.rules_out_pct) is not None]
    if whole is not None:
        rules_out.append(round(math.expm1(whole.upper) * 100, 2))
    comparison = Comparison(
        verdict=RowVerdict.NOT_COMPARABLE if differences else overall, method="runs", judge=thresholds.judge,
        failure_margin=thresholds.failure_margin, alpha_per_url=alpha, rows=rows, notes=tuple(notes),
        max_regression_pct=thresholds.max_regression_pct, not_comparable=tuple(differences),
        baseline_runs=len(bases), candidate_runs=len(news),
        spread_pct=None if spread is None else round((math.exp(spread.total) - 1) * 100, 3),
        site_detectable_pct=None if site is None else round(math.expm1(site.detectable) * 100, 2),
        site_rules_out_pct=None if whole is None else round(math.expm1(whole.upper) * 100, 2),
        rules_out_pct=max(rules_out) if rules_out else None, more_runs=needed, advice=tuple(advice(rows, thresholds)))
    if overall == RowVerdict.UNSURE:
        comparison = replace(comparison, undecided=undecided_line(comparison), work_would_decide=(
            work_would_decide(rows, work_side, thresholds) if deciding.measure == TIME else None))
    return comparison


def work_would_decide(rows: dict[str, ComparisonRow], work_side: Side, thresholds: Thresholds) -> str | None:
    """When time cannot decide, whether the work would: every judged page's CPU time shown
    within the tolerance (or one shown above it), said with the numbers."""
    works = {name: row.work for name, row in rows.items() if row.work is not None}
    if not works or work_side.outcome is None:
        return None
    regressions = [name for name, work in works.items() if work.verdict == RowVerdict.REGRESSION]
    if regressions:
        return f"--judge work would call it bad: {regressions[0]}: {works[regressions[0]].reasons[0]}"
    upper = math.expm1(work_side.outcome.whole.upper) * 100
    worst = max((work.rules_out_pct or math.inf) for work in works.values())
    if all(work.verdict in (RowVerdict.SAME, RowVerdict.IMPROVEMENT) for work in works.values()) \
            and upper < thresholds.max_regression_pct:
        return (f"--judge work would decide: the CPU time per answer rules out rises above {max(worst, upper):.1f} % "
                f"on every page (the time waited, which a busy machine inflates, could not)")
    return None


def run_notes(bases: list[Results], news: list[Results], spread: Spread | None, site: SiteTest | None,
              rows: dict[str, ComparisonRow], names: list[str], measure: Measure = TIME) -> list[str]:
    """What the comparison says beside its verdicts: the spread it judged against, a shift of
    every page together (``site``, unless a regression was called), pages not compared, and
    what differed between the runs or made them noisy."""
    what = "CPU time per answer" if measure == WORK else "service time"
    notes = [f"judged against {len(bases)} baseline run{'s' * (len(bases) > 1)} and {len(news)} run"
             f"{'s' * (len(news) > 1)} of this commit by {what}: run-to-run spread "
             + (f"{math.exp(spread.total) - 1:.1%} a page ({spread.total_freedom:.1f} degrees of freedom), "
                f"{math.exp(spread.site) - 1:.1%} for the site as a whole" if spread else "unknown")]
    if site is not None and site.p <= site.alpha:
        notes.append(f"every page together moved x{math.exp(site.change):.3f} (p={site.p:.2g}), within "
                     f"the tolerance")
    shift = common_mode({name: row.ratio for name, row in rows.items()})
    if shift:
        notes.append(shift)
    missing = sorted({name for document in bases + news for name in document.urls} - set(names))
    if missing:
        notes.append(f"URLs not in every run, not compared: {', '.join(missing)}")
    notes += work_notes(bases, news) + release_notes(bases, news)
    if spread is not None and math.exp(spread.total) - 1 > NOISY_SPREAD:
        notes += noise_notes(machines(bases), machines(news))
    return notes


def undecided_line(comparison: Comparison) -> str:
    """The one line that says why these runs cannot call the commit good, and what would."""
    tolerance = comparison.max_regression_pct
    head = undecided_head(comparison)
    needed = comparison.more_runs
    candidate, baseline, each = needed.candidate, needed.baseline, needed.each
    if comparison.method != "runs":
        tail = ONE_RUN_REMEDY
    elif candidate is not None:
        tail = f"about {candidate} more run{'s' * (candidate > 1)} of this commit would decide {tolerance:g} % " \
               f"at this spread"
        if baseline is not None and baseline < candidate:
            tail += f" (or {baseline} more baseline run{'s' * (baseline > 1)})"
    elif baseline is not None:
        tail = f"runs of this commit alone cannot decide {tolerance:g} %: about {baseline} more baseline " \
               f"run{'s' * (baseline > 1)} would"
    elif each is not None:
        tail = f"about {each} more run{'s' * (each > 1)} of this commit and {each} more of the baseline would " \
               f"decide {tolerance:g} % at this spread (the baseline's own runs limit it)"
    else:
        tail = f"not even {MAX_EXTRA_RUNS} more runs would decide {tolerance:g} % at this spread: lower the noise " \
               f"(a quieter machine, longer runs) or raise --max-regression"
    return f"{head}; {tail}"


def _judge_url(name: str, bases: list[Results], news: list[Results], side: Side, thresholds: Thresholds,
               alpha: float, failures: Failures) -> tuple[ComparisonRow, Counts]:
    """A URL's row by service time, and what its counters (failures, DB reads) alone said."""
    outcome, spread = side.outcome, side.spread
    page_alpha = outcome.page_alpha if outcome else alpha
    row = judge_counts(*failures, counter_median(_pooled_tally(bases, name, "db_reads")),
                       counter_median(_pooled_tally(news, name, "db_reads")), thresholds, page_alpha, {}, name)
    counts = counted(row)
    base_logs, new_logs = side.values[name]
    # Moodle's own server time (footer) beside the client's: a shift in one but not the
    # other points at the network or the generator, not the code
    row = replace(row, runs=(len(base_logs), len(new_logs)),
                  server_ms=(_server_median(bases, name), _server_median(news, name)))
    page = None if outcome is None else outcome.pages.get(name)
    if page is None:
        if row.verdict == RowVerdict.SAME:
            row = replace(row, verdict=RowVerdict.UNSURE, reasons=(
                *row.reasons, f"too few runs with {thresholds.min_blocks} blocks of data ({len(base_logs)} baseline, "
                              f"{len(new_logs)} this commit): more runs may decide, or longer ones, or fewer --blocks"))
        return row, counts
    ratio = math.exp(page.change)
    assert spread is not None  # a page judged over runs has their spread
    low, high = (math.exp(bound) for bound in page.interval)
    verdict, reasons = row.verdict, row.reasons
    if page.bad:
        verdict = RowVerdict.REGRESSION
        if page.relative_bad and page.relative is not None:
            reasons = (*reasons, f"median service time x{math.exp(page.relative):.3f} against the other pages "
                                 f"(x{ratio:.3f} in all, the rest moved with the run; p={page.p:.2g})")
        else:
            reasons = (*reasons, f"median service time x{ratio:.3f}, {low:.3f}-{high:.3f} with the run-to-run "
                                 f"spread (p={page.p:.2g})")
    elif page.faster and verdict == RowVerdict.SAME:
        verdict = RowVerdict.IMPROVEMENT
    row = replace(row, verdict=verdict, reasons=reasons, base_ms=round(math.exp(mean(base_logs)), 2),
                  new_ms=round(math.exp(mean(new_logs)), 2), ratio=round(ratio, 4),
                  interval=(round(low, 4), round(high, 4)), p_value=float(f"{page.p:.3g}"), alpha=round(page_alpha, 6),
                  noise_pct=round((math.exp(spread.total) - 1) * 100, 2),
                  detectable_pct=round(math.expm1(page.detectable) * 100, 2),
                  rules_out_pct=round(math.expm1(page.upper) * 100, 2),
                  relative_ratio=None if page.relative is None else round(math.exp(page.relative), 4))
    return unshown(row, math.exp(page.upper), thresholds.max_regression_pct / 100.0), counts


def _judge_work(name: str, bases: list[Results], news: list[Results], side: Side, thresholds: Thresholds,
                kind: str) -> WorkRow:
    """A row's work over the runs: its CPU time per answer against the run-to-run spread of
    CPU time, with the same tests as service time (runs.assess)."""
    problems = []
    for which, documents in (("baseline", bases), ("this commit", news)):
        for number, document in enumerate(documents, 1):
            problem = cpu_problem(document.urls[name], kind, thresholds.max_regression_pct)
            if problem is not None and problem not in problems:
                problems.append(f"{which} run {number}: {problem}")
    base_logs, new_logs = side.values[name]
    page = None if side.outcome is None else side.outcome.pages.get(name)
    cpu_ms = (round_or_none(math.exp(mean(base_logs)), 2) if base_logs else None,
              round_or_none(math.exp(mean(new_logs)), 2) if new_logs else None)
    runs = (len(base_logs), len(new_logs))
    if problems:
        return WorkRow(cpu_ms, RowVerdict.UNSURE, (f"CPU time not judged ({problems[0]}"
                                                   + (f"; {len(problems) - 1} more" if problems[1:] else "") + ")",),
                       runs=runs)
    if page is None or side.spread is None:
        return WorkRow(cpu_ms, RowVerdict.UNSURE, (f"CPU time: too few runs with data ({len(base_logs)} baseline, "
                                                   f"{len(new_logs)} this commit): more runs may decide",), runs=runs)
    ratio = math.exp(page.change)
    low, high = (math.exp(bound) for bound in page.interval)
    verdict = RowVerdict.UNSURE
    reasons: tuple[str, ...] = ()
    if page.bad:
        verdict = RowVerdict.REGRESSION
        shown = f"x{math.exp(page.relative):.3f} against the other pages" \
            if page.relative_bad and page.relative is not None \
            else f"x{ratio:.3f}, {low:.3f}-{high:.3f} with the run-to-run spread"
        reasons = (f"CPU time per answer {cpu_ms[0]:.1f} -> {cpu_ms[1]:.1f} ms, {shown} (p={page.p:.2g})",)
    elif page.shown_within:
        verdict = RowVerdict.IMPROVEMENT if page.faster else RowVerdict.SAME
    else:
        reasons = (f"CPU time rises up to {math.expm1(page.upper):.1%} not ruled out (tolerance "
                   f"{thresholds.max_regression_pct:g} %)",)
    return WorkRow(cpu_ms, verdict, reasons, ratio=round(ratio, 4), interval=(round(low, 4), round(high, 4)),
                   p_value=float(f"{page.p:.3g}"), noise_pct=round((math.exp(side.spread.total) - 1) * 100, 2),
                   detectable_pct=round(math.expm1(page.detectable) * 100, 2),
                   rules_out_pct=round(math.expm1(page.upper) * 100, 2), runs=runs)


def advice(rows: dict[str, ComparisonRow], thresholds: Thresholds) -> list[str]:
    """What a bisect can see with these runs: a warning when --max-regression is below the
    smallest slowdown they can call, a hint when it is far above it."""
    detectable = {name: value for name, row in rows.items()
                  if (part := decisive(row, thresholds.judge)) is not None
                  and (value := part.detectable_pct) is not None}
    if not detectable:
        return []
    tolerance = thresholds.max_regression_pct
    worst_name = max(detectable, key=lambda name: detectable[name])
    worst = detectable[worst_name]
    if tolerance < worst:
        return [f"[WARN] --max-regression {tolerance:g} is below the smallest slowdown of one page these runs can "
                f"call on {worst_name} ({worst:.1f} %): a smaller one reads as noise, so the answer will be "
                f"unsure (125) unless more runs are added. Add baseline runs, run longer, or set --max-regression "
                f"{math.ceil(worst):g}"]
    if tolerance > 3 * worst and tolerance > 5:
        return [f"[HINT] these runs can call slowdowns from {worst:.1f} % (worst page {worst_name}); "
                f"--max-regression {tolerance:g} lets smaller real ones pass: consider --max-regression "
                f"{max(5, math.ceil(1.5 * worst)):g}"]
    return []
