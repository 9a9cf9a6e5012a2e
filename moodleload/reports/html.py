"""The HTML report: one self-contained file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from moodleload import __version__
from moodleload.console import fmt, printable, ruled
from moodleload.exits import EXIT_BAD, EXIT_CANNOT_JUDGE, EXIT_GOOD
from moodleload.files import write_atomically
from moodleload.footer import FooterName
from moodleload.judging.statements import changed_statements, shortened
from moodleload.judging.verdict import Verdict, VerdictWord
from moodleload.load.metrics import host_lines, saturation_notes
from moodleload.reports.charts import compare_charts, run_charts
from moodleload.reports.views import ROW_HEADINGS, bottleneck_warning, good_grounds, trust_signals, url_rows
from moodleload.results.comparison import StatementChanges
from moodleload.results.summary import UrlSummary

# The footer's numbers a comparison report sets side by side.
COMPARED_FOOTER: tuple[FooterName, ...] = ("db_reads", "db_writes", "server_time_ms", "memory_peak_mb")

if TYPE_CHECKING:
    from moodleload.results.comparison import Comparison
    from moodleload.results.model import Results

REPORT_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2125}
main{max-width:1000px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:1.4rem;margin:8px 0} h2{font-size:1.1rem;margin:28px 0 8px;border-bottom:1px solid #d0d4d9}
.verdict{padding:12px 16px;border-radius:6px;font-size:1.1rem;margin:10px 0}
.good{background:#dff3e2;border:1px solid #7cc48a} .bad{background:#fbe0de;border:1px solid #e08b84}
.skip{background:#fff3d6;border:1px solid #e2bb5b} .none{background:#e8eaed;border:1px solid #b8bdc4}
.warn{background:#fff3d6;border:1px solid #e2bb5b;padding:10px 14px;border-radius:6px;margin:8px 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.85rem;margin:6px 0}
th,td{border:1px solid #dde1e5;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#eef0f3} td.l,th.l{text-align:left} .regression{color:#b3261e;font-weight:bold}
.unsure{color:#8a5a00;font-weight:bold} .improvement{color:#1e7b34}
figure.chart{margin:10px 0;background:#fff;border:1px solid #dde1e5;border-radius:4px;padding:6px}
figure.chart svg{width:100%;height:auto}
code{background:#eef0f3;padding:1px 4px;border-radius:3px} small{color:#5f6368}
"""


def escape(value: object) -> str:
    """Text for the page: HTML's special characters as entities, and control characters (which
    HTML may not hold; a terminal escape among them) as "?"."""
    import html

    return html.escape(printable("-" if value is None else value))


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{cell}</td>' for i, cell in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _verdict_block(verdict: Verdict | None, document: Results, comparison: Comparison | None) -> str:
    if verdict is None:
        return '<div class="verdict none">No verdict: no gates and no baseline were given.</div>'
    css = {EXIT_GOOD: "good", EXIT_BAD: "bad", EXIT_CANNOT_JUDGE: "skip"}.get(verdict.status, "none")
    label = {VerdictWord.GOOD: "Good", VerdictWord.BAD: "Regression (bad)",
             VerdictWord.CANNOT_JUDGE: "Cannot judge (skip)"}.get(verdict.word, verdict.word)
    reasons = list(verdict.reasons)
    if verdict.word == VerdictWord.GOOD:  # a good verdict shows what it rests on, not only that nothing was wrong
        reasons = good_grounds(document, comparison) + reasons
    items = "".join(f"<li>{escape(reason)}</li>" for reason in reasons)
    return (f'<div class="verdict {css}" id="verdict"><strong>{escape(label)}</strong> &middot; exit {verdict.status}'
            f'{f"<ul>{items}</ul>" if items else ""}</div>')


