"""The HTML report of a scanned commit range: each page's value per measured commit, the
steps found marked between the two commits around them, and the commit each bisect named.
One self-contained file, like the run report (inline SVG, no script, nothing fetched)."""

from __future__ import annotations

import math
from typing import Any

from moodleload import __version__
from moodleload.console import printable
from moodleload.reports.charts import load_pyplot, svg_figure
from moodleload.reports.html import REPORT_STYLE, escape, html_table
from moodleload.results.model import Results
from moodleload.scan.changepoints import Direction, Found, is_counter, is_work, series_of
from moodleload.scan.plan import StepOutcome

WORSE, BETTER = "#b3261e", "#1e7b34"


def _culprit_of(outcomes: list[StepOutcome], before: str, after: str, direction: str) -> str:
    for outcome in outcomes:
        if outcome.interval == (before, after) and outcome.direction == direction and outcome.commit:
            return f"{outcome.commit[:7]} ({outcome.confirmation})"
    return ""


def series_chart(matplotlib: Any, pyplot: Any, name: str, values: list[float], labels: list[str], steps: list[Found],
                 outcomes: list[StepOutcome]) -> str:
    """One series over the commits: the steps shaded between their two commits and labelled
    with their size and the commit the bisect found."""
    counter = is_counter(name)
    label = printable(name)  # drawn as text into the SVG, which may not hold a control character
    shown = values if counter else [math.exp(value) for value in values]
    figure, axes = pyplot.subplots(figsize=(9.5, 2.8))
    positions = list(range(len(shown)))
    axes.plot(positions, shown, marker="o", color="#1a73e8", linewidth=1.2, label=label)
    top = max(shown)
    for item in steps:
        colour = WORSE if item.direction == Direction.REGRESSION else BETTER
        axes.axvspan(item.step.before, item.step.after, color=colour, alpha=0.12, linewidth=0)
        size = f"{item.step.change:+.1f} reads" if counter else f"x{item.step.ratio:.3f}"
        culprit = _culprit_of(outcomes, labels[item.step.before], labels[item.step.after], item.direction)
        axes.annotate(f"{size}\n{printable(culprit)}".strip(), ((item.step.before + item.step.after) / 2, top),
                      ha="center", va="bottom", fontsize=8, color=colour, annotation_clip=False)
    axes.set_xticks(positions, [printable(commit) for commit in labels], rotation=60, ha="right", fontsize=7)
    axes.set_ylabel("DB reads per page (median)" if counter else "CPU ms per answer (mean)" if is_work(name)
                    else "ms (median of block medians)")
    axes.set_ylim(bottom=0, top=top * 1.25)
    axes.set_title(label, loc="left", fontsize=10)
    return svg_figure(matplotlib, pyplot, figure, f"range-{name}")


def render_range_report(documents: list[Results], labels: list[str], found: list[Found],
                        outcomes: list[StepOutcome], ends: tuple[str, str]) -> str:
    matplotlib, pyplot = load_pyplot()
    title = f"Scan of {ends[0]}..{ends[1]}"
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
             f"<style>{REPORT_STYLE}</style></head><body><main><h1>{escape(title)}</h1>",
             f"<p>{len(labels)} commits measured, {len(found)} step(s) found, "
             f"{sum(1 for o in outcomes if o.confirmed)} commit(s) named and confirmed.</p>"]
    if outcomes:
        rows = [[escape(f"{o.interval[0]} .. {o.interval[1]}"), escape(o.direction),
                 escape("; ".join(o.steps)), escape(o.commit[:12] if o.commit else "none"),
                 escape(o.subject or ""), escape(o.confirmation or "-"), escape("; ".join(o.reasons))]
                for o in outcomes]
        parts += ["<h2>Steps and their commits</h2>",
                  html_table(["between", "way", "what stepped", "commit", "subject", "against its parent", "why"], rows,
                         left=7)]
    parts.append("<h2>Per page, commit by commit</h2>")
    for name, values in series_of(documents).items():
        steps = [item for item in found if item.series == name]
        parts.append(series_chart(matplotlib, pyplot, name, values, labels, steps, outcomes))
    parts.append("<p><small>Shaded: a step between the two measured commits around it (red slower or more DB "
                 "reads, green faster or fewer), labelled with its size and the commit the bisect inside it named."
                 f" Made by moodleload.scan.runner {escape(__version__)}.</small></p></main></body></html>\n")
    return "\n".join(parts)
