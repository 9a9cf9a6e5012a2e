"""The HTML report: one self-contained file with the verdict first, trust signals, charts and tables."""

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import moodle_load
from helpers import ROOT, fast_settings, read, run_load, write_config
from moodleload.exits import EXIT_BAD, EXIT_GOOD, EXIT_SIGINT, EXIT_USAGE
from moodleload.judging.verdict import Verdict
from moodleload.reports.html import render_report
from moodleload.results.model import Results
from sim.moodledb import SiteData
from sim.server import SimServer
from sim.site import MoodleSite
from sim.siteusers import MemoryUsers

CHARTS = ("rate", "latency", "failures", "distribution", "generator-cpu")


# A page that fails now and then (a course that is gone): failures to show, yet a run that can be judged.
PARAMETERS = {"courseid": {"values": [10, 11, 12, 13]}, "sometimes": {"values": [10, 999999]}}
URLS = [{"path": "/my/", "name": "dashboard"}, {"path": "/course/view.php?id={courseid}", "name": "course"},
        {"path": "/course/view.php?id={sometimes}", "name": "sometimes missing", "weight": 0.6},
        {"path": "/course/view.php?id=3", "name": "not enrolled", "weight": 0.3}]


def site_settings(course_reads: int = 128):
    settings = fast_settings()
    settings.pages["course"].db_reads = course_reads
    return settings


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A real run with failures and redirects, its results and its report."""
    tmp = tmp_path_factory.mktemp("report")
    site = MoodleSite(MemoryUsers.testsite(6, "Passw0rd!"), SiteData.testsite(), site_settings())
    with SimServer(site) as server:
        config = write_config(tmp / "c.json", server.url, users=6, urls=URLS, parameters=PARAMETERS)
        code = run_load(config, "--report", str(tmp / "report.html"), "--blocks", "8", "--concurrency", "4",
                        rpm=2400, duration=4, output=tmp / "run.json")
    assert code == EXIT_GOOD
    return {"dir": tmp, "json": tmp / "run.json", "html": (tmp / "report.html").read_text(), "config": config,
            "port": server.port}


def external_urls(html: str, allowed: str) -> list:
    return [url for url in re.findall(r"(?:https?:)?//[^\s\"'<>)]+", html) if not url.startswith(allowed)
            and not url.startswith("//" + allowed.split("//")[1])]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture
def browser():
    path = chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set and no Chromium is installed (apt-get install chromium)")
        pytest.skip("no Chromium: apt-get install chromium")
    return path


def headless(browser: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", *args], capture_output=True, text=True,
                          timeout=120)


def test_the_report_shows_the_verdict_first(recorded):
    html = recorded["html"]
    assert html.index('id="verdict"') < html.index("<h2>")
    assert "<strong>Good</strong>" in html


def test_the_report_has_every_url_and_every_chart(recorded):
    html = recorded["html"]
    for url in URLS:
        assert f"<td class=\"l\">{url['name']}</td>" in html
    for chart in CHARTS:
        assert f'data-chart="{chart}"' in html
    assert html.count("<svg") == len(CHARTS)


def test_the_report_shows_failures_redirects_and_footer_counters(recorded):
    html = recorded["html"]
    assert "http_404" in html and "/enrol/index.php" in html
    assert "Moodle&#x27;s performance footer" in html or "Moodle's performance footer" in html
    assert "<td class=\"\">128.0</td>" in html


def test_the_report_fetches_nothing_from_the_network(recorded):
    html = recorded["html"]
    target = read(recorded["json"])["metadata"]["target"]
    assert external_urls(html, target) == []
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"url\((?!#)", html) and "@import" not in html  # only references inside the page


def test_a_normal_run_carries_no_bottleneck_warning(recorded):
    assert 'id="bottleneck"' not in recorded["html"]


def test_a_report_is_made_later_from_saved_results_without_load(recorded, tmp_path):
    assert moodle_load.main(["--report", str(tmp_path / "later.html"), str(recorded["json"])]) == 0
    html = (tmp_path / "later.html").read_text()
    assert all(f'data-chart="{chart}"' in html for chart in CHARTS)


def test_the_compare_report_shows_the_regression_side_by_side(recorded, tmp_path):
    site = MoodleSite(MemoryUsers.testsite(6, "Passw0rd!"), SiteData.testsite(), site_settings(course_reads=200))
    with SimServer(site, port=recorded["port"]) as server:  # the same site at the next commit
        config = write_config(tmp_path / "c.json", server.url, users=6, urls=URLS, parameters=PARAMETERS)
        assert run_load(config, "--blocks", "8", "--concurrency", "4", rpm=2400, duration=4,
                        output=tmp_path / "new.json") == 0
    code = moodle_load.main(["--report", str(tmp_path / "compare.html"), "--compare", str(recorded["json"]),
                    str(tmp_path / "new.json")])
    assert code == EXIT_BAD
    html = (tmp_path / "compare.html").read_text()
    assert "Regression (bad)" in html and '<span class="regression">regression</span>' in html
    assert "DB reads 128 -&gt; 200 per page" in html
    assert 'data-chart="compare-distribution"' in html
    assert "128.0 &rarr; 200.0" in html  # footer counters before and after


def test_a_ten_minute_run_makes_a_report_under_2_mb(recorded):
    document = read(recorded["json"])
    points = document["timeline"]["points"]
    document["timeline"]["points"] = [dict(copy.deepcopy(points[i % len(points)]), t=float(i)) for i in range(600)]
    html = render_report(Results.from_dict(document), Verdict.good())
    assert len(html.encode()) < 2 * 1024 * 1024


def test_a_starved_generator_carries_the_bottleneck_warning(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=2)
    run_load(config, "--concurrency", "1", "--drain", "0", "--report", str(tmp_path / "r.html"), rpm=60000,
             duration=2)
    assert 'id="bottleneck"' in (tmp_path / "r.html").read_text()
    # its CPU or event loop at the limit, or (where the machine leaves it CPU) its one worker short
    out = capsys.readouterr().out
    assert "[WARN] The generator was the bottleneck" in out or "[WARN] The site set the pace" in out


def test_ctrl_c_still_writes_the_report_of_what_was_measured(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                                "--rpm", "600", "--duration", "60", "--progress", "0",
                                "--report", str(tmp_path / "r.html")], stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == EXIT_SIGINT
    html = (tmp_path / "r.html").read_text()
    assert "stopped before its end" in html and 'data-chart="rate"' in html


def test_without_matplotlib_report_says_what_to_install_in_one_line(tmp_path):
    code = ("import sys, runpy; sys.modules['matplotlib'] = None; "
            f"sys.argv = ['moodle_load.py', '--report', {str(tmp_path / 'r.html')!r}, 'x.json']; "
            f"runpy.run_path({os.path.join(ROOT, 'moodle_load.py')!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == EXIT_USAGE
    assert result.stderr == "[ERROR] --report needs matplotlib: pip install matplotlib\n"


def test_the_report_renders_in_a_real_browser(recorded, browser, tmp_path):
    page = f"file://{recorded['dir'] / 'report.html'}"
    dom = headless(browser, tmp_path, "--dump-dom", page).stdout
    for chart in CHARTS:
        assert re.search(rf'data-chart="{chart}">\s*<svg', dom), chart
    assert dom.count("<path") > 50  # the charts' lines and axes are in the DOM
    shot = tmp_path / "shot.png"
    headless(browser, tmp_path, "--hide-scrollbars", "--window-size=1100,2400", f"--screenshot={shot}", page)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert image.size == (1100, 2400)
    assert len(colours) > 50  # text and charts, not a blank page
    assert json.dumps(sorted(colours)[-1][1]) != "[0, 0, 0]"


def test_a_good_verdict_in_the_report_says_what_it_rests_on(recorded):
    verdict = recorded["html"].split('id="verdict"')[1].split("</div>")[0]
    assert "the load asked for was delivered" in verdict and "requests failed" in verdict
    assert "no baseline was given" in verdict  # so only the absolute gates judged it


def test_the_charts_scale_to_the_width_of_their_cards(recorded):
    html = recorded["html"]
    assert "figure.chart svg{width:100%;height:auto}" in html
    assert all("viewBox=" in svg.split(">")[0] for svg in html.split("<svg")[1:])


def test_the_distribution_chart_draws_only_the_slowest_urls_a_legend_can_name(recorded):
    from moodleload.reports.charts import DISTRIBUTION_CURVES, slowest_urls

    document = json.loads(recorded["json"].read_text())
    template = next(raw for raw in document["urls"].values() if raw["success"])
    urls = {}
    for number in range(18):  # each URL 1.02**(10*number) slower than the one before
        raw = copy.deepcopy(template)
        histogram, factor = raw["response_ms"], 1.02 ** (10 * number)
        histogram["buckets"] = {str(int(k) + 10 * number): v for k, v in histogram["buckets"].items()}
        histogram.update(min=histogram["min"] * factor, max=histogram["max"] * factor, sum=histogram["sum"] * factor)
        urls[f"page {number}"] = raw
    document["urls"] = urls
    slowest = slowest_urls(Results.from_dict(document), DISTRIBUTION_CURVES)
    assert slowest == [f"page {number}" for number in range(17, 9, -1)]


def test_the_generator_cpu_chart_names_its_red_line(recorded):
    chart = recorded["html"].split('data-chart="generator-cpu"')[1].split("</figure>")[0]
    assert "above it the generator" in chart and "is the bottleneck" in chart
