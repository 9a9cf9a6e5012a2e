"""Journeys: what one user does step by step (a page, a form submitted from it, a
web-service call, the logout), walked one timeline position at a time.

Each position of the timeline is one step of some user's journey; the user's next
position is their next step, so a journey keeps the open-loop schedule, the seed and the
one-request-per-session rule.  A page's browser calls (the service.php requests its
JavaScript makes) follow the page at once, as a browser sends them, and are recorded in
rows of their own."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from moodleload.config import LOGIN_STEP, Call, Config, Step, fill, fill_args
from moodleload.load.plan import entry_weights, pick_entry, unit_interval
from moodleload.site.forms import (
    browser_calls,
    error_page,
    find_form,
    find_sesskey,
    form_errors,
    multipart,
    service_failure,
    service_request,
    take,
)
from moodleload.site.httpclient import Body, HttpError
from moodleload.site.moodle import (
    REDIRECT_STATUSES,
    BadRedirect,
    LoginFailed,
    RedirectLoop,
    Session,
    fetch,
    is_login_page,
    judge,
    login,
    parse_footer,
    redirect_target,
)
from moodleload.site.walk import Walk

SERVICE_PATH = "/lib/ajax/service.php"
PARSE_INLINE_UP_TO = 512 * 1024  # bytes of a page whose form is read on the event loop (Moodle's are ~250 KB)
SERVICE_HEADERS = (("X-Requested-With", "XMLHttpRequest"), ("Accept", "application/json, text/javascript, */*; q=0.01"))
TAKE_DRAWS = 1000  # draw numbers for take: far from the parameters' draws at a journey's start


@dataclass
class Outcome:
    """One request's result, for the recorder: its row, and either a failure kind or its times."""

    name: str
    failure: str | None = None
    sent: float = 0.0
    finished: float = 0.0
    redirected_to: str | None = None
    footer: dict | None = None
    counts: str | None = None
    own_start: bool = False  # a browser call: measured from its own send, not from the step's due time


