"""moodle_load.py against simulated Moodle sites over loopback."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from aiohttp import web

import moodle_load
from helpers import PASSWORD, ROOT, FixedApp, fast_settings, read, run_load, write_config
from moodleload.exits import EXIT_CANNOT_JUDGE, EXIT_SIGINT, EXIT_SIGTERM, EXIT_UNREACHABLE, EXIT_USAGE
from sim.moodledb import SiteData
from sim.server import SimServer
from sim.site import MoodleSite
from sim.sitesettings import PageProfile
from sim.siteusers import MemoryUsers, UserRecord


def login_errors(output: str) -> list:
    return [line for line in output.splitlines() if line.startswith("[ERROR] Login failed")]


# ---- logging in

def test_every_user_logs_in_through_the_logintoken_flow(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=5)
    assert run_load(config, duration=1) == 0
    out = capsys.readouterr().out
    assert "[INFO] Logging in 5 users..." in out
    assert server.site.stats.logins_ok == 5 and server.site.stats.logins_failed == 0


def test_a_wrong_password_for_every_user_is_said_once_and_is_a_configuration_mistake(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=12, password="wrong")
    assert run_load(config) == EXIT_USAGE  # stops a bisect: no commit is to blame for a wrong password
    captured = capsys.readouterr()
    assert len(login_errors(captured.out)) == 1 and login_errors(captured.out)[0].endswith(": invalid login")
    assert "[INFO] 0 of 12 users logged in; invalid login: 12 users" in captured.out
    assert "[VERDICT] configuration mistake (exit 128)" in captured.out
    assert "Moodle refused the password of all 12 users (invalid login): set it again with " \
           "set_moodle_passwords.py" in captured.out


def test_passwords_the_baseline_logged_in_with_but_this_commit_refuses_cannot_be_measured(sim_factory, tmp_path,
                                                                                          capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=2)
    assert run_load(config, output=tmp_path / "base.json") == 0
    broken = sim_factory(password="changed by the commit")  # a commit that breaks login
    config = write_config(tmp_path / "c.json", broken.url, users=2)
    assert run_load(config, "--baseline", str(tmp_path / "base.json")) == EXIT_CANNOT_JUDGE
    assert "which the baseline's runs logged in: this commit (or the site since the baseline) broke login" \
        in capsys.readouterr().out


def test_users_that_fail_are_left_out_and_the_rest_run(sim_factory, tmp_path, capsys):
    users = MemoryUsers.testsite(3, PASSWORD)
    users.users["tool_generator_000002"].locked = True
    server = sim_factory(users=users)
    config = write_config(tmp_path / "c.json", server.url, users=3)
    # One user in three is over the default tolerance (--max-login-failures 0.1): allow it here.
    assert run_load(config, "--max-login-failures", "0.5", output=tmp_path / "r.json") == 0
    assert login_errors(capsys.readouterr().out) == ["[ERROR] Login failed for user tool_generator_000002: locked out"]
    assert read(tmp_path / "r.json")["logins"] == {"ok": 2, "failed": {"locked out": 1}, "relogins": 0, "retried": 0}


def test_forced_password_change_is_its_own_reason(sim_factory, tmp_path, capsys):
    users = MemoryUsers.testsite(1, PASSWORD)
    users.users["tool_generator_000001"].force_password_change = True
    server = sim_factory(users=users)
    assert run_load(write_config(tmp_path / "c.json", server.url, users=1)) == EXIT_CANNOT_JUDGE
    assert login_errors(capsys.readouterr().out) == [
        "[ERROR] Login failed for user tool_generator_000001: forced password change"]


def test_http_error_on_the_login_page_is_reported_with_its_status(tmp_path, capsys):
    async def broken(request):
        return web.Response(status=503, text="maintenance")

    with SimServer(FixedApp(broken)) as server:
        assert run_load(write_config(tmp_path / "c.json", server.url, users=1)) == EXIT_CANNOT_JUDGE
    assert login_errors(capsys.readouterr().out) == [
        "[ERROR] Login failed for user tool_generator_000001: HTTP status: login page answered 503"]


def test_a_login_that_hangs_times_out_after_login_timeout(tmp_path, capsys):
    async def hang(request):
        await asyncio.sleep(5)
        return web.Response(text="late")

    with SimServer(FixedApp(hang)) as server:
        started = time.monotonic()
        code = run_load(write_config(tmp_path / "c.json", server.url, users=1), "--login-timeout", "0.3")
        assert code == EXIT_CANNOT_JUDGE and time.monotonic() - started < 3
    assert login_errors(capsys.readouterr().out) == [
        "[ERROR] Login failed for user tool_generator_000001: timeout: no answer within 0.3 s"]


def test_an_unreachable_site_fails_each_login_by_name_and_stops_the_bisect(tmp_path, capsys):
    config = write_config(tmp_path / "c.json", "http://127.0.0.1:9", users=1)
    assert run_load(config) == EXIT_UNREACHABLE
    (line,) = login_errors(capsys.readouterr().out)
    assert line.startswith("[ERROR] Login failed for user tool_generator_000001: site unreachable: cannot connect to "
                           "127.0.0.1:9")


def test_a_login_form_without_logintoken_warns_and_logs_in_anyway(sim_factory, tmp_path, capsys):
    server = sim_factory(fast_settings(logintoken=False))
    assert run_load(write_config(tmp_path / "c.json", server.url, users=1), duration=1) == 0
    out = capsys.readouterr().out
    assert "[WARN] No logintoken for user tool_generator_000001" in out
    assert server.site.stats.logins_ok == 1


# ---- sessions

def test_a_lost_session_is_counted_and_the_user_logs_in_again(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=2, urls=[{"path": "/my/"}])
    threading.Timer(1.5, server.call, args=(server.site.expire_sessions,)).start()
    assert run_load(config, "--concurrency", "2", rpm=600, duration=4, output=tmp_path / "r.json") == 0
    result = read(tmp_path / "r.json")
    my = result["urls"]["/my/"]
    assert my["failures"] == {"session_lost": 2}  # one request per user found its session gone
    assert result["logins"]["relogins"] == 2
    assert my["success"] == my["requests"] - 2  # after logging in again, requests succeed
    assert server.site.stats.logins_ok == 4


def test_no_user_ever_has_two_requests_in_flight(sim_factory, tmp_path, capsys):
    settings = fast_settings()
    for profile in settings.pages.values():
        profile.latency_ms = 40
    server = sim_factory(settings)
    config = write_config(tmp_path / "c.json", server.url, users=4)
    # 40 requests/s on 4 users with 40 ms pages: sessions are busy most of the time.
    assert run_load(config, "--concurrency", "50", rpm=2400, duration=3) in (0, 1)
    assert "--concurrency 50 capped at 4" in capsys.readouterr().out
    assert server.site.stats.overlaps == 0
    assert server.site.stats.requests > 100


# ---- the schedule (its arithmetic on the virtual clock: test_scheduler.py)

def test_a_generator_short_of_workers_reports_the_rate_it_really_reached_and_cannot_judge(sim_factory, tmp_path,
                                                                                           capsys):
    settings = fast_settings()
    settings.pages["my"] = PageProfile(latency_ms=100, jitter=0, body_kb=10)
    server = sim_factory(settings)
    config = write_config(tmp_path / "c.json", server.url, users=1, urls=[{"path": "/my/"}])
    # One worker can serve about 10 pages/s; the target is 20/s.
    assert run_load(config, "--concurrency", "1", rpm=1200, duration=3, output=tmp_path / "r.json") == 125
    result = read(tmp_path / "r.json")
    assert 450 <= result["summary"]["req_per_min_observed"] <= 650
    assert result["summary"]["requests"] == 60  # the backlog was still worked off and measured
    assert result["summary"]["latency_ms_p99"] > 2000  # and its waiting shows in the response time
    out = capsys.readouterr().out
    assert "[HINT]" in out and "raise --concurrency" in out
    # one worker at 100 ms sends about half of what fell due (30 of 60 on a quiet machine)
    sent = re.search(r"\[VERDICT\]   only (\d+) of the 60 requests due in the measured window were sent in it", out)
    assert sent and 20 <= int(sent.group(1)) <= 40, out


@pytest.mark.parametrize("with_baseline", [False, True], ids=["alone", "against-a-baseline"])
def test_a_stopped_generator_drops_what_fell_due_and_the_run_cannot_judge(sim_factory, tmp_path, with_baseline):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    baseline = []
    if with_baseline:
        assert run_load(config, rpm=600, duration=6, output=tmp_path / "base.json") == 0
        baseline = ["--baseline", str(tmp_path / "base.json")]
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                                "--rpm", "600", "--duration", "6", "--progress", "0", *baseline,
                                "--output", str(tmp_path / "r.json")], stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)
    process.send_signal(signal.SIGSTOP)
    time.sleep(2)
    process.send_signal(signal.SIGCONT)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == EXIT_CANNOT_JUDGE  # never good, never bad: the generator stood still
    generator = read(tmp_path / "r.json")["generator"]
    assert 15 <= generator["tokens_dropped"] <= 25  # ~2 s at 10 requests/s, none fired in a burst
    assert 1.5 <= generator["paused_s"] <= 2.5
    assert read(tmp_path / "r.json")["summary"]["requests"] == 60 - generator["tokens_dropped"]
    assert "[VERDICT]   the generator stood still for " in out


# ---- failures

def test_404s_and_connection_resets_are_counted_not_fatal(sim_factory, tmp_path):
    server = sim_factory()
    urls = [{"path": "/my/", "weight": 4}, {"path": "/course/view.php?id=999999", "name": "missing"},
            {"path": "/__sim/reset", "name": "reset"}]
    config = write_config(tmp_path / "c.json", server.url, users=3, urls=urls)
    # Counted, not fatal; and pages that never once succeed make the run unable to judge, never good.
    assert run_load(config, rpm=1200, duration=3, output=tmp_path / "r.json") == EXIT_CANNOT_JUDGE
    result = read(tmp_path / "r.json")
    assert result["urls"]["missing"]["failures"] == {"http_404": result["urls"]["missing"]["requests"]}
    assert result["urls"]["reset"]["failures"] == {"connection": result["urls"]["reset"]["requests"]}
    assert result["urls"]["/my/"]["failure"] == 0
    assert result["summary"]["failures"]["http_404"] > 0


def test_redirects_to_the_enrol_page_are_shown_per_url(sim_factory, tmp_path, capsys):
    server = sim_factory()
    urls = [{"path": "/course/view.php?id={courseid}", "name": "course"}]
    config = write_config(tmp_path / "c.json", server.url, users=2, first_user=2, urls=urls,
                          parameters={"courseid": {"values": [2, 3]}})
    assert run_load(config, output=tmp_path / "r.json") == 0
    course = read(tmp_path / "r.json")["urls"]["course"]
    assert course["redirects"] == {"/enrol/index.php": course["requests"]}
    assert "redirected to: /enrol/index.php" in capsys.readouterr().out


def test_request_errors_are_rate_limited(tmp_path, capsys):
    site = MoodleSite(MemoryUsers.testsite(2, PASSWORD), SiteData.testsite(), fast_settings())
    with SimServer(site) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=[{"path": "/__sim/reset"}])
        assert run_load(config, rpm=3000, duration=2, output=tmp_path / "r.json") == EXIT_CANNOT_JUDGE
    out = capsys.readouterr().out
    assert out.count("[Request error:") == 20
    assert read(tmp_path / "r.json")["generator"]["request_errors_suppressed"] == 100 - 20


# ---- reporting and stopping

def test_the_report_has_the_products_summary_keys(sim_factory, tmp_path, capsys):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), rpm=600, duration=2) == 0
    out = capsys.readouterr().out
    for key in ("req_per_min_target", "req_per_min_observed", "requests", "success", "failure",
                "latency_ms_p50", "latency_ms_p95", "latency_ms_p99"):
        assert f'"{key}":' in out
    assert "Per URL" in out and "dashboard" in out


def test_progress_lines_come_every_progress_seconds(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    moodle_load.main(["--config", config, "--rpm", "600", "--duration", "2.5", "--progress", "1"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[PROGRESS] {")]
    assert len(lines) == 2 and '"rpm_interval"' in lines[0]


def test_ctrl_c_stops_the_run_and_prints_the_report(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                                "--rpm", "600", "--duration", "60", "--progress", "0",
                                "--output", str(tmp_path / "r.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == EXIT_SIGINT
    assert "[SUMMARY]" in out and "[VERDICT] interrupted" in out
    assert "Traceback" not in err
    result = read(tmp_path / "r.json")
    assert result["metadata"]["interrupted"] and result["summary"]["requests"] > 5


def test_sigterm_also_reports(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                                "--rpm", "600", "--duration", "60", "--progress", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == EXIT_SIGTERM and "[SUMMARY]" in out


def test_a_config_mistake_is_one_line_and_exit_128(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"base_url": "http://127.0.0.1:9", "users": [], "urls": [{"path": "/my/"}]}')
    result = subprocess.run([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", str(path),
                             "--rpm", "60", "--duration", "1"], capture_output=True, text=True)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.count("\n") == 1 and "users must be a non-empty list" in result.stderr


def test_usage_mistakes_exit_128_not_2(tmp_path, capsys):
    assert moodle_load.main(["--rpm", "60"]) == EXIT_USAGE
    assert moodle_load.main(["--config", "x.json", "--rpm", "ten", "--duration", "1"]) == EXIT_USAGE
    assert moodle_load.main(["--config", str(tmp_path / "none.json"), "--rpm", "60", "--duration", "1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err


def test_user_record_defaults_describe_an_ordinary_user():
    assert UserRecord(1, "u", "h").locked is False and PageProfile().db_reads == 40


# ---- the two HTTP clients

def test_the_aiohttp_client_sees_the_site_exactly_as_the_lean_one_does(sim_factory, tmp_path):
    """Same seed, same site: the same requests arrive, with the same outcomes, redirects
    and footer counters; the results say which client ran."""
    urls = [{"path": "/my/", "weight": 3}, {"path": "/course/view.php?id={courseid}", "name": "course"},
            {"path": "/course/view.php?id={gone}", "name": "missing"}]  # a course gone now and then
    results, logs = {}, {}
    for client in ("httptools", "aiohttp"):
        server = sim_factory()
        config = write_config(tmp_path / "c.json", server.url, users=3, first_user=2, urls=urls,
                              parameters={"courseid": {"values": [2, 3, 10]}, "gone": {"values": [999999, 10]}})
        assert run_load(config, "--concurrency", "1", "--http-client", client, rpm=1200, duration=2,
                        output=tmp_path / f"{client}.json") == 0
        results[client] = read(tmp_path / f"{client}.json")
        logs[client] = list(server.site.stats.log)
    assert logs["httptools"] == logs["aiohttp"]
    for name in ("/my/", "course", "missing"):
        lean, other = results["httptools"]["urls"][name], results["aiohttp"]["urls"][name]
        for key in ("requests", "success", "failures", "redirects"):
            assert lean[key] == other[key], (name, key)
        assert {k: v for k, v in lean["footer"].items() if not k.endswith("_ms")} == \
            {k: v for k, v in other["footer"].items() if not k.endswith("_ms")}
    assert results["httptools"]["urls"]["course"]["redirects"]  # the comparison covered a redirect
    assert results["httptools"]["urls"]["/my/"]["footer"]["db_reads"]  # and footers
    assert [results[c]["metadata"]["http_client"] for c in ("httptools", "aiohttp")] == ["httptools", "aiohttp"]


WITHOUT_HTTPTOOLS = ("import sys; sys.modules['httptools'] = None; sys.path.insert(0, sys.argv[1]); "
                     "import moodle_load; sys.exit(moodle_load.main(sys.argv[2:]))")


def test_without_httptools_the_run_falls_back_to_aiohttp(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=2)
    result = subprocess.run([sys.executable, "-c", WITHOUT_HTTPTOOLS, ROOT, "--config", config, "--rpm", "600",
                             "--duration", "1", "--progress", "0", "--output", str(tmp_path / "r.json")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert read(tmp_path / "r.json")["metadata"]["http_client"] == "aiohttp"


def test_asking_for_httptools_where_it_is_missing_is_a_usage_mistake(tmp_path):
    config = write_config(tmp_path / "c.json", "http://127.0.0.1:9", users=1)
    result = subprocess.run([sys.executable, "-c", WITHOUT_HTTPTOOLS, ROOT, "--config", config, "--rpm", "60",
                             "--duration", "1", "--http-client", "httptools"], capture_output=True, text=True)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.count("\n") == 1
    assert "--http-client httptools needs the Python package httptools, which" in result.stderr
    assert "-m pip install -r " in result.stderr


def test_a_python_without_the_toolkits_packages_is_told_what_to_install_before_any_login(tmp_path):
    config = write_config(tmp_path / "c.json", "http://127.0.0.1:9", users=1)
    # -S: no site-packages, as the system python3 a bisect step may run instead of the venv's
    result = subprocess.run([sys.executable, "-S", os.path.join(ROOT, "moodle_load.py"), "--config", config,
                             "--rpm", "60", "--duration", "1"], capture_output=True, text=True)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.count("\n") == 1, result.stderr
    assert "needs the Python package aiohttp, which" in result.stderr and "-m pip install -r " in result.stderr
    assert "Logging in" not in result.stdout


def test_the_summary_is_one_json_line_and_the_verdict_comes_last(sim_factory, tmp_path, capsys):
    import json

    server = sim_factory()
    assert run_load(write_config(tmp_path / "config.json", server.url)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(next(line for line in lines if line.startswith("[SUMMARY] "))[len("[SUMMARY] "):])
    assert {"req_per_min_observed", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "failures"} <= set(summary)
    assert "urls" not in summary  # per page: the table above it and the results file
    assert lines[-1].startswith("[VERDICT] good")


def test_workers_all_waiting_on_a_slow_site_are_named_as_the_sites_pace_with_its_remedy_not_the_generators(
        sim_factory, tmp_path, capsys):
    settings = fast_settings()
    settings.pages["my"] = PageProfile(latency_ms=400, jitter=0, body_kb=10)  # a site slowed by a busy machine
    server = sim_factory(settings)
    config = write_config(tmp_path / "c.json", server.url, users=2, urls=[{"path": "/my/"}])
    assert run_load(config, "--concurrency", "2", rpm=900, duration=3) == 125
    out = capsys.readouterr().out
    verdict = out[out.index("[VERDICT]"):]
    assert "every worker was waiting on the site: it answered in 4" in verdict
    assert "15 requests a second need about 6 in flight and the run had 2" in verdict
    assert "lower --rpm" in verdict and "quieter machine" in verdict
    assert "generator was the bottleneck" not in out and "--processes" not in verdict


def test_with_every_user_busy_the_hint_asks_for_more_users_not_more_concurrency(sim_factory, tmp_path, capsys):
    settings = fast_settings()
    settings.pages["my"] = PageProfile(latency_ms=200, jitter=0, body_kb=10)
    server = sim_factory(settings)
    config = write_config(tmp_path / "c.json", server.url, users=2, urls=[{"path": "/my/"}])
    run_load(config, rpm=1200, duration=2)  # --concurrency 20, capped at the 2 users
    hints = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[HINT]")]
    assert any("give the run more users" in hint for hint in hints)
    assert not any("raise --concurrency" in hint for hint in hints)
