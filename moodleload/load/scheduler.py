"""Running the load: log users in, then release requests on the timeline to workers."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from moodleload.config import Config, User
from moodleload.console import Printer, clock_text, fmt, round_or_none
from moodleload.exits import UsageError
from moodleload.load.clock import Clock, PauseDetector, RealClock, wait_all, wake
from moodleload.load.journeys import JourneyRunner
from moodleload.load.machine import cpu_counters, summarise
from moodleload.load.plan import PlannedRequest, Timeline, plan_requests, user_order
from moodleload.load.recording import Recorder
from moodleload.results.histogram import Histogram
from moodleload.results.sections import Machine
from moodleload.shards import start_at_text
from moodleload.site.clients import http_client
from moodleload.site.httpclient import DEFAULT_MAX_BODY, Client, HttpError
from moodleload.site.moodle import (
    LoginFailed,
    RedirectLoop,
    Session,
    failure_of,
    fetch,
    judge,
    login,
    origin_of,
    parse_footer,
)

if TYPE_CHECKING:
    from moodleload.load.metrics import Scraper
    from moodleload.load.statements import Watcher


@dataclass
class RunSettings:
    rpm: float
    duration: float
    concurrency: int = 20
    warmup: float = 0.0
    seed: int = 1
    insecure: bool = False
    login_timeout: float = 20.0
    request_timeout: float = 60.0
    progress: float = 30.0
    blocks: int = 20
    shard: tuple[int, int] = (1, 1)
    grace: float = 5.0  # how long requests in flight may finish after a stop
    drain: float = 30.0  # how long a backlog may still be worked off after the schedule ends
    http_client: str = "httptools"  # or "aiohttp"
    max_body: int = DEFAULT_MAX_BODY  # bytes of an answer, as sent and as decoded
    login_retry_pause: float = 2.0  # before the one retry of a login that met a server error
    start_at: float | None = None  # --start-at, seconds since the epoch: where the schedule opens


class LoadRun:
    """Logs users in, then runs the schedule.  ``stop()`` ends it early (signals)."""

    def __init__(self, config: Config, settings: RunSettings, say: Printer, *, clock: Clock | None = None,
                 http: Client | None = None):
        self.config = config
        self.settings = settings
        self.say = say
        self.stopping = asyncio.Event()
        self.interrupted_by: int | None = None
        self.login_failures: Counter[str] = Counter()
        self.logins_ok = 0
        self.sessions: list[Session] = []
        shard, shards = settings.shard
        self.shard_users = [u for i, u in enumerate(user_order(config.users, settings.seed))
                            if i % shards == shard - 1]
        self.block_seconds = settings.duration / settings.blocks
        # At most ~600 points on the timeline, whatever the duration: the report stays small.
        self.timeline_seconds = max(1.0, settings.duration / 600.0)
        self.recorder = Recorder(config, settings.blocks, self.block_seconds, self.timeline_seconds)
        self.started_at: datetime | None = None
        self.start_offset_s: float | None = None  # --start-at: how late this process opened the schedule
        self.measured_seconds = 0.0
        self.cpu_seconds = 0.0
        self.machine: Machine | None = None  # the machine beside the run (machine.py)
        self.effective_concurrency = settings.concurrency
        self.run_seconds = 0.0
        self.window_end = math.inf
        self.login_url_path = urlsplit(config.base_url + config.login_path).path
        self.clock: Clock = clock or RealClock()
        self.http: Client | None = http  # None: a client of settings.http_client is made, and closed at the end
        self.site_origin = origin_of(config.base_url)
        self.login_retries = 0
        self.fault: BaseException | None = None  # an error of the tool itself: the run stops, nothing is judged
        self._sleepers: set[asyncio.Future[None]] = set()  # workers waiting for their due time
        self.timeline: Timeline | None = None
        self.measure_from = math.inf
        self.give_up_at = math.inf
        self.taken = 0  # positions taken by workers (sent, dropped, or being sent)
        self.pauses = PauseDetector(self.clock)
        # Told when the measured window opens and after its last request ended, off the event
        # loop (statements.Watcher: the database's statement statistics either side of it).
        self.window_watch: Watcher | None = None
        self.metrics_scraper: Scraper | None = None  # the servers' exporters, scraped while the schedule runs

    def stop(self, signum: int | None = None) -> None:
        self.window_end = min(self.window_end, self.clock.now())
        if self.interrupted_by is None and signum is not None:
            self.interrupted_by = signum
            self.say(f"[INFO] {signal.Signals(signum).name}: stopping the schedule, finishing requests in flight")
        self.stopping.set()
        for waiter in self._sleepers:  # workers waiting for their next due time
            wake(waiter)

    async def run(self) -> None:
        # One client and pool for all users; each Session carries its own cookies.
        own_client = self.http is None
        if self.http is None:
            authorization = (self.site_origin, self.config.basic_auth) if self.config.basic_auth else None
            self.http = http_client(self.settings.http_client, insecure=self.settings.insecure,
                                    max_body=self.settings.max_body, authorization=authorization)
        client = self.http
        try:
            await self._login_all()
            if self.sessions and not self.stopping.is_set():
                await self._run_schedule()
        finally:
            if own_client:
                await client.close()

    @property
    def client(self) -> Client:
        """The run's HTTP client, from run() on."""
        assert self.http is not None  # run() makes one before the first request
        return self.http

    async def _login_all(self) -> None:
        users = self.shard_users
        self.say(f"[INFO] Logging in {len(users)} users...")
        gate = asyncio.Semaphore(max(1, self.settings.concurrency))
        logins = {asyncio.ensure_future(self._login_one(user, gate)) for user in users}
        pending = await wait_all(self.clock, logins, None, until=self.stopping)
        if pending:  # stopped while logging in: what is in flight gets the grace, no more
            pending = await wait_all(self.clock, pending, self.settings.grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in logins:
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise error
        # Keep the seeded order whatever order the logins finished in.
        rank = {user.username: i for i, user in enumerate(users)}
        self.sessions.sort(key=lambda s: rank[s.user.username])
        self.say(f"[INFO] {self.logins_ok} of {len(users)} users logged in"
                 + (f" ({self.login_retries} after a retry)" if self.login_retries else "")
                 + "".join(f"; {reason}: {count} users" for reason, count in sorted(self.login_failures.items())
                           if count > 1))

    async def _login_one(self, user: User, gate: asyncio.Semaphore) -> None:
        """Log one user in; a server error or a reset is tried once more after a pause (a
        site just restarted by the bisect step may answer 500 or 404 to a few logins)."""
        async with gate:
            for attempt in (1, 2):
                if self.stopping.is_set():
                    return
                session = Session(user, self.site_origin)
                try:
                    await login(self.client, session, self.config, self.settings.login_timeout, self.say)
                except LoginFailed as failure:
                    if failure.retryable and attempt == 1:
                        self.say(f"[WARN] Login of {user.username} failed ({failure}): trying again in "
                                 f"{self.settings.login_retry_pause:g} s")
                        await self.clock.sleep(self.settings.login_retry_pause)
                        continue
                    self.login_failures[failure.reason] += 1
                    # one line per kind of failure: forty users with one wrong password are one mistake
                    if self.login_failures[failure.reason] == 1:
                        self.say(f"[ERROR] Login failed for user {user.username}: {failure}")
                    return
                if attempt == 2:
                    self.login_retries += 1
                self.logins_ok += 1
                self.sessions.append(session)
                return

    async def _run_schedule(self) -> None:
        """The token bucket, lazily: each free worker takes the next position of the plan and
        waits for its due time; a token already due when taken waited for a free worker.
        Nothing queues up, so memory stays flat however far the site falls behind."""
        settings, clock = self.settings, self.clock
        concurrency = min(settings.concurrency, len(self.sessions))
        if concurrency < settings.concurrency:
            self.say(f"[WARN] --concurrency {settings.concurrency} capped at {concurrency}: one request "
                     f"in flight per user session (Moodle locks the session), {len(self.sessions)} users "
                     f"logged in")
        self.effective_concurrency = concurrency
        total_seconds = settings.warmup + settings.duration
        start = clock.now() + 0.05
        if settings.start_at is not None:
            opened = await self._wait_for_start(settings.start_at)
            if opened is None:  # stopped while waiting: nothing was due yet
                return
            start = opened
        cpu_start = clock.cpu()
        machine_start = cpu_counters()
        timeline = self.timeline = Timeline.of_run(start, settings.rpm, total_seconds, settings.shard)
        self.started_at = datetime.now(timezone.utc)
        self.measure_from = timeline.start + settings.warmup
        self.window_end = min(self.window_end, self.measure_from + settings.duration)
        # After the schedule, a backlog (too few workers, a saturated site) gets a bounded time.
        self.give_up_at = timeline.start + total_seconds + settings.drain
        if self.config.journeys:
            # What a position holds depends on where its user is in a journey: decided when it is sent.
            self.journeys = JourneyRunner(self)
            plan = enumerate(PlannedRequest(index, -1, "") for index in timeline.positions())
        else:
            plan = enumerate(plan_requests(self.config, settings.seed, timeline.count, start=settings.shard[0] - 1,
                                           step=settings.shard[1]))
        helpers = [asyncio.create_task(self.pauses.watch()), asyncio.create_task(self._sample_cpu()),
                   asyncio.create_task(self._progress())]
        if self.window_watch is not None:
            helpers.append(asyncio.create_task(self._watch_window()))
        if self.metrics_scraper is not None:
            helpers.append(asyncio.create_task(self.metrics_scraper.run(clock, self.measure_from)))
        workers = {asyncio.create_task(self._worker(plan)) for _ in range(concurrency)}
        await self._shut_down(workers, helpers, total_seconds + settings.drain + 1.0)
        if self.window_watch is not None:  # it knows whether the window ever opened
            await asyncio.to_thread(self.window_watch.window_closed)
        self.recorder.tokens_unsent += max(0, timeline.due_by(min(clock.now(), timeline.start + total_seconds))
                                           - self.taken)
        self.measured_seconds = max(0.0, min(self.window_end, self.measure_from + settings.duration)
                                    - self.measure_from)
        window_end = self.measure_from + self.measured_seconds
        # What the run was asked to send in its window, and how long the generator itself
        # stood still there: the verdict's own trust signals (verdict.delivery_problems).
        self.recorder.due_in_window = max(0, timeline.due_by(window_end - 1e-9)
                                          - timeline.due_by(self.measure_from - 1e-9))
        self.recorder.paused_seconds = self.pauses.seconds_within(self.measure_from, window_end)
        self.cpu_seconds = clock.cpu() - cpu_start
        self.run_seconds = clock.now() - timeline.start
        self.machine = summarise(machine_start, cpu_counters(), self.run_seconds, self.cpu_seconds)

    async def _wait_for_start(self, start_at: float) -> float | None:
        """Wait for --start-at by the wall clock (the one shards on several machines share);
        the clock reading of T0, or None when stopped first.  How late this process woke is
        kept (``start_offset_s``): a merge refuses shards that opened too far apart."""
        ahead = start_at - time.time()
        if ahead <= 0:
            raise UsageError(f"--start-at {start_at_text(start_at)}: the logins ended {-ahead:.1f} s after it, so "
                             f"this process would start late; give the logins more time (a later --start-at)")
        self.say(f"[INFO] waiting {ahead:.1f} s for --start-at {start_at_text(start_at)}")
        sleeping = asyncio.ensure_future(self.clock.sleep(ahead))
        stopped = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({sleeping, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeping, stopped):
            task.cancel()
        await asyncio.gather(sleeping, stopped, return_exceptions=True)
        if self.stopping.is_set():
            return None
        self.start_offset_s = time.time() - start_at
        # Position 0 falls due at T0 itself: a late wake-up is the first requests' lateness.
        return self.clock.now() - self.start_offset_s

    async def _watch_window(self) -> None:
        await self.clock.sleep(max(0.0, self.measure_from - self.clock.now()))
        if self.window_watch is not None:
            await asyncio.to_thread(self.window_watch.window_opens)

    def _offset(self, due: float) -> float | None:
        """Seconds into the measured window, or None for the warm-up (executed, not counted)."""
        return due - self.measure_from if due >= self.measure_from else None

    async def _worker(self, plan: Iterator[tuple[int, PlannedRequest]]) -> None:
        """Take the next position of the shared plan, wait for its due time, send it; again.
        An error of the tool itself stops the whole run: it must never pass for the site's."""
        try:
            await self._work(plan)
        except Exception as error:  # noqa: BLE001  kept, and raised again by the command
            if self.fault is None:
                self.fault = error
            self.stop()

    async def _work(self, plan: Iterator[tuple[int, PlannedRequest]]) -> None:
        clock, recorder, sessions, timeline = self.clock, self.recorder, self.sessions, self.timeline
        assert timeline is not None  # set when the schedule starts, before any worker
        for local, planned in plan:
            self.taken += 1
            due = timeline.due(planned.index)
            measured = due >= self.measure_from
            if clock.now() >= due:
                if measured:
                    recorder.tokens_waited += 1
            else:
                # Sleep to an absolute time, never "interval after the last one": no drift.
                # One wake-up per request (uvloop's timers have 1 ms resolution, and
                # re-checking sub-millisecond remainders would spin); stop() wakes it early.
                if not self.stopping.is_set():
                    await self._sleep_until(due)
                if measured and not self.stopping.is_set():
                    recorder.loop_lag.record((clock.now() - due) * 1000.0)
            if self.stopping.is_set() or clock.now() > self.give_up_at:
                self.taken -= 1
                return
            if self.pauses.covers(due):
                # The generator itself was stopped (SIGSTOP, a long GC, a blocked loop):
                # firing what fell due meanwhile would be a burst no real user makes.
                if measured:
                    recorder.tokens_dropped += 1
                continue
            await self._perform(planned, due, sessions[local % len(sessions)])

    async def _sleep_until(self, moment: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        timer = self.clock.call_at(moment, wake, waiter)
        self._sleepers.add(waiter)
        try:
            await waiter
        finally:
            self._sleepers.discard(waiter)
            timer.cancel()

    async def _sample_cpu(self) -> None:
        """The generator's own CPU use per timeline point: a trust signal for the report."""
        clock, recorder = self.clock, self.recorder
        last_cpu, index = clock.cpu(), 0
        while True:
            moment = self.measure_from + (index + 1) * self.timeline_seconds
            await clock.sleep(moment - clock.now())
            cpu = clock.cpu()
            recorder.point(index * self.timeline_seconds).cpu_seconds += cpu - last_cpu
            last_cpu, index = cpu, index + 1

    async def _shut_down(self, workers: set[asyncio.Task[None]], helpers: Sequence[asyncio.Future[Any]],
                         timeout: float) -> None:
        """Wait for the workers to finish the plan; after a stop (or past the time a backlog
        gets), requests in flight may finish within the grace, the rest are cut off."""
        pending = await wait_all(self.clock, workers, timeout, until=self.stopping)
        if self.stopping.is_set() or pending:
            pending = await wait_all(self.clock, pending, self.settings.grace) if pending else set()
            for task in pending:
                task.cancel()
            self.taken -= len(pending)
        for helper in helpers:
            helper.cancel()
        if hasattr(self.say, "end_status"):
            self.say.end_status()

    async def _perform(self, planned: PlannedRequest, due: float, session: Session) -> None:
        if planned.url_index < 0:
            await self._perform_step(planned.index, due, session)
            return
        clock = self.clock.now
        spec = self.config.urls[planned.url_index]
        recorder = self.recorder
        measured = self._offset(due)
        async with session.lock:
            if session.needs_login and not await self._relogin(session, spec.name, measured):
                return
            sent = self._count_sent(due, measured)
            sent_offset = sent - due + measured if measured is not None else None
            try:
                fetched = await fetch(self.client, session, self.config.base_url + planned.path,
                                      timeout=self.settings.request_timeout)
            except (asyncio.TimeoutError, HttpError, RedirectLoop) as error:
                recorder.record(spec.name, measured, failure=self.request_failed(error, planned.path),
                                sent_offset=sent_offset)
                return
            finished = clock()
        failure, redirected_to = judge(fetched, self.login_url_path)
        if failure is None:
            recorder.record(spec.name, measured, response_ms=(finished - due) * 1000.0,
                            service_ms=(finished - sent) * 1000.0, redirected_to=redirected_to,
                            footer=parse_footer(fetched.body), sent_offset=sent_offset)
            return
        if failure == "session_lost":  # expired or killed: not a success, and log in again
            session.needs_login = True
        recorder.record(spec.name, measured, failure=failure, redirected_to=redirected_to, sent_offset=sent_offset)

    def _count_sent(self, due: float, measured: float | None) -> float:
        """The moment a position is sent, counted for the rate and its lateness."""
        sent = self.clock.now()
        if measured is not None:
            recorder = self.recorder
            recorder.sent += 1
            if sent <= self.window_end:
                recorder.sent_in_window += 1
            recorder.lateness.record((sent - due) * 1000.0)
        return sent

    def request_failed(self, error: BaseException, what: str) -> str:
        """Say (within the limit) why a request got no answer; its failure kind."""
        if isinstance(error, asyncio.TimeoutError):
            self.report_request_error(f"timeout after {self.settings.request_timeout:g} s: {what}")
        else:
            self.report_request_error(f"{type(error).__name__}: {error} ({what})")
        return failure_of(error)

    async def _relogin(self, session: Session, row: str, measured: float | None) -> bool:
        """Log a user whose session was lost in again (under its lock); a failure is counted
        in ``row`` and the request is not sent."""
        try:
            await login(self.client, session, self.config, self.settings.login_timeout, self.say)
        except LoginFailed as failure:
            self.report_request_error(f"re-login of {session.user.username} failed: {failure}")
            self.recorder.record(row, measured, failure="login")
            return False
        session.needs_login = False
        session.relogins += 1
        return True

    async def _perform_step(self, index: int, due: float, session: Session) -> None:
        """One step of the user's journey (journeys.py), recorded request by request."""
        recorder = self.recorder
        measured = self._offset(due)
        async with session.lock:
            if session.needs_login and not await self._relogin(session, "login", measured):
                return
            self._count_sent(due, measured)
            outcomes = await self.journeys.step(session, index)
        for outcome in outcomes:
            sent_offset = outcome.sent - due + measured if measured is not None else None
            if outcome.failure is not None:
                recorder.record(outcome.name, measured, failure=outcome.failure, redirected_to=outcome.redirected_to,
                                sent_offset=sent_offset, extra=outcome.own_start)
                continue
            start = outcome.sent if outcome.own_start else due
            recorder.record(outcome.name, measured, response_ms=(outcome.finished - start) * 1000.0,
                            service_ms=(outcome.finished - outcome.sent) * 1000.0,
                            redirected_to=outcome.redirected_to, footer=outcome.footer, sent_offset=sent_offset,
                            extra=outcome.own_start)
            if outcome.counts and measured is not None:
                recorder.work_done[outcome.counts] += 1

    def report_request_error(self, message: str) -> None:
        recorder = self.recorder
        if recorder.request_errors_printed < 20:
            recorder.request_errors_printed += 1
            self.say(f"[Request error: {message}]")
        else:
            recorder.request_errors_suppressed += 1

    async def _progress(self) -> None:
        """[PROGRESS] lines every --progress seconds, and on a terminal a live status line."""
        every = self.settings.progress
        live = getattr(self.say, "live", False)
        if every <= 0 and not live:
            return
        tick = 1.0 if live else every
        total = self.settings.warmup + self.settings.duration
        recorder = self.recorder
        overall, since_report = Histogram(), Histogram()
        done_total = failed_total = done_since = 0
        assert self.timeline is not None  # set when the schedule starts, before any worker
        clock, start, measure_from = self.clock.now, self.timeline.start, self.measure_from
        last_report = clock()
        while True:
            await self.clock.sleep(tick)
            now = clock()
            chunk, recorder.interval = recorder.interval, Histogram()
            done, recorder.interval_done = recorder.interval_done, 0
            failed, recorder.interval_failed = recorder.interval_failed, 0
            overall.merge(chunk)
            since_report.merge(chunk)
            done_total += done
            failed_total += failed
            done_since += done
            measured = max(now - measure_from, 1e-9)
            rpm_overall = round(done_total / measured * 60.0, 1) if now > measure_from else 0.0
            if live:
                elapsed = min(now - start, total)
                phase = "warm-up" if now < measure_from else "measuring"
                self.say.status(f"[{phase}] {clock_text(elapsed)} / {clock_text(total)} "
                                f"({clock_text(total - elapsed)} left) | "
                                f"{rpm_overall:.0f} of {self.settings.rpm:g} RPM | sent {recorder.sent}, ok "
                                f"{done_total - failed_total}, failed {failed_total} | p95 "
                                f"{fmt(overall.percentile(95), '.0f')} ms")
            if every > 0 and now - last_report >= every - tick / 2:  # timers may fire a little early
                snapshot = {
                    "elapsed_s": round(now - start, 1),
                    "phase": "warmup" if now < measure_from else "measure",
                    "sent": recorder.sent, "ok": done_total - failed_total, "failed": failed_total,
                    "rpm_interval": round(done_since / (now - last_report) * 60.0, 1),
                    "rpm_overall": rpm_overall,
                    "latency_ms_p50_interval": round_or_none(since_report.percentile(50)),
                    "latency_ms_p95_interval": round_or_none(since_report.percentile(95)),
                    "latency_ms_p95_overall": round_or_none(overall.percentile(95)),
                }
                self.say(f"[PROGRESS] {json.dumps(snapshot)}")
                since_report, done_since, last_report = Histogram(), 0, now
