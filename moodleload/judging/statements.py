"""Which statements changed between the baseline's runs and the commit's, per request, and
whether the database's whole work rose: the statements a regression is attributed to.
Pure: it reads the saved ``statements`` sections (``results.statements``)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from moodleload.results.comparison import StatementChange, StatementChanges, WholeWork
from moodleload.results.statements import HIDDEN

if TYPE_CHECKING:
    from moodleload.results.model import Results


TOP_CHANGES = 5
# A change of calls per request below this is rounding of the load mix, not a new query.
MIN_CALLS_CHANGE = 0.05
MIN_MS_CHANGE = 0.05
MIN_WORK_CHANGE = 1.0  # buffer pages or rows examined per request
# The mix of pages differs a little from run to run (each request's page is drawn), so a
# statement's calls per request move with it: a change within a tenth of its rate is the mix.
RELATIVE_FLOOR = 0.1


def per_request(document: Results) -> dict[str, tuple[float, float, float]] | None:
    """query -> (calls, milliseconds, work) per request of the run (per page view when only one URL ran)."""
    section = document.statements
    requests = document.summary.requests  # of the measured window, as the statistics' snapshots
    if not section or not requests:
        return None
    return {entry.query: (entry.calls / requests, entry.ms / requests, entry.work / requests)
            for entry in section.statements if entry.query != HIDDEN}


def work_per_request(document: Results) -> float | None:
    """The database's whole work in the window per request (None without statistics or before 0.7)."""
    section = document.statements
    requests = document.summary.requests
    if section is None or not requests or section.work is None:
        return None
    return section.work / requests


