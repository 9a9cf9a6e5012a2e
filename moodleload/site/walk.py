"""Where one user is in a journey: kept on the user's session between timeline positions."""

from __future__ import annotations

from dataclasses import dataclass, field

from moodleload.config import Journey


@dataclass
class Walk:
    """Where a user is: the journey and its next step, the values drawn and taken, the last
    page (a form is submitted from it), and the course states a browser would keep."""

    journey: Journey | None = None
    step: int = 0
    values: dict[str, int | str] = field(default_factory=dict)
    page: bytes = b""
    page_url: str = ""
    seen_courses: set[int] = field(default_factory=set)
    logged_out: bool = False

    def end(self) -> None:
        self.journey, self.step, self.values, self.page, self.page_url = None, 0, {}, b"", ""
