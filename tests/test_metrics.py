"""Servers beside the load: a real node_exporter scraped during a run, its timeline in the
results and the report, and a saturated host named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from helpers import busy_loops, read, run_load, write_config
from moodleload.exits import EXIT_USAGE
from moodleload.load.metrics import argv_shown, parse_sample, point_between, saturation_notes, shown_url
from moodleload.reports.html import render_report
from moodleload.results.metrics import Metrics, metrics_problem
from moodleload.results.model import Results
from sim.ports import free_port

NODE_TEXT = """# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{{cpu="0",mode="idle"}} {idle}
node_cpu_seconds_total{{cpu="0",mode="iowait"}} 1
node_cpu_seconds_total{{cpu="0",mode="user"}} {user}
# TYPE node_load1 gauge
node_load1 {load}
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 8e9
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 6e9
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{{device="lo"}} 1e12
node_network_receive_bytes_total{{device="eth0"}} {rx}
"""


def sample(idle: float, user: float, rx: float = 0, load: float = 0.5) -> dict:
    return parse_sample(NODE_TEXT.format(idle=idle, user=user, rx=rx, load=load))


# ---- the pure parts

def test_cpu_busy_is_the_share_of_cpu_time_not_idle_between_two_scrapes():
    point = point_between(sample(100, 10), sample(101, 13), 4.0, t=3.0)
    assert point.cpu_busy == 0.75 and point.memory_used_bytes == 2e9


def test_loopback_traffic_is_not_the_hosts_network_io():
    assert point_between(sample(100, 10, rx=1000), sample(101, 13, rx=9000), 4.0, t=3.0).net_bytes_per_s == 2000


def test_a_restarted_exporter_gives_no_negative_rate():
    point = point_between(sample(100, 10, rx=9000), sample(1, 1, rx=10), 2.0, t=5.0)
    assert point.cpu_busy is None and point.net_bytes_per_s is None


def host_points(busy: list) -> Metrics:
    points = [{"t": 2.0 * n, "cpu_busy": value, "load1": 1.0, "memory_used_bytes": 1.0, "disk_bytes_per_s": 0.0,
               "net_bytes_per_s": 0.0, "db_connections": None} for n, value in enumerate(busy)]
    return Metrics.from_dict({"hosts": {"web1:9100": {"url": "http://web1:9100/metrics", "failed_scrapes": 0,
                                                      "points": points}}})


def test_a_host_busy_most_of_the_run_is_named_with_how_busy_and_how_long():
    assert saturation_notes(host_points([0.98, 0.99, 0.97, 0.98, 0.5])) == [
        "host web1:9100 CPU 98% busy for 80% of the run: the site's capacity, not only the code, shaped these numbers"]


def test_a_host_with_room_is_not_named():
    assert saturation_notes(host_points([0.5, 0.95, 0.4, 0.3])) == []


def test_a_damaged_metrics_section_is_refused_when_read():
    damaged = host_points([0.5]).to_dict()
    damaged["hosts"]["web1:9100"]["points"][0]["cpu_busy"] = "busy"
    assert metrics_problem(damaged) == "metrics: a value that is not a number"


# ---- against a real node_exporter

@pytest.fixture(scope="module")
def node_exporter():
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        message = "prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("node_exporter did not start")
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


def test_a_run_keeps_each_hosts_timeline_and_the_report_charts_it(node_exporter, sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    assert run_load(config, "--metrics", node_exporter, duration=5, output=tmp_path / "run.json") == 0
    document = read(tmp_path / "run.json")
    host = document["metrics"]["hosts"][node_exporter.split("/")[2]]
    busy = [point["cpu_busy"] for point in host["points"] if point["cpu_busy"] is not None]
    assert len(busy) >= 2 and all(0 <= value <= 1 for value in busy)
    assert all(point["memory_used_bytes"] > 0 for point in host["points"])
    assert f"Server {node_exporter.split('/')[2]}: CPU busy median" in capsys.readouterr().out
    page = render_report(Results.from_dict(document))
    assert 'data-chart="hosts"' in page and "Servers beside the load" in page


def test_a_saturated_host_is_named_in_the_report(node_exporter, sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    with busy_loops(os.cpu_count() or 1):
        status = run_load(config, "--metrics", node_exporter, duration=8, output=tmp_path / "run.json")
    out = capsys.readouterr().out
    label = node_exporter.split("/")[2]
    assert status in (0, 125)  # the load itself may suffer: what counts is that the host is named
    assert f"[WARN] host {label} CPU" in out and "the site's capacity, not only the code" in out


def test_an_exporter_that_does_not_answer_stops_before_the_first_request(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    status = run_load(config, "--metrics", f"http://127.0.0.1:{free_port()}/metrics")
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and err.count("\n") == 1 and "is the exporter running there?" in err
    assert server.site.stats.requests == 0


def test_credentials_in_a_metrics_url_are_refused(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    assert run_load(config, "--metrics", "http://user:secret@127.0.0.1:9/metrics") == EXIT_USAGE
    err = capsys.readouterr().err
    assert "secret" not in err and "credentials in the URL" in err


def test_a_token_in_a_metrics_url_is_used_to_scrape_and_never_kept_or_shown(node_exporter, sim_factory, tmp_path,
                                                                              capsys):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    with_token = node_exporter + "?token=s3cr3t-t0ken&format=text"  # node_exporter ignores what it does not know
    assert run_load(config, f"--metrics={with_token}", "--report", str(tmp_path / "run.html"), duration=3,
                    output=tmp_path / "run.json") == 0
    saved = (tmp_path / "run.json").read_text()
    host = json.loads(saved)["metrics"]["hosts"][node_exporter.split("/")[2]]
    assert host["url"] == node_exporter + "?token=(hidden)&format=(hidden)" and host["points"]
    assert "--metrics=" + host["url"] in json.loads(saved)["metadata"]["argv"]
    shown = capsys.readouterr()
    for text in (saved, (tmp_path / "run.html").read_text(), shown.out, shown.err):
        assert "s3cr3t" not in text


def test_the_shown_url_hides_every_query_value_and_keeps_their_names():
    assert shown_url("http://web1:9100/metrics") == "http://web1:9100/metrics"
    assert shown_url("https://web1/metrics?token=abc&x") == "https://web1/metrics?token=(hidden)&x=(hidden)"
    assert argv_shown(["--metrics", "http://a/m?k=v", "--metrics=http://b/m?t=1", "--rpm", "60"]) == \
        ["--metrics", "http://a/m?k=(hidden)", "--metrics=http://b/m?t=(hidden)", "--rpm", "60"]


def test_with_several_processes_one_shard_scrapes_for_the_whole_run(node_exporter, sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url, users=6)
    assert run_load(config, "--metrics", node_exporter, "--processes", "2", duration=5,
                    output=tmp_path / "run.json") == 0
    hosts = read(tmp_path / "run.json")["metrics"]["hosts"]
    assert list(hosts) == [node_exporter.split("/")[2]] and len(hosts[node_exporter.split("/")[2]]["points"]) >= 2


class HostileExporter:
    """A loopback TCP server that answers every connection with ``answer(connection)``."""

    def __init__(self, answer):
        import socket
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            try:
                connection.recv(4096)
                self.answer(connection)
            except OSError:
                pass
            finally:
                connection.close()

    def close(self):
        self.server.close()


def trickle(connection):
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        connection.sendall(b"#")
        time.sleep(0.2)


@pytest.mark.parametrize("answer,expected", [
    (trickle, "the answer did not end within 10 s"),
    (lambda connection: connection.sendall(b"\x00\x01garbage from a database port\r\n\r\n"), "did not answer in HTTP"),
    (lambda connection: connection.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"),
     "did not answer in HTTP"),
], ids=["trickling", "not-http", "huge-header"])
def test_an_exporter_that_trickles_or_is_not_http_is_one_line_before_the_load(sim_factory, tmp_path, capsys,
                                                                             answer, expected):
    exporter = HostileExporter(answer)
    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url)
    started = time.monotonic()
    try:
        status = run_load(config, "--metrics", f"http://127.0.0.1:{exporter.port}/metrics")
    finally:
        exporter.close()
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and err.count("\n") == 1 and expected in err, err
    assert "garbage" not in err and "\x00" not in err  # the bytes it sent are not echoed
    assert time.monotonic() - started < 25 and server.site.stats.requests == 0


def test_an_exporters_absurd_values_are_lost_values_never_written_for_the_reader_to_refuse():
    from moodleload.load.metrics import point_between
    current = sample(idle=1e308, user=1e308, rx=1e308, load=1e19)  # idle + iowait + user: beyond a float
    point = point_between(sample(idle=1, user=1), current, 2.0, 1.0)
    assert point.load1 is None  # 1e19: a lost value, not written
    assert metrics_problem({"hosts": {"h:9100": {"points": [point.to_dict()]}}}) is None
