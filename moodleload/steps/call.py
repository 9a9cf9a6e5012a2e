"""A web-service call step: one call as Moodle's JavaScript makes it (lib/ajax/service.php)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlencode

from moodleload.config import CALL_ROW, Call, StepSource, fill_args
from moodleload.site.forms import service_failure, service_request
from moodleload.site.httpclient import Body
from moodleload.site.moodle import REDIRECT_STATUSES, Session
from moodleload.site.walk import Walk
from moodleload.steps.base import Outcome, StepContext, StepKind, Values

SERVICE_PATH = "/lib/ajax/service.php"
SERVICE_HEADERS = (("X-Requested-With", "XMLHttpRequest"), ("Accept", "application/json, text/javascript, */*; q=0.01"))


@dataclass(frozen=True, kw_only=True)
class CallStep(StepKind):
    KEY: ClassVar[str] = "call"

    call: Call

    @classmethod
    def parse(cls, source: StepSource) -> CallStep:
        call = source.call(source.raw["call"], ".call")
        return cls(name=source.name(call.name), takes=source.takes, counts=source.counts, call=call)

    def rows(self) -> Iterator[tuple[str, str]]:
        yield self.name, CALL_ROW

    async def run(self, context: StepContext, session: Session, walk: Walk, values: Values,
                  index: int) -> list[Outcome]:
        return [await call_service(context, session, self.call, values, self.name, own_start=False)]


async def call_service(context: StepContext, session: Session, call: Call, values: Values, name: str,
                       own_start: bool) -> Outcome:
    """A web-service call the way core/ajax makes it: a JSON POST to service.php with the
    session key in the URL.  Moodle answers errors with HTTP 200: the JSON says."""
    if not session.sesskey:
        return Outcome(name, "no_sesskey", context.now(), own_start=own_start)
    query = urlencode({"sesskey": session.sesskey, "info": call.methodname})
    body = Body("application/json", service_request(call.methodname, fill_args(call.args, values)),
                SERVICE_HEADERS)
    fetched, outcome = await context.get(session, f"{context.base_url}{SERVICE_PATH}?{query}", name,
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
