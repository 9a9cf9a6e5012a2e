"""How the simulated site behaves, page by page: server time, body size, footer counters
(the medians of a real 2-core Moodle 5.0 site, docs/simulated-site.md), and the site's own
settings (session timeout, workers, noise between runs)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace


@dataclass
class PageProfile:
    """How one kind of page behaves: server time, body size and footer counters."""

    latency_ms: float = 20.0
    jitter: float = 0.1  # sigma of a lognormal factor on latency_ms
    body_kb: float = 100.0
    db_reads: int = 40
    db_writes: int = 1
    included_files: int = 566
    memory_peak_mb: float = 8.4
    status: int = 200  # e.g. 500: the page throws on this commit (Moodle's error page, that status)
    # Real CPU work per view (sim/cpuwork.py), on top of latency_ms' waiting: what the footer's
    # CPU ticks then measure.  0: none, the footer shows the little the site itself spent.
    cpu_ms: float = 0.0
    cpu_jitter: float = 0.1  # sigma of a lognormal factor on cpu_ms
    # Statements the page runs on the site's database at each view, [sql, times] each (with
    # a database behind the site): a commit that adds a query, as the server's statistics see it.
    queries: list = field(default_factory=list)


def default_pages() -> dict[str, PageProfile]:
    # Medians seen on a real 2-core site (FACTS.md); bodies trimmed to 50-250 KB.
    return {
        "login": PageProfile(latency_ms=37, body_kb=31, db_reads=6, db_writes=1),
        "login_post": PageProfile(latency_ms=67, body_kb=1.5, db_reads=0, db_writes=0),
        "my": PageProfile(latency_ms=198, body_kb=236, db_reads=43, db_writes=1),
        "course": PageProfile(latency_ms=160, body_kb=200, db_reads=128, db_writes=1),
        "forum": PageProfile(latency_ms=184, body_kb=150, db_reads=91, db_writes=1),
        "profile": PageProfile(latency_ms=108, body_kb=145, db_reads=51, db_writes=0),
        "enrol": PageProfile(latency_ms=100, body_kb=150, db_reads=90, db_writes=0),
        "notfound": PageProfile(latency_ms=60, body_kb=140, db_reads=20, db_writes=0),
        "redirect": PageProfile(latency_ms=15, body_kb=1.5, db_reads=0, db_writes=0),
        "frontpage": PageProfile(latency_ms=90, body_kb=94, db_reads=30, db_writes=0),
        "page": PageProfile(latency_ms=108, body_kb=153, db_reads=45, db_writes=1),
        "discussion": PageProfile(latency_ms=123, body_kb=172, db_reads=60, db_writes=1),
        "postform": PageProfile(latency_ms=140, body_kb=282, db_reads=70, db_writes=2),
        "post": PageProfile(latency_ms=150, body_kb=1.5, db_reads=40, db_writes=12),
        "participants": PageProfile(latency_ms=170, body_kb=208, db_reads=80, db_writes=1),
        "service": PageProfile(latency_ms=25, body_kb=0, db_reads=8, db_writes=0),
        "logout": PageProfile(latency_ms=30, body_kb=1.5, db_reads=5, db_writes=2),
    }


def compact_json(value) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass
class SiteSettings:
    pages: dict[str, PageProfile] = field(default_factory=default_pages)
    session_timeout: float = 28800.0  # Moodle's default sessiontimeout, seconds
    workers: int = 0  # like php-fpm's max_children: requests served at once (0 = no limit)
    perfdebug: bool = True  # show the performance footer
    logintoken: bool = True  # Moodle before 3.x has no logintoken in its login form
    seed: int = 1
    # A prepared real site differs from run to run (the machine, the database after a
    # restore): each start of the site draws a factor every page shares (lognormal sigma
    # run_noise) and one per page (page_noise), from the system's entropy, not the seed.
    run_noise: float = 0.0
    page_noise: float = 0.0
    # Rounds of CPU work per ms (sim/cpuwork.py); 0: measured when the site starts.  A bench
    # that restarts the site at every commit sets it once, so each start does the same work.
    cpu_rounds_per_ms: float = 0.0

    @classmethod
    def from_dict(cls, raw: dict) -> SiteSettings:
        settings = cls()
        for key, value in raw.items():
            if key == "pages":
                for kind, profile in value.items():
                    base = settings.pages.get(kind, PageProfile())
                    settings.pages[kind] = replace(base, **profile)
            elif hasattr(settings, key):
                setattr(settings, key, value)
            else:
                raise ValueError(f"unknown site setting {key!r}")
        return settings

    def scaled(self, factor: float) -> SiteSettings:
        """The same site with every page's latency multiplied by factor (fast tests)."""
        pages = {k: replace(p, latency_ms=p.latency_ms * factor)
                 for k, p in self.pages.items()}
        return replace(self, pages=pages)