def statements_section(changes: StatementChanges | None) -> list[str]:
    """The database statements that changed most, from the server's own statistics."""
    if changes is None:
        return []
    per, changed = changed_statements(changes)
    parts = [f"<h3>Database statements that changed (per {escape(per)} of the run)</h3>"]
    work = changes.work
    unit = work.unit if work is not None else "work"
    if work is not None:
        whole = f"{work.base:.1f} \u2192 {work.new:.1f} {unit}"
        parts.append(f"<p><small>The database's whole work per {escape(per)}: {escape(whole)}.</small></p>")
    rows = []
    for change in changed:
        calls = f"{change.base_calls:.1f} \u2192 {change.new_calls:.1f} ({change.calls_change:+.1f})"
        rows.append([f"<code>{escape(shortened(change.query, 160))}</code>",
                     escape(", ".join(change.tables) or "-"), escape(calls),
                     escape(f"{change.base_ms:.2f} \u2192 {change.new_ms:.2f} ({change.ms_change:+.2f})"),
                     escape(f"{change.work_change or 0.0:+.1f}")])
    if not rows:
        return parts + ["<p><small>No statement's calls, time or work per request changed beyond the baseline's "
                        "spread.</small></p>"]
    return parts + [html_table(["statement", "tables", f"calls per {per}", f"ms per {per}", f"{unit} per {per}"],
                               rows, left=2)]


def render_report(document: Results, verdict: Verdict | None = None, baseline: Results | None = None,
                  comparison: Comparison | None = None) -> str:
    """One self-contained HTML file: verdict, identity, trust, charts, per-URL tables, and
    with a baseline the side-by-side comparison.  Nothing is fetched when it opens."""
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>moodle_load report: "
             f"{escape(document.metadata.target)}</title><style>{REPORT_STYLE}</style></head><body><main>",
             "<h1>Moodle load report</h1>", _verdict_block(verdict, document, comparison)]
    parts += identity_section(document)
    parts += trust_section(document)
    if comparison is not None:
        parts += comparison_section(document, comparison, baseline)
    parts.append("<h2>Over time</h2>")
    parts += run_charts(document)
    parts += url_section(document)
    parts += footer_section(document)
    parts.append(f"<p><small>Made by moodle_load.py {escape(__version__)}.</small></p></main></body></html>\n")
    return "\n".join(parts)


def identity_section(document: Results) -> list[str]:
    summary, meta = document.summary, document.metadata
    identity: list[tuple[str, object]] = [("target", meta.target)]
    if meta.moodle is not None:  # only what --moodle-dir recorded: never a placeholder
        identity += [("Moodle under test", meta.moodle.label), ("Moodle layout", meta.moodle.layout)]
    identity += [("tool", f"moodle_load.py {meta.version}"), ("seed", meta.seed),
                 ("started", meta.started_at),
                 ("rate", f"{summary.req_per_min_target:g} RPM target, {summary.req_per_min_observed:g} observed"),
                 ("measured", f"{meta.measured_seconds} s after {meta.warmup_s:g} s warm-up"),
                 ("shards", ", ".join(meta.shards)), ("config", meta.config_sha256[:16]),
                 ("arguments", " ".join(meta.argv))]
    if document.work_done:
        identity.append(("work done", ", ".join(f"{name} {count}" for name, count in document.work_done.items())))
    return [html_table(["", ""], [[escape(k), escape(v)] for k, v in identity], left=2)]


