"""The HTML report's charts: matplotlib figures as inline SVG."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from moodleload.console import printable
from moodleload.exits import UsageError
from moodleload.load.metrics import cpu_busy_series
from moodleload.reports.views import shorten
from moodleload.results.histogram import Histogram

if TYPE_CHECKING:
    from moodleload.results.model import Results
    from moodleload.results.sections import TimelinePoint


class ReportUnavailable(UsageError):
    pass


def load_pyplot() -> tuple[Any, Any]:
    """matplotlib, imported only for --report (requirements.txt installs it; a Python without
    it, such as a bare zipapp's, is told in one line what to install)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        raise ReportUnavailable("--report needs matplotlib: pip install matplotlib") from None
    # Page names and Moodle's error codes are the site's text: never read as maths ("$^^^$").
    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                                "axes.spines.top": False, "axes.spines.right": False, "text.parse_math": False})
    return matplotlib, pyplot


def svg_figure(matplotlib: Any, pyplot: Any, figure: Any, name: str) -> str:
    """The figure as inline SVG: no XML prologue, no metadata links, ids unique per chart."""
    import io

    matplotlib.rcParams["svg.hashsalt"] = name
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    pyplot.close(figure)
    text = buffer.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    # A page's name is the config's text: an attribute holds it only escaped.
    return f'<figure class="chart" data-chart="{html.escape(printable(name))}">{text}</figure>'


PERCENTILE_CURVE = (0, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 99.9, 99.95, 99.99)


def percentile_curve(histogram: Histogram) -> tuple[list[float], list[float]]:
    """x = 1/(1-q) (so 90, 99, 99.9 are evenly spaced on a log axis), y = latency ms."""
    xs: list[float] = []
    ys: list[float] = []
    for q in PERCENTILE_CURVE:
        if histogram.count and q <= 100 * (1 - 1 / histogram.count) + 1e-9 \
                and (value := histogram.percentile(q)) is not None:
            xs.append(1 / (1 - q / 100))
            ys.append(value)
    if histogram.count:
        xs.append(max(xs[-1] * 2 if xs else 2, histogram.count))
        ys.append(histogram.maximum)
    return xs, ys


def _percentile_axes(axes: Any) -> None:
    axes.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    axes.set_xticks(ticks)
    axes.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    axes.set_xlabel("percentile")
    axes.set_ylabel("ms")


def _timeline_series(document: Results) -> tuple[tuple[TimelinePoint, ...], float, list[float]]:
    points, seconds = document.timeline.points, document.timeline.seconds
    return points, seconds, [point.t for point in points]


def run_charts(document: Results) -> list[str]:
    """The charts of one run, each an inline SVG figure, in the report's order."""
    matplotlib, pyplot = load_pyplot()
    points, seconds, times = _timeline_series(document)
    charts = [draw(matplotlib, pyplot, document, points, seconds, times)
              for draw in (rate_chart, latency_chart, failures_chart, distribution_chart, cpu_chart)]
    hosts = cpu_busy_series(document.metrics)
    if hosts:
        charts.append(hosts_chart(matplotlib, pyplot, hosts, points, times))
    return charts


