"""Judging a run against several baseline runs of the good commit.

A whole run can shift, not only its requests: on a real Moodle 5.0, identical code moved
every page by 4-7 % from one run to the next (the machine, the database after a restore,
caches), and block-level statistics, which see one run a side, took that shift for a
change.  So with two or more runs the unit of evidence becomes the run: each run gives
each page one value (the median of its block medians, read from 0.2 % buckets), on a log
scale.  A two-way analysis of the runs of each commit (runs x pages) separates the shift a
run shares with every page from each page's own scatter, and two tests follow, as a
hierarchical model would have it:

- one page against the others: the shared shift cancels, so a single page's slowdown is
  judged against its own scatter, with many degrees of freedom (pages x runs);
- every page together (a change under every page, or the environment): the mean change
  against the shared shift, with the few degrees of freedom only runs give.

A page is bad when it is slower than the tolerance and one of them shows it: the false
alarms share alpha, half to the site test and half split over the pages (Bonferroni).
A page that rose against steady other pages is judged by that rise, so a slowdown hidden
under a shared shift of the run is still called.

Good must be shown, not assumed: every page's one-sided upper bound (its interval holds the
whole run-to-run spread, Welch-Satterthwaite degrees of freedom) and the site's must lie
below the tolerance.  That is an intersection-union test: calling good when any page is in
truth slower than the tolerance happens at most alpha of the time, with no correction for
the number of pages.  A commit that is looked at again after more runs spends alpha over
its looks, on both sides: look_share for the bad call, good_share for the good one.
Anything between is "unsure", with how many more runs would decide."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from moodleload.config import PAGE_ROW
from moodleload.judging.compare import (
    Thresholds,
    block_medians,
    failure_rise_upper,
)
from moodleload.judging.stats import f_cdf, student_t_cdf, student_t_quantile
from moodleload.judging.work import TIME, WORK, work_value
from moodleload.results.comparison import Measure, MoreRuns

if TYPE_CHECKING:
    from moodleload.results.model import Results
    from moodleload.results.sections import UrlRecord

NOISY_SPREAD = 0.03  # a page's run-to-run spread above which the report looks for where it came from
MAX_EXTRA_RUNS = 30  # projections stop here: beyond it the noise, not the run count, needs fixing

# Below this a spread is measurement resolution, not knowledge: identical files would
# otherwise make every difference "certain".
SPREAD_FLOOR = 0.002


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def run_value(record: UrlRecord, minimum_blocks: int, measure: Measure = TIME, kind: str = PAGE_ROW,
              tolerance_pct: float = 10.0) -> float | None:
    """One run's value for one page: the median of its block medians of service time, or
    (``measure`` work) its mean CPU time per answer; None with too few data."""
    if measure == WORK:
        return work_value(record, kind, tolerance_pct)
    medians = block_medians(record)
    if len(medians) < minimum_blocks:
        return None
    return statistics.median(medians)


@dataclass(frozen=True)
class Spread:
    """How runs of one commit scatter, from a two-way analysis of their log values (runs x
    pages): the shift a run shares with every page (a mean square with runs - 1 degrees of
    freedom) and each page's own scatter around it."""

    shared_mean_square: float  # estimates pages * shared variance + own variance
    shared_freedom: int
    own_mean_square: float  # estimates the own variance
    own_freedom: int
    pages: int

    @property
    def _parts(self) -> tuple[float, float]:
        """One page's variance across runs: the part every page shares, and its own."""
        return self.shared_mean_square / self.pages, (1.0 - 1.0 / self.pages) * self.own_mean_square

    @property
    def total(self) -> float:
        """One page's standard deviation across runs."""
        return max(math.sqrt(sum(self._parts)), SPREAD_FLOOR)

    @property
    def total_freedom(self) -> float:
        """Welch-Satterthwaite: few when the shared shift dominates, many when not."""
        shared, own = self._parts
        if not self.own_freedom:  # one page: all of it is the shared part
            return float(self.shared_freedom)
        if shared + own <= 0:
            return float(self.shared_freedom + self.own_freedom)
        return (shared + own) ** 2 / (shared ** 2 / self.shared_freedom + own ** 2 / self.own_freedom)

    @property
    def own(self) -> float:
        return max(math.sqrt(self.own_mean_square), SPREAD_FLOOR)

    def grown(self, runs: int) -> Spread:
        """The same mean squares with ``runs`` more runs of one commit: what more runs buy
        is degrees of freedom (and, in the caller, a smaller runs factor)."""
        return replace(self, shared_freedom=self.shared_freedom + runs,
                       own_freedom=self.own_freedom + runs * (self.pages - 1))

    @property
    def site(self) -> float:
        """The standard deviation of the mean over pages of one run's values."""
        return max(math.sqrt(self.shared_mean_square / self.pages), SPREAD_FLOOR)