def trust_section(document: Results) -> list[str]:
    summary, signals = document.summary, trust_signals(document)
    parts = ["<h2>Can these numbers be trusted?</h2>"]
    warning = bottleneck_warning(signals)
    if warning:
        parts.append(f'<div class="warn" id="bottleneck"><strong>Warning:</strong> {escape(warning)}</div>')
    cpu = None if signals.cpu_cores_used is None else 100 * signals.cpu_cores_used
    error_rate = None if summary.error_rate is None else 100 * summary.error_rate
    trust_rows = [["generator CPU (share of one core)", escape(fmt(cpu, ".0f") + " %")],
                  ["requests waited inside the generator, p50 / p99 ms",
                   f"{escape(fmt(signals.lateness_ms_p50))} / {escape(fmt(signals.lateness_ms_p99))}"],
                  ["event loop lag p99 ms", escape(fmt(signals.loop_lag_ms_p99))],
                  ["tokens that waited for a free worker", escape(signals.tokens_waited_for_worker)],
                  ["tokens dropped (generator paused) / never sent",
                   f"{escape(signals.tokens_dropped)} / {escape(signals.tokens_unsent)}"],
                  ["warm-up excluded", f"{escape(signals.warmup_excluded_s)} s"],
                  ["error rate", escape(fmt(error_rate, ".2f") + " %")]]
    parts.append(html_table(["signal", "value"], trust_rows))
    for note in saturation_notes(document.metrics):
        parts.append(f'<div class="warn saturated"><strong>Warning:</strong> {escape(note)}</div>')
    hosts = host_lines(document.metrics)
    if hosts:
        parts.append("<h3>Servers beside the load (--metrics)</h3>")
        parts += [f"<p><small>{escape(line)}</small></p>" for line in hosts]
    return parts


def comparison_section(document: Results, comparison: Comparison, baseline: Results | None) -> list[str]:
    parts = ["<h2>Against the baseline</h2>"]
    method = "per-run medians against the run-to-run spread" if comparison.method == "runs" else \
        "the median of per-block median service times, Mann-Whitney U on the blocks"
    parts.append(f"<p><small>Per URL: {method}, at alpha {comparison.alpha_per_url:.3g} per URL, tolerance "
                 f"{comparison.max_regression_pct:g} %; good needs slowdowns above the tolerance ruled out "
                 f"(column &lsquo;rules out&rsquo;); DB reads from Moodle's footer.</small></p>")
    rows = []
    for row in comparison.rows.values():
        interval = "-" if row.interval is None else "{:.3f} &ndash; {:.3f}".format(*row.interval)
        rows.append([escape(row.name), escape(fmt(row.base_ms)), escape(fmt(row.new_ms)), escape(fmt(row.ratio, ".3f")),
                     interval, escape(fmt(row.p_value, ".2g")), escape(ruled(row.rules_out_pct)),
                     f"{escape(row.db_reads[0])} &rarr; {escape(row.db_reads[1])}",
                     f'<span class="{escape(row.verdict)}">{escape(row.verdict)}</span>',
                     escape("; ".join(row.reasons))])
    parts.append(html_table(["URL", "baseline ms", "this run ms", "ratio", "95 % interval", "p", "rules out",
                             "DB reads", "verdict", "why"], rows))
    parts += work_section(comparison)
    parts += [f"<p><small>note: {escape(note)}</small></p>" for note in comparison.notes]
    parts += [f"<p><small>not comparable: {escape(reason)}</small></p>"
              for reason in comparison.not_comparable]
    parts += statements_section(comparison.statements)
    if baseline is None:
        return parts
    parts += compare_charts(baseline, document)
    base_urls = baseline.summary.urls
    footer_rows = []
    for name, url in document.summary.urls.items():
        before = base_urls.get(name, UrlSummary(0, 0, 0))
        footer_rows.append([escape(name)] + [f"{escape(before.footer_median(key))} &rarr; "
                                             f"{escape(url.footer_median(key))}" for key in COMPARED_FOOTER])
    parts.append(html_table(["URL", "DB reads", "DB writes", "server time ms", "memory peak MB"], footer_rows))
    return parts


JUDGED = {"time": "service time decides", "work": "Moodle's own CPU time per answer and the DB reads decide",
          "both": "service time decides, and a rise of CPU time alone is bad too"}


