"""A logout step: Moodle's logout link, with the session key; the user's next journey
begins by logging in again (the ``login`` row)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from moodleload.config import LOGIN_ROW, STEP_ROW, StepSource
from moodleload.site.moodle import REDIRECT_STATUSES, Session
from moodleload.site.walk import Walk
from moodleload.steps.base import Outcome, StepContext, StepKind, Values


@dataclass(frozen=True, kw_only=True)
class LogoutStep(StepKind):
    KEY: ClassVar[str] = "logout"

    @classmethod
    def parse(cls, source: StepSource) -> LogoutStep:
        if source.raw["logout"] is not True:
            raise source.error(".logout must be true")
        return cls(name=source.name("logout"), takes=source.takes, counts=source.counts)

    def rows(self) -> Iterator[tuple[str, str]]:
        yield self.name, STEP_ROW
        yield LOGIN_ROW, STEP_ROW

    async def run(self, context: StepContext, session: Session, walk: Walk, values: Values,
                  index: int) -> list[Outcome]:
        if not session.sesskey:
            return [Outcome(self.name, "no_sesskey", context.now())]
        url = f"{context.base_url}/login/logout.php?sesskey={session.sesskey}"
        fetched, outcome = await context.get(session, url, self.name, follow=False)
        if fetched is None:
            return [outcome]
        if fetched.status in REDIRECT_STATUSES:
            walk.logged_out = True
            session.sesskey = None
        else:
            outcome.failure = "not_logged_out" if fetched.status == 200 else f"http_{fetched.status}"
        return [outcome]
