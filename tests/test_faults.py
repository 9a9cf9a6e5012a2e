"""What can go wrong, and what you get: every exit status here is one git bisect can
trust.  Hostile servers on loopback, real processes and real signals."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest
from aiohttp import web

import moodle_load
from helpers import PASSWORD, ROOT, FixedApp, fast_settings, free_port, mini_moodle, read, run_load, write_config
from moodleload.exits import (
    EXIT_BAD,
    EXIT_CANNOT_JUDGE,
    EXIT_FAULT,
    EXIT_GOOD,
    EXIT_SIGHUP,
    EXIT_SIGTERM,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from sim.server import SimServer
from sim.sitesettings import PageProfile
from sim.siteusers import MemoryUsers

ONE_URL = [{"path": "/my/", "name": "dashboard"}, {"path": "/page", "name": "page"}]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("[ERROR] "), err
    return err


def command(*args: str) -> list:
    return [sys.executable, os.path.join(ROOT, "moodle_load.py"), *args]


# ---- 1. a fault of the tool never reads as a verdict

@pytest.mark.parametrize("make_output, complaint", [
    (lambda tmp: str(tmp / "missing" / "r.json"), "does not exist"),
    (lambda tmp: str(tmp), "is a folder"),
    (lambda tmp: str(tmp / "c.json"), "same file as --config"),
], ids=["missing-folder", "a-folder", "the-config"])
def test_an_output_that_cannot_be_written_is_refused_before_the_first_login(sim_factory, tmp_path, capsys,
                                                                           make_output, complaint):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    assert run_load(config, "--output", make_output(tmp_path)) == EXIT_USAGE
    assert complaint in one_line_error(capsys)
    assert server.site.stats.requests == 0


def test_a_report_over_the_baseline_is_refused(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    assert run_load(config, output=tmp_path / "base.json") == EXIT_GOOD
    capsys.readouterr()
    assert run_load(config, "--baseline", str(tmp_path / "base.json"), "--report", str(tmp_path / "base.json")) \
        == EXIT_USAGE
    assert "same file as --baseline" in one_line_error(capsys)


@pytest.mark.parametrize("content, complaint", [
    (b'{"base_url": "http://caf\xe9.test"}', "not UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (json.dumps({"base_url": "http://127.0.0.1:99999", "users": [{"username": "a", "password": "b"}],
                 "urls": [{"path": "/my/"}]}).encode(), "port"),
    (json.dumps({"base_url": "http://127.0.0.1", "users": [{"username": "a", "password": "b"}],
                 "urls": [{"path": "/a", "weight": 1e308}, {"path": "/b", "weight": 1e308}]}).encode(), "weights"),
], ids=["latin-1", "deep", "port-99999", "weights-overflow"])
def test_a_config_that_cannot_be_used_is_one_line_and_the_usage_exit(tmp_path, capsys, content, complaint):
    (tmp_path / "c.json").write_bytes(content)
    assert run_load(str(tmp_path / "c.json")) == EXIT_USAGE
    assert complaint in one_line_error(capsys)


@pytest.mark.parametrize("option", ["--config", "--baseline", "--output"])
def test_a_named_pipe_for_a_file_is_refused_in_one_line_never_waited_on(sim_factory, tmp_path, option):
    """A pipe with no writer would block the opening for ever; written by renaming over it,
    a pipe or a device would be replaced."""
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    paths = {"--config": config, option: str(pipe)}
    extra = [] if option == "--config" else [option, str(pipe)]
    result = subprocess.run(command("--config", paths["--config"], "--rpm", "60", "--duration", "1", *extra),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert result.stderr.count("\n") == 1 and "is not a regular file (a pipe or a device)" in result.stderr
    assert server.site.stats.requests == 0 and stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_standard_output_closed_early_is_one_line_and_the_usage_exit(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    shell = " ".join(f"'{part}'" for part in command("--config", config, "--rpm", "600", "--duration", "1"))
    result = subprocess.run(["bash", "-c", f"{shell} | true; exit ${{PIPESTATUS[0]}}"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.count("\n") == 1 and "standard output was closed" in result.stderr


def test_an_unexpected_error_is_one_line_saves_what_was_measured_and_stops_the_bisect(sim_factory, tmp_path,
                                                                                    capsys, monkeypatch):
    from moodleload.load import scheduler

    calls = []

    def broken_footer(body):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("a bug in the footer parser")
        return None

    monkeypatch.setattr(scheduler, "parse_footer", broken_footer)
    monkeypatch.chdir(tmp_path)
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    assert run_load(config, rpm=1200, duration=3) == EXIT_FAULT
    err = one_line_error(capsys)
    assert "a bug in the footer parser" in err and "fault of the tool" in err and "Traceback" not in err
    saved = [name for name in os.listdir(tmp_path) if name.startswith("moodle-load-results-")]
    assert len(saved) == 1 and read(tmp_path / saved[0])["format"] == 1


def test_results_that_cannot_be_written_at_the_end_go_to_a_fallback_and_the_exit_says_so(sim_factory, tmp_path,
                                                                                        capsys, monkeypatch):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    threading.Timer(0.5, shutil.rmtree, args=(tmp_path / "out",)).start()  # the disk goes away mid-run
    assert run_load(config, duration=2, output=tmp_path / "out" / "r.json") == EXIT_FAULT
    out = capsys.readouterr().out
    assert "cannot write the results" in out and f"[VERDICT] not recorded (exit {EXIT_FAULT})" in out
    saved = [name for name in os.listdir(tmp_path) if name.startswith("moodle-load-results-")]
    assert len(saved) == 1 and read(tmp_path / saved[0])["summary"]["requests"] > 0


# ---- 2. what the site does wrong is judged

def failing_site(sim_factory, status: int):
    settings = fast_settings()
    settings.pages["course"] = PageProfile(latency_ms=5, status=status)
    return sim_factory(settings)


COURSE = [{"path": "/my/", "name": "dashboard"}, {"path": "/course/view.php?id=10", "name": "course"}]


def test_a_page_that_now_fails_on_every_request_is_a_regression(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, urls=COURSE)
    assert run_load(config, rpm=1200, duration=3, output=tmp_path / "base.json") == EXIT_GOOD
    server.site.settings.pages["course"].status = 500  # the next commit breaks the course page
    assert run_load(config, "--baseline", str(tmp_path / "base.json"), rpm=1200, duration=3) == EXIT_BAD
    out = capsys.readouterr().out
    assert "[VERDICT] bad (exit 1)" in out and "course: failures 0.0% -> 100.0%" in out


def test_without_a_baseline_a_page_that_never_succeeded_is_never_good(sim_factory, tmp_path, capsys):
    broken = failing_site(sim_factory, 500)
    config = write_config(tmp_path / "c.json", broken.url, urls=COURSE)
    assert run_load(config, rpm=1200, duration=2) == EXIT_CANNOT_JUDGE
    assert "course: none of its" in capsys.readouterr().out


def test_a_site_that_serves_the_login_form_in_place_of_its_pages_is_never_good(tmp_path, capsys):
    with open(os.path.join(ROOT, "tests", "data", "login-session-expired.html"), "rb") as handle:
        login_form = handle.read()

    async def pages(request):  # every session lost, the form answered with a 200 and no redirect
        return web.Response(body=login_form, content_type="text/html")

    with SimServer(FixedApp(mini_moodle(pages))) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=ONE_URL)
        status = run_load(config, rpm=1200, duration=2, output=tmp_path / "r.json")
    assert status == EXIT_CANNOT_JUDGE
    page = read(tmp_path / "r.json")["urls"]["page"]
    assert page["requests"] > 10 and page["success"] == 0
    assert set(page["failures"]) <= {"session_lost", "login"} and page["failures"]["session_lost"]


def test_a_malformed_redirect_is_a_failure_of_its_url_not_a_crash(tmp_path):
    async def pages(request):
        return web.Response(status=302, headers={"Location": "http://[::1/oops"})

    with SimServer(FixedApp(mini_moodle(pages))) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=ONE_URL)
        assert run_load(config, rpm=1200, duration=2, output=tmp_path / "r.json") == EXIT_CANNOT_JUDGE
    page = read(tmp_path / "r.json")["urls"]["page"]
    assert page["requests"] > 10 and page["failures"] == {"bad_redirect": page["requests"]}


def test_a_malformed_redirect_at_login_fails_that_login_by_name(tmp_path, capsys):
    async def handler(request):
        if request.method == "POST":
            return web.Response(status=303, headers={"Location": "http://[::1/login/index.php?testsession=2"})
        return web.Response(text='<input name="logintoken" value="x">', content_type="text/html")

    with SimServer(FixedApp(handler)) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2)
        assert run_load(config) == EXIT_CANNOT_JUDGE
    assert "bad redirect" in capsys.readouterr().out


def test_most_users_failing_to_log_in_cannot_judge_and_names_them(sim_factory, tmp_path, capsys):
    server = sim_factory(users=MemoryUsers.testsite(1, PASSWORD))
    config = write_config(tmp_path / "c.json", server.url, users=5)
    assert run_load(config) == EXIT_CANNOT_JUDGE
    out = capsys.readouterr().out
    assert "4 of 5 users could not log in (invalid login 4)" in out


def test_a_few_failed_logins_within_the_tolerance_are_named_beside_a_good_verdict(sim_factory, tmp_path, capsys):
    server = sim_factory(users=MemoryUsers.testsite(19, PASSWORD))
    config = write_config(tmp_path / "c.json", server.url, users=20)
    assert run_load(config) == EXIT_GOOD
    assert "[VERDICT]   1 of 20 users could not log in (invalid login 1)" in capsys.readouterr().out


def test_a_login_that_meets_a_server_error_is_tried_again_once(tmp_path, capsys):
    posts: dict = {}
    inner = mini_moodle(lambda request: None)

    async def handler(request):
        if request.method == "POST":
            username = (await request.post())["username"]
            posts[username] = posts.get(username, 0) + 1
            if posts[username] == 1:
                return web.Response(status=500, text="restarting")
        return await inner(request)

    with SimServer(FixedApp(handler)) as server:
        config = write_config(tmp_path / "c.json", server.url, users=3, urls=[{"path": "/my/"}])
        assert run_load(config, output=tmp_path / "r.json") == EXIT_GOOD
    assert posts == {f"tool_generator_{n:06d}": 2 for n in (1, 2, 3)}
    assert read(tmp_path / "r.json")["logins"] == {"ok": 3, "failed": {}, "relogins": 0, "retried": 3}
    assert "3 of 3 users logged in (3 after a retry)" in capsys.readouterr().out


@pytest.mark.parametrize("flag, value, difference", [
    ("--rpm", "900", "target rate"), ("--seed", "9", "seed"), ("--http-client", "aiohttp", "HTTP client"),
    ("--blocks", "10", "block length"),
])
def test_runs_under_another_load_are_not_compared(sim_factory, tmp_path, capsys, flag, value, difference):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    assert run_load(config, rpm=600, duration=2, output=tmp_path / "base.json") == EXIT_GOOD
    capsys.readouterr()
    args = ["--config", config, "--duration", "2", "--progress", "0", "--baseline", str(tmp_path / "base.json")]
    args += [flag, value] + ([] if flag == "--rpm" else ["--rpm", "600"])
    assert moodle_load.main(args) == EXIT_CANNOT_JUDGE
    assert f"the runs differ in {difference}" in capsys.readouterr().out


def test_an_interrupted_run_is_never_judged_good_later(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    assert run_load(config, output=tmp_path / "base.json") == EXIT_GOOD
    document = read(tmp_path / "base.json")
    document["metadata"]["interrupted"] = True
    (tmp_path / "cut.json").write_text(json.dumps(document))
    assert moodle_load.main(["--compare", str(tmp_path / "base.json"), str(tmp_path / "cut.json")]) \
        == EXIT_CANNOT_JUDGE
    pytest.importorskip("matplotlib")
    assert moodle_load.main(["--report", str(tmp_path / "r.html"), str(tmp_path / "cut.json")]) == EXIT_CANNOT_JUDGE


def test_a_shard_process_that_dies_makes_the_run_unable_to_judge(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=4)
    process = subprocess.Popen(command("--config", config, "--rpm", "600", "--duration", "4", "--progress", "0",
                                       "--processes", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2
    os.kill(int(children[1]), signal.SIGKILL)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == EXIT_CANNOT_JUDGE
    assert "was killed by SIGKILL" in out and "[VERDICT] cannot judge (exit 125)" in out


def test_more_processes_than_users_is_refused(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=2)
    assert run_load(config, "--processes", "3") == EXIT_USAGE
    assert "more than the 2 users" in one_line_error(capsys)


# ---- 3. signals: a run stops within its grace, its results saved

@pytest.mark.parametrize("phase", ["logging in", "requests hanging"])
def test_sigterm_ends_the_run_within_the_grace_in_every_phase(tmp_path, phase):
    async def hang(request):
        await asyncio.sleep(12)  # longer than the test waits, short enough for the server to stop soon
        return web.Response(text="late")

    handler = hang if phase == "logging in" else mini_moodle(hang)
    with SimServer(FixedApp(handler)) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=ONE_URL)
        process = subprocess.Popen(command("--config", config, "--rpm", "600", "--duration", "30", "--progress",
                                           "0", "--output", str(tmp_path / "r.json")),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        took = time.monotonic() - sent
    assert took < 5.0 + 2.0  # the grace, and the time to report
    assert process.returncode == EXIT_SIGTERM, err
    assert f"[VERDICT] interrupted (exit {EXIT_SIGTERM})" in out
    assert "Traceback" not in err


def test_sighup_saves_the_results_like_sigterm(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    process = subprocess.Popen(command("--config", config, "--rpm", "600", "--duration", "20", "--progress", "0",
                                       "--output", str(tmp_path / "r.json")), stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)
    process.send_signal(signal.SIGHUP)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == EXIT_SIGHUP
    assert f"[VERDICT] interrupted (exit {EXIT_SIGHUP})" in out
    assert read(tmp_path / "r.json")["metadata"]["interrupted"] is True


# ---- each run counts once

REAL = os.path.join(ROOT, "tests", "data", "real-site")


def test_copies_of_one_baseline_run_are_refused_not_counted_as_more_runs(tmp_path, capsys):
    for copy in ("a", "b"):
        shutil.copy(os.path.join(REAL, "base.json"), tmp_path / f"{copy}.json")
    status = moodle_load.main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                               os.path.join(REAL, "base.json"), os.path.join(REAL, "same-1.json")])
    assert status == EXIT_USAGE
    assert "are the same run" in one_line_error(capsys)


def test_one_file_named_twice_as_a_rerun_is_refused(capsys):
    same = os.path.join(REAL, "same-1.json")
    status = moodle_load.main(["--compare", os.path.join(REAL, "base.json"), same, "--rerun", same])
    assert status == EXIT_USAGE
    assert f"--compare file 2 ({same}) and --rerun {same} are the same run" in one_line_error(capsys)


# ---- the environment is never read as the commit

def test_a_site_that_cannot_be_reached_stops_the_bisect_instead_of_skipping(tmp_path, capsys):
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "c.json", nothing_listens, users=3)
    assert run_load(config, output=tmp_path / "r.json") == EXIT_UNREACHABLE
    out = capsys.readouterr().out
    assert "[VERDICT] site not reached (exit 201)" in out
    assert "the site could not be reached: 3 of 3 logins (check base_url and that the web server runs)" in out
    assert read(tmp_path / "r.json")["logins"]["failed"] == {"site unreachable": 3}


def test_a_site_that_goes_away_during_the_run_stops_the_bisect(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=2)
    process = subprocess.Popen(command("--config", config, "--rpm", "600", "--duration", "6", "--progress", "0"),
                               stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    server.stop()  # the web server itself is gone: nothing listens any more
    out, _ = process.communicate(timeout=60)
    assert process.returncode == EXIT_UNREACHABLE, out
    assert "the site could not be reached:" in out


def test_an_open_file_limit_too_low_for_the_concurrency_is_refused_before_any_login(sim_factory, tmp_path):
    import resource
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=200)

    def limit_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    done = subprocess.run(command("--config", config, "--rpm", "600", "--duration", "2", "--concurrency", "200"),
                          capture_output=True, text=True, preexec_fn=limit_files, timeout=60)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.startswith("[ERROR] this process may open 100 files (ulimit -n; at most 100) but "
                                  "--concurrency 200 needs about 264: raise the limit")
    assert "Logging in" not in done.stdout


def test_a_soft_open_file_limit_is_raised_towards_the_hard_one(sim_factory, tmp_path):
    import resource
    server = sim_factory(user_count=100)
    config = write_config(tmp_path / "c.json", server.url, users=100)

    def limit_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 4096))

    done = subprocess.run(command("--config", config, "--rpm", "1200", "--duration", "2", "--concurrency", "100",
                                  "--progress", "0"), capture_output=True, text=True, preexec_fn=limit_files,
                          timeout=120)
    assert done.returncode == EXIT_GOOD, done.stdout + done.stderr


# ---- small but visible

def test_ctrl_c_while_reading_results_is_one_line_and_the_interrupt_status(tmp_path):
    # Twenty thousand names of one real run: reading them all takes a minute, so the
    # interrupt comes while results are read (a named pipe, which would block, is refused).
    names = [str(number) for number in range(20000)]
    for name in names:
        os.symlink(os.path.join(REAL, "same-1.json"), tmp_path / name)
    process = subprocess.Popen(command("--compare", *names), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.startswith("[ERROR] interrupted (SIGINT)") and err.count("\n") == 1 and "Traceback" not in err


def test_a_run_whose_folders_vanish_leaves_one_fallback_file_not_two(sim_factory, tmp_path, monkeypatch, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    threading.Timer(0.5, shutil.rmtree, args=(out,)).start()  # the folder goes away during the run
    status = run_load(config, "--report", str(out / "report.html"), duration=2, output=out / "r.json")
    assert status == EXIT_FAULT
    assert len(list(elsewhere.glob("moodle-load-results-*.json"))) == 1


def test_a_baseline_whose_generator_stood_still_cannot_support_a_verdict(tmp_path, capsys):
    stalled = read(os.path.join(REAL, "base.json"))
    stalled["generator"].update(paused_s=3.0, tokens_dropped=18)
    (tmp_path / "stalled.json").write_text(json.dumps(stalled))
    status = moodle_load.main(["--compare", str(tmp_path / "stalled.json"), os.path.join(REAL, "same-1.json")])
    assert status == EXIT_CANNOT_JUDGE
    assert f"--compare {tmp_path / 'stalled.json'}: the generator stood still for 3.0 s" in capsys.readouterr().out
