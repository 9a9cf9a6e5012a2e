"""A simulated Moodle site: an aiohttp application that behaves like the real Moodle
5.0 described in docs/simulated-site.md, closely enough to prove a load generator
against it: the logintoken flow, session cookies that change at login, Moodle's
session lock, expiry, enrolment redirects, 404s, and the performance footer.

Passwords are checked against a user store: the ``mdl_user`` table of a real
PostgreSQL database (what set_moodle_passwords.py writes is what makes a login
succeed), or an in-memory list when no database is at hand.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import random
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from .cpuwork import burn, calibrate
from .moodledb import SiteData
from .sitepages import (
    SERVICE_ANSWERS,
    footer_html,
    login_form,
    page_html,
)
from .sitesession import TOKEN_ALPHABET, Session, new_sesskey
from .sitesettings import SiteSettings, compact_json
from .sitestats import SiteStats
from .siteusers import UserStore, password_matches
from .siteviews import LOGGED_IN_PAGES, PageView

# The worker's (user, sys) CPU ticks of the request being answered: set where the page does
# its work, read where its footer is written (one asyncio task per request).
REQUEST_CPU: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar("request_cpu", default=(0, 0))


# --------------------------------------------------------------------------- the site

class MoodleSite:
    """State and request handling of one simulated site; ``app()`` serves it."""

    def __init__(self, users: UserStore, data: SiteData | None = None, settings: SiteSettings | None = None):
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
        self._cpu_pool: ThreadPoolExecutor | None = None
        self._rounds_per_ms = self.settings.cpu_rounds_per_ms

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
        footer = footer_html(profile, server_seconds, session_wait, REQUEST_CPU.get()) \
            if self.settings.perfdebug else None
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
                burned = await self._burn(profile)
                await asyncio.sleep(seconds)
        else:
            burned = await self._burn(profile)
            await asyncio.sleep(seconds)
        seconds += burned
        if profile.queries and hasattr(self.users, "run_queries"):
            await self.users.run_queries(profile.queries)
        return seconds

    async def _burn(self, profile) -> float:
        """The page's CPU work on a worker thread, its measured ticks kept for the footer;
        the wall time it took (a busy machine stretches it, not the ticks)."""
        if profile.cpu_ms <= 0:
            REQUEST_CPU.set((0, 0))
            return 0.0
        if self._cpu_pool is None:
            self._cpu_pool = ThreadPoolExecutor(max_workers=self.settings.workers or 8, thread_name_prefix="php")
            if not self._rounds_per_ms:
                self._rounds_per_ms = await asyncio.get_running_loop().run_in_executor(self._cpu_pool, calibrate)
        work = profile.cpu_ms * (self.random.lognormvariate(0.0, profile.cpu_jitter) if profile.cpu_jitter else 1.0)
        rounds = max(1, round(work * self._rounds_per_ms))
        started = time.monotonic()
        REQUEST_CPU.set(await asyncio.get_running_loop().run_in_executor(self._cpu_pool, burn, rounds))
        return time.monotonic() - started

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
        if session is None:
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
        if user is None or not (token_ok and password_ok):
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
        view = PageView(self, request, session, session_wait)
        return await LOGGED_IN_PAGES.get(request.path, PageView.not_found)(view)

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
        application.on_cleanup.append(self._stop_workers)
        return application

    async def _stop_workers(self, _application: web.Application) -> None:
        if self._cpu_pool is not None:
            self._cpu_pool.shutdown(wait=False, cancel_futures=True)
