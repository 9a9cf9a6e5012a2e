"""What a Moodle site answers: its login flow, a browser-like fetch and the performance footer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from moodleload.config import Config, User
from moodleload.footer import Footer, FooterName
from moodleload.site.forms import find_sesskey
from moodleload.site.httpclient import (
    BodyTooLarge,
    Client,
    Form,
    HeadersTooLarge,
    HttpError,
    Unreachable,
    parse_set_cookie,
)
from moodleload.site.walk import Walk

# =========================================================================== login

INPUT_TAG = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
ATTRIBUTE = re.compile(r"""([A-Za-z_:][-\w:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""")


def find_logintoken(page: str) -> str | None:
    """The value of the login form's hidden ``logintoken`` input, whatever the attribute
    order and quoting; None where the form has no token (Moodle before 3.x, odd themes)."""
    for tag in INPUT_TAG.findall(page):
        attributes = {name.lower(): double or single or bare
                      for name, double, single, bare in ATTRIBUTE.findall(tag)}
        if attributes.get("name") == "logintoken":
            return attributes.get("value") or None
    return None


# The login failures that say nothing of the site: it could not be reached at all, or this
# process could not open a socket.  A run where they decide stops a bisect (exits.EXIT_UNREACHABLE).
UNREACHABLE_REASONS = {False: "site unreachable", True: "out of file descriptors"}


class LoginFailed(Exception):
    """A login that did not give a session; ``reason`` says which way it failed, and
    ``retryable`` whether trying again after a pause may help (a server error, a reset)."""

    def __init__(self, reason: str, detail: str = "", retryable: bool = False):
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason
        self.retryable = retryable


class BadRedirect(HttpError):
    """A redirect whose Location cannot be a URL (e.g. ``http://[::1/oops``): its own failure kind."""


Origin = tuple[str, str, int]  # (scheme, host, port)


def redirect_target(url: str, location: str) -> tuple[str, Origin]:
    """Where a redirect from ``url`` to ``location`` leads, and that URL's origin; a
    Location that cannot be a URL is a BadRedirect."""
    try:
        target = urljoin(url, location)
        return target, origin_of(target)
    except ValueError:
        raise BadRedirect(f"a redirect to {location[:200]!r}, which is not a usable URL") from None


def origin_of(url: str) -> Origin:
    """(scheme, host, port) of an absolute URL; ValueError where it has none."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _default_path(path: str) -> str:
    """RFC 6265's default cookie path: the request path up to its last slash."""
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[:path.rindex("/")]


def _path_matches(request_path: str, cookie_path: str) -> bool:
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (cookie_path.endswith("/")
                                                     or request_path[len(cookie_path)] == "/")


@dataclass
class Session:
    """One user's session on one site: its own cookies, sent over the one shared connection
    pool.  Cookies are scoped as a browser scopes them: a cookie another host tries to set
    (Domain) is refused, ``Path`` is honoured, and ``Secure`` ones never travel over http.
    Requests never leave the site (``fetch`` does not follow a redirect off it), so no
    cookie of the site reaches another host."""

    user: User
    origin: Origin  # of the site
    jar: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)  # (name, path) -> (value, secure)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    needs_login: bool = False
    relogins: int = 0
    sesskey: str | None = None  # from the last page that had one; it changes at each login
    walk: Walk | None = None  # where the user is in a journey
    # (https, path) -> Cookie header, until a cookie changes
    _headers: dict[tuple[bool, str], str | None] = field(default_factory=dict)
    _everywhere: str | bool | None = ""  # see keep()

    def keep(self, set_cookie_headers: list[str], url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        for header in set_cookie_headers:
            cookie = parse_set_cookie(header)
            if cookie is None:
                continue
            if cookie.domain and not (host == cookie.domain or host.endswith("." + cookie.domain)):
                continue  # a cookie for another host: a browser refuses it
            key = (cookie.name, cookie.path or _default_path(parts.path or "/"))
            if cookie.deleted:
                self.jar.pop(key, None)
            else:
                self.jar[key] = (cookie.value, cookie.secure)
        self._headers.clear()
        # False: cookies differ by path or scheme, parse every URL; None: all for "/", some
        # Secure (one header over https); else the one header for every URL of the site.
        if any(path != "/" for _, path in self.jar):
            self._everywhere = False
        elif any(secure for _, secure in self.jar.values()):
            self._everywhere = None
        else:
            self._everywhere = self.cookie_header(False, "/") or ""

    def cookie_header_for(self, url: str) -> str | None:
        """The Cookie header for ``url``; when every cookie is for the whole site and none is
        Secure (Moodle's own cookies on an http site, or any site over https), one header
        serves every URL without parsing it."""
        if self._everywhere is not False and (self._everywhere is not None or url.startswith("https:")):
            if self._everywhere is None:
                return self.cookie_header(True, "/")
            return str(self._everywhere)
        parts = urlsplit(url)
        return self.cookie_header(parts.scheme == "https", parts.path or "/")

    def cookie_header(self, https: bool, path: str) -> str | None:
        key = (https, path)
        if key not in self._headers:
            self._headers[key] = "; ".join(
                f"{name}={value}" for (name, cookie_path), (value, secure) in self.jar.items()
                if (https or not secure) and _path_matches(path, cookie_path)) or None
        return self._headers[key]

    @property
    def cookies(self) -> dict[str, str]:
        """Name -> value of every cookie held (for messages and tests)."""
        return {name: value for (name, _), (value, _) in self.jar.items()}


@dataclass
class Fetched:
    status: int
    url: str  # the final URL, after redirects
    body: bytes
    location: str  # the Location header of an unfollowed redirect
    redirected: bool
    offsite: str | None = None  # where a redirect off the site pointed (not followed)


class RedirectLoop(Exception):
    """More redirects than a browser would follow."""


REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10


def failure_of(error: BaseException) -> str:
    """The failure kind of a request that got no usable answer."""
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, BadRedirect):
        return "bad_redirect"
    if isinstance(error, BodyTooLarge):
        return "too_large"
    if isinstance(error, HeadersTooLarge):
        return "headers_too_large"
    if isinstance(error, Unreachable):
        return "out_of_files" if error.out_of_files else "unreachable"
    if isinstance(error, RedirectLoop):
        return "redirect_loop"
    return "connection"


FORM_TAG = re.compile(rb"<form\b[^>]*>", re.IGNORECASE)
PASSWORD_INPUT = re.compile(rb"""<input\b[^>]*\bname\s*=\s*["']?password["'\s/>]""", re.IGNORECASE)


def is_login_page(body: bytes, login_path: str) -> bool:
    """Whether a page is Moodle's login form (a form posting to the login path, with a
    password field): what a site that lost the session shows, whatever the URL and status.
    A logged-in page never holds it; a guest's page with the login block does, and a guest
    is not the user."""
    if b"password" not in body or login_path.encode() not in body:  # the quick no, for nearly every page
        return False
    if PASSWORD_INPUT.search(body) is None:
        return False
    for tag in FORM_TAG.findall(body):
        attributes = {name.lower(): double or single or bare
                      for name, double, single, bare in ATTRIBUTE.findall(tag.decode("latin-1"))}
        if urlsplit(attributes.get("action", "")).path == login_path:
            return True
    return False


def judge(fetched: Fetched, login_path: str) -> tuple[str | None, str | None]:
    """(failure kind or None, where it was redirected) of a page the site answered: a
    redirect off the site is not the site's answer, landing on the login page (by a redirect,
    or served in place with a 200) means the session is gone, and only a 2xx is a success."""
    redirected_to = urlsplit(fetched.url).path if fetched.redirected else None
    if fetched.offsite is not None:
        return "offsite_redirect", urlsplit(fetched.offsite).netloc or fetched.offsite[:100]
    if redirected_to is not None and redirected_to == login_path:
        return "session_lost", redirected_to
    if not 200 <= fetched.status < 300:
        return f"http_{fetched.status}", redirected_to
    if is_login_page(fetched.body, login_path):
        return "session_lost", redirected_to
    return None, redirected_to


async def fetch(http: Client, session: Session, url: str, *, timeout: float, form: Form | None = None,
                follow: bool = True) -> Fetched:
    """One request as a browser makes it: the user's cookies, redirects followed hop by
    hop (keeping cookies set on the way), the whole body read.  ``timeout`` is for the whole
    request, every hop together, as the user waits for it.  A redirect off the site is not
    followed: the load stays on the site, and the answer says where it pointed."""
    method = "GET" if form is None else "POST"
    redirected = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        left = deadline - loop.time()
        if left <= 0:
            raise asyncio.TimeoutError()
        reply = await http.request(method, url, session.cookie_header_for(url) or None, form, left)
        if reply.set_cookies:
            session.keep(reply.set_cookies, url)
        status, location = reply.status, reply.location
        if not (follow and status in REDIRECT_STATUSES and location):
            return Fetched(status, url, reply.body, location, redirected)
        target, target_origin = redirect_target(url, location)
        if target_origin != session.origin:
            return Fetched(status, url, reply.body, location, redirected, offsite=target)
        url = target
        redirected = True
        if status in (301, 302, 303):
            method, form = "GET", None
    raise RedirectLoop(f"more than {MAX_REDIRECTS} redirects, last to {url}")


async def login(http: Client, session: Session, config: Config, timeout: float, warn: Callable[[str], object]) -> None:
    """Moodle's login: GET the form (taking its logintoken), POST the credentials, and
    follow the ``testsession`` redirect.  Raises LoginFailed with the reason."""
    user = session.user
    login_url = config.base_url + config.login_path
    try:
        page = await fetch(http, session, login_url, timeout=timeout)
        if page.offsite:
            raise LoginFailed("redirected off the site", f"the login page sent to {urlsplit(page.offsite).netloc}")
        if page.status != 200:
            raise LoginFailed("HTTP status", f"login page answered {page.status}", retryable=page.status >= 500)
        token = find_logintoken(page.body.decode("utf-8", "replace"))
        form = {"username": user.username, "password": user.password, "anchor": ""}
        if token is None:
            warn(f"[WARN] No logintoken for user {user.username}")
        else:
            form["logintoken"] = token
        answer = await fetch(http, session, login_url, timeout=timeout, form=form, follow=False)
        if answer.status == 200 and b"account is locked" in answer.body.lower():
            raise LoginFailed("locked out")
        if answer.status not in REDIRECT_STATUSES:
            raise LoginFailed("HTTP status", f"login POST answered {answer.status}",
                              retryable=answer.status >= 500 or answer.status == 404)
        if "change_password.php" in answer.location:
            raise LoginFailed("forced password change")
        if "testsession=" not in answer.location:
            raise LoginFailed("invalid login")
        landing_url, landing_origin = redirect_target(login_url, answer.location)
        if landing_origin != session.origin:
            raise LoginFailed("redirected off the site", f"the login sent to {urlsplit(landing_url).netloc}")
        landing = await fetch(http, session, landing_url, timeout=timeout)
        final_path = urlsplit(landing.url).path
        if landing.offsite:
            raise LoginFailed("redirected off the site", f"after login, sent to {urlsplit(landing.offsite).netloc}")
        if final_path.endswith("/login/change_password.php"):
            raise LoginFailed("forced password change")
        if final_path == urlsplit(login_url).path:
            raise LoginFailed("session not kept", "the site did not keep the session cookie")
        if landing.status >= 400:
            raise LoginFailed("HTTP status", f"page after login answered {landing.status}",
                              retryable=landing.status >= 500)
        session.sesskey = find_sesskey(landing.body)
    except asyncio.TimeoutError:
        raise LoginFailed("timeout", f"no answer within {timeout:g} s") from None
    except BadRedirect as error:
        raise LoginFailed("bad redirect", str(error)) from None
    except BodyTooLarge as error:
        raise LoginFailed("answer too large", str(error)) from None
    except Unreachable as error:
        raise LoginFailed(UNREACHABLE_REASONS[error.out_of_files], str(error)) from None
    except RedirectLoop as error:
        raise LoginFailed("redirect loop", str(error)) from None
    except HttpError as error:
        raise LoginFailed("connection error", str(error) or type(error).__name__, retryable=True) from None
    except OSError as error:
        raise LoginFailed("connection error", error.strerror or str(error), retryable=True) from None


# =========================================================================== footer

# Each counter: the label to find (bytes.find is a fast memory scan) and the number after it.
# A no-break space (UTF-8 C2 A0) stands between the memory number and its unit.
FOOTER_FIELDS: tuple[tuple[bytes, re.Pattern[bytes], FooterName], ...] = (
    (b"DB reads/writes: ", re.compile(rb"(\d+)/(\d+)"), "db_reads"),
    (b"timeused", re.compile(rb"[^>]*>\s*([\d.]+) secs"), "server_time_ms"),
    (b"RAM peak: ", re.compile(rb"([\d.]+)(?:\s|\xc2\xa0)*([KMG]?B)"), "memory_peak_mb"),
    (b"Included ", re.compile(rb"(\d+) files"), "included_files"),
    (b"DB queries time: ", re.compile(rb"([\d.]+) secs"), "db_time_ms"),
    (b"Session (", re.compile(rb"[^)<]{0,80}\):\s*([\d.]+)(?:\s|\xc2\xa0)*([KMG]?B)"), "session_size_kb"),
    (b"Session wait: ", re.compile(rb"([\d.]+) secs"), "session_wait_ms"),
    # posix_times() differences: wall ticks, then the worker's user and sys CPU ticks, which
    # Moodle prints with no space between them ("user: 36sys: 5").  Signs are read so that a
    # counter that went backwards is seen as unreadable rather than skipped.
    (b"ticks: ", re.compile(rb"(-?\d+) user: (-?\d+)\s*sys: (-?\d+)"), "cpu_ticks"),
)
_UNIT_TO_MB = {b"B": 1 / 1048576, b"KB": 1 / 1024, b"MB": 1.0, b"GB": 1024.0}


TICK_MS = 10.0  # posix_times() counts in clock ticks: USER_HZ, 100 a second on Linux
# No request runs for ten minutes of CPU: beyond it a footer's reading is damaged, not slow.
MAX_CPU_TICKS = 60000
# The wall and CPU counters are read separately at the start and the end of the request,
# each rounded down to a tick, so the CPU may exceed the wall reading by that rounding.
CPU_ROUNDING_TICKS = 3


def cpu_ticks(wall: int, user: int, system: int) -> int | None:
    """The PHP worker's own CPU time for one request (user + sys ticks), or None where the
    reading cannot be true: a counter that went backwards (negative), more CPU than the
    wall time the same footer gives (PHP runs a request on one thread), or absurdly large."""
    cpu = user + system
    if wall < 0 or user < 0 or system < 0 or cpu > wall + CPU_ROUNDING_TICKS or cpu > MAX_CPU_TICKS:
        return None
    return cpu


def parse_footer(body: bytes) -> Footer | None:
    """Counters of Moodle's performance footer ($CFG->perfdebug = 15), or None if the
    page has none.  Reads only the footer's own lines: it runs on every page, at
    hundreds of 100-250 KB pages a second, so it stays a few microseconds."""
    start = body.rfind(b"performanceinfo")
    if start < 0:
        return None
    end = start + 4000
    found: dict[FooterName, Any] = {}  # becomes the Footer
    for label, number, name in FOOTER_FIELDS:
        at = body.find(label, start, end)
        if at < 0:
            continue
        match = number.match(body, at + len(label))
        if match is None:
            continue
        if name == "db_reads":
            found["db_reads"], found["db_writes"] = int(match.group(1)), int(match.group(2))
        elif name == "cpu_ticks":
            cpu = cpu_ticks(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            found["cpu_ticks" if cpu is not None else "cpu_unreadable"] = cpu if cpu is not None else 1
        elif name == "memory_peak_mb":
            found[name] = round(float(match.group(1)) * _UNIT_TO_MB[match.group(2)], 1)
        elif name == "session_size_kb":
            found[name] = round(float(match.group(1)) * _UNIT_TO_MB[match.group(2)] * 1024, 1)
        elif name == "included_files":
            found[name] = int(match.group(1))
        else:  # seconds
            found[name] = float(match.group(1)) * 1000.0
    return Footer(**found) if found else None
