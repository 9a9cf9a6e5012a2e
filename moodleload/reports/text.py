"""The text views of a results document."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from moodleload.config import CALL_ROW
from moodleload.console import fmt, printable, ruled
from moodleload.judging.statements import change_lines, changed_statements
from moodleload.reports.views import ROW_HEADINGS, TrustSignals, bottleneck_warning, shorten, url_rows
from moodleload.results.comparison import RowVerdict

if TYPE_CHECKING:
    from moodleload.results.comparison import Comparison
    from moodleload.results.model import Results
    from moodleload.results.summary import Summary


def format_report(document: Results) -> str:
    """The human view of a results document: a table per URL, then the summary JSON."""
    lines = [""]
    moodle = document.metadata.moodle
    if moodle is not None:
        lines.append(printable(f"Moodle under test: {moodle.label}; layout {moodle.layout}"))
    lines.append("Per URL (latency = response time from the intended start; svc = service time; CPU = Moodle's "
                 "own CPU time per answer, mean; ms):")
    header = f"{'url':<38} {'req':>6} {'ok':>6} {'fail':>5} {'p50':>7} {'p95':>7} {'p99':>7} " \
             f"{'max':>7} {'svc p50':>7} {'svc p95':>7} {'CPU':>6} {'DB r/w':>8}"
    lines.append(header)
    lines.append("-" * len(header))
    cell = fmt
    rows = url_rows(document)
    headed = len({row.kind for row in rows}) > 1  # pages, journey steps and calls under their own headings
    kind = None
    for row in rows:
        if headed and row.kind != kind:
            kind = row.kind
            lines.append(f"  {ROW_HEADINGS[kind]}:")
        footer = f"{row.db_reads:g}/{row.db_writes:g}" if row.db_reads is not None and row.db_writes is not None \
            else "-"
        lines.append(f"{shorten(row.name, 38):<38} {row.requests:>6} {row.success:>6} {row.failure:>5} "
                     f"{cell(row.latency_p50):>7} {cell(row.latency_p95):>7} {cell(row.latency_p99):>7} "
                     f"{cell(row.latency_max):>7} {cell(row.service_p50):>7} {cell(row.service_p95):>7} "
                     f"{cell(row.cpu_ms):>6} {footer:>8}")
        if row.failures:
            lines.append(f"    failures: {', '.join(f'{k} {v}' for k, v in row.failures.items())}")
        if row.redirects:
            lines.append(f"    redirected to: {', '.join(f'{k} {v}' for k, v in row.redirects.items())}")
    lines += request_count_lines(document)
    generator = document.generator
    lateness = generator.lateness_ms
    lines.append("")
    lines.append(f"Generator: {generator.cpu_seconds:.1f} s CPU; "
                 f"{generator.tokens_waited_for_worker} tokens waited for a free worker (worst lateness "
                 f"{cell(lateness.maximum if lateness.count else None)} ms); "
                 f"{generator.tokens_dropped} dropped after a pause of the generator, "
                 f"{generator.tokens_unsent} never sent")
    logins = document.logins
    lines.append(f"Logins: {logins.ok} ok, {sum(logins.failed.values())} failed, "
                 f"{logins.relogins} re-logins after a lost session")
    if document.work_done:
        lines.append("Work done (journeys' successful writes, measured time): "
                     + ", ".join(f"{name} {count}" for name, count in document.work_done.items()))
    lines.append("")
    lines.append("[SUMMARY] " + summary_json(document.summary))
    return "\n".join(lines)


def request_count_lines(document: Results) -> list[str]:
    """What ``requests`` counts, where the pages also made web-service calls: the rate paces
    the page views and journey steps; each page's browser calls ride along, uncounted by it."""
    calls = sum(record.requests for name, record in document.urls.items() if document.row_kind(name) == CALL_ROW)
    if not calls:
        return []
    paced = document.summary.requests - calls
    return [f"requests: {document.summary.requests} in all = {paced} page views and journey steps, paced at "
            f"{document.metadata.rpm * len(document.metadata.shards):g} a minute, + {calls} web-service calls the "
            f"pages made beside them (not counted in the rate)"]


def summary_json(summary: Summary) -> str:
    """The run's headline numbers as one compact JSON line: greppable, and it keeps the verdict
    at the end of the output.  Per-URL numbers are in the table above and in the results file
    (summary.urls), so the line stays short however many pages a run has."""
    return json.dumps({key: value for key, value in summary.to_dict().items() if key != "urls"},
                      separators=(",", ":"))


def rate_hints(document: Results) -> list[str]:
    """Why the observed rate fell short of the target, when it did."""
    summary, meta, generator = document.summary, document.metadata, document.generator
    target = summary.req_per_min_target
    if not target or summary.req_per_min_observed >= 0.95 * target or meta.interrupted:
        return []
    hints = [f"[WARN] observed {summary.req_per_min_observed:.0f} RPM is below the target {target:g}"]
    if meta.concurrency >= document.logins.ok:  # one request in flight per user: more workers need more users
        hints.append(f"[HINT] every logged-in user was busy ({document.logins.ok} users, one request in flight "
                     f"each): give the run more users (set_moodle_passwords.py --count)")
    elif generator.tokens_waited_for_worker:
        hints.append(f"[HINT] {generator.tokens_waited_for_worker} requests waited for a free worker: "
                     f"raise --concurrency (now {meta.concurrency}, {document.logins.ok} users logged in)")
    if generator.tokens_unsent:
        hints.append(f"[HINT] {generator.tokens_unsent} scheduled requests were never sent: the backlog "
                     f"outgrew the run (raise --concurrency, or the site is saturated)")
    if generator.tokens_dropped:
        hints.append(f"[HINT] {generator.tokens_dropped} tokens were dropped after the generator "
                     f"stalled: it is short of CPU (use --processes)")
    return hints