def _outside_legend(axes: Any) -> None:
    """Legends beside the plot, never over the data."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)


def rate_chart(matplotlib: Any, pyplot: Any, document: Results, points: Sequence[TimelinePoint], seconds: float,
                times: list[float]) -> str:
    figure, axes = pyplot.subplots(figsize=(9, 2.6))
    axes.plot(times, [p.sent / seconds for p in points], label="sent/s", color="#1f77b4", linewidth=2)
    axes.plot(times, [p.ok / seconds for p in points], label="succeeded/s", color="#2ca02c", linestyle="--")
    axes.axhline(document.summary.req_per_min_target / 60.0, color="#d62728", linestyle="--", label="target")
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("requests/s")
    axes.set_ylim(bottom=0)
    _outside_legend(axes)
    axes.set_title("Request rate against the target")
    return svg_figure(matplotlib, pyplot, figure, "rate")


def latency_chart(matplotlib: Any, pyplot: Any, document: Results, points: Sequence[TimelinePoint], seconds: float,
                   times: list[float]) -> str:
    figure, axes = pyplot.subplots(figsize=(9, 3))
    # With few requests a point, p95 and p99 are the same value: p99 is drawn wide and pale
    # underneath, so p95 stays visible on top of it instead of hiding under it.
    styles = {50: ("#2ca02c", 1.6, 1.0, 3), 95: ("#ff7f0e", 1.6, 1.0, 2), 99: ("#d62728", 4.0, 0.45, 1)}
    for q, (colour, width, alpha, order) in styles.items():
        axes.plot(times, [p.response_ms.percentile(q) for p in points], color=colour,
                  linewidth=width, alpha=alpha, zorder=order, label=f"response p{q}")
        axes.plot(times, [p.service_ms.percentile(q) for p in points], color=colour,
                  linewidth=min(width, 1.6), alpha=alpha, zorder=order, linestyle=":", label=f"service p{q}")
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("ms")
    axes.set_ylim(bottom=0)
    _outside_legend(axes)
    axes.set_title("Latency over time (solid: response time from the intended start; dotted: service time)")
    return svg_figure(matplotlib, pyplot, figure, "latency")


def failures_chart(matplotlib: Any, pyplot: Any, document: Results, points: Sequence[TimelinePoint], seconds: float,
                    times: list[float]) -> str:
    kinds = sorted({kind for p in points for kind in p.failures})
    figure, axes = pyplot.subplots(figsize=(9, 2.4))
    bottom = [0.0] * len(points)
    for kind in kinds:
        values = [p.failures.get(kind, 0) / seconds for p in points]
        axes.bar(times, values, width=seconds, bottom=bottom, label=kind, align="edge")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if not kinds:
        axes.text(0.5, 0.5, "no failures", transform=axes.transAxes, ha="center", va="center", color="#2ca02c")
        axes.set_xlim(0, max(times[-1] + seconds if times else 1.0, 1.0))
    else:
        _outside_legend(axes)
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("failures/s")
    axes.set_title("Failures over time by kind")
    return svg_figure(matplotlib, pyplot, figure, "failures")


def distribution_chart(matplotlib: Any, pyplot: Any, document: Results, points: Sequence[TimelinePoint], seconds: float,
                        times: list[float]) -> str:
    figure, axes = pyplot.subplots(figsize=(9, 3.2))
    shown = slowest_urls(document, DISTRIBUTION_CURVES)
    for name in shown:
        xs, ys = percentile_curve(document.urls[name].response_ms)
        axes.plot(xs, ys, marker=".", label=shorten(name, 40))
    _percentile_axes(axes)
    if shown:
        _outside_legend(axes)
    measured = sum(1 for record in document.urls.values() if record.success)
    axes.set_title("Latency distribution per URL (response time)" + (
        f": the {len(shown)} slowest of {measured} by p95, every one in the table below"
        if len(shown) < measured else ""))
    return svg_figure(matplotlib, pyplot, figure, "distribution")


def cpu_chart(matplotlib: Any, pyplot: Any, document: Results, points: Sequence[TimelinePoint], seconds: float,
               times: list[float]) -> str:
    figure, axes = pyplot.subplots(figsize=(9, 2.2))
    axes.plot(times, [100 * p.cpu_seconds / seconds for p in points], color="#7f7f7f",
              label="the generator's CPU")
    axes.axhline(90 * len(document.metadata.shards), color="#d62728", linestyle="--",
                 label="90 % of a core a process:\nabove it the generator\nis the bottleneck")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("% of a core")
    _outside_legend(axes)
    axes.set_title("The generator's own CPU use")
    return svg_figure(matplotlib, pyplot, figure, "generator-cpu")


DISTRIBUTION_CURVES = 8  # more curves than this are a tangle no legend can name


def slowest_urls(document: Results, count: int) -> list[str]:
    """The names of the ``count`` URLs with the highest response time p95, slowest first."""
    timed = [(url.latency_ms.p95, name) for name, url in document.summary.urls.items() if url.success]
    return [name for p95, name in sorted(((p95, name) for p95, name in timed if p95 is not None), reverse=True)
            [:count]]


def hosts_chart(matplotlib: Any, pyplot: Any, hosts: dict[str, tuple[list[float], list[float]]],
                points: Sequence[TimelinePoint], times: list[float]) -> str:
    """Each server's CPU busy (--metrics; ``hosts`` from metrics.cpu_busy_series) beside the
    response time p95 of the same seconds."""
    figure, axes = pyplot.subplots(figsize=(9, 2.8))
    for label, (seconds, busy) in hosts.items():
        axes.plot(seconds, [100 * share for share in busy], label=f"{label} CPU busy")
    axes.axhline(90, color="#d62728", linestyle="--", linewidth=1, label="saturated (90 %)")
    axes.set_ylim(0, 105)
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("% CPU busy")
    latency = axes.twinx()
    latency.plot(times, [p.response_ms.percentile(95) for p in points], color="#7f7f7f",
                 linestyle=":", label="response p95 (ms, right)")
    latency.set_ylabel("ms")
    latency.set_ylim(bottom=0)
    handles = axes.get_legend_handles_labels()
    more = latency.get_legend_handles_labels()
    axes.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left", fontsize=7, ncol=2)
    axes.set_title("Servers beside the load: CPU busy per host, with the response time p95")
    return svg_figure(matplotlib, pyplot, figure, "hosts")


def compare_charts(base: Results, new: Results) -> list[str]:
    matplotlib, pyplot = load_pyplot()
    names = [name for name in new.urls if name in base.urls]
    if not names:
        return []
    columns = min(2, len(names))
    rows = math.ceil(len(names) / columns)
    figure, grid = pyplot.subplots(rows, columns, figsize=(9, 2.8 * rows), squeeze=False)
    for position, name in enumerate(names):
        axes = grid[position // columns][position % columns]
        for document, label, style in ((base, "baseline", "--"), (new, "this run", "-")):
            xs, ys = percentile_curve(document.urls[name].service_ms)
            if xs:
                axes.plot(xs, ys, linestyle=style, marker=".", label=label)
        _percentile_axes(axes)
        axes.set_title(shorten(name, 50), fontsize=8)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, loc="upper left")
        else:
            axes.text(0.5, 0.5, "no successful requests", transform=axes.transAxes, ha="center", va="center")
    for position in range(len(names), rows * columns):
        grid[position // columns][position % columns].axis("off")
    figure.suptitle("Service time percentiles, baseline against this run")
    figure.tight_layout()
    return [svg_figure(matplotlib, pyplot, figure, "compare-distribution")]
