"""What every journey step kind has, and what a step runs in.

A kind is a frozen dataclass: its config key (``KEY``), its own fields, ``parse`` (its part of
config.json, after the keys every kind has), ``rows`` (its rows in the reports) and ``run``
(its requests, through the ``StepContext`` the load gives it).  The context keeps the HTTP
mechanics (the clock, the timeouts, how a page is judged), so a kind holds only what makes it
that kind."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from moodleload.config import STEP_ROW, StepSource
from moodleload.footer import Footer
from moodleload.site.httpclient import Form
from moodleload.site.moodle import Fetched, Session
from moodleload.site.walk import Walk

Values = dict[str, Any]  # a journey's placeholders' values: drawn, taken, built in


@dataclass
class Outcome:
    """One request's result, for the recorder: its row, and either a failure kind or its times."""

    name: str
    failure: str | None = None
    sent: float = 0.0
    finished: float = 0.0
    redirected_to: str | None = None
    footer: Footer | None = None  # what the performance footer says (moodle.parse_footer)
    counts: str | None = None
    own_start: bool = False  # a browser call: measured from its own send, not from the step's due time


class StepContext(Protocol):
    """What a step runs in (the load's JourneyRunner): the site, the clock, requests made
    and judged as every kind makes and judges them, and the seeded draws."""

    @property
    def base_url(self) -> str: ...

    @property
    def login_url_path(self) -> str: ...

    def now(self) -> float: ...

    async def get(self, session: Session, url: str, name: str, *,
                  form: Form | None = None,
                  follow: bool = True) -> tuple[Fetched | None, Outcome]:
        """(fetched, outcome): the outcome holds a failure when the request itself failed."""
        ...

    def judge_page(self, session: Session, fetched: Fetched, outcome: Outcome) -> Outcome:
        """The outcome of a page: its failure (a lost session, an error page) or its footer."""
        ...

    def unit(self, index: int, draw: int) -> float:
        """The run's seeded uniform number in [0, 1) for a timeline position and a draw number."""
        ...


@dataclass(frozen=True, kw_only=True)
class StepKind(ABC):
    """One step of a journey; ``takes`` and ``counts`` are what every kind may have."""

    KEY: ClassVar[str]  # the config.json key that makes a step of this kind

    name: str
    takes: tuple[tuple[str, re.Pattern[bytes]], ...] = ()  # (variable, pattern): values read from the answer
    counts: str | None = None  # what each success of this step counts as (work done)

    @classmethod
    @abstractmethod
    def parse(cls, source: StepSource) -> StepKind:
        """The step from its config.json object; a UsageError naming the key when it is wrong."""

    def rows(self) -> Iterator[tuple[str, str]]:
        """(row name, row kind) of every row this step adds to the reports."""
        yield self.name, STEP_ROW

    @abstractmethod
    async def run(self, context: StepContext, session: Session, walk: Walk, values: Values,
                  index: int) -> list[Outcome]:
        """The step's requests, at timeline position ``index``: one Outcome per request."""
