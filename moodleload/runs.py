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
from dataclasses import dataclass, replace

from .compare import (
    FAILURE_MARGIN,
    Thresholds,
    block_medians,
    failure_rise_upper,
    incomparable,
    judge_counts,
    release_notes,
    unshown,
    work_notes,
)
from .histogram import Histogram, counter_median
from .machine import contended, noise_notes
from .stats import f_cdf, student_t_cdf, student_t_quantile

NOISY_SPREAD = 0.03  # a page's run-to-run spread above which the report looks for where it came from
MAX_EXTRA_RUNS = 30  # projections stop here: beyond it the noise, not the run count, needs fixing

# Below this a spread is measurement resolution, not knowledge: identical files would
# otherwise make every difference "certain".
SPREAD_FLOOR = 0.002


def run_value(raw_url: dict, minimum_blocks: int) -> float | None:
    """One run's value for one page: the median of its block medians, or None with too few blocks."""
    medians = block_medians(raw_url)
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


def analyse_spread(groups: list) -> Spread | None:
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
        means = {page: sum(run[page] for run in runs) / len(runs) for page in complete}
        for run in runs:
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


def _pooled_tally(documents: list, name: str, key: str) -> dict:
    tally: dict = {}
    for document in documents:
        for value, count in document["urls"][name].get("footer", {}).get(key, {}).items():
            tally[value] = tally.get(value, 0) + count
    return tally


def _server_median(documents: list, name: str) -> float | None:
    """The median over runs of each run's median server time from Moodle's footer."""
    medians = []
    for document in documents:
        histogram = Histogram.from_dict(document["urls"][name].get("footer", {}).get("server_time_ms"))
        median = histogram.percentile(50) if histogram.count else None
        if median is not None:
            medians.append(median)
    return round(statistics.median(medians), 2) if medians else None


def common_mode(ratios: dict) -> str | None:
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


@dataclass(frozen=True)
class Evidence:
    """What a comparison of runs rests on, in the form that projections can grow: the log
    change of every page, the spread, the run counts and the pooled failure counts."""

    changes: dict  # page -> mean log value of this commit's runs minus the baseline's
    spread: Spread
    base_runs: int
    new_runs: int
    failures: dict[str, tuple[int, int, int, int]]  # page -> (base failed, base requests, new failed, new requests)

    @property
    def runs_factor(self) -> float:
        return math.sqrt(1 / self.base_runs + 1 / self.new_runs)

    def with_more_runs(self, new: int = 0, base: int = 0) -> Evidence:
        def scaled(counts):
            bf, bt, nf, nt = counts
            grow_base, grow_new = (self.base_runs + base) / self.base_runs, (self.new_runs + new) / self.new_runs
            return bf * grow_base, bt * grow_base, nf * grow_new, nt * grow_new
        return replace(self, spread=self.spread.grown(new + base), base_runs=self.base_runs + base,
                       new_runs=self.new_runs + new, failures={k: scaled(v) for k, v in self.failures.items()})


def page_tests(evidence: Evidence, alpha: float) -> dict:
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
        centre = _mean(others)
        error = spread.own * evidence.runs_factor * math.sqrt(1 + 1 / len(others))
        t = (change - centre) / error
        agree = True
        if len(others) >= 2:
            scatter = sum((other - centre) ** 2 for other in others) / (len(others) - 1)
            ratio = scatter / (spread.own * evidence.runs_factor) ** 2
            agree = 1.0 - f_cdf(ratio, len(others) - 1, spread.own_freedom) > alpha
        others_error = spread.site * evidence.runs_factor
        others_faster = student_t_cdf(centre / others_error, spread.shared_freedom) <= alpha
        tests[name] = {"contrast": change - centre, "error": error, "p": 1.0 - student_t_cdf(t, spread.own_freedom),
                       "p_faster": student_t_cdf(t, spread.own_freedom), "control": agree and not others_faster}
        tests[name]["significant"] = tests[name]["p"] <= alpha
    return tests


