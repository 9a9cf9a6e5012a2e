"""Journeys: what one user does step by step, walked one timeline position at a time.

Each position of the timeline is one step of some user's journey; the user's next
position is their next step, so a journey keeps the open-loop schedule, the seed and the
one-request-per-session rule.  The kinds of step (a page, a form submitted from it, a
web-service call, the logout) are the steps wing's; this runner is the context they run in:
the clock, the timeouts, how an answer is judged, the seeded draws, and the login after a
logout."""

from __future__ import annotations

import asyncio
from typing import Protocol

from moodleload.config import LOGIN_ROW, Config
from moodleload.console import Printer
from moodleload.load.clock import Clock
from moodleload.load.plan import entry_weights, pick_entry, unit_interval
from moodleload.site.httpclient import Client, Form, HttpError
from moodleload.site.moodle import Fetched, LoginFailed, RedirectLoop, Session, fetch, judge, login, parse_footer
from moodleload.site.walk import Walk
from moodleload.steps.base import Outcome, StepKind
from moodleload.steps.page import PageStep, visit


class RunSettings(Protocol):
    @property
    def seed(self) -> int: ...

    @property
    def request_timeout(self) -> float: ...

    @property
    def login_timeout(self) -> float: ...


class LoadRunParts(Protocol):
    """What the runner uses of the run it serves (scheduler.LoadRun, which imports this module)."""

    config: Config
    login_url_path: str
    clock: Clock
    http: Client | None  # set before the first step

    @property
    def settings(self) -> RunSettings: ...

    @property
    def say(self) -> Printer: ...

    def request_failed(self, error: BaseException, what: str) -> str: ...

    def report_request_error(self, message: str) -> None: ...


class JourneyRunner:
    """Runs steps for a LoadRun: ``run`` gives the HTTP client, config, settings and clock."""

    def __init__(self, run: LoadRunParts):
        self.run = run
        self.config: Config = run.config
        self.seed = run.settings.seed
        self.timeout = run.settings.request_timeout
        self.weights = entry_weights(self.config)

    async def step(self, session: Session, index: int) -> list[Outcome]:
        """The user's next step at timeline position ``index``: a list of Outcomes."""
        walk = session.walk
        if walk is None:
            walk = session.walk = Walk()
        if walk.logged_out:
            return [await self._login(session, walk)]
        if walk.journey is None:
            _, number, chosen = pick_entry(self.config, self.seed, index, self.weights)
            if isinstance(chosen, str):  # a URL of the config's urls, its path filled
                page = PageStep(name=self.config.urls[number].name, path=chosen)
                return [await visit(self, session, None, page, chosen, index)]
            walk.journey, walk.step, walk.values = self.config.journeys[number], 0, dict(chosen)
        journey = walk.journey
        step = journey.steps[walk.step]
        assert isinstance(step, StepKind)  # config reads journeys with the steps wing's kinds (steps.kinds)
        walk.step += 1
        values = {**walk.values, "sesskey": session.sesskey or "", "username": session.user.username,
                  "position": index}
        outcomes = await step.run(self, session, walk, values, index)
        if outcomes[0].failure is not None or walk.step >= len(journey.steps):
            walk.end()  # a failed step leaves the rest of the journey nothing to stand on
        return outcomes

    # ---- the context every step runs in (steps.base.StepContext)

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def login_url_path(self) -> str:
        return self.run.login_url_path

    def now(self) -> float:
        return self.run.clock.now()

    @property
    def http(self) -> Client:
        assert self.run.http is not None  # the run makes its client before its first step
        return self.run.http

    def unit(self, index: int, draw: int) -> float:
        return unit_interval(self.seed, index, draw)

    async def get(self, session: Session, url: str, name: str, *,
                  form: Form | None = None,
                  follow: bool = True) -> tuple[Fetched | None, Outcome]:
        sent = self.run.clock.now()
        try:
            fetched = await fetch(self.http, session, url, timeout=self.timeout, form=form, follow=follow)
        except (asyncio.TimeoutError, HttpError, RedirectLoop) as error:
            return None, Outcome(name, self.run.request_failed(error, url), sent)
        return fetched, Outcome(name, None, sent, self.run.clock.now())

    def judge_page(self, session: Session, fetched: Fetched, outcome: Outcome) -> Outcome:
        outcome.failure, outcome.redirected_to = judge(fetched, self.run.login_url_path)
        if outcome.failure == "session_lost":
            session.needs_login = True
        elif outcome.failure is None:
            outcome.footer = parse_footer(fetched.body)
        return outcome

    async def _login(self, session: Session, walk: Walk) -> Outcome:
        sent = self.run.clock.now()
        try:
            await login(self.http, session, self.config, self.run.settings.login_timeout, self.run.say)
        except LoginFailed as failure:
            self.run.report_request_error(f"login of {session.user.username} failed: {failure}")
            return Outcome(LOGIN_ROW, "login", sent)
        walk.logged_out = False
        return Outcome(LOGIN_ROW, None, sent, self.run.clock.now())


