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

Each runs at half the false-alarm rate.  The 95 % interval of a page's ratio is a
prediction interval that holds the whole run-to-run spread (Welch-Satterthwaite degrees
of freedom): for identical code it holds 1.0 about 95 times in 100."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .compare import Thresholds, block_medians, incomparable, judge_counts, work_notes
from .histogram import counter_median
from .stats import student_t_cdf, student_t_quantile

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


def compare_runs(bases: list, news: list, thresholds: Thresholds) -> dict:
    """Compare one or more candidate runs with two or more baseline runs (or one baseline
    with two or more candidates), URL by URL, against the run-to-run spread."""
    names = [name for name in news[0]["urls"]
             if all(name in document["urls"] for document in bases + news)]
    alpha = thresholds.alpha / max(1, len(names))
    # runs x pages of log values, for each commit (None: too few blocks on that page in that run)
    grids = []
    for documents in (bases, news):
        grid = []
        for document in documents:
            row = []
            for name in names:
                value = run_value(document["urls"][name], thresholds.min_blocks)
                row.append(math.log(value) if value is not None and value > 0 else None)
            grid.append(row)
        grids.append(grid)
    values = {name: [[run[position] for run in grid if run[position] is not None] for grid in grids]
              for position, name in enumerate(names)}
    spread = analyse_spread(grids)
    changes = {name: _mean(groups[1]) - _mean(groups[0]) for name, groups in values.items()
               if groups[0] and groups[1]}
    split = spread is not None and spread.own_freedom > 0 and len(changes) > 1
    pages = _page_tests(changes, spread, len(bases), len(news), alpha / 2) if split else {}
    # The site as a whole, from the pages that did not move on their own: one page's
    # regression must not pass for a shift of every page.
    steady = {name: change for name, change in changes.items() if not pages.get(name, {}).get("significant")}
    site = _site_change(steady or changes, spread, len(bases), len(news), thresholds, split)
    rows = {name: _judge_url(name, bases, news, values[name], changes.get(name), pages.get(name), spread, site,
                             thresholds, alpha / 2 if split else alpha)
            for name in names}
    verdicts = [row["verdict"] for row in rows.values()]
    overall = "regression" if "regression" in verdicts else \
        "unsure" if not rows or "unsure" in verdicts else "same"
    notes = [f"judged against {len(bases)} baseline run{'s' * (len(bases) > 1)} and {len(news)} run"
             f"{'s' * (len(news) > 1)} of this commit: run-to-run spread "
             + (f"{math.exp(spread.total) - 1:.1%} a page ({spread.total_freedom:.1f} degrees of freedom), "
                f"{math.exp(spread.site) - 1:.1%} for the site as a whole" if spread else "unknown")]
    if site is not None and site["p"] <= site["alpha"] and not any(row["verdict"] == "regression"
                                                                    for row in rows.values()):
        notes.append(f"every page together moved x{math.exp(site['change']):.3f} (p={site['p']:.2g}), within "
                     f"the tolerance")
    shift = common_mode({name: row.get("ratio") for name, row in rows.items()})
    if shift:
        notes.append(shift)
    missing = sorted({name for document in bases + news for name in document["urls"]} - set(names))
    if missing:
        notes.append(f"URLs not in every run, not compared: {', '.join(missing)}")
    notes += work_notes(bases, news)
    differences = []
    for document in bases + news[1:]:
        differences += [reason for reason in incomparable(document, news[0]) if reason not in differences]
    return {"verdict": "not comparable" if differences else overall, "method": "runs", "alpha_per_url": alpha,
            "urls": rows, "notes": notes, "max_regression_pct": thresholds.max_regression_pct,
            "not_comparable": differences, "baseline_runs": len(bases), "candidate_runs": len(news),
            "spread_pct": None if spread is None else round((math.exp(spread.total) - 1) * 100, 3),
            "site_detectable_pct": None if site is None else site["detectable_pct"],
            "advice": advice(rows, thresholds)}


def _mean(values: list) -> float:
    return sum(values) / len(values)


def _page_tests(changes: dict, spread: Spread, base_runs: int, new_runs: int, alpha: float) -> dict:
    """Each page against the others: the shift a run shares with every page cancels out, so
    one page's slowdown is seen against its own scatter only, with many degrees of freedom."""
    tests = {}
    runs_factor = math.sqrt(1 / base_runs + 1 / new_runs)
    for name, change in changes.items():
        others = [other for key, other in changes.items() if key != name]
        error = spread.own * runs_factor * math.sqrt(1 + 1 / len(others))
        t = (change - _mean(others)) / error
        p = 1.0 - student_t_cdf(t, spread.own_freedom)
        tests[name] = {"p": p, "p_faster": student_t_cdf(t, spread.own_freedom), "error": error,
                       "significant": p <= alpha}
    return tests