def site_test(evidence: Evidence, alpha: float, changes: dict | None = None) -> dict:
    """Every page moving together (a change under every page, or the environment): the mean
    change over pages against the shift runs share, with the few degrees of freedom only
    runs give; and its one-sided upper bound, which good needs below the tolerance."""
    spread = evidence.spread
    values = list((changes or evidence.changes).values())
    change = _mean(values)
    error = spread.site * evidence.runs_factor
    t = change / error
    return {"change": change, "alpha": alpha, "p": 1.0 - student_t_cdf(t, spread.shared_freedom),
            "p_faster": student_t_cdf(t, spread.shared_freedom),
            "upper": change + student_t_quantile(1 - alpha, spread.shared_freedom) * error,
            "detectable": student_t_quantile(1 - alpha, spread.shared_freedom) * error}


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


def assess(evidence: Evidence, thresholds: Thresholds, pages_alpha: float) -> dict:
    """The clock's side of every page's verdict, pure: bad when slower than the tolerance and
    shown so; good only when the one-sided upper bound of its change is below it."""
    tolerance = math.log1p(thresholds.max_regression_pct / 100.0)
    spread = evidence.spread
    share = look_share(look_number(evidence.base_runs, evidence.new_runs))
    pages = page_tests(evidence, pages_alpha * share / 2)
    split = bool(pages)
    steady = {name: change for name, change in evidence.changes.items()
              if not pages.get(name, {}).get("significant")}
    site_alpha = thresholds.alpha * share / (2 if split else 1)
    site = site_test(evidence, site_alpha, steady or None)
    good_alpha = thresholds.alpha * good_share(look_number(evidence.base_runs, evidence.new_runs))
    whole = site_test(evidence, good_alpha)
    page_alpha = pages_alpha * share / (2 if split else 1)
    freedom = spread.total_freedom
    upper_quantile = student_t_quantile(1 - good_alpha, freedom)
    half95 = student_t_quantile(0.975, freedom) * spread.total * evidence.runs_factor
    result: dict = {"site": site, "whole": whole, "pages": {}, "page_alpha": page_alpha}
    for name, change in evidence.changes.items():
        page = pages.get(name)
        significant = (page is not None and page["significant"]) or site["p"] <= site["alpha"]
        raw_bad = change > tolerance and significant
        relative_bad = page is not None and page["significant"] and page["control"] and page["contrast"] > tolerance
        upper = change + upper_quantile * spread.total * evidence.runs_factor
        p_slower = min(p for p in (page["p"] if page else None, site["p"]) if p is not None)
        if page is not None:
            detectable = student_t_quantile(1 - page_alpha, spread.own_freedom) * page["error"]
        else:
            detectable = site["detectable"]
        failures = evidence.failures.get(name)
        result["pages"][name] = {
            "change": change, "interval": (change - half95, change + half95), "upper": upper,
            "p": p_slower, "significant": significant, "bad": raw_bad or relative_bad,
            "relative": None if page is None else page["contrast"], "relative_bad": relative_bad and not raw_bad,
            "shown_within": upper < tolerance, "detectable": detectable,
            "faster": change < -tolerance and ((page is not None and page["p_faster"] <= page_alpha)
                                               or site["p_faster"] <= site["alpha"]),
            "failures": failures}
    return result


def decided(evidence: Evidence, thresholds: Thresholds, pages_alpha: float) -> bool:
    """Would these runs answer good or bad?  Bad on one page decides; good needs every page
    and the site shown within the tolerance and no rise of failures beyond the margin."""
    outcome = assess(evidence, thresholds, pages_alpha)
    if any(page["bad"] for page in outcome["pages"].values()):
        return True
    if outcome["whole"]["upper"] >= math.log1p(thresholds.max_regression_pct / 100.0):
        return False
    for page in outcome["pages"].values():
        if not page["shown_within"]:
            return False
        if page["failures"]:
            base_failed, base_total, new_failed, new_total = page["failures"]
            if failure_rise_upper(base_failed, base_total, new_failed, new_total,
                                  outcome["page_alpha"]) >= FAILURE_MARGIN:
                return False
    return True


def more_runs(evidence: Evidence, thresholds: Thresholds, pages_alpha: float) -> dict:
    """How many more runs of this commit, and separately of the baseline, would decide if
    the changes and the spread stayed as measured (None: not within MAX_EXTRA_RUNS)."""
    def first(grow) -> int | None:
        for extra in range(1, MAX_EXTRA_RUNS + 1):
            if decided(grow(extra), thresholds, pages_alpha):
                return extra
        return None
    return {"candidate": first(lambda extra: evidence.with_more_runs(new=extra)),
            "baseline": first(lambda extra: evidence.with_more_runs(base=extra)),
            "each": first(lambda extra: evidence.with_more_runs(new=extra, base=extra))}


