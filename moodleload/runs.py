"""Judging a run against several baseline runs of the good commit.

A whole run can shift, not only its requests: on a real Moodle 5.0, identical code moved
every page by 4-7 % from one run to the next (the machine, the database after a restore,
caches), and block-level statistics, which see one run a side, took that shift for a
change.  So with two or more runs the unit of evidence becomes the run: each run gives
each page one value (the median of its block medians, read from 0.2 % buckets), the
run-to-run spread is estimated from the runs' deviations around their own commit's mean
(pooled over pages and both commits, on a log scale), and the candidate is judged by
Student's t against it, as pyperf and Pinpoint judge per-run values.  The 95 % interval
of the ratio is a prediction interval that includes that spread: for identical code it
holds 1.0 about 95 times in 100."""

from __future__ import annotations

import math
import statistics

from .compare import MIN_FAILURE_INCREASE, Thresholds, block_medians, failure_increase_p, incomparable
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


def pooled_spread(values: dict) -> tuple[float | None, int]:
    """The run-to-run standard deviation of log values, pooled over pages and commits, and
    its degrees of freedom.  ``values``: page -> (baseline logs, candidate logs)."""
    squares, freedom = 0.0, 0
    for groups in values.values():
        for logs in groups:
            if len(logs) >= 2:
                mean = sum(logs) / len(logs)
                squares += sum((value - mean) ** 2 for value in logs)
                freedom += len(logs) - 1
    if not freedom:
        return None, 0
    return max(math.sqrt(squares / freedom), SPREAD_FLOOR), freedom


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
    values = {}
    for name in names:
        groups = []
        for documents in (bases, news):
            logs = [run_value(document["urls"][name], thresholds.min_blocks) for document in documents]
            groups.append([math.log(value) for value in logs if value is not None and value > 0])
        values[name] = groups
    spread, freedom = pooled_spread(values)
    rows = {name: _judge_url(name, bases, news, values[name], spread, freedom, thresholds, alpha)
            for name in names}
    verdicts = [row["verdict"] for row in rows.values()]
    overall = "regression" if "regression" in verdicts else \
        "unsure" if not rows or "unsure" in verdicts else "same"
    notes = [f"judged against {len(bases)} baseline run{'s' * (len(bases) > 1)} and {len(news)} run"
             f"{'s' * (len(news) > 1)} of this commit: run-to-run spread "
             + (f"{math.exp(spread) - 1:.1%} ({freedom} degrees of freedom)" if spread else "unknown")]
    shift = common_mode({name: row.get("ratio") for name, row in rows.items()})
    if shift:
        notes.append(shift)
    missing = sorted({name for document in bases + news for name in document["urls"]} - set(names))
    if missing:
        notes.append(f"URLs not in every run, not compared: {', '.join(missing)}")
    differences = []
    for document in bases + news[1:]:
        differences += [reason for reason in incomparable(document, news[0]) if reason not in differences]
    return {"verdict": "not comparable" if differences else overall, "method": "runs", "alpha_per_url": alpha,
            "urls": rows, "notes": notes, "max_regression_pct": thresholds.max_regression_pct,
            "not_comparable": differences, "baseline_runs": len(bases), "candidate_runs": len(news),
            "spread_pct": None if spread is None else round((math.exp(spread) - 1) * 100, 3),
            "advice": advice(rows, thresholds)}


