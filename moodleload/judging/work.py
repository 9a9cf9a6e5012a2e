"""The work a page did, judged beside the time it took.

Wall time is work plus waiting, and on a shared CI runner or a laptop the waiting (for a
core, for the disk) belongs to the neighbours: it swamps a 10 % change of the code and can
even give it the wrong sign.  Moodle's footer (perfdebug 15) prints the PHP worker's own CPU
time for the request from posix_times(), in 10 ms ticks.  One reading is coarse, but the mean
over a run's hundreds of answers is precise, and a busy machine hardly moves it.  So each
page's CPU time per answer is a second measure, judged with the same statistics as service
time (blocks with one run a side, runs against their spread with several), and ``--judge``
says which decides:

- ``time``: service time only (what users wait for; the only choice for a commit that makes
  pages wait longer without doing more: a lock, a sleep, a slow external call, I/O);
- ``work``: the CPU time per answer and the DB reads (what the code does; for a busy or shared
  machine);
- ``both`` (the default): time, and a work regression alone is bad too.

Web-service calls answer JSON, with no footer: their work is never judged, their failures are.
A page whose work cannot be judged (no CPU line, readings that cannot be true, too few answers
for the tick) is named; under ``work`` it makes the answer 125, never good."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from moodleload.config import CALL_ROW
from moodleload.results.comparison import ComparisonRow, Judge, Measure, RowVerdict, WorkRow
from moodleload.site.moodle import TICK_MS

if TYPE_CHECKING:
    from moodleload.results.sections import UrlRecord

JUDGE_TIME, JUDGE_WORK, JUDGE_BOTH = Judge.TIME, Judge.WORK, Judge.BOTH
JUDGE_CHOICES = tuple(Judge)

TIME, WORK = Measure.TIME, Measure.WORK  # the two measures a page is judged by

MIN_CPU_ANSWERS = 30  # a run's readings of one page below which its mean is not judged


def measures(judge: Judge) -> tuple[Measure, ...]:
    """The measures a verdict under ``--judge`` reads: for the bad call, and for the good one."""
    return {JUDGE_TIME: (TIME,), JUDGE_WORK: (WORK,), JUDGE_BOTH: (TIME, WORK)}[judge]


def good_measure(judge: Judge) -> Measure:
    """The measure that must rule out a slowdown for a good call (both: time, as before work)."""
    return WORK if judge == JUDGE_WORK else TIME


def tick_resolution(record: UrlRecord) -> float | None:
    """How far the run's mean CPU time can be off from tick rounding alone, as a share of the
    mean (two standard errors): each reading is two counters rounded down to a tick, so it is
    off by less than a tick, with a standard deviation of at most half a tick."""
    answers, mean = record.cpu_requests, record.cpu_ms_mean
    if not answers or not mean:
        return None
    return 2 * 0.5 * TICK_MS / (mean * math.sqrt(answers))


def cpu_problem(record: UrlRecord, kind: str, tolerance_pct: float) -> str | None:
    """Why this run's CPU time of a row cannot be judged, in words, or None when it can.
    A web-service call has no footer by design: None, and it is left out (cpu_judged)."""
    if kind == CALL_ROW and not record.footers:
        return None
    if not record.footers:
        return "no performance footer on its answers ($CFG->perfdebug 15 shows it; a theme may hide it)"
    if record.cpu_unreadable:
        return (f"{record.cpu_unreadable} of its footers gave a CPU time that cannot be true (a counter that went "
                f"backwards, or more CPU than wall time)")
    if not record.cpu_requests:
        return "its footer shows no CPU time (the posixtimes line needs PHP's posix extension)"
    if record.cpu_requests < MIN_CPU_ANSWERS:
        return f"only {record.cpu_requests} answers with a CPU time (need {MIN_CPU_ANSWERS}): run longer"
    resolution = tick_resolution(record)
    # Rounding is unbiased (the phase of the tick is the request's chance), so it only adds
    # noise, which the run-to-run spread already holds; a mean that rounding alone leaves
    # as uncertain as the tolerance, though, cannot say anything of the tolerance.
    if not record.cpu_ms_mean or (resolution is not None and resolution > tolerance_pct / 100.0):
        return (f"{record.cpu_requests} answers of {record.cpu_ms_mean or 0:.1f} ms CPU are too few for the "
                f"10 ms tick: their mean is known within {(resolution or 1.0):.1%}, the tolerance is "
                f"{tolerance_pct:g} %: run longer or at a higher rate")
    return None


def cpu_judged(record: UrlRecord, kind: str) -> bool:
    """Whether a row's work is judged at all: every row but a web-service call without footer."""
    return not (kind == CALL_ROW and not record.footers)


def work_value(record: UrlRecord, kind: str, tolerance_pct: float) -> float | None:
    """One run's value of a row's work: its mean CPU time per answer (ms), None when it cannot be judged."""
    if not cpu_judged(record, kind) or cpu_problem(record, kind, tolerance_pct) is not None:
        return None
    return record.cpu_ms_mean


def combine(row: ComparisonRow, work: WorkRow | None, judge: Judge, counts: tuple[RowVerdict, tuple[str, ...]],
            failure_gap: str | None, doubt: str | None = None) -> ComparisonRow:
    """The row's verdict under ``judge``, from the time row (``row``, as compare built it),
    the work row (``work``; None where the row's work is not judged, a web-service call),
    what the counters alone said (``counts``: the verdict and reasons of failures and DB
    reads, before the clock) and ``failure_gap`` (a rise of failures not ruled out, or None).
    ``doubt``: why the work of these runs cannot be compared at all (machine.contention_shift):
    the work row then says neither good nor bad.  The work row is kept in the row, whatever decides."""
    if work is not None and doubt is not None and work.verdict != RowVerdict.UNSURE:
        work = replace(work, verdict=RowVerdict.UNSURE, reasons=(f"CPU time not judged: {doubt}",),
                       measured=work.verdict)
    row = replace(row, work=work, decided_by=TIME)
    if judge == JUDGE_TIME:
        return row
    if judge == JUDGE_BOTH:
        if work is not None and work.verdict == RowVerdict.REGRESSION and row.verdict != RowVerdict.REGRESSION:
            return replace(row, verdict=RowVerdict.REGRESSION, reasons=(*counts[1], *work.reasons), decided_by=WORK)
        return row
    verdict, reasons = counts
    if verdict == RowVerdict.REGRESSION:
        more = work.reasons if work is not None and work.verdict == RowVerdict.REGRESSION else ()
        return replace(row, verdict=verdict, reasons=(*reasons, *more), decided_by=WORK)
    # a web-service call (no work row): its failures alone are judged
    verdict, reasons = (work.verdict, work.reasons) if work is not None else (RowVerdict.SAME, ())
    if verdict in (RowVerdict.SAME, RowVerdict.IMPROVEMENT) and failure_gap:
        verdict, reasons = RowVerdict.UNSURE, (*reasons, failure_gap)
    return replace(row, verdict=verdict, reasons=reasons, decided_by=WORK)