def log_grids(bases: list, news: list, names: list, minimum_blocks: int) -> list:
    """For each commit, runs x pages of log values (None: too few blocks on that page in that run)."""
    grids = []
    for documents in (bases, news):
        grid = []
        for document in documents:
            row = []
            for name in names:
                value = run_value(document["urls"][name], minimum_blocks)
                row.append(math.log(value) if value is not None and value > 0 else None)
            grid.append(row)
        grids.append(grid)
    return grids


def compare_runs(bases: list, news: list, thresholds: Thresholds) -> dict:
    """Compare one or more candidate runs with two or more baseline runs (or one baseline
    with two or more candidates), URL by URL, against the run-to-run spread."""
    names = [name for name in news[0]["urls"]
             if all(name in document["urls"] for document in bases + news)]
    alpha = thresholds.alpha / max(1, len(names))
    grids = log_grids(bases, news, names, thresholds.min_blocks)
    values = {name: [[run[position] for run in grid if run[position] is not None] for grid in grids]
              for position, name in enumerate(names)}
    spread = analyse_spread(grids)
    changes = {name: _mean(groups[1]) - _mean(groups[0]) for name, groups in values.items()
               if groups[0] and groups[1]}
    failures = {name: tuple(sum(document["urls"][name][key] for document in side)
                            for side in (bases, news) for key in ("failure", "requests")) for name in names}
    evidence = outcome = None
    if spread is not None and changes:
        evidence = Evidence(changes, spread, len(bases), len(news), {k: failures[k] for k in changes})
        outcome = assess(evidence, thresholds, alpha)
    rows = {name: _judge_url(name, bases, news, values[name], outcome, thresholds, alpha, spread, failures[name])
            for name in names}
    verdicts = [row["verdict"] for row in rows.values()]
    overall = "regression" if "regression" in verdicts else \
        "unsure" if not rows or "unsure" in verdicts else "same"
    tolerance = thresholds.max_regression_pct / 100.0
    whole = outcome["whole"] if outcome else None
    if overall == "same" and whole is not None and whole["upper"] >= math.log1p(tolerance):
        overall = "unsure"
    notes = [f"judged against {len(bases)} baseline run{'s' * (len(bases) > 1)} and {len(news)} run"
             f"{'s' * (len(news) > 1)} of this commit: run-to-run spread "
             + (f"{math.exp(spread.total) - 1:.1%} a page ({spread.total_freedom:.1f} degrees of freedom), "
                f"{math.exp(spread.site) - 1:.1%} for the site as a whole" if spread else "unknown")]
    site = outcome["site"] if outcome else None
    if site is not None and site["p"] <= site["alpha"] and overall != "regression":
        notes.append(f"every page together moved x{math.exp(site['change']):.3f} (p={site['p']:.2g}), within "
                     f"the tolerance")
    shift = common_mode({name: row.get("ratio") for name, row in rows.items()})
    if shift:
        notes.append(shift)
    missing = sorted({name for document in bases + news for name in document["urls"]} - set(names))
    if missing:
        notes.append(f"URLs not in every run, not compared: {', '.join(missing)}")
    notes += work_notes(bases, news) + release_notes(bases, news)
    if spread is not None and math.exp(spread.total) - 1 > NOISY_SPREAD:
        notes += noise_notes(bases, news)
    differences = []
    for document in bases + news[1:]:
        differences += [reason for reason in incomparable(document, news[0]) if reason not in differences]
    differences += contended(bases, news, thresholds.max_other_cpu)
    needed = more_runs(evidence, thresholds, alpha) if evidence is not None and overall == "unsure" \
        else {"candidate": None, "baseline": None, "each": None}
    rules_out = [row["rules_out_pct"] for row in rows.values() if row.get("rules_out_pct") is not None]
    if whole is not None:
        rules_out.append(round(math.expm1(whole["upper"]) * 100, 2))
    comparison = {"verdict": "not comparable" if differences else overall, "method": "runs", "alpha_per_url": alpha,
                  "urls": rows, "notes": notes, "max_regression_pct": thresholds.max_regression_pct,
                  "not_comparable": differences, "baseline_runs": len(bases), "candidate_runs": len(news),
                  "spread_pct": None if spread is None else round((math.exp(spread.total) - 1) * 100, 3),
                  "site_detectable_pct": None if site is None else round(math.expm1(site["detectable"]) * 100, 2),
                  "site_rules_out_pct": None if whole is None else round(math.expm1(whole["upper"]) * 100, 2),
                  "rules_out_pct": max(rules_out) if rules_out else None, "more_runs": needed,
                  "advice": advice(rows, thresholds)}
    comparison["undecided"] = undecided_line(comparison) if overall == "unsure" else None
    return comparison