def format_comparison(comparison: Comparison) -> str:
    evidence = "per-run values against the run-to-run spread" if comparison.method == "runs" \
        else "medians of time blocks"
    lines = ["", f"Against the baseline (tolerance {comparison.max_regression_pct:g} %, "
                 f"alpha per URL {comparison.alpha_per_url:.3g}; {evidence}; --judge {comparison.judge}: "
                 f"{JUDGED[comparison.judge]}):"]
    header = (f"{'url':<38} {'base ms':>8} {'new ms':>8} {'ratio':>7} {'95% interval':>13} {'p':>8} "
              f"{'rules out':>9} {'DB reads':>11}  verdict")
    lines += [header, "-" * len(header)]
    for row in comparison.rows.values():
        reads = "-" if row.db_reads == (None, None) else "->".join(fmt(value, "g") for value in row.db_reads)
        interval = "-" if row.interval is None else "{:.3f}-{:.3f}".format(*row.interval)
        lines.append(f"{shorten(row.name, 38):<38} {fmt(row.base_ms):>8} {fmt(row.new_ms):>8} "
                     f"{fmt(row.ratio, '.3f'):>7} {interval:>13} {fmt(row.p_value, '.2g'):>8} "
                     f"{ruled(row.rules_out_pct):>9} {reads:>11}  "
                     f"{row.verdict}")
    lines += work_table(comparison)
    parts = [(row.name, row.work.detectable_pct if comparison.judge == "work" and row.work is not None
              else None if comparison.judge == "work" else row.detectable_pct) for row in comparison.rows.values()]
    detectable = [f"{shorten(name, 38)} {value:.1f} %" for name, value in parts if value is not None]
    if detectable:
        what = "rise of CPU time" if comparison.judge == "work" else "slowdown"
        lines.append(f"bad needs a {what} shown beyond the noise: the smallest of one page alone these runs can "
                     f"call bad is " + ", ".join(detectable)
                     + (f"; of every page at once: {comparison.site_detectable_pct:.1f} %"
                        if comparison.site_detectable_pct is not None else "")
                     + " (a two-sided test at alpha split over the pages, unlike the bound that decides good)")
    server = [f"{shorten(row.name, 38)} {fmt(row.server_ms[0])} -> {fmt(row.server_ms[1])}"
              for row in comparison.rows.values() if row.server_ms and None not in row.server_ms]
    if server:
        lines.append("Moodle's own server time (footer, median ms): " + ", ".join(server))
    if comparison.rules_out_pct is not None:
        what = "rise of CPU time per answer" if comparison.judge == "work" else "slowdown"
        lines.append(f"good needs every {what} above {comparison.max_regression_pct:g} % ruled out: these runs "
                     f"rule out those above {comparison.rules_out_pct:.1f} % (pages and the site as a whole)")
    statements = change_lines(comparison.statements)
    if statements and comparison.statements is not None:
        per, _ = changed_statements(comparison.statements)
        lines.append(f"Database statements that changed (the server's statistics, per {per} of the run):")
        lines += [f"  {printable(line)}" for line in statements]
    elif comparison.statements is not None:
        lines.append("Database statements: no statement's calls or time per request changed beyond the baseline's "
                     "spread")
    lines += [f"note: {note}" for note in comparison.notes]
    lines += [f"not comparable: {reason}" for reason in comparison.not_comparable]
    return "\n".join(lines)


JUDGED = {"time": "service time decides", "work": "Moodle's CPU time per answer and DB reads decide",
          "both": "service time decides, a rise of CPU time alone is bad too"}


def work_table(comparison: Comparison) -> list[str]:
    """The CPU time per answer against the baseline, page by page, where the footers gave it."""
    rows = [row for row in comparison.rows.values() if row.work is not None]
    if not rows:
        return []
    lines = ["Work: Moodle's own CPU time per answer (footer, mean ms):"]
    for row in rows:
        work = row.work
        assert work is not None  # selected above
        interval = "-" if work.interval is None else "{:.3f}-{:.3f}".format(*work.interval)
        lines.append(f"{shorten(row.name, 38):<38} {fmt(work.cpu_ms[0]):>8} {fmt(work.cpu_ms[1]):>8} "
                     f"{fmt(work.ratio, '.3f'):>7} {interval:>13} {'':>8} {ruled(work.rules_out_pct):>9} {'':>11}  "
                     f"{work.verdict}" + (f" ({work.reasons[0]})"
                                          if work.reasons and work.verdict != RowVerdict.REGRESSION else ""))
    return lines


def format_trust(signals: TrustSignals) -> list[str]:
    lines = []
    if signals.cpu_cores_used is not None:
        lines.append(f"Trust: generator CPU {signals.cpu_cores_used:.0%} of a core; requests waited inside it "
                     f"p50 {fmt(signals.lateness_ms_p50)} ms, p99 {fmt(signals.lateness_ms_p99)} ms; "
                     f"event loop lag p99 {fmt(signals.loop_lag_ms_p99)} ms; warm-up excluded "
                     f"{signals.warmup_excluded_s:g} s")
    warning = bottleneck_warning(signals)
    if warning:
        lines.append(f"[WARN] {warning}")
    return lines