def _site_change(changes: dict, spread: Spread | None, base_runs: int, new_runs: int, thresholds: Thresholds,
                 split: bool):
    """The test of every page moving together (a change under every page, or the
    environment): the mean change over pages against the shift runs share, with the few
    degrees of freedom that only runs give."""
    if spread is None or not changes:
        return None
    change = _mean(list(changes.values()))
    error = spread.site * math.sqrt(1 / base_runs + 1 / new_runs)
    alpha = thresholds.alpha / (2 if split else 1)
    t = change / error
    return {"change": change, "alpha": alpha, "p": 1.0 - student_t_cdf(t, spread.shared_freedom),
            "p_faster": student_t_cdf(t, spread.shared_freedom),
            "detectable_pct": round((math.exp(student_t_quantile(1 - alpha, spread.shared_freedom) * error) - 1) * 100,
                                    2)}


def _judge_url(name: str, bases: list, news: list, groups: list, change: float | None, page: dict | None,
               spread: Spread | None, site, thresholds: Thresholds, page_alpha: float) -> dict:
    row = judge_counts(sum(document["urls"][name]["failure"] for document in bases),
                       sum(document["urls"][name]["requests"] for document in bases),
                       sum(document["urls"][name]["failure"] for document in news),
                       sum(document["urls"][name]["requests"] for document in news),
                       counter_median(_pooled_tally(bases, name, "db_reads")),
                       counter_median(_pooled_tally(news, name, "db_reads")), thresholds, page_alpha, {})
    base_logs, new_logs = groups
    row["runs"] = [len(base_logs), len(new_logs)]
    if change is None or spread is None:
        row.update(ratio=None, p_value=None)
        if row["verdict"] == "same":
            row["verdict"] = "unsure"
            row["reasons"].append(f"too few runs with {thresholds.min_blocks} blocks of data "
                                  f"({len(base_logs)} baseline, {len(new_logs)} this commit): more runs may decide")
        return row
    runs_factor = math.sqrt(1 / len(new_logs) + 1 / len(base_logs))
    # The interval of the page's ratio holds everything a run can do: its shared shift and its own scatter.
    half = student_t_quantile(0.975, spread.total_freedom) * spread.total * runs_factor
    ratio = math.exp(change)
    p_slower = min(p for p in (page["p"] if page else None, site["p"] if site else None) if p is not None)
    significant = (page is not None and page["significant"]) or (site is not None and site["p"] <= site["alpha"])
    if page is not None:
        detectable_error, detectable_freedom = page["error"], spread.own_freedom
    else:
        detectable_error, detectable_freedom = spread.site * runs_factor, spread.shared_freedom
    tolerance = thresholds.max_regression_pct / 100.0
    row.update(base_ms=round(math.exp(_mean(base_logs)), 2), new_ms=round(math.exp(_mean(new_logs)), 2),
               ratio=round(ratio, 4),
               ratio_ci95=[round(math.exp(change - half), 4), round(math.exp(change + half), 4)],
               p_value=float(f"{p_slower:.3g}"), alpha=round(page_alpha, 6),
               noise_pct=round((math.exp(spread.total) - 1) * 100, 2),
               detectable_pct=round((math.exp(student_t_quantile(1 - page_alpha, detectable_freedom)
                                              * detectable_error) - 1) * 100, 2))
    if ratio > 1 + tolerance:
        if significant:
            row["verdict"] = "regression"
            row["reasons"].append(f"median service time x{ratio:.3f}, {row['ratio_ci95'][0]:.3f}-"
                                  f"{row['ratio_ci95'][1]:.3f} with the run-to-run spread (p={p_slower:.2g})")
        elif p_slower <= max(0.1, 2 * page_alpha) and row["verdict"] == "same":
            row["verdict"] = "unsure"
            row["reasons"].append(f"median service time x{ratio:.3f} but p={p_slower:.2g} against the run-to-run "
                                  f"spread: more runs may decide")
    elif ratio < 1 - tolerance and row["verdict"] == "same" and (
            (page is not None and page["p_faster"] <= page_alpha)
            or (site is not None and site["p_faster"] <= site["alpha"])):
        row["verdict"] = "improvement"
    return row


def advice(rows: dict, thresholds: Thresholds) -> list:
    """What a bisect can see with these runs: a warning when --max-regression is below the
    smallest slowdown they can call, a hint when it is far above it."""
    detectable = {name: row["detectable_pct"] for name, row in rows.items() if row.get("detectable_pct") is not None}
    if not detectable:
        return []
    tolerance = thresholds.max_regression_pct
    worst_name = max(detectable, key=detectable.get)
    worst = detectable[worst_name]
    if tolerance < worst:
        return [f"[WARN] --max-regression {tolerance:g} is below the smallest slowdown of one page these runs can "
                f"call on "
                f"{worst_name} ({worst:.1f} %): a smaller one reads as noise. Add baseline runs, run longer, or "
                f"set --max-regression {math.ceil(worst):g}"]
    if tolerance > 3 * worst and tolerance > 5:
        return [f"[HINT] these runs can call slowdowns from {worst:.1f} % (worst page {worst_name}); "
                f"--max-regression {tolerance:g} lets smaller real ones pass: consider --max-regression "
                f"{max(5, math.ceil(1.5 * worst)):g}"]
    return []