def analyse_spread(groups: list[list[list[float | None]]]) -> Spread | None:
    """``groups``: for each commit, its runs, each a list of log values by page (None where
    a page had too few blocks); pages missing from any run of a commit are left out here."""
    shared_squares = own_squares = 0.0
    shared_freedom = own_freedom = pages = 0
    for runs in groups:
        if len(runs) < 2:
            continue
        complete = [page for page in range(len(runs[0])) if all(run[page] is not None for run in runs)]
        if not complete:
            continue
        pages = max(pages, len(complete))
        known = [[value or 0.0 for value in run] for run in runs]  # every page of ``complete`` is known
        means = {page: sum(run[page] for run in known) / len(known) for page in complete}
        for run in known:
            deviations = [run[page] - means[page] for page in complete]
            shift = sum(deviations) / len(deviations)
            shared_squares += len(deviations) * shift ** 2
            own_squares += sum((deviation - shift) ** 2 for deviation in deviations)
        shared_freedom += len(runs) - 1
        own_freedom += (len(runs) - 1) * (len(complete) - 1)
    if not shared_freedom:
        return None
    return Spread(shared_squares / shared_freedom, shared_freedom,
                  own_squares / own_freedom if own_freedom else 0.0, own_freedom, pages)


@dataclass(frozen=True)
class Evidence:
    """What a comparison of runs rests on, in the form that projections can grow: the log
    change of every page, the spread, the run counts and the pooled failure counts."""

    changes: dict[str, float]  # page -> mean log value of this commit's runs minus the baseline's
    spread: Spread
    base_runs: int
    new_runs: int
    # page -> (base failed, base requests, new failed, new requests); projections scale them
    failures: dict[str, tuple[float, float, float, float]]

    @property
    def runs_factor(self) -> float:
        return math.sqrt(1 / self.base_runs + 1 / self.new_runs)

    def with_more_runs(self, new: int = 0, base: int = 0) -> Evidence:
        def scaled(counts: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
            bf, bt, nf, nt = counts
            grow_base, grow_new = (self.base_runs + base) / self.base_runs, (self.new_runs + new) / self.new_runs
            return bf * grow_base, bt * grow_base, nf * grow_new, nt * grow_new
        return replace(self, spread=self.spread.grown(new + base), base_runs=self.base_runs + base,
                       new_runs=self.new_runs + new, failures={k: scaled(v) for k, v in self.failures.items()})


@dataclass(frozen=True)
class PageTest:
    """One page against the others (page_tests)."""

    contrast: float  # its log change less the others' mean
    error: float
    p: float  # one-sided, slower
    p_faster: float
    control: bool  # whether the others may serve as its control
    significant: bool


@dataclass(frozen=True)
class SiteTest:
    """Every page together (site_test): the mean log change and its one-sided bounds."""

    change: float
    alpha: float
    p: float
    p_faster: float
    upper: float
    detectable: float


@dataclass(frozen=True)
class PageOutcome:
    """What assess made of one page: its log change, interval and bounds, and what they show."""

    change: float
    interval: tuple[float, float]
    upper: float
    p: float
    significant: bool
    bad: bool
    relative: float | None  # against the other pages, where they could serve as a control
    relative_bad: bool  # bad by that alone
    shown_within: bool
    detectable: float
    faster: bool
    failures: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class Assessment:
    """The clock's side of a comparison of runs (assess): the site's tests and every page's."""

    site: SiteTest  # the shift of every page together, at the bad call's share of alpha
    whole: SiteTest  # the same at the good call's share: its upper bound must be below the tolerance
    pages: dict[str, PageOutcome]
    page_alpha: float


def page_tests(evidence: Evidence, alpha: float) -> dict[str, PageTest]:
    """Each page against the others: the shift a run shares with every page cancels out, so
    one page's slowdown is seen against its own scatter only, with many degrees of freedom.
    The others serve as a control only when they agree among themselves and did not, all
    together, get faster beyond the shared spread (an improvement elsewhere must not make an
    unchanged page look slower)."""
    spread, changes = evidence.spread, evidence.changes
    if spread.own_freedom <= 0 or len(changes) < 2:
        return {}
    tests = {}
    for name, change in changes.items():
        others = [other for key, other in changes.items() if key != name]
        centre = mean(others)
        error = spread.own * evidence.runs_factor * math.sqrt(1 + 1 / len(others))
        t = (change - centre) / error
        agree = True
        if len(others) >= 2:
            scatter = sum((other - centre) ** 2 for other in others) / (len(others) - 1)
            ratio = scatter / (spread.own * evidence.runs_factor) ** 2
            agree = 1.0 - f_cdf(ratio, len(others) - 1, spread.own_freedom) > alpha
        others_error = spread.site * evidence.runs_factor
        others_faster = student_t_cdf(centre / others_error, spread.shared_freedom) <= alpha
        p = 1.0 - student_t_cdf(t, spread.own_freedom)
        tests[name] = PageTest(change - centre, error, p, student_t_cdf(t, spread.own_freedom),
                               agree and not others_faster, p <= alpha)
    return tests


def site_test(evidence: Evidence, alpha: float, changes: dict[str, float] | None = None) -> SiteTest:
    """Every page moving together (a change under every page, or the environment): the mean
    change over pages against the shift runs share, with the few degrees of freedom only
    runs give; and its one-sided upper bound, which good needs below the tolerance."""
    spread = evidence.spread
    values = list((changes or evidence.changes).values())
    change = mean(values)
    error = spread.site * evidence.runs_factor
    t = change / error
    return SiteTest(change, alpha, 1.0 - student_t_cdf(t, spread.shared_freedom),
                    student_t_cdf(t, spread.shared_freedom),
                    change + student_t_quantile(1 - alpha, spread.shared_freedom) * error,
                    student_t_quantile(1 - alpha, spread.shared_freedom) * error)


def look_number(base_runs: int, new_runs: int) -> int:
    """Which look at this commit these runs are, counting only looks that could decide: a
    spread needs two runs on one side, so with one baseline run the commit's first run
    cannot decide and its second is the first look."""
    return max(1, new_runs - (1 if base_runs < 2 else 0))


def look_share(look: int) -> float:
    """The share of alpha a call may spend at the ``look``-th look at a commit: a step that
    is unsure runs again and looks again, and every look is another chance of a wrong call,
    of a false alarm and of a false good alike, so the k-th look spends 6 / (pi^2 k^2) of
    alpha (the shares add up to alpha over any number of looks: 61 %, 15 %, 7 %, ...)."""
    return 6.0 / (math.pi ** 2 * max(1, look) ** 2)


def good_share(look: int) -> float:
    """The share of alpha the good call may spend at the ``look``-th look at a commit.  A
    false good is the error a bisect cannot recover from, and a commit still unsure after
    its first look is just the one that sits near the tolerance, so a re-run must not get
    alpha afresh: the first look spends 80 %, every later one 20 %.  Not a union bound:
    a later look pools the same runs plus one, so its error overlaps the earlier ones
    almost entirely, and spending the 20 % as 6 / (pi^2 k^2) (Bonferroni over looks) was
    measured to make re-runs useless (identical code at a 1 % spread, 5 % tolerance, three
    baseline runs: called good 35 % of the time instead of 78 %).  bench/calibration.py
    measures what the whole step does: a page 1.5 times the tolerance slower is called
    good in at most 5 % of steps."""
    return 0.8 if look <= 1 else 0.2


def assess(evidence: Evidence, thresholds: Thresholds, pages_alpha: float) -> Assessment:
    """The clock's side of every page's verdict, pure: bad when slower than the tolerance and
    shown so; good only when the one-sided upper bound of its change is below it."""
    tolerance = math.log1p(thresholds.max_regression_pct / 100.0)
    spread = evidence.spread
    share = look_share(look_number(evidence.base_runs, evidence.new_runs))
    pages = page_tests(evidence, pages_alpha * share / 2)
    split = bool(pages)
    steady = {name: change for name, change in evidence.changes.items()
              if name not in pages or not pages[name].significant}
    site_alpha = thresholds.alpha * share / (2 if split else 1)
    site = site_test(evidence, site_alpha, steady or None)
    good_alpha = thresholds.alpha * good_share(look_number(evidence.base_runs, evidence.new_runs))
    whole = site_test(evidence, good_alpha)
    page_alpha = pages_alpha * share / (2 if split else 1)
    freedom = spread.total_freedom
    upper_quantile = student_t_quantile(1 - good_alpha, freedom)
    half95 = student_t_quantile(0.975, freedom) * spread.total * evidence.runs_factor
    outcomes = {}
    for name, change in evidence.changes.items():
        page = pages.get(name)
        significant = (page is not None and page.significant) or site.p <= site.alpha
        raw_bad = change > tolerance and significant
        relative_bad = page is not None and page.significant and page.control and page.contrast > tolerance
        upper = change + upper_quantile * spread.total * evidence.runs_factor
        p_slower = min(page.p, site.p) if page is not None else site.p
        if page is not None:
            detectable = student_t_quantile(1 - page_alpha, spread.own_freedom) * page.error
        else:
            detectable = site.detectable
        outcomes[name] = PageOutcome(
            change=change, interval=(change - half95, change + half95), upper=upper, p=p_slower,
            significant=significant, bad=raw_bad or relative_bad, relative=None if page is None else page.contrast,
            relative_bad=relative_bad and not raw_bad, shown_within=upper < tolerance, detectable=detectable,
            faster=change < -tolerance and ((page is not None and page.p_faster <= page_alpha)
                                            or site.p_faster <= site.alpha),
            failures=evidence.failures.get(name))
    return Assessment(site, whole, outcomes, page_alpha)


def decided(evidence: Evidence, thresholds: Thresholds, pages_alpha: float) -> bool:
    """Would these runs answer good or bad?  Bad on one page decides; good needs every page
    and the site shown within the tolerance and no rise of failures beyond the margin."""
    outcome = assess(evidence, thresholds, pages_alpha)
    if any(page.bad for page in outcome.pages.values()):
        return True
    if outcome.whole.upper >= math.log1p(thresholds.max_regression_pct / 100.0):
        return False
    for page in outcome.pages.values():
        if not page.shown_within:
            return False
        if page.failures:
            base_failed, base_total, new_failed, new_total = page.failures
            if failure_rise_upper(base_failed, base_total, new_failed, new_total,
                                  outcome.page_alpha) >= thresholds.failure_margin:
                return False
    return True


def more_runs(evidence: Evidence, thresholds: Thresholds, pages_alpha: float) -> MoreRuns:
    """How many more runs of this commit, and separately of the baseline, would decide if
    the changes and the spread stayed as measured (None: not within MAX_EXTRA_RUNS)."""
    def first(grow: Callable[[int], Evidence]) -> int | None:
        for extra in range(1, MAX_EXTRA_RUNS + 1):
            if decided(grow(extra), thresholds, pages_alpha):
                return extra
        return None
    return MoreRuns(candidate=first(lambda extra: evidence.with_more_runs(new=extra)),
                    baseline=first(lambda extra: evidence.with_more_runs(base=extra)),
                    each=first(lambda extra: evidence.with_more_runs(new=extra, base=extra)))


def log_grids(bases: list[Results], news: list[Results], names: list[str], thresholds: Thresholds,
              measure: Measure = TIME) -> list[list[list[float | None]]]:
    """For each commit, runs x pages of log values of ``measure`` (None: too few data on that page in that run)."""
    grids = []
    for documents in (bases, news):
        grid = []
        for document in documents:
            row = []
            for name in names:
                value = run_value(document.urls[name], thresholds.min_blocks, measure, document.row_kind(name),
                                  thresholds.max_regression_pct)
                row.append(math.log(value) if value is not None and value > 0 else None)
            grid.append(row)
        grids.append(grid)
    return grids


