"""What a Moodle site answers: its login flow, a browser-like fetch and the performance footer."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from .config import Config, User
from .httpclient import HttpError, parse_set_cookie

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


class LoginFailed(Exception):
    """A login that did not give a session; ``reason`` says which way it failed."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason


@dataclass
class Session:
    """One user's session: its own cookies, sent over the one shared connection pool.
    Cookies are kept by hand, per user: cheaper than a cookie jar per user, and IP-address
    hosts such as 127.0.0.1 work (aiohttp's default jar refuses their cookies)."""

    user: User
    cookies: dict = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    needs_login: bool = False
    relogins: int = 0
    cookie_header: str | None = None  # rebuilt only when a cookie changes

    def keep(self, set_cookie_headers: list) -> None:
        for header in set_cookie_headers:
            cookie = parse_set_cookie(header)
            if cookie is None:
                continue
            name, value, deleted = cookie
            if deleted:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        self.cookie_header = "; ".join(f"{name}={value}" for name, value in self.cookies.items()) or None


@dataclass
class Fetched:
    status: int
    url: str  # the final URL, after redirects
    body: bytes
    location: str  # the Location header of an unfollowed redirect
    redirected: bool


class RedirectLoop(Exception):
    """More redirects than a browser would follow."""


REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10


async def fetch(http, session: Session, url: str, *, timeout: float, form: dict | None = None,
                follow: bool = True) -> Fetched:
    """One request as a browser makes it: the user's cookies, redirects followed hop by
    hop (keeping cookies set on the way), the whole body read.  ``timeout`` is per hop."""
    method = "GET" if form is None else "POST"
    redirected = False
    for _ in range(MAX_REDIRECTS + 1):
        reply = await http.request(method, url, session.cookie_header, form, timeout)
        if reply.set_cookies:
            session.keep(reply.set_cookies)
        status, location = reply.status, reply.location
        if not (follow and status in REDIRECT_STATUSES and location):
            return Fetched(status, url, reply.body, location, redirected)
        url = urljoin(url, location)
        redirected = True
        if status in (301, 302, 303):
            method, form = "GET", None
    raise RedirectLoop(f"more than {MAX_REDIRECTS} redirects, last to {url}")


async def login(http, session: Session, config: Config, timeout: float, warn) -> None:
    """Moodle's login: GET the form (taking its logintoken), POST the credentials, and
    follow the ``testsession`` redirect.  Raises LoginFailed with the reason."""
    user = session.user
    login_url = config.base_url + config.login_path
    try:
        page = await fetch(http, session, login_url, timeout=timeout)
        if page.status != 200:
            raise LoginFailed("HTTP status", f"login page answered {page.status}")
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
            raise LoginFailed("HTTP status", f"login POST answered {answer.status}")
        if "change_password.php" in answer.location:
            raise LoginFailed("forced password change")
        if "testsession=" not in answer.location:
            raise LoginFailed("invalid login")
        landing = await fetch(http, session, urljoin(login_url, answer.location), timeout=timeout)
        final_path = urlsplit(landing.url).path
        if final_path.endswith("/login/change_password.php"):
            raise LoginFailed("forced password change")
        if final_path == urlsplit(login_url).path:
            raise LoginFailed("session not kept", "the site did not keep the session cookie")
        if landing.status >= 400:
            raise LoginFailed("HTTP status", f"page after login answered {landing.status}")
    except asyncio.TimeoutError:
        raise LoginFailed("timeout", f"no answer within {timeout:g} s") from None
    except (HttpError, RedirectLoop) as error:
        raise LoginFailed("connection error", str(error) or type(error).__name__) from None
    except OSError as error:
        raise LoginFailed("connection error", error.strerror or str(error)) from None


# =========================================================================== footer

# Each counter: the label to find (bytes.find is a fast memory scan) and the number after it.
# A no-break space (UTF-8 C2 A0) stands between the memory number and its unit.
FOOTER_FIELDS = (
    (b"DB reads/writes: ", re.compile(rb"(\d+)/(\d+)")),
    (b"timeused", re.compile(rb"[^>]*>\s*([\d.]+) secs")),
    (b"RAM peak: ", re.compile(rb"([\d.]+)(?:\s|\xc2\xa0)*([KMG]?B)")),
    (b"Included ", re.compile(rb"(\d+) files")),
    (b"Session wait: ", re.compile(rb"([\d.]+) secs")),
)
_UNIT_TO_MB = {b"B": 1 / 1048576, b"KB": 1 / 1024, b"MB": 1.0, b"GB": 1024.0}


def parse_footer(body: bytes) -> dict | None:
    """Counters of Moodle's performance footer ($CFG->perfdebug = 15), or None if the
    page has none.  Reads only the footer's own lines: it runs on every page, at
    hundreds of 100-250 KB pages a second, so it stays a few microseconds."""
    start = body.rfind(b"performanceinfo")
    if start < 0:
        return None
    end = start + 4000
    found = {}
    for label, number in FOOTER_FIELDS:
        at = body.find(label, start, end)
        if at < 0:
            continue
        match = number.match(body, at + len(label))
        if match is None:
            continue
        if label == b"DB reads/writes: ":
            found["db_reads"], found["db_writes"] = int(match.group(1)), int(match.group(2))
        elif label == b"timeused":
            found["server_time_ms"] = float(match.group(1)) * 1000.0
        elif label == b"RAM peak: ":
            found["memory_peak_mb"] = round(float(match.group(1)) * _UNIT_TO_MB[match.group(2)], 1)
        elif label == b"Included ":
            found["included_files"] = int(match.group(1))
        else:
            found["session_wait_ms"] = float(match.group(1)) * 1000.0
    return found or None
