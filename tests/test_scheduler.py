"""The scheduler on a virtual clock: minutes of schedule in milliseconds, to the same
arithmetic as real time.  The site here is a small Moodle in virtual time (the logintoken
flow, session cookies, one request per session at a time, a service time per page, and a
stall on demand); the real-time, real-server behaviour is specified in test_load_run.py."""

from __future__ import annotations

import asyncio
import math

from moodleload.config import validate_config
from moodleload.console import Printer
from moodleload.load.clock import VirtualClock
from moodleload.load.document import build_document
from moodleload.load.plan import Timeline
from moodleload.load.scheduler import LoadRun, RunSettings
from moodleload.site.httpclient import Reply
from moodleload.steps.kinds import STEP_KINDS

TOKEN_PAGE = b'<form><input type="hidden" name="logintoken" value="abcdefabcdefabcdefabcdefabcdefab"></form>'


class VirtualMoodle:
    """Answers like Moodle's login flow and pages, taking ``service_s`` of virtual time per
    page; during a stall (from, to) nothing is answered before ``to``."""

    def __init__(self, clock: VirtualClock, service_s: float = 0.01):
        self.clock = clock
        self.service_s = service_s
        self.stalls: list = []
        self.sessions = 0
        self.in_flight: dict = {}
        self.overlaps = 0
        self.pages = 0

    async def request(self, method: str, url: str, cookie: str | None, form: dict | None, timeout: float) -> Reply:
        path = url.split("://", 1)[1].partition("/")[2]
        if path.startswith("login/index.php"):
            if "testsession=" in path:
                return Reply(303, "/my/", [], b"")
            if method == "POST":
                self.sessions += 1
                return Reply(303, f"/login/index.php?testsession={self.sessions}",
                             [f"MoodleSession=s{self.sessions}; path=/"], b"")
            return Reply(200, "", ["MoodleSession=anonymous; path=/"], TOKEN_PAGE)
        if self.in_flight.get(cookie):
            self.overlaps += 1
        self.in_flight[cookie] = True
        try:
            now = self.clock.now()
            for start, end in self.stalls:
                if start <= now < end:
                    await self.clock.sleep(end - now)
            await self.clock.sleep(self.service_s)
        finally:
            self.in_flight[cookie] = False
        self.pages += 1
        return Reply(200, "", [], b"<html>page</html>")

    async def close(self) -> None:
        pass


def config(users: int) -> dict:
    return validate_config({"base_url": "http://moodle.test", "users": [
        {"username": f"tool_generator_{n:06d}", "password": "x"} for n in range(1, users + 1)],
        "urls": [{"path": "/my/", "name": "dashboard"}]}, STEP_KINDS)


def run_virtually(users: int, site=None, clock=None, during=None, **settings) -> dict:
    """One load run on a virtual clock; ``during(clock, run)`` may schedule events on it."""
    clock = clock or VirtualClock()
    site = site or VirtualMoodle(clock)
    run = LoadRun(config(users), RunSettings(**{"progress": 0, **settings}), Printer(quiet=True),
                  clock=clock, http=site)
    if during is not None:
        during(clock, run)
    asyncio.run(clock.run(run.run()))
    document = build_document(run, [], "digest").to_dict()  # the saved form, as a file holds it
    document["site"] = site
    return document


# ---- the timeline is arithmetic

def test_position_i_falls_due_at_start_plus_i_intervals():
    timeline = Timeline.of_run(100.0, rpm=600, seconds=10)
    assert timeline.count == 100
    assert [timeline.due(i) for i in (0, 1, 99)] == [100.0, 100.1, 100.0 + 99 * 0.1]


def test_a_position_on_the_very_end_of_the_run_is_not_lost_to_float_error():
    assert Timeline.of_run(0.0, rpm=1200, seconds=3).count == 60


def test_positions_due_by_a_moment_count_only_what_fell_due():
    timeline = Timeline.of_run(10.0, rpm=60, seconds=10)
    assert timeline.due_by(9.99) == 0
    assert timeline.due_by(10.0) == 1
    assert timeline.due_by(14.5) == 5
    assert timeline.due_by(1e9) == 10


def test_shards_stripe_the_positions_and_add_up_to_the_whole_run():
    whole = Timeline.of_run(0.0, rpm=600, seconds=7)
    shards = [Timeline.of_run(0.0, rpm=600, seconds=7, shard=(k, 3)) for k in (1, 2, 3)]
    assert sorted(i for shard in shards for i in shard.positions()) == list(whole.positions())
    for moment in (0.0, 0.05, 1.0, 3.33, 6.9, 100.0):
        assert sum(shard.due_by(moment) for shard in shards) == whole.due_by(moment)


