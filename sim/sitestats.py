"""What the simulated site saw, counted for the tests that check the generator's behaviour."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SiteStats:
    """What the site saw; tests read it to check the generator's behaviour."""

    requests: int = 0
    logins_ok: int = 0
    logins_failed: int = 0
    overlaps: int = 0  # a request arrived while its session already had one in flight
    by_page: dict[str, int] = field(default_factory=dict)
    posts_added: int = 0
    service_calls: dict[str, int] = field(default_factory=dict)  # methodname -> calls answered
    bad_sesskeys: int = 0
    # (userid, path_qs) of the latest logged-in page views: enough for tests, bounded for long runs.
    log: deque = field(default_factory=lambda: deque(maxlen=200_000))