def undecided_line(comparison: dict) -> str:
    """The one line that says why these runs cannot call the commit good, and what would."""
    tolerance = comparison["max_regression_pct"]
    rules_out = comparison.get("rules_out_pct")
    if rules_out is None:
        head = "these runs cannot bound the slowdown"
    elif rules_out >= tolerance:
        head = f"these runs rule out only slowdowns above {rules_out:.1f} %"
    else:
        head = (f"these runs rule out slowdowns above {rules_out:.1f} % but not a rise of failures above "
                f"{FAILURE_MARGIN:.0%} of requests")
    needed = comparison.get("more_runs") or {}
    candidate, baseline, each = needed.get("candidate"), needed.get("baseline"), needed.get("each")
    if comparison.get("method") != "runs":
        tail = "one run a side cannot know the run-to-run spread: record three baseline runs (--baseline)"
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


def _mean(values: list) -> float:
    return sum(values) / len(values)


def _judge_url(name: str, bases: list, news: list, groups: list, outcome: dict | None, thresholds: Thresholds,
               alpha: float, spread: Spread | None, counts: tuple[int, int, int, int]) -> dict:
    page_alpha = outcome["page_alpha"] if outcome else alpha
    row = judge_counts(*counts, counter_median(_pooled_tally(bases, name, "db_reads")),
                       counter_median(_pooled_tally(news, name, "db_reads")), thresholds, page_alpha, {})
    base_logs, new_logs = groups
    row["runs"] = [len(base_logs), len(new_logs)]
    # Moodle's own server time (footer) beside the client's: a shift in one but not the
    # other points at the network or the generator, not the code
    row["server_ms"] = [_server_median(side, name) for side in (bases, news)]
    page = None if outcome is None else outcome["pages"].get(name)
    if page is None:
        row.update(ratio=None, p_value=None)
        if row["verdict"] == "same":
            row["verdict"] = "unsure"
            row["reasons"].append(f"too few runs with {thresholds.min_blocks} blocks of data "
                                  f"({len(base_logs)} baseline, {len(new_logs)} this commit): more runs may decide")
        return row
    ratio = math.exp(page["change"])
    assert spread is not None  # a page judged over runs has their spread
    low, high = (math.exp(bound) for bound in page["interval"])
    row.update(base_ms=round(math.exp(_mean(base_logs)), 2), new_ms=round(math.exp(_mean(new_logs)), 2),
               ratio=round(ratio, 4), ratio_ci95=[round(low, 4), round(high, 4)],
               p_value=float(f"{page['p']:.3g}"), alpha=round(page_alpha, 6),
               noise_pct=round((math.exp(spread.total) - 1) * 100, 2),
               detectable_pct=round(math.expm1(page["detectable"]) * 100, 2),
               rules_out_pct=round(math.expm1(page["upper"]) * 100, 2),
               relative_ratio=None if page["relative"] is None else round(math.exp(page["relative"]), 4))
    if page["bad"]:
        row["verdict"] = "regression"
        if page["relative_bad"]:
            row["reasons"].append(f"median service time x{math.exp(page['relative']):.3f} against the other pages "
                                  f"(x{ratio:.3f} in all, the rest moved with the run; p={page['p']:.2g})")
        else:
            row["reasons"].append(f"median service time x{ratio:.3f}, {low:.3f}-{high:.3f} with the run-to-run "
                                  f"spread (p={page['p']:.2g})")
    elif page["faster"] and row["verdict"] == "same":
        row["verdict"] = "improvement"
    unshown(row, math.exp(page["upper"]), thresholds.max_regression_pct / 100.0)
    return row


def advice(rows: dict, thresholds: Thresholds) -> list:
    """What a bisect can see with these runs: a warning when --max-regression is below the
    smallest slowdown they can call, a hint when it is far above it."""
    detectable = {name: row["detectable_pct"] for name, row in rows.items() if row.get("detectable_pct") is not None}
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