# ---- the scheduler on the virtual clock

def test_observed_rate_is_within_two_percent_of_the_target():
    document = run_virtually(10, rpm=1200, duration=20, concurrency=10)
    summary = document["summary"]
    assert abs(summary["req_per_min_observed"] - 1200) / 1200 <= 0.02
    assert summary["requests"] == 400


def test_a_long_run_takes_no_real_time_and_keeps_every_position():
    document = run_virtually(20, rpm=6000, duration=600, concurrency=20)
    assert document["summary"]["requests"] == 60000
    assert document["generator"]["tokens_unsent"] == 0


def test_requests_are_sent_when_they_fall_due_not_later():
    document = run_virtually(5, rpm=600, duration=10, concurrency=5)
    assert document["generator"]["tokens_waited_for_worker"] == 0
    assert document["summary"]["latency_ms_p99"] < 15  # 10 ms of service, no waiting


def test_no_user_ever_has_two_requests_in_flight():
    clock = VirtualClock()
    site = VirtualMoodle(clock, service_s=0.04)
    run_virtually(4, site=site, clock=clock, rpm=2400, duration=3, concurrency=50)
    assert site.overlaps == 0
    assert site.pages > 100


def test_a_stalled_server_shows_in_response_time_but_not_service_time():
    clock = VirtualClock()
    site = VirtualMoodle(clock)

    def stall_at_3_seconds(clock, run):
        site.stalls.append((clock.now() + 3.0, clock.now() + 5.0))

    document = run_virtually(2, site=site, clock=clock, during=stall_at_3_seconds, rpm=1200, duration=10,
                             concurrency=2)
    summary = document["summary"]
    assert summary["latency_ms_p95"] > 1000  # requests that were due during the stall waited
    assert summary["service_ms_p95"] < 200  # once sent, most were served quickly
    assert document["generator"]["tokens_waited_for_worker"] > 20


def test_a_generator_short_of_workers_reports_the_rate_it_really_reached():
    clock = VirtualClock()
    site = VirtualMoodle(clock, service_s=0.1)  # one worker serves 10 pages a second
    document = run_virtually(1, site=site, clock=clock, rpm=1200, duration=3, concurrency=1)
    assert 450 <= document["summary"]["req_per_min_observed"] <= 650
    assert document["summary"]["requests"] == 60  # the backlog was still worked off and measured
    assert document["summary"]["latency_ms_p99"] > 2000  # and its waiting shows in the response time


def test_a_backlog_gets_only_the_drain_time_after_the_schedule():
    clock = VirtualClock()
    site = VirtualMoodle(clock, service_s=1.0)
    document = run_virtually(1, site=site, clock=clock, rpm=600, duration=5, concurrency=1, drain=2)
    assert document["summary"]["requests"] < 10
    assert document["generator"]["tokens_unsent"] + document["summary"]["requests"] == 50


def test_a_paused_generator_drops_what_fell_due_instead_of_bursting():
    def pause_at_2_5_seconds(clock, run):
        clock.call_at(clock.now() + 2.5, clock.pause, 2.0)

    document = run_virtually(5, during=pause_at_2_5_seconds, rpm=600, duration=6, concurrency=5)
    dropped = document["generator"]["tokens_dropped"]
    assert 15 <= dropped <= 25  # ~2 s at 10 requests/s
    assert document["summary"]["requests"] == 60 - dropped


def test_stop_ends_the_schedule_and_what_was_due_but_unsent_is_counted():
    def stop_at_4_seconds(clock, run):
        clock.call_at(clock.now() + 4.0, run.stop)

    document = run_virtually(5, during=stop_at_4_seconds, rpm=600, duration=10, concurrency=5)
    assert 35 <= document["summary"]["requests"] <= 45
    assert math.isclose(document["metadata"]["measured_seconds"], 3.95, abs_tol=0.1)


def test_warmup_requests_run_but_are_not_measured():
    clock = VirtualClock()
    site = VirtualMoodle(clock)
    document = run_virtually(5, site=site, clock=clock, rpm=600, duration=5, warmup=2, concurrency=5)
    assert site.pages == 5 + 70  # each login lands on a page, then 7 s at 10 requests/s
    assert document["summary"]["requests"] == 50