def _judge_url(name: str, bases: list, news: list, groups: list, spread, freedom: int, thresholds: Thresholds,
               alpha: float) -> dict:
    row = {"verdict": "same", "reasons": []}
    base_failed = sum(document["urls"][name]["failure"] for document in bases)
    base_total = sum(document["urls"][name]["requests"] for document in bases)
    new_failed = sum(document["urls"][name]["failure"] for document in news)
    new_total = sum(document["urls"][name]["requests"] for document in news)
    base_rate = base_failed / base_total if base_total else 0.0
    new_rate = new_failed / new_total if new_total else 0.0
    row["failure_rate"] = [round(base_rate, 4), round(new_rate, 4)]
    failures_p = failure_increase_p(base_failed, base_total, new_failed, new_total)
    if new_rate - base_rate >= MIN_FAILURE_INCREASE and failures_p <= alpha:
        row["verdict"] = "regression"
        row["reasons"].append(f"failures {base_rate:.1%} -> {new_rate:.1%} of requests (p={failures_p:.2g})")
    base_reads = counter_median(_pooled_tally(bases, name, "db_reads"))
    new_reads = counter_median(_pooled_tally(news, name, "db_reads"))
    row["db_reads"] = [base_reads, new_reads]
    if base_reads is not None and new_reads is not None \
            and new_reads - base_reads > thresholds.max_db_reads_increase:
        row["verdict"] = "regression"
        row["reasons"].append(f"DB reads {base_reads:g} -> {new_reads:g} per page")
    base_logs, new_logs = groups
    row["runs"] = [len(base_logs), len(new_logs)]
    if not base_logs or not new_logs or spread is None:
        row.update(ratio=None, p_value=None)
        if row["verdict"] == "same":
            row["verdict"] = "unsure"
            row["reasons"].append(f"too few runs with {thresholds.min_blocks} blocks of data "
                                  f"({len(base_logs)} baseline, {len(new_logs)} this commit): more runs may decide")
        return row
    difference = sum(new_logs) / len(new_logs) - sum(base_logs) / len(base_logs)
    error = spread * math.sqrt(1 / len(new_logs) + 1 / len(base_logs))
    t = difference / error
    p_slower = 1.0 - student_t_cdf(t, freedom)
    p_faster = student_t_cdf(t, freedom)
    half = student_t_quantile(0.975, freedom) * error
    ratio = math.exp(difference)
    tolerance = thresholds.max_regression_pct / 100.0
    row.update(base_ms=round(math.exp(sum(base_logs) / len(base_logs)), 2),
               new_ms=round(math.exp(sum(new_logs) / len(new_logs)), 2), ratio=round(ratio, 4),
               ratio_ci95=[round(math.exp(difference - half), 4), round(math.exp(difference + half), 4)],
               p_value=float(f"{p_slower:.3g}"), alpha=round(alpha, 6),
               noise_pct=round((math.exp(spread) - 1) * 100, 2),
               detectable_pct=round((math.exp(student_t_quantile(1 - alpha, freedom) * error) - 1) * 100, 2))
    if ratio > 1 + tolerance:
        if p_slower <= alpha:
            row["verdict"] = "regression"
            row["reasons"].append(f"median service time x{ratio:.3f}, {row['ratio_ci95'][0]:.3f}-"
                                  f"{row['ratio_ci95'][1]:.3f} with the run-to-run spread (p={p_slower:.2g})")
        elif p_slower <= max(0.1, 2 * alpha) and row["verdict"] == "same":
            row["verdict"] = "unsure"
            row["reasons"].append(f"median service time x{ratio:.3f} but p={p_slower:.2g} against the run-to-run "
                                  f"spread: more runs may decide")
    elif ratio < 1 - tolerance and p_faster <= alpha and row["verdict"] == "same":
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
        return [f"[WARN] --max-regression {tolerance:g} is below the smallest slowdown these runs can call on "
                f"{worst_name} ({worst:.1f} %): a smaller one reads as noise. Add baseline runs, run longer, or "
                f"set --max-regression {math.ceil(worst):g}"]
    if tolerance > 3 * worst and tolerance > 5:
        return [f"[HINT] these runs can call slowdowns from {worst:.1f} % (worst page {worst_name}); "
                f"--max-regression {tolerance:g} lets smaller real ones pass: consider --max-regression "
                f"{max(5, math.ceil(1.5 * worst)):g}"]
    return []
