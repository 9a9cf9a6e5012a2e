"""A simulated Moodle site: an aiohttp application that behaves like the real Moodle
5.0 described in shared/moodle/FACTS.md, closely enough to prove a load generator
against it: the logintoken flow, session cookies that change at login, Moodle's
session lock, expiry, enrolment redirects, 404s, and the performance footer.

Passwords are checked against a user store: the ``mdl_user`` table of a real
PostgreSQL database (what set_moodle_passwords.py writes is what makes a login
succeed), or an in-memory list when no database is at hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import queue
import random
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

import bcrypt
from aiohttp import web

from .moodledb import SiteData

TOKEN_ALPHABET = string.ascii_letters + string.digits


# --------------------------------------------------------------------------- settings

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


# --------------------------------------------------------------------------- users

@dataclass
class UserRecord:
    id: int
    username: str
    password_hash: str
    auth: str = "manual"
    confirmed: int = 1
    suspended: int = 0
    locked: bool = False
    force_password_change: bool = False


class MemoryUsers:
    """Users held by the site itself (the demo without PostgreSQL)."""

    def __init__(self, users: dict[str, UserRecord]):
        self.users = users

    @classmethod
    def testsite(cls, count: int, password: str) -> MemoryUsers:
        # One cheap hash for everybody: the memory store is for demos, not for hashing realism.
        shared = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        shared = "$2y$" + shared[4:]
        users = {}
        for n in range(1, count + 1):
            name = f"tool_generator_{n:06d}"
            users[name] = UserRecord(id=2 + n, username=name, password_hash=shared)
        return cls(users)

    async def lookup(self, username: str) -> UserRecord | None:
        return self.users.get(username)


class DatabaseUsers:
    """Users read from a Moodle database's ``<prefix>user`` table at each login, through a
    small pool of connections made by ``connect`` (either family's driver)."""

    def __init__(self, connect, prefix: str = "mdl_", size: int = 8):
        self.prefix = prefix
        self.connect = connect
        self.idle: queue.LifoQueue = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(size)
        self.opened: list = []

    @contextlib.contextmanager
    def _cursor(self):
        """A cursor on a pooled connection (opened when none is idle), rolled back after use."""
        with self.slots:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                conn = self.connect()
                self.opened.append(conn)
            try:
                with conn.cursor() as cur:
                    yield cur
                conn.rollback()
            finally:
                self.idle.put(conn)

    def _lookup(self, username: str) -> UserRecord | None:
        p = self.prefix
        with self._cursor() as cur:
            cur.execute(f"SELECT id, username, password, auth, confirmed, suspended FROM {p}user"
                        f" WHERE username = %s AND deleted = 0 AND mnethostid = 1", (username,))
            row = cur.fetchone()
            prefs = {}
            if row is not None:
                cur.execute(f"SELECT name, value FROM {p}user_preferences WHERE userid = %s"
                            f" AND name IN ('login_lockout', 'auth_forcepasswordchange')", (row[0],))
                prefs = dict(cur.fetchall())
        if row is None:
            return None
        return UserRecord(id=row[0], username=row[1], password_hash=row[2], auth=row[3],
                          confirmed=row[4], suspended=row[5], locked="login_lockout" in prefs,
                          force_password_change=prefs.get("auth_forcepasswordchange") == "1")

    async def lookup(self, username: str) -> UserRecord | None:
        return await asyncio.to_thread(self._lookup, username)

    def _run_queries(self, queries: list) -> None:
        with self._cursor() as cur:
            for sql, times in queries:
                for _ in range(int(times)):
                    cur.execute(sql)
                    cur.fetchall()

    async def run_queries(self, queries: list) -> None:
        await asyncio.to_thread(self._run_queries, queries)

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


def PostgresUsers(dsn: dict, prefix: str = "mdl_") -> DatabaseUsers:  # noqa: N802 - reads like the class it was
    import psycopg2

    return DatabaseUsers(lambda: psycopg2.connect(**dsn), prefix)


def MySQLUsers(dsn: dict, prefix: str = "mdl_") -> DatabaseUsers:  # noqa: N802
    import pymysql

    return DatabaseUsers(lambda: pymysql.connect(**dsn), prefix)


def password_matches(password: str, stored_hash: str) -> bool:
    """Moodle 5.0's check for bcrypt hashes: $2y$, $2b$ and $2a$ all validate;
    passwords over 128 characters never do."""
    if len(password) > 128 or not stored_hash.startswith(("$2y$", "$2b$", "$2a$")):
        return False
    try:
        return bcrypt.checkpw(password.encode(), stored_hash.encode())
    except ValueError:
        return False


# --------------------------------------------------------------------------- sessions

def new_sesskey() -> str:
    """Moodle's sesskey: random_string(10), letters and digits."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(10))


@dataclass
class Session:
    sid: str
    userid: int | None = None
    logintoken: str | None = None
    last_access: float = field(default_factory=time.monotonic)
    timed_out: bool = False
    error: str | None = None
    force_password_change: bool = False
    sesskey: str = field(default_factory=lambda: new_sesskey())
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: int = 0
    drafts: set = field(default_factory=set)  # (message, attachments) draft item ids handed out by forms


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


# --------------------------------------------------------------------------- pages

PADDING = ("<!-- " + "moodle-page-content " * 16 + "-->\n").encode() * 800  # ~270 KB


def footer_html(profile: PageProfile, server_seconds: float, session_wait: float) -> str:
    return (
        '<div class="performanceinfo siteinfo container-fluid px-md-0 overflow-auto pt-3">'
        '<ul class="list-unstyled row mx-md-0">'
        f'<li class="timeused col-sm-4">{server_seconds:.6f} secs</li> '
        f'<li class="memoryused col-sm-4">RAM: {profile.memory_peak_mb * 0.88:.1f} MB</li> '
        f'<li class="memoryused col-sm-4">RAM peak: {profile.memory_peak_mb:.1f} MB</li> </ul>'
        '<ul class="list-unstyled row mx-md-0">'
        f'<li class="included col-sm-4">Included {profile.included_files} files</li> '
        "<li class='contextswithfilters col-sm-4'>Contexts for which filters were loaded: 2 </li> "
        "<li class='langcountgetstring col-sm-4'>get_string calls: 570 </li> "
        f'<li class="dbqueries col-sm-4">DB reads/writes: {profile.db_reads}/{profile.db_writes}</li> '
        f'<li class="dbtime col-sm-4">DB queries time: {server_seconds * 0.2:.5f} secs</li> '
        '<li class="posixtimes col-sm-4">ticks: 8 user: 4sys: 2 cuser: 0 csys: 0</li> '
        '<li class="serverload col-sm-4">Load average: 0.67</li> '
        '<li class="serverload col-sm-4"><div class="sessionsize">Session (core\\session\\file): 4.3 KB</div></li>'
        f'<li class="sessionwait col-sm-4">Session wait: {session_wait:.3f} secs</li></ul>'
        '<div class="table-responsive"><table class="cachesused table table-dark table-sm w-auto table-bordered">'
        "<tr><td>core/config</td><td>12</td><td>0</td><td>0</td></tr></table></div></div>"
    )


def page_html(*, title: str, body_id: str, wwwroot: str, content: str, profile: PageProfile,
              sesskey: str | None, footer: str | None, page_config: dict | None = None, scripts: str = "") -> bytes:
    config = {"wwwroot": wwwroot, "sesskey": sesskey or "", "sessiontimeout": "28800", **(page_config or {})}
    head = (
        '<!DOCTYPE html>\n<html  dir="ltr" lang="en" xml:lang="en">\n<head>\n'
        f"    <title>{title} | rig</title>\n"
        '    <meta http-equiv="Content-Type" content="text/html; charset=utf-8" />\n'
        f"<script>M.cfg = {json.dumps(config, separators=(',', ':'))};</script>\n</head>\n"
        f'<body  id="{body_id}" class="format-site dir-ltr lang-en">\n'
        f'<div id="page"><div role="main">{content}</div>\n'
    )
    logout = (f'<a href="{wwwroot}/login/logout.php?sesskey={sesskey}">Log out</a>\n' if sesskey else "")
    tail = f"{footer or ''}</div>\n{logout}{scripts}</body>\n</html>\n"
    encoded_head, encoded_tail = head.encode(), tail.encode()
    padding = max(0, int(profile.body_kb * 1024) - len(encoded_head) - len(encoded_tail))
    return b"".join((encoded_head, PADDING[:padding], encoded_tail))


def login_form(wwwroot: str, token: str | None, error: str | None) -> str:
    alert = (f'<div class="alert alert-danger" id="loginerrormessage" role="alert">{error}</div>'
             if error else "")
    token_input = f'<input type="hidden" name="logintoken" value="{token}">\n' if token else ""
    return (
        f"{alert}"
        f'<form class="login-form" action="{wwwroot}/login/index.php" method="post" id="login">\n'
        '<input id="anchor" type="hidden" name="anchor" value="">\n'
        f"{token_input}"
        '<input type="text" name="username" id="username" class="form-control" value="">\n'
        '<input type="password" name="password" id="password" value="" class="form-control">\n'
        '<button class="btn btn-primary" type="submit" id="loginbtn">Log in</button></form>\n'
        f'<form action="{wwwroot}/login/index.php" method="post" id="guestlogin">\n'
        f"{token_input}"
        '<input type="hidden" name="username" value="guest" />\n'
        '<input type="hidden" name="password" value="guest" />\n'
        '<button class="btn btn-secondary" type="submit">Access as a guest</button></form>\n'
    )


DASHBOARD_BLOCKS = ('<section class="block_timeline block"><div data-region="timeline"></div></section>'
                    '<section class="block_recentlyaccesseditems block"><div data-region="recent"></div></section>')
INVALID_SESSKEY_PAGE = ('<p class="errormessage">Your session has most likely timed out. Please log in again.</p>'
                        '<a href="https://docs.moodle.org/500/en/error/moodle/invalidsesskey?errorcode=invalidsesskey">'
                        'More information about this error</a>')
# What service.php answers the calls a browser was seen making (shared/moodle browser recording).
SERVICE_ANSWERS = {
    "core_message_get_unsent_message": [],
    "block_recentlyaccesseditems_get_recent_items": [],
    "core_calendar_get_action_events_by_timesort": {"events": [], "firstid": 0, "lastid": 0},
    "tool_usertours_fetch_and_start_tour": {"startTour": False},
    "tool_usertours_complete_tour": [],
    "core_courseformat_get_state": "{}",
    "tiny_autosave_resume_session": {"drafttext": ""},
    "tiny_autosave_update_session": [],
    "tiny_autosave_reset_session": [],
    "core_fetch_notifications": [],
}


def whole_number(value) -> int:
    """A form or query value read as PARAM_INT would read a missing or non-numeric one: 0."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else 0


def tour_script(tour: int) -> str:
    return ("<script>require(['tool_usertours/usertours'], function(amd) {amd.init([{\"tourId\":\""
            f"{tour}\",\"startTour\":true,\"filtervalues\":{{\"cssselector\":{{}}}}}}], [])}});</script>\n")


def editor_script() -> str:
    page_hash, instance = secrets.token_hex(20), secrets.token_hex(16)
    return ('<script>M.util.js_pending("editor_tiny/editor"); var config = {"tiny_autosave\\/plugin":{"config":'
            f'{{"pagehash":"{page_hash}","pageinstance":"{instance}","backoffTime":500}}}}}};</script>\n')


def reply_form(sesskey: str, courseid: int, discussion: int, reply: int, subject: str, drafts: tuple,
               errors: dict | None = None, typed_subject: str | None = None) -> str:
    """mod_forum's reply form, with the fields and markup a real Moodle 5.0 renders."""
    errors = errors or {}

    def error(name: str) -> str:
        return (f'<div class="form-control-feedback invalid-feedback" id="id_error_{name}" >'
                f' {html.escape(errors.get(name, ""))}</div>')

    hidden = [("timestart", "0"), ("timeend", "0"), ("course", str(courseid)), ("forum", "0"),
              ("discussion", str(discussion)), ("parent", str(reply)), ("groupid", "0"), ("edit", "0"),
              ("reply", str(reply)), ("sesskey", sesskey), ("_qf__mod_forum_post_form", "1"),
              ("mform_isexpanded_id_general", "1"), ("mform_isexpanded_id_tagshdr", "1")]
    inputs = "".join(f'<input name="{name}" type="hidden" value="{value}" />\n' for name, value in hidden)
    shown_subject = subject if typed_subject is None else typed_subject
    return (
        '<form id="mformforum" autocomplete="off" action="/mod/forum/post.php" method="post" '
        'accept-charset="utf-8" class="mform">\n<div style="display: none;">' + inputs + '</div>\n'
        f'<input type="text" class="form-control " name="subject" id="id_subject" value="{html.escape(shown_subject)}"'
        ' size="48" maxlength="255">\n' + error("subject") +
        '<textarea id="id_message" name="message[text]" class="form-control" rows="15" cols="80" '
        'spellcheck="true" ></textarea>\n' + error("message") +
        '<input name="message[format]" id="menumessageformat" type="hidden" value="1"/>\n'
        f'<input type="hidden" name="message[itemid]" value="{drafts[0]}" />\n'
        '<input type="checkbox" name="discussionsubscribe" class="form-check-input " value="1"'
        ' id="id_discussionsubscribe" checked>\n'
        f'<input type="hidden" name="attachments" value="{drafts[1]}" />\n'
        '<input type="hidden" name="tags" value="_qf__force_multiselect_submission">\n'
        '<select class="form-select" multiple name="tags[]" id="id_tags"></select>\n'
        '<input type="submit" class="btn btn-primary" name="submitbutton" id="id_submitbutton" value="Post to forum">\n'
        '<input type="submit" class="btn btn-secondary" name="cancel" id="id_cancel" value="Cancel">\n'
        '</form>\n'
    )


# --------------------------------------------------------------------------- the site

class MoodleSite:
    """State and request handling of one simulated site; ``app()`` serves it."""

    def __init__(self, users, data: SiteData | None = None, settings: SiteSettings | None = None):
        self.users = users
        self.data = data or SiteData.testsite()
        self.settings = settings or SiteSettings()
        self.sessions: dict[str, Session] = {}
        self.stats = SiteStats()
        self.random = random.Random(self.settings.seed)
        entropy = random.SystemRandom()
        shared = entropy.lognormvariate(0.0, self.settings.run_noise) if self.settings.run_noise else 1.0
        self.run_factor = {kind: shared * (entropy.lognormvariate(0.0, self.settings.page_noise)
                                           if self.settings.page_noise else 1.0) for kind in self.settings.pages}
        self.stall_until = 0.0
        self._capacity: asyncio.Semaphore | None = None

    # ---- helpers
    def stall(self, seconds: float) -> None:
        """Stop answering anything for ``seconds`` (a GC pause, a locked table...)."""
        self.stall_until = time.monotonic() + seconds

    def expire_sessions(self) -> int:
        """Age every session past the timeout, as if the users had gone for lunch."""
        for session in self.sessions.values():
            session.last_access = -1e9
        return len(self.sessions)

    def new_session(self) -> Session:
        sid = secrets.token_hex(16)
        session = Session(sid=sid)
        self.sessions[sid] = session
        return session

    def _wwwroot(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def _redirect(self, request: web.Request, location: str, session: Session | None = None) -> web.Response:
        url = location if location.startswith("http") else self._wwwroot(request) + location
        body = (
            '<!DOCTYPE html>\n<html  lang="en" xml:lang="en">\n<head><title>Redirect</title></head>\n'
            '<body><div id="page"><div id="region-main"><h1>Redirect</h1><div>This page should '
            'automatically redirect. If nothing is happening please use the continue link below.'
            f'<br /><a href="{url}">Continue</a></div></div></div></body>\n</html>\n'
        )
        response = web.Response(status=303, text=body, content_type="text/html",
                                headers={"Location": url, "X-Redirect-By": "Moodle"})
        if session is not None:
            response.set_cookie("MoodleSession", session.sid, path="/", httponly=True)
        return response

    def _page(self, request: web.Request, kind: str, *, status: int = 200, title: str, body_id: str,
              content: str, session: Session | None, server_seconds: float, session_wait: float,
              set_cookie: bool = False, page_config: dict | None = None, scripts: str = "") -> web.Response:
        profile = self.settings.pages[kind]
        footer = footer_html(profile, server_seconds, session_wait) if self.settings.perfdebug else None
        sesskey = session.sesskey if session is not None and session.userid else None
        body = page_html(title=title, body_id=body_id, wwwroot=self._wwwroot(request), content=content,
                         profile=profile, sesskey=sesskey, footer=footer, page_config=page_config, scripts=scripts)
        response = web.Response(status=status, body=body, content_type="text/html", charset="utf-8")
        if set_cookie and session is not None:
            response.set_cookie("MoodleSession", session.sid, path="/", httponly=True)
        return response

    async def _work(self, kind: str) -> float:
        """Spend the page's server time (queueing for a worker when capacity is set)."""
        profile = self.settings.pages[kind]
        seconds = profile.latency_ms / 1000.0 * self.run_factor.get(kind, 1.0)
        if profile.jitter:
            seconds *= self.random.lognormvariate(0.0, profile.jitter)
        if self._capacity is None and self.settings.workers:
            self._capacity = asyncio.Semaphore(self.settings.workers)
        if self._capacity is not None:
            async with self._capacity:
                await asyncio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)
        if profile.queries and hasattr(self.users, "run_queries"):
            await self.users.run_queries(profile.queries)
        return seconds

    # ---- entry point
    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/__sim/"):
            return await self.handle_control(request)
        self.stats.requests += 1
        while (delay := self.stall_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        session = self.sessions.get(request.cookies.get("MoodleSession", ""))
        if session is None:
            return await self.dispatch(request, None, 0.0)
        # Moodle holds the session lock for the whole request.
        if session.lock.locked():
            self.stats.overlaps += 1
        waited_from = time.monotonic()
        async with session.lock:
            session_wait = time.monotonic() - waited_from
            if session.userid and time.monotonic() - session.last_access > self.settings.session_timeout:
                session.userid = None
                session.timed_out = True
            session.last_access = time.monotonic()
            return await self.dispatch(request, session, session_wait)

    async def dispatch(self, request: web.Request, session: Session | None, session_wait: float):
        path = request.path
        self.stats.by_page[path] = self.stats.by_page.get(path, 0) + 1
        if path == "/login/index.php":
            if request.method == "POST":
                return await self.login_post(request, session)
            return await self.login_get(request, session, session_wait)
        if path == "/login/logout.php" and session is not None and session.userid:
            return await self.logout(request, session, session_wait)
        if path in ("/", "/index.php"):
            return await self.front_page(request, session, session_wait)
        if path == "/lib/ajax/service.php":
            return await self.service(request, session)
        if session is None or session.userid is None:
            return self._redirect(request, "/login/index.php")
        if session.force_password_change and path != "/login/change_password.php":
            return self._redirect(request, "/login/change_password.php")
        self.stats.log.append((session.userid, request.path_qs))
        return await self.logged_in_page(request, session, session_wait)

    async def front_page(self, request: web.Request, session: Session | None, session_wait: float):
        seconds = await self._work("frontpage")
        visitor = session is None or not session.userid
        content = ('<div class="logininfo">You are not logged in. (<a href="/login/index.php">Log in</a>)</div>'
                   if visitor else '<div class="logininfo">You are logged in.</div>')
        return self._page(request, "frontpage", title="Acceptance test site", body_id="page-site-index",
                          content=content, session=session, server_seconds=seconds, session_wait=session_wait)

    async def logout(self, request: web.Request, session: Session, session_wait: float):
        """Moodle's logout.php: with the session key, the session ends and the browser goes to
        the front page; without it (a stale link), a page asks to confirm."""
        seconds = await self._work("logout")
        if request.query.get("sesskey") != session.sesskey:
            self.stats.bad_sesskeys += 1
            content = ('<div class="modal-body">Do you really want to log out?</div>'
                       f'<form method="post" action="/login/logout.php"><input type="hidden" name="sesskey" '
                       f'value="{session.sesskey}"><button type="submit">Continue</button></form>')
            return self._page(request, "logout", title="Log out", body_id="page-login-logout", content=content,
                              session=session, server_seconds=seconds, session_wait=session_wait)
        session.userid = None
        session.sesskey = new_sesskey()
        return self._redirect(request, "/")

    async def service(self, request: web.Request, session: Session | None):
        """lib/ajax/service.php: a JSON list of calls; every answer is HTTP 200 and says in
        its JSON whether each call failed (the exception's errorcode), as Moodle does."""
        raw = await request.read()
        await self._work("service")
        try:
            calls = json.loads(raw)
            if not isinstance(calls, list):
                raise ValueError
        except ValueError:
            return web.json_response({"error": "Invalid json in request: Syntax error", "errorcode": "codingerror"},
                                     headers={"Cache-Control": "no-store"})
        answers = []
        for call in calls:
            methodname = str(call.get("methodname", "")) if isinstance(call, dict) else ""
            if session is None or not session.userid:
                answers.append(self._service_error("requireloginerror", "You are not logged in"))
                break
            if request.query.get("sesskey") != session.sesskey:
                self.stats.bad_sesskeys += 1
                answers.append(self._service_error("invalidsesskey", "Your session has most likely timed out. "
                                                                     "Please log in again."))
                break
            data = SERVICE_ANSWERS.get(methodname)
            if data is None:
                answers.append(self._service_error("invalidrecord", "Can't find data record in database table "
                                                                    "external_functions."))
                break
            self.stats.service_calls[methodname] = self.stats.service_calls.get(methodname, 0) + 1
            answers.append({"error": False, "data": data})
        # PHP's json_encode, as Moodle answers: no spaces between the parts.
        return web.json_response(answers, headers={"Cache-Control": "no-store"}, dumps=compact_json)

    @staticmethod
    def _service_error(code: str, message: str) -> dict:
        return {"error": True, "exception": {"message": message, "errorcode": code, "link": "", "moreinfourl": ""}}

    async def login_get(self, request: web.Request, session: Session | None, session_wait: float):
        query = request.query
        if "testsession" in query:
            if session is None or session.userid is None:
                return self._redirect(request, "/login/index.php")
            if session.force_password_change:
                return self._redirect(request, "/login/change_password.php")
            return self._redirect(request, "/my/")
        if session is not None and session.timed_out:
            session.timed_out = False
            session.error = "Your session has timed out. Please log in again."
            return self._redirect(request, "/login/index.php?loginredirect=1")
        created = session is None
        if created:
            session = self.new_session()
        seconds = await self._work("login")
        if session.userid:
            content = '<div class="box">You are logged in. <a href="/my/">Dashboard</a></div>'
            return self._page(request, "login", title="Log in to the site", body_id="page-login-index",
                              content=content, session=session, server_seconds=seconds,
                              session_wait=session_wait)
        if self.settings.logintoken:
            session.logintoken = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(32))
        error, session.error = session.error, None
        return self._page(request, "login", title="Log in to the site", body_id="page-login-index",
                          content=login_form(self._wwwroot(request), session.logintoken, error),
                          session=session, server_seconds=seconds, session_wait=session_wait,
                          set_cookie=created)

    async def login_post(self, request: web.Request, session: Session | None):
        form = await request.post()
        if session is None:
            session = self.new_session()
        token, session.logintoken = session.logintoken, None  # single use, even on failure
        username = str(form.get("username", "")).strip().lower()
        password = str(form.get("password", ""))
        await self._work("login_post")
        user = await self.users.lookup(username) if username else None
        token_ok = not self.settings.logintoken or (
            token is not None and secrets.compare_digest(token, str(form.get("logintoken", ""))))
        if user is not None and token_ok and user.locked:
            self.stats.logins_failed += 1
            return self._page(request, "login", title="Log in to the site", body_id="page-login-index",
                              content='<div class="alert alert-danger" id="loginerrormessage">'
                                      "Your account is locked, an email has been sent.</div>",
                              session=session, server_seconds=0.06, session_wait=0.0)
        password_ok = (user is not None and user.auth == "manual" and not user.suspended
                       and await asyncio.to_thread(password_matches, password, user.password_hash))
        if not (token_ok and password_ok):
            self.stats.logins_failed += 1
            session.error = "Invalid login, please try again"
            return self._redirect(request, "/login/index.php?loginredirect=1", session)
        # The session id changes at login.
        del self.sessions[session.sid]
        session = self.new_session()
        session.userid = user.id
        session.force_password_change = user.force_password_change
        self.stats.logins_ok += 1
        response = self._redirect(request, f"/login/index.php?testsession={user.id}", session)
        response.set_cookie("MOODLEID1_", "sodium%3A" + secrets.token_urlsafe(24), path="/",
                            httponly=True, max_age=5184000)
        return response

    async def logged_in_page(self, request: web.Request, session: Session, session_wait: float):
        path, query = request.path, request.query
        userid = session.userid

        def integer(name: str) -> int | None:
            try:
                return int(query.get(name, ""))
            except ValueError:
                return None

        async def page(kind: str, title: str, body_id: str, content: str = "", status: int = 200,
                       page_config: dict | None = None, scripts: str = ""):
            seconds = await self._work(kind)
            if status == 200:
                status = self.settings.pages[kind].status
            return self._page(request, kind, status=status, title=title, body_id=body_id,
                              content=content, session=session, server_seconds=seconds,
                              session_wait=session_wait, page_config=page_config, scripts=scripts)

        def enrolled(courseid) -> bool:
            return userid in self.data.course_enrolments.get(courseid, set())

        async def to_enrol(courseid):
            await self._work("redirect")
            return self._redirect(request, f"/enrol/index.php?id={courseid}")

        async def not_found():
            return await page("notfound", "Error", "page-site-index", status=404,
                              content="<p class=\"errormessage\">Can&#039;t find data record in database.</p>")

        if path in ("/my/", "/my/index.php"):
            return await page("my", "Dashboard", "page-my-index", DASHBOARD_BLOCKS,
                              page_config={"courseId": 1, "contextid": 100 + userid}, scripts=tour_script(5))
        if path == "/login/change_password.php":
            return await page("login", "Change password", "page-login-change_password")
        if path == "/course/view.php":
            courseid = integer("id")
            if courseid not in self.data.course_enrolments:
                return await not_found()
            if userid not in self.data.course_enrolments[courseid]:
                await self._work("redirect")
                return self._redirect(request, f"/enrol/index.php?id={courseid}")
            return await page("course", f"Course: Test course {courseid}", "page-course-view-topics",
                              self.course_content(courseid),
                              page_config={"courseId": courseid, "contextid": 10 + courseid}, scripts=tour_script(2))
        if path == "/mod/forum/view.php":
            cmid = integer("id")
            courseid = self.data.forum_courses.get(cmid)
            if courseid is None:
                return await not_found()
            if userid not in self.data.course_enrolments.get(courseid, set()):
                await self._work("redirect")
                return self._redirect(request, f"/enrol/index.php?id={courseid}")
            links = "".join(f'<a href="/mod/forum/discuss.php?d={d}">Discussion {d}</a>\n'
                            for d, forum in self.data.discussions.items() if forum == cmid)
            return await page("forum", "Forum", "page-mod-forum-view", links,
                              page_config={"courseId": courseid, "contextid": 200 + cmid}, scripts=editor_script())
        if path == "/mod/forum/discuss.php":
            discussion = integer("d")
            cmid = self.data.discussions.get(discussion)
            if cmid is None:
                return await not_found()
            courseid = self.data.forum_courses[cmid]
            if not enrolled(courseid):
                return await to_enrol(courseid)
            posts = "".join(f'<article id="p{post}"><h3>{html.escape(self.data.posts[post][1])}</h3>'
                            f'<a href="/mod/forum/post.php?reply={post}">Reply</a></article>\n'
                            for post in self.data.posts_of(discussion))
            return await page("discussion", "Discussion", "page-mod-forum-discuss", posts,
                              page_config={"courseId": courseid, "contextid": 200 + cmid})
        if path == "/mod/forum/post.php":
            return await self.forum_post(request, session, session_wait, page, not_found, enrolled, to_enrol)
        if path == "/mod/page/view.php":
            cmid = integer("id")
            courseid = self.data.page_courses.get(cmid)
            if courseid is None:
                return await not_found()
            if not enrolled(courseid):
                return await to_enrol(courseid)
            return await page("page", "Page", "page-mod-page-view", "<p>Page content.</p>",
                              page_config={"courseId": courseid, "contextid": 200 + cmid})
        if path == "/user/index.php":
            courseid = integer("id")
            if courseid not in self.data.course_enrolments:
                return await not_found()
            if not enrolled(courseid):
                return await to_enrol(courseid)
            rows = "".join(f'<tr><td><a href="/user/view.php?id={u}&course={courseid}">User {u}</a></td></tr>'
                           for u in sorted(self.data.course_enrolments[courseid])[:20])
            return await page("participants", "Participants", "page-user-index", f"<table>{rows}</table>",
                              page_config={"courseId": courseid, "contextid": 10 + courseid})
        if path == "/user/profile.php":
            return await page("profile", "Public profile", "page-user-profile")
        if path == "/enrol/index.php":
            if integer("id") not in self.data.course_enrolments:
                return await not_found()
            return await page("enrol", f"testcourse_{integer('id')}", "page-enrol-index")
        return await not_found()

    def course_content(self, courseid: int) -> str:
        """Links to the course's activities, as a course page lists them."""
        links = []
        for cmid, course in sorted(self.data.module_courses.items()):
            if course != courseid:
                continue
            if cmid in self.data.forum_courses:
                links.append(f'<li class="activity forum"><a href="/mod/forum/view.php?id={cmid}">Forum</a></li>')
            elif cmid in self.data.page_courses:
                links.append(f'<li class="activity page"><a href="/mod/page/view.php?id={cmid}">Page</a></li>')
        return f'<ul class="section">{"".join(links)}</ul>'

    async def forum_post(self, request, session: Session, session_wait: float, page, not_found, enrolled, to_enrol):
        """post.php: the reply form (GET ?reply=) and its submission (POST), checked as
        moodleform checks it: the session key, the draft areas this page view handed out,
        and a subject and a message."""
        if request.method == "POST":
            form = await request.post()
            reply = whole_number(form.get("reply"))
        else:
            form, reply = None, whole_number(request.query.get("reply"))
        if reply not in self.data.posts:
            return await not_found()
        discussion, subject, _ = self.data.posts[reply]
        cmid = self.data.discussions[discussion]
        courseid = self.data.forum_courses[cmid]
        if not enrolled(courseid):
            return await to_enrol(courseid)
        if form is None:
            drafts = (self.random.randrange(10**8, 10**9), self.random.randrange(10**8, 10**9))
            session.drafts.add(drafts)
            return await page("postform", "Reply", "page-mod-forum-post",
                              reply_form(session.sesskey, courseid, discussion, reply, subject, drafts),
                              page_config={"courseId": courseid, "contextid": 200 + cmid},
                              scripts=editor_script())
        if form.get("_qf__mod_forum_post_form") == "1" and form.get("sesskey") != session.sesskey:
            self.stats.bad_sesskeys += 1
            return await page("notfound", "Error", "page-mod-forum-post", INVALID_SESSKEY_PAGE)
        drafts = (whole_number(form.get("message[itemid]")), whole_number(form.get("attachments")))
        errors = {}
        if not str(form.get("subject", "")).strip():
            errors["subject"] = "Required"
        if not str(form.get("message[text]", "")).strip():
            errors["message"] = "Required"
        if drafts not in session.drafts:
            errors["message"] = "The draft area of this form has expired; open the form again"
        if errors:
            return await page("postform", "Reply", "page-mod-forum-post",
                              reply_form(session.sesskey, courseid, discussion, reply, subject, drafts, errors,
                                         str(form.get("subject", ""))))
        session.drafts.discard(drafts)
        await self._work("post")
        post = self.data.add_post(discussion, str(form["subject"]), session.userid)
        self.stats.posts_added += 1
        return self._redirect(request, f"/mod/forum/discuss.php?d={discussion}#p{post}")

    async def handle_control(self, request: web.Request) -> web.Response:
        """/__sim/stats: what the site saw, for tests and people poking at it."""
        if request.path == "/__sim/stats":
            stats = {name: getattr(self.stats, name) for name in
                     ("requests", "logins_ok", "logins_failed", "overlaps", "by_page", "posts_added",
                      "service_calls", "bad_sesskeys")}
            stats["log"] = len(self.stats.log)
            stats["sessions"] = len(self.sessions)
            return web.json_response(stats)
        if request.path == "/__sim/reset":
            # A connection reset, as a crashed PHP worker or a proxy gives.
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError()
        if request.path == "/__sim/expire" and request.method == "POST":
            return web.json_response({"expired": self.expire_sessions()})
        return web.json_response({"error": "unknown control path"}, status=404)

    def app(self) -> web.Application:
        application = web.Application(client_max_size=1024 ** 2)
        application.router.add_route("*", "/{tail:.*}", self.handle)
        return application
