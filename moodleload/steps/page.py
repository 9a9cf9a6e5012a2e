"""A page step: the page fetched as a browser fetches it, what the step takes from it, then
its web-service calls (listed in config.json, or those the page's JavaScript makes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

from moodleload.config import CALL_ROW, STEP_ROW, Call, StepSource, fill
from moodleload.site.forms import browser_calls, find_sesskey, take
from moodleload.site.moodle import Session
from moodleload.site.walk import Walk
from moodleload.steps.base import Outcome, StepContext, StepKind, Values
from moodleload.steps.call import call_service

TAKE_DRAWS = 1000  # draw numbers for take: far from the parameters' draws at a journey's start


@dataclass(frozen=True, kw_only=True)
class PageStep(StepKind):
    KEY: ClassVar[str] = "path"

    path: str  # the URL path template
    calls: tuple[Call, ...] | Literal["browser"] = ()  # or what the page's JavaScript calls

    @classmethod
    def parse(cls, source: StepSource) -> PageStep:
        path = source.raw["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise source.error(".path must start with '/'")
        source.placeholders(path, ".path")
        calls = source.raw.get("calls", [])
        if calls == "browser":
            return cls(name=source.name(path), takes=source.takes, counts=source.counts, path=path, calls="browser")
        if not isinstance(calls, list):
            raise source.error(".calls must be \"browser\" or a list of {\"methodname\", \"args\"}")
        listed = tuple(source.call(call, f".calls[{n}]") for n, call in enumerate(calls))
        return cls(name=source.name(path), takes=source.takes, counts=source.counts, path=path, calls=listed)

    def rows(self) -> Iterator[tuple[str, str]]:
        yield self.name, STEP_ROW
        if self.calls != "browser":  # a browser call's row is named when the page first makes it
            for call in self.calls:
                yield call.name, CALL_ROW

    async def run(self, context: StepContext, session: Session, walk: Walk, values: Values,
                  index: int) -> list[Outcome]:
        outcomes = [await visit(context, session, walk, self, fill(self.path, values), index)]
        if outcomes[0].failure is None and self.calls:
            outcomes += await self._calls(context, session, walk, values)
        return outcomes

    async def _calls(self, context: StepContext, session: Session, walk: Walk, values: Values) -> list[Outcome]:
        if self.calls == "browser":
            calls = [Call(name, args, name) for name, args in
                     browser_calls(walk.page, walk.page_url, midnight_utc(time.time()), walk.seen_courses)]
        else:
            calls = list(self.calls)
        outcomes = []
        for call in calls:
            outcome = await call_service(context, session, call, values, call.name, own_start=True)
            outcomes.append(outcome)
            if outcome.failure == "session_lost":
                break
        return outcomes


def midnight_utc(now: float) -> int:
    return int(now // 86400 * 86400)


async def visit(context: StepContext, session: Session, walk: Walk | None, step: PageStep, path: str,
                index: int) -> Outcome:
    """The page at ``path``, judged.  In a journey (``walk`` given) the page is kept for the
    next step, with its session key, and the step's values are taken from it."""
    fetched, outcome = await context.get(session, context.base_url + path, step.name)
    if fetched is None:
        return outcome
    outcome = context.judge_page(session, fetched, outcome)
    if outcome.failure is None and walk is not None:
        sesskey = find_sesskey(fetched.body)
        if sesskey:
            session.sesskey = sesskey
        walk.page, walk.page_url = fetched.body, fetched.url
        for number, (variable, pattern) in enumerate(step.takes):
            value = take(fetched.body, pattern, context.unit(index, TAKE_DRAWS + number))
            if value is None:
                outcome.failure = f"no_{variable}"  # the page has nothing the next steps could use
                return outcome
            walk.values[variable] = int(value) if value.isascii() and value.isdigit() else value
        outcome.counts = step.counts
    return outcome