def midnight_utc(now: float) -> int:
    return int(now // 86400 * 86400)


class JourneyRunner:
    """Runs steps for a LoadRun: ``run`` gives the HTTP client, config, settings and clock."""

    def __init__(self, run):
        self.run = run
        self.config: Config = run.config
        self.seed = run.settings.seed
        self.timeout = run.settings.request_timeout
        self.weights = entry_weights(self.config)

    async def step(self, session: Session, index: int) -> list:
        """The user's next step at timeline position ``index``: a list of Outcomes."""
        walk = session.walk
        if walk is None:
            walk = session.walk = Walk()
        if walk.logged_out:
            return [await self._login(session, walk)]
        if walk.journey is None:
            kind, number, chosen = pick_entry(self.config, self.seed, index, self.weights)
            if kind == "url":
                spec = self.config.urls[number]
                return [await self._page(session, walk, Step(spec.name, "page", path=chosen), chosen, index, False)]
            walk.journey, walk.step, walk.values = self.config.journeys[number], 0, dict(chosen)
        journey = walk.journey
        step = journey.steps[walk.step]
        walk.step += 1
        values = {**walk.values, "sesskey": session.sesskey or "", "username": session.user.username,
                  "position": index}
        outcomes = await STEP_RUNNERS[step.kind](self, session, walk, step, values, index)
        if outcomes[0].failure is not None or walk.step >= len(journey.steps):
            walk.end()  # a failed step leaves the rest of the journey nothing to stand on
        return outcomes

    # ---- the kinds of step: each runner takes (session, walk, step, values, index) and gives its outcomes

    async def _page_step(self, session: Session, walk: Walk, step: Step, values: dict, index: int) -> list:
        outcomes = [await self._page(session, walk, step, fill(step.path, values), index, True)]
        if outcomes[0].failure is None and step.calls:
            outcomes += await self._calls(session, walk, step, values)
        return outcomes

    async def _submit_step(self, session: Session, walk: Walk, step: Step, values: dict, index: int) -> list:
        return [await self._submit(session, walk, step, values, index)]

    async def _call_step(self, session: Session, walk: Walk, step: Step, values: dict, index: int) -> list:
        assert step.call is not None  # a call step has its call (config._call_step)
        return [await self._call(session, step.call, values, step.name, own_start=False)]

    async def _logout_step(self, session: Session, walk: Walk, step: Step, values: dict, index: int) -> list:
        return [await self._logout(session, walk, step)]

    async def _get(self, session: Session, url: str, name: str, *, form=None, follow: bool = True):
        """(fetched, outcome): the outcome holds a failure when the request itself failed."""
        sent = self.run.clock.now()
        try:
            fetched = await fetch(self.run.http, session, url, timeout=self.timeout, form=form, follow=follow)
        except (asyncio.TimeoutError, HttpError, RedirectLoop) as error:
            return None, Outcome(name, self.run.request_failed(error, url), sent)
        return fetched, Outcome(name, None, sent, self.run.clock.now())

    def _judge_page(self, session: Session, fetched, outcome: Outcome) -> Outcome:
        outcome.failure, outcome.redirected_to = judge(fetched, self.run.login_url_path)
        if outcome.failure == "session_lost":
            session.needs_login = True
        elif outcome.failure is None:
            outcome.footer = parse_footer(fetched.body)
        return outcome

    async def _page(self, session: Session, walk: Walk, step: Step, path: str, index: int,
                    in_journey: bool) -> Outcome:
        fetched, outcome = await self._get(session, self.config.base_url + path, step.name)
        if fetched is None:
            return outcome
        outcome = self._judge_page(session, fetched, outcome)
        if outcome.failure is None and in_journey:
            sesskey = find_sesskey(fetched.body)
            if sesskey:
                session.sesskey = sesskey
            walk.page, walk.page_url = fetched.body, fetched.url
            for number, (variable, pattern) in enumerate(step.takes):
                value = take(fetched.body, pattern, unit_interval(self.seed, index, TAKE_DRAWS + number))
                if value is None:
                    outcome.failure = f"no_{variable}"  # the page has nothing the next steps could use
                    return outcome
                walk.values[variable] = int(value) if value.isascii() and value.isdigit() else value
            outcome.counts = step.counts
        return outcome

    async def _calls(self, session: Session, walk: Walk, step: Step, values: dict) -> list:
        if step.calls == "browser":
            calls = [Call(name, args, name) for name, args in
                     browser_calls(walk.page, walk.page_url, midnight_utc(time.time()), walk.seen_courses)]
        else:
            calls = list(step.calls)  # type: ignore[call-overload]  # a tuple of Call where not "browser"
        outcomes = []
        for call in calls:
            outcome = await self._call(session, call, values, call.name, own_start=True)
            outcomes.append(outcome)
            if outcome.failure == "session_lost":
                break
        return outcomes

    async def _call(self, session: Session, call: Call, values: dict, name: str, own_start: bool) -> Outcome:
        """A web-service call the way core/ajax makes it: a JSON POST to service.php with the
        session key in the URL.  Moodle answers errors with HTTP 200: the JSON says."""
        if not session.sesskey:
            return Outcome(name, "no_sesskey", self.run.clock.now(), own_start=own_start)
        query = urlencode({"sesskey": session.sesskey, "info": call.methodname})
        body = Body("application/json", service_request(call.methodname, fill_args(call.args, values)),
                    SERVICE_HEADERS)
        fetched, outcome = await self._get(session, f"{self.config.base_url}{SERVICE_PATH}?{query}", name,
                                           form=body, follow=False)
        outcome.own_start = own_start
        if fetched is None:
            return outcome
        if fetched.status in REDIRECT_STATUSES and "/login/" in fetched.location:
            session.needs_login = True
            outcome.failure = "session_lost"
        elif fetched.status != 200:
            outcome.failure = f"http_{fetched.status}"
        else:
            failure = service_failure(fetched.body)
            if failure is not None:
                outcome.failure = f"ws_{failure}"
                if failure in ("servicerequireslogin", "requireloginerror"):
                    session.needs_login = True
        return outcome

    async def _submit(self, session: Session, walk: Walk, step: Step, values: dict, index: int) -> Outcome:
        """The form of the page before, as a browser submits it: every field (hidden ones,
        the session key, draft item ids) with the config's values over them.  A good
        submission is a redirect (to ``expect`` when given); a form shown again with errors is
        a failure named after the form."""
        if len(walk.page) > PARSE_INLINE_UP_TO:
            # A form of megabytes takes a second of Python to read: in a thread, the event loop
            # (and every other user's schedule) runs on meanwhile.
            form = await asyncio.to_thread(find_form, walk.page, step.form)
        else:
            form = find_form(walk.page, step.form)
        if form is None:
            return Outcome(step.name, f"no_form_{step.form}", self.run.clock.now())
        pairs = form.submission({name: fill(template, values) for name, template in step.fields}, step.button)
        try:
            action, action_origin = redirect_target(walk.page_url, form.action or walk.page_url)
        except BadRedirect:
            return Outcome(step.name, "bad_form_action", self.run.clock.now())
        if action_origin != session.origin:  # the user's cookies never go to another host
            return Outcome(step.name, "offsite_form", self.run.clock.now(), redirected_to=urlsplit(action).netloc)
        body: list | Body = pairs
        if form.enctype.startswith("multipart/form-data"):
            data, content_type = multipart(pairs, f"----moodleload{index:016x}")
            body = Body(content_type, data)
        fetched, outcome = await self._get(session, action, step.name, form=body, follow=False)
        if fetched is None:
            return outcome
        if fetched.status in REDIRECT_STATUSES and fetched.location:
            return await self._submitted(session, walk, step, action, fetched.location, outcome)
        if fetched.status == 200:
            outcome.failure = self._not_accepted(session, fetched.body, step)
        else:
            outcome.failure = f"http_{fetched.status}"
        return outcome

    async def _submitted(self, session: Session, walk: Walk, step: Step, action: str, location_header: str,
                         outcome: Outcome) -> Outcome:
        """A submission answered with a redirect: judged by where it leads, and followed there
        as a browser follows it when it stays on the site."""
        try:
            target, target_origin = redirect_target(action, location_header)
        except BadRedirect:
            outcome.failure = "bad_redirect"
            return outcome
        location = urlsplit(target).path
        if target_origin != session.origin:  # not followed: the user's cookies stay on the site
            outcome.failure, outcome.redirected_to = "offsite_redirect", urlsplit(target).netloc
        elif location == self.run.login_url_path:
            session.needs_login = True
            outcome.failure = "session_lost"
        elif step.expect and location != step.expect:
            outcome.failure, outcome.redirected_to = "unexpected_redirect", location
        else:
            # The browser follows to the page it was sent to: part of the step, as it is for the user.
            landing, landed = await self._get(session, target, step.name)
            outcome.finished, outcome.redirected_to = landed.finished, location
            if landing is None:
                outcome.failure = landed.failure
                return outcome
            judged = self._judge_page(session, landing, Outcome(step.name))
            outcome.failure, outcome.footer = judged.failure, judged.footer
            if outcome.failure is None:
                outcome.counts = step.counts
                walk.page, walk.page_url = landing.body, landing.url
        return outcome

    def _not_accepted(self, session: Session, body: bytes, step: Step) -> str:
        """Why a submission answered 200 (the page again, not a redirect) failed."""
        if is_login_page(body, self.run.login_url_path):
            session.needs_login = True
            return "session_lost"
        code = error_page(body)
        if code:
            return f"error_{code}"
        if form_errors(body):
            return f"invalid_{step.form}"
        return "not_accepted"

    async def _logout(self, session: Session, walk: Walk, step: Step) -> Outcome:
        """Moodle's logout link (with the session key); the next journey logs in again."""
        if not session.sesskey:
            return Outcome(step.name, "no_sesskey", self.run.clock.now())
        url = f"{self.config.base_url}/login/logout.php?sesskey={session.sesskey}"
        fetched, outcome = await self._get(session, url, step.name, follow=False)
        if fetched is None:
            return outcome
        if fetched.status in REDIRECT_STATUSES:
            walk.logged_out = True
            session.sesskey = None
        else:
            outcome.failure = "not_logged_out" if fetched.status == 200 else f"http_{fetched.status}"
        return outcome

    async def _login(self, session: Session, walk: Walk) -> Outcome:
        sent = self.run.clock.now()
        try:
            await login(self.run.http, session, self.config, self.run.settings.login_timeout, self.run.say)
        except LoginFailed as failure:
            self.run.report_request_error(f"login of {session.user.username} failed: {failure}")
            return Outcome(LOGIN_STEP.name, "login", sent)
        walk.logged_out = False
        return Outcome(LOGIN_STEP.name, None, sent, self.run.clock.now())


# Step.kind -> how a step of that kind is run (config.STEP_KINDS parses them).
STEP_RUNNERS = {"page": JourneyRunner._page_step, "submit": JourneyRunner._submit_step,
                "call": JourneyRunner._call_step, "logout": JourneyRunner._logout_step}