def work_section(comparison: Comparison) -> list[str]:
    """The work against the baseline: each page's CPU time per answer, and what decided."""
    rows = []
    for row in comparison.rows.values():
        work = row.work
        if work is None:
            continue
        interval = "-" if work.interval is None else "{:.3f} &ndash; {:.3f}".format(*work.interval)
        rows.append([escape(row.name), escape(fmt(work.cpu_ms[0])), escape(fmt(work.cpu_ms[1])),
                     escape(fmt(work.ratio, ".3f")), interval, escape(ruled(work.rules_out_pct)),
                     f'<span class="{escape(work.verdict)}">{escape(work.verdict)}</span>',
                     escape(row.decided_by), escape("; ".join(work.reasons))])
    if not rows:
        return []
    parts = [f"<h3>The work: Moodle's own CPU time per answer</h3><p><small>--judge {escape(comparison.judge)}: "
             f"{escape(JUDGED.get(comparison.judge, ''))}. CPU time is the PHP worker's user + sys time from the "
             f"footer (10 ms ticks, mean per answer): a busy machine stretches the time a page waits, hardly the "
             f"work it does.</small></p>",
             html_table(["URL", "baseline CPU ms", "this run CPU ms", "ratio", "95 % interval", "rules out",
                         "verdict", "decided by", "why"], rows)]
    if comparison.work_would_decide:
        parts.append(f"<p><small>{escape(comparison.work_would_decide)}</small></p>")
    return parts


def url_section(document: Results) -> list[str]:
    rows = []
    every = url_rows(document)
    headed = len({row.kind for row in every}) > 1
    kind = None
    for row in every:
        if headed and row.kind != kind:  # pages, journey steps and web-service calls under their own headings
            kind = row.kind
            rows.append([f'<strong>{escape(ROW_HEADINGS[kind])}</strong>'] + [""] * 10)
        failures = ", ".join(f"{k} {v}" for k, v in row.failures.items()) or "none"
        redirects = ", ".join(f"{k} {v}" for k, v in row.redirects.items()) or "-"
        rows.append([escape(row.name), escape(row.requests), escape(row.success), escape(failures)]
                    + [escape(fmt(value)) for value in (row.latency_p50, row.latency_p95, row.latency_p99,
                                                        row.latency_max, row.service_p50, row.service_p95)]
                    + [escape(redirects)])
    return ["<h2>Per URL</h2>",
            html_table(["URL", "requests", "ok", "failures", "p50", "p95", "p99", "max", "svc p50", "svc p95",
                        "redirected to"], rows),
            "<p><small>Latencies in ms of successful requests. Response time (p50..max) runs from the "
            "moment the schedule intended the request to the last byte; service time (svc) from sending it."
            "</small></p>"]


# The footer table's columns: heading, and the number a URL's summary gives for it.
FOOTER_COLUMNS: tuple[tuple[str, Callable[[UrlSummary], float | None]], ...] = (
    ("CPU ms (mean)", lambda row: row.cpu_ms_mean),
    ("DB reads (median)", lambda row: row.footer_median("db_reads")),
    ("DB reads (max)", lambda row: row.footer_max("db_reads")),
    ("DB writes", lambda row: row.footer_median("db_writes")),
    ("server ms (median)", lambda row: row.footer_median("server_time_ms")),
    ("server ms (max)", lambda row: row.footer_max("server_time_ms")),
    ("memory peak MB", lambda row: row.footer_median("memory_peak_mb")),
    ("included files", lambda row: row.footer_median("included_files")),
    ("DB queries ms (median)", lambda row: row.footer_median("db_time_ms")),
    ("session KB", lambda row: row.footer_median("session_size_kb")),
    ("session wait ms (max)", lambda row: row.footer_max("session_wait_ms")))


def footer_section(document: Results) -> list[str]:
    urls = document.summary.urls
    if not any(row.footer_median("db_reads") is not None for row in urls.values()):
        return ["<p><small>The pages showed no performance footer: set <code>$CFG-&gt;perfdebug = 15</code> "
                "to get DB reads per page, the steadiest regression signal.</small></p>"]
    footer_rows = [[escape(name)] + [escape(number(row)) for _, number in FOOTER_COLUMNS]
                   for name, row in urls.items()]
    return ["<h2>Moodle's performance footer</h2>",
            html_table(["URL"] + [heading for heading, _ in FOOTER_COLUMNS], footer_rows)]


def write_report(path: str, html_text: str) -> None:
    write_atomically(path, html_text)