TABLE_PATTERN = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+[`\"]?([A-Za-z_][A-Za-z0-9_$]*)", re.IGNORECASE)


def tables_in(query: str) -> list[str]:
    """The tables a statement names, in order of first appearance."""
    found = []
    for name in TABLE_PATTERN.findall(query):
        if name.lower() not in ("select", "lateral") and name not in found:
            found.append(name)
    return found


def shortened(query: str, limit: int = 110) -> str:
    if len(query) <= limit:
        return query
    return query[: limit - 25] + " ... " + query[-20:]


def _mean_and_noise(values: list[float]) -> tuple[float, float]:
    """The mean of the baseline runs' values and three of their standard deviations (0 with one run)."""
    return statistics.fmean(values), 3 * statistics.stdev(values) if len(values) > 1 else 0.0


def statement_changes(bases: list[Results], news: list[Results], top: int = TOP_CHANGES) -> StatementChanges | None:
    """The statements whose calls, time or work per request changed most from the
    baseline's runs to this commit's, beyond the spread of the baseline's own runs (three
    standard deviations where there are two or more, else the floors), and the database's
    whole work per request on each side.  None when a side has no statistics."""
    base_rates = [rates for rates in map(per_request, bases) if rates is not None]
    new_rates = [rates for rates in map(per_request, news) if rates is not None]
    if not base_rates or not new_rates:
        return None
    queries: set[str] = set().union(*base_rates, *new_rates)
    changes = []
    for query in queries:
        base_seen = [rates.get(query, (0.0, 0.0, 0.0)) for rates in base_rates]
        new_seen = [rates.get(query, (0.0, 0.0, 0.0)) for rates in new_rates]
        calls, ms, work = (_moved(base_seen, new_seen, 0, MIN_CALLS_CHANGE, 3),
                           _moved(base_seen, new_seen, 1, MIN_MS_CHANGE, 4),
                           _moved(base_seen, new_seen, 2, MIN_WORK_CHANGE, 3))
        if calls[3] or ms[3] or work[3]:
            changes.append(StatementChange(
                query, tuple(tables_in(query)), base_calls=calls[0], new_calls=calls[1], calls_change=calls[2],
                calls_changed=calls[3], base_ms=ms[0], new_ms=ms[1], ms_change=ms[2], ms_changed=ms[3],
                base_work=work[0], new_work=work[1], work_change=work[2], work_changed=work[3]))
    one_url = all(len(document.urls) == 1 for document in bases + news)
    return StatementChanges("page view" if one_url else "request", len(base_rates), len(new_rates),
                            _most_changed(changes, "calls", top), _most_changed(changes, "ms", top),
                            _most_changed(changes, "work", top), whole_work(bases, news))


# Each rate a statement is ranked by: (whether it changed, by how much).
RATES: dict[str, Callable[[StatementChange], tuple[bool | None, float | None]]] = {
    "calls": lambda change: (change.calls_changed, change.calls_change),
    "ms": lambda change: (change.ms_changed, change.ms_change),
    "work": lambda change: (change.work_changed, change.work_change)}


def _moved(base_seen: list[tuple[float, float, float]], new_seen: list[tuple[float, float, float]], position: int,
           floor: float, digits: int) -> tuple[float, float, float, bool]:
    """(base, new, change, changed beyond the noise) of one rate of a statement (calls, ms or
    work per request: ``position``), from each run's rates."""
    base, noise = _mean_and_noise([rates[position] for rates in base_seen])
    new = statistics.fmean(rates[position] for rates in new_seen)
    change = round(round(new, digits) - round(base, digits), digits)
    return round(base, digits), round(new, digits), change, abs(change) >= max(floor, noise,
                                                                                RELATIVE_FLOOR * max(base, new))


def _most_changed(changes: list[StatementChange], key: str, top: int) -> tuple[StatementChange, ...]:
    """The ``top`` changes whose ``key`` (calls, ms, work) changed, largest change first."""
    rate = RATES[key]
    changed = [change for change in changes if rate(change)[0]]
    return tuple(sorted(changed, key=lambda change: (-abs(rate(change)[1] or 0.0), change.query))[:top])


def whole_work(bases: list[Results], news: list[Results]) -> WholeWork | None:
    """The database's whole work per request on each side (PostgreSQL's buffer pages, MariaDB's
    rows examined), with the baseline runs' noise: None where a side has none recorded."""
    base = [value for value in map(work_per_request, bases) if value is not None]
    new = [value for value in map(work_per_request, news) if value is not None]
    if not base or not new:
        return None
    units = {document.statements.work_unit for document in bases + news if document.statements is not None}
    base_mean, noise = _mean_and_noise(base)
    new_mean = statistics.fmean(new)
    return WholeWork("/".join(sorted(unit for unit in units if unit)), round(base_mean, 3), round(new_mean, 3),
                     round(noise, 3), len(base), len(new))


def work_regression(work: WholeWork | None, tolerance_pct: float) -> str | None:
    """The line that calls the database's whole work per request a regression, or None: a
    rise above the tolerance and beyond three standard deviations of the baseline's own
    runs (so it needs two or more of them with statistics)."""
    if work is None or work.base_runs < 2 or work.base <= 0:
        return None
    rise = work.new - work.base
    if work.new / work.base - 1 <= tolerance_pct / 100.0 or rise <= max(work.noise, MIN_WORK_CHANGE):
        return None
    return (f"database work per request {work.base:.1f} -> {work.new:.1f} {work.unit}, "
            f"x{work.new / work.base:.3f} (beyond the baseline runs' own spread of {work.noise:.1f})")


def moved_page(db_reads: dict[str, tuple[float | None, float | None]]) -> str | None:
    """The one page whose footer DB reads moved (page -> (baseline, this run) medians), or
    None where none or several did: only then is a statement's change clearly that page's."""
    moved = [page for page, (before, after) in db_reads.items()
             if before is not None and after is not None and abs(after - before) >= 1]
    return moved[0] if len(moved) == 1 else None


def attribute(changes: StatementChanges, page: str, share: float) -> StatementChanges:
    """The statement changes seen from the one page whose footer DB reads moved: a change of
    calls per request of the whole mix is, on that page, the change divided by its share of
    the requests (a +40-reads course page is +40 calls per view, not +14.4 per request)."""
    if share <= 0:
        return changes
    return replace(changes, by_calls=tuple(
        replace(change, page=page, calls_change_per_view=round(change.calls_change / share, 2))
        for change in changes.by_calls))


def changed_statements(changes: StatementChanges) -> tuple[str, list[StatementChange]]:
    """(what the numbers are per: "request" or "page view", the statements that changed,
    most changed calls first, then most changed time, then work, each once)."""
    seen: set[str] = set()
    rows = []
    for change in changes.by_calls + changes.by_time + changes.by_work:
        if change.query not in seen:
            seen.add(change.query)
            rows.append(change)
    return changes.per, rows


def change_lines(changes: StatementChanges | None) -> list[str]:
    """The report's lines: ``+40.0 calls per request: SELECT ... (mdl_user)``."""
    if changes is None:
        return []
    per = changes.per
    lines = []
    work = changes.work
    if work is not None:
        lines.append(f"database work per {per}: {work.base:.1f} -> {work.new:.1f} {work.unit} "
                     f"(baseline runs' spread {work.noise:.1f})")
    listed = {change.query for change in changes.by_calls}
    for change in changes.by_calls:
        if change.page is not None and change.calls_change_per_view is not None:
            lines.append(f"{change.calls_change_per_view:+.1f} calls per view of {change.page}, the page whose "
                         f"DB reads moved ({change.calls_change:+.1f} per {per} of the mix): "
                         f"{shortened(change.query)}{_tables(change)}")
            continue
        lines.append(f"{change.calls_change:+.1f} calls per {per} ({change.base_calls:.1f} -> "
                     f"{change.new_calls:.1f}): {shortened(change.query)}{_tables(change)}")
    for change in changes.by_time:
        if change.query in listed:
            continue
        lines.append(f"{change.ms_change:+.2f} ms per {per} ({change.base_ms:.2f} -> {change.new_ms:.2f} ms):"
                     f" {shortened(change.query)}{_tables(change)}")
    listed |= {change.query for change in changes.by_time}
    unit = work.unit if work is not None else "work"
    for change in changes.by_work:
        if change.query in listed:
            continue
        lines.append(f"{change.work_change or 0.0:+.1f} {unit} per {per} ({change.base_work or 0.0:.1f} -> "
                     f"{change.new_work or 0.0:.1f}): {shortened(change.query)}{_tables(change)}")
    return lines


def _tables(change: StatementChange) -> str:
    return f" [{', '.join(change.tables)}]" if change.tables else ""
