"""A submit step: a form of the page before, submitted as a browser submits it, judged by
where it redirects, and followed there when it stays on the site."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from moodleload.config import StepSource, fill
from moodleload.site.forms import error_page, find_form, form_errors, multipart
from moodleload.site.httpclient import Body
from moodleload.site.moodle import REDIRECT_STATUSES, BadRedirect, Session, is_login_page, redirect_target
from moodleload.site.walk import Walk
from moodleload.steps.base import Outcome, StepContext, StepKind, Values
from moodleload.steps.page import PageStep

PARSE_INLINE_UP_TO = 512 * 1024  # bytes of a page whose form is read on the event loop (Moodle's are ~250 KB)


@dataclass(frozen=True, kw_only=True)
class SubmitStep(StepKind):
    KEY: ClassVar[str] = "submit"

    form: str  # the form's id on the page before
    fields: tuple[tuple[str, str], ...] = ()  # (name, template) pairs that replace the form's values
    button: str | None = None  # the submit button pressed (default the first)
    expect: str | None = None  # the path a good submission redirects to

    @classmethod
    def parse(cls, source: StepSource) -> SubmitStep:
        if not source.before or not isinstance(source.before[-1], PageStep):
            raise source.error(" submits a form, so the step before it must be the page holding it")
        form = source.raw["submit"]
        if not isinstance(form, str) or not form:
            raise source.error(".submit must be the form's id, e.g. \"mformforum\"")
        fields = source.raw.get("fields", {})
        if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
            raise source.error(".fields must map field names to strings")
        for value in fields.values():
            source.placeholders(value, ".fields")
        expect = source.raw.get("expect")
        if expect is not None and (not isinstance(expect, str) or not expect.startswith("/")):
            raise source.error(".expect must be the path a good submission redirects to")
        button = source.raw.get("button")
        if button is not None and not isinstance(button, str):
            raise source.error(".button must be the name of a submit button")
        return cls(name=source.name(f"{source.before[-1].name}: submit"), takes=source.takes,
                   counts=source.counts, form=form, fields=tuple(fields.items()), button=button, expect=expect)

    async def run(self, context: StepContext, session: Session, walk: Walk, values: Values,
                  index: int) -> list[Outcome]:
        return [await self._submit(context, session, walk, values, index)]

    async def _submit(self, context: StepContext, session: Session, walk: Walk, values: Values,
                      index: int) -> Outcome:
        """The form of the page before, as a browser submits it: every field (hidden ones,
        the session key, draft item ids) with the config's values over them.  A good
        submission is a redirect (to ``expect`` when given); a form shown again with errors is
        a failure named after the form."""
        if len(walk.page) > PARSE_INLINE_UP_TO:
            # A form of megabytes takes a second of Python to read: in a thread, the event loop
            # (and every other user's schedule) runs on meanwhile.
            form = await asyncio.to_thread(find_form, walk.page, self.form)
        else:
            form = find_form(walk.page, self.form)
        if form is None:
            return Outcome(self.name, f"no_form_{self.form}", context.now())
        pairs = form.submission({name: fill(template, values) for name, template in self.fields}, self.button)
        try:
            action, action_origin = redirect_target(walk.page_url, form.action or walk.page_url)
        except BadRedirect:
            return Outcome(self.name, "bad_form_action", context.now())
        if action_origin != session.origin:  # the user's cookies never go to another host
            return Outcome(self.name, "offsite_form", context.now(), redirected_to=urlsplit(action).netloc)
        body: list[tuple[str, str]] | Body = pairs
        if form.enctype.startswith("multipart/form-data"):
            data, content_type = multipart(pairs, f"----moodleload{index:016x}")
            body = Body(content_type, data)
        fetched, outcome = await context.get(session, action, self.name, form=body, follow=False)
        if fetched is None:
            return outcome
        if fetched.status in REDIRECT_STATUSES and fetched.location:
            return await self._submitted(context, session, walk, action, fetched.location, outcome)
        if fetched.status == 200:
            outcome.failure = self._not_accepted(context, session, fetched.body)
        else:
            outcome.failure = f"http_{fetched.status}"
        return outcome

    async def _submitted(self, context: StepContext, session: Session, walk: Walk, action: str,
                         location_header: str, outcome: Outcome) -> Outcome:
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
        elif location == context.login_url_path:
            session.needs_login = True
            outcome.failure = "session_lost"
        elif self.expect and location != self.expect:
            outcome.failure, outcome.redirected_to = "unexpected_redirect", location
        else:
            # The browser follows to the page it was sent to: part of the step, as it is for the user.
            landing, landed = await context.get(session, target, self.name)
            outcome.finished, outcome.redirected_to = landed.finished, location
            if landing is None:
                outcome.failure = landed.failure
                return outcome
            judged = context.judge_page(session, landing, Outcome(self.name))
            outcome.failure, outcome.footer = judged.failure, judged.footer
            if outcome.failure is None:
                outcome.counts = self.counts
                walk.page, walk.page_url = landing.body, landing.url
        return outcome

    def _not_accepted(self, context: StepContext, session: Session, body: bytes) -> str:
        """Why a submission answered 200 (the page again, not a redirect) failed."""
        if is_login_page(body, context.login_url_path):
            session.needs_login = True
            return "session_lost"
        code = error_page(body)
        if code:
            return f"error_{code}"
        if form_errors(body):
            return f"invalid_{self.form}"
        return "not_accepted"
