#!/usr/bin/env python3
"""Open-loop load generator for a Moodle site, made for ``git bisect run``.

Logs test users in through Moodle's logintoken form, then releases requests at a
target rate on an absolute timeline (a token bucket that a slow server cannot slow
down) to worker tasks that hold one user session each, and reports what happened:
observed rate, successes and failures by kind, latency percentiles per URL, and the
counters of Moodle's performance footer.  The exit status is a verdict bisect reads.

Usage:
    moodle_load.py --config config.json --rpm 600 --duration 600 [--concurrency 30]
                   [--warmup 30] [--seed 1] [--output run.json] [--baseline base.json]
                   [--max-p95-ms 800] [--max-regression 10] [--insecure]
    moodle_load.py --compare base.json new.json       # judge two saved runs, no load
    moodle_load.py --merge a.json b.json --output all.json   # add runs (shards) together
    moodle_load.py --report report.html run.json      # the HTML report of a saved run

Exit status:
    0    good: no gate breached, no regression against the baseline
    1    bad: a gate breached or a regression found
    125  cannot judge this commit (site unreachable, no login succeeded, most requests
         failed, or the comparison is inconclusive): git bisect skips it
    128  usage or config mistake: git bisect stops instead of marking a commit bad
    130  interrupted (Ctrl-C), 143 terminated (SIGTERM); the report of what was measured
         is still printed and saved

Latency, in milliseconds, is measured two ways.  *Response time* runs from the moment
the schedule intended the request to start (so time spent waiting for a free worker
or session counts, as in wrk2; this is ``latency_ms_*``).  *Service time* runs from
sending the request to the last byte of the body (``service_ms_*``).  Both count
successful requests; failures are counted by kind.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import random
import re
import signal
import socket
import statistics
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, urlencode, urljoin, urlsplit

__version__ = "0.3.0"

EXIT_GOOD = 0
EXIT_BAD = 1
EXIT_CANNOT_JUDGE = 125
EXIT_USAGE = 128
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

RESULTS_FORMAT = 1


class UsageError(Exception):
    """A mistake in the command line, config or input files: one line, exit 128."""


# =========================================================================== data model

@dataclass(frozen=True)
class Parameter:
    """A URL placeholder's values: an inclusive integer range or an explicit list."""

    name: str
    minimum: int | None = None
    maximum: int | None = None
    values: tuple = ()

    def pick(self, unit: float):
        """The value for a uniform number in [0, 1)."""
        if self.values:
            return self.values[int(unit * len(self.values))]
        return self.minimum + int(unit * (self.maximum - self.minimum + 1))


@dataclass(frozen=True)
class UrlSpec:
    path: str  # template with {placeholders}
    name: str  # how reports call it
    weight: float
    placeholders: tuple


@dataclass(frozen=True)
class User:
    username: str
    password: str


@dataclass
class Config:
    base_url: str
    login_path: str
    users: list
    parameters: dict
    urls: list
    warnings: list = field(default_factory=list)


@dataclass(frozen=True)
class PlannedRequest:
    index: int  # position on the global timeline
    url_index: int
    path: str


# =========================================================================== config

KNOWN_KEYS = {"base_url", "login_path", "users", "parameters", "urls"}
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(raw) -> Config:
    """Check a parsed config.json and build a Config; raise UsageError naming the key."""
    if not isinstance(raw, dict):
        raise UsageError("config: the top level must be a JSON object")
    warnings = [f"config: unknown key '{key}' ignored" for key in raw if key not in KNOWN_KEYS]

    base_url = raw.get("base_url")
    if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https") \
            or not urlsplit(base_url).netloc:
        raise UsageError(f"config: base_url must be an http:// or https:// URL, got {base_url!r}")
    base_url = base_url.rstrip("/")
    login_path = raw.get("login_path", "/login/index.php")
    if not isinstance(login_path, str) or not login_path.startswith("/"):
        raise UsageError(f"config: login_path must be a path starting with '/', got {login_path!r}")

    users_raw = raw.get("users")
    if not isinstance(users_raw, list) or not users_raw:
        raise UsageError("config: users must be a non-empty list (run set_moodle_passwords.py to fill it)")
    users = []
    for position, entry in enumerate(users_raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("username"), str) \
                or not entry.get("username") or not isinstance(entry.get("password"), str):
            raise UsageError(f"config: users[{position}] needs a 'username' and a 'password' string")
        users.append(User(entry["username"], entry["password"]))

    parameters = {}
    params_raw = raw.get("parameters", {})
    if not isinstance(params_raw, dict):
        raise UsageError("config: parameters must be an object of name -> {min, max} or {values}")
    for name, spec in params_raw.items():
        key = f"parameters.{name}"
        if not isinstance(spec, dict):
            raise UsageError(f"config: {key} must be {{\"min\": .., \"max\": ..}} or {{\"values\": [..]}}")
        if "values" in spec:
            values = spec["values"]
            if not isinstance(values, list) or not values:
                raise UsageError(f"config: {key}.values must be a non-empty list")
            if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
                raise UsageError(f"config: {key}.values must hold only integers or strings")
            parameters[name] = Parameter(name, values=tuple(values))
            continue
        for bound in ("min", "max"):
            if bound not in spec:
                raise UsageError(f"config: {key} needs '{bound}' (or a 'values' list)")
            if not _is_int(spec[bound]):
                raise UsageError(f"config: {key}.{bound} must be an integer, got {spec[bound]!r}")
        if spec["min"] > spec["max"]:
            raise UsageError(f"config: {key}: min {spec['min']} is greater than max {spec['max']}")
        parameters[name] = Parameter(name, minimum=spec["min"], maximum=spec["max"])

    urls_raw = raw.get("urls")
    if not isinstance(urls_raw, list) or not urls_raw:
        raise UsageError("config: urls must be a non-empty list of {\"path\": ...}")
    urls, names = [], set()
    for position, entry in enumerate(urls_raw):
        key = f"urls[{position}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or not entry["path"].startswith("/"):
            raise UsageError(f"config: {key} needs a 'path' starting with '/'")
        path = entry["path"]
        placeholders = tuple(PLACEHOLDER.findall(path))
        for placeholder in placeholders:
            if not IDENTIFIER.match(placeholder):
                raise UsageError(f"config: {key}.path has a bad placeholder {{{placeholder}}}")
            if placeholder not in parameters:
                raise UsageError(f"config: {key}.path uses {{{placeholder}}} but parameters has no "
                                 f"'{placeholder}'")
        weight = entry.get("weight", 1)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0 \
                or not math.isfinite(weight):
            raise UsageError(f"config: {key}.weight must be a positive number, got {weight!r}")
        name = entry.get("name", path)
        if not isinstance(name, str) or not name:
            raise UsageError(f"config: {key}.name must be a non-empty string")
        if name in names:
            raise UsageError(f"config: {key}.name {name!r} is used twice; give each URL its own name")
        names.add(name)
        urls.append(UrlSpec(path=path, name=name, weight=float(weight), placeholders=placeholders))
    return Config(base_url, login_path, users, parameters, urls, warnings)


def load_config(path: str) -> tuple[Config, str]:
    """Read and validate config.json; returns the config and the SHA-256 of its load
    (users' passwords excluded, so a password reset does not break comparisons)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config: {path} not found (copy config.example.json or run "
                         f"set_moodle_passwords.py)") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"config: {path} is not valid JSON: {error.msg} at line {error.lineno} "
                         f"column {error.colno}") from None
    except OSError as error:
        raise UsageError(f"config: cannot read {path}: {error.strerror}") from None
    config = validate_config(raw)
    return config, config_digest(raw)


def config_digest(raw: dict) -> str:
    """Hash of what shapes the load: URLs, parameters, base URL and the user names."""
    shape = {key: raw.get(key) for key in ("base_url", "login_path", "parameters", "urls")}
    shape["users"] = sorted(u.get("username", "") for u in raw.get("users", []) if isinstance(u, dict))
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def fill_url(spec: UrlSpec, parameters: dict, units) -> str:
    """The URL's path with each {placeholder} replaced by its parameter's value for the next
    uniform number from ``units`` (an iterator of floats in [0, 1))."""
    if not spec.placeholders:
        return spec.path
    return PLACEHOLDER.sub(lambda m: str(parameters[m.group(1)].pick(next(units))), spec.path)


# =========================================================================== schedule

_MASK64 = (1 << 64) - 1


def unit_interval(seed: int, index: int, draw: int) -> float:
    """A uniform number in [0, 1) for (seed, timeline position, draw number): splitmix64,
    so any position can be computed on its own (shards agree with a single process) and
    a draw costs a few integer operations."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xD1B54A32D192ED03 + draw * 0xABC98388FB8FAC03) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return ((z ^ (z >> 31)) >> 11) * (1.0 / (1 << 53))


def plan_requests(config: Config, seed: int, count: int, start: int = 0, step: int = 1):
    """The deterministic request sequence: for timeline positions start, start+step, ...
    below count, which URL and which filled-in path.  The same config and seed give the
    same sequence, whatever the shard, so shards of one run add up to the whole run."""
    cumulative = []
    total = 0.0
    for spec in config.urls:
        total += spec.weight
        cumulative.append(total)
    for index in range(start, count, step):
        pick = unit_interval(seed, index, 0) * total
        url_index = next(i for i, edge in enumerate(cumulative) if pick < edge)
        spec = config.urls[url_index]
        units = (unit_interval(seed, index, draw) for draw in range(1, len(spec.placeholders) + 1))
        yield PlannedRequest(index, url_index, fill_url(spec, config.parameters, units))


def user_order(users: list, seed: int) -> list:
    """Users in a seeded order: requests take them round-robin."""
    order = list(users)
    random.Random(seed).shuffle(order)
    return order


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise UsageError(f"--shard must be K/N with 1 <= K <= N, got {text!r}")
    return int(match.group(1)), int(match.group(2))


# =========================================================================== histograms

class Histogram:
    """Log-bucketed latency histogram: bounded memory for any run length, values within
    1 % (buckets are 2 % wide, a value is reported at its bucket's geometric middle),
    and mergeable by adding counts, so shards and processes make one distribution."""

    BASE = 1.02
    _LOG_BASE = math.log(BASE)

    __slots__ = ("counts", "count", "total", "minimum", "maximum")

    def __init__(self):
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = 0.0

    @classmethod
    def bucket_of(cls, value_ms: float) -> int:
        return int(math.log(max(value_ms, 0.001) * 1000.0) / cls._LOG_BASE)

    def record(self, value_ms: float, bucket: int | None = None) -> None:
        """Count a value; ``bucket`` may be given when the caller already computed it."""
        value_ms = max(value_ms, 0.001)
        if bucket is None:
            bucket = int(math.log(value_ms * 1000.0) / self._LOG_BASE)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.count += 1
        self.total += value_ms
        if value_ms < self.minimum:
            self.minimum = value_ms
        if value_ms > self.maximum:
            self.maximum = value_ms

    def merge(self, other: Histogram) -> Histogram:
        for bucket, count in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + count
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        return self

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                middle = self.BASE ** (bucket + 0.5) / 1000.0
                return min(max(middle, self.minimum), self.maximum)
        return self.maximum

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_dict(self) -> dict:
        return {"base": self.BASE, "unit": "ms", "count": self.count, "sum": round(self.total, 3),
                "min": round(self.minimum, 3) if self.count else None, "max": round(self.maximum, 3),
                "buckets": {str(k): v for k, v in sorted(self.counts.items())}}

    @classmethod
    def from_dict(cls, raw: dict | None) -> Histogram:
        histogram = cls()
        if not raw:
            return histogram
        if raw.get("base") != cls.BASE:
            raise UsageError(f"results: histogram base {raw.get('base')} is not {cls.BASE}")
        histogram.counts = {int(k): int(v) for k, v in raw.get("buckets", {}).items()}
        histogram.count = int(raw.get("count", sum(histogram.counts.values())))
        histogram.total = float(raw.get("sum", 0.0))
        histogram.minimum = raw["min"] if raw.get("min") is not None else math.inf
        histogram.maximum = float(raw.get("max", 0.0))
        return histogram


def counter_median(counts: dict) -> float | None:
    """Median of a {value: how many times} tally."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0
    for value in sorted(counts, key=float):
        seen += counts[value]
        if seen * 2 >= total:
            return float(value)
    return None


# =========================================================================== HTTP

class HttpError(Exception):
    """The connection failed, or what came back was not HTTP: a "connection" failure."""


@dataclass
class Reply:
    """What one HTTP exchange gave back, as much as a load test needs of it."""

    status: int
    location: str  # the Location header, "" if none
    set_cookies: list  # the raw Set-Cookie headers
    body: bytes  # decoded from gzip/deflate


def parse_set_cookie(header: str) -> tuple[str, str, bool] | None:
    """``(name, value, deleted)`` of one Set-Cookie header, or None if it names no cookie.
    A cookie is deleted the ways PHP deletes one: ``Max-Age=0`` (or less), or its
    placeholder value ``deleted``."""
    pair, _, attributes = header.partition(";")
    name, equals, value = pair.partition("=")
    name = name.strip()
    if not equals or not name:
        return None
    value = value.strip()
    if len(value) > 1 and value[0] == value[-1] == '"':
        value = value[1:-1]
    deleted = value == "deleted"
    for attribute in attributes.split(";"):
        key, _, setting = attribute.partition("=")
        if key.strip().lower() == "max-age":
            try:
                deleted = deleted or int(setting.strip()) <= 0
            except ValueError:
                pass
    return name, value, deleted


def decode_body(body: bytes, encoding: bytes) -> bytes:
    """The body without its Content-Encoding (gzip or deflate, the two we ask for)."""
    if encoding == b"gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == b"deflate":
        try:  # what the RFC calls deflate is zlib-wrapped; some servers send it raw
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    return body


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time.  The answer
    is parsed by httptools (llhttp, Node.js's parser in C), called back as bytes arrive."""

    def __init__(self, parser_class):
        self.parser = parser_class(self)
        self.transport = None
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.received = False  # any byte of the current answer
        self.timer = None
        self._new_message()

    def _new_message(self) -> None:
        self.location = ""
        self.set_cookies = []
        self.encoding = b""
        self.delimited = False  # Content-Length or chunked: else the body ends when the server closes
        self.headers_done = False
        self.chunks = []

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except Exception as error:  # httptools.HttpParserError and its kinds
            self._fail(HttpError(f"not an HTTP answer ({error})"))

    def connection_lost(self, error) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.waiter is None or self.waiter.done():
            return
        if self.headers_done and not self.delimited:
            self._complete(keep_alive=False)
        else:
            reason = "the server closed the connection" if error is None else (str(error) or type(error).__name__)
            self.waiter.set_exception(HttpError(reason))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"location":
            self.location = value.decode("latin-1")
        elif name == b"set-cookie":
            self.set_cookies.append(value.decode("latin-1"))
        elif name == b"content-encoding":
            self.encoding = value.strip().lower()
        elif name == b"content-length" or name == b"transfer-encoding":
            self.delimited = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            # 100 Continue, 103 Early Hints: informational, the answer itself is still to come.
            self._new_message()
            return
        self._complete(keep_alive=self.parser.should_keep_alive())

    # -- one exchange
    def _complete(self, keep_alive: bool) -> None:
        waiter, self.waiter = self.waiter, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        body = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        status, location, cookies, encoding = self.parser.get_status_code(), self.location, self.set_cookies, \
            self.encoding
        self._new_message()
        if not keep_alive:
            self.close()
        if waiter is None or waiter.done():
            return
        try:
            waiter.set_result(Reply(status, location, cookies, decode_body(body, encoding)))
        except zlib.error as error:
            waiter.set_exception(HttpError(f"bad {encoding.decode('latin-1')} body ({error})"))

    def _fail(self, error: Exception) -> None:
        self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def _timed_out(self) -> None:
        self.timer = None
        self._fail(asyncio.TimeoutError())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # nothing of ours is left to send: no lingering half-close

    async def exchange(self, request: bytes, deadline: float, loop) -> Reply:
        self.received = False
        self.waiter = loop.create_future()
        self.timer = loop.call_at(deadline, self._timed_out)
        self.transport.write(request)
        try:
            return await self.waiter
        except asyncio.CancelledError:
            self.close()  # the answer may still come: this connection cannot be reused
            raise


class HttpClient:
    """A lean HTTP/1.1 client for the requests of the load: keep-alive connections in one
    pool for all users (each user's cookies travel in its own header), plain or TLS.
    It does a fraction of aiohttp's per-request work (see the README's performance part);
    ``AiohttpClient`` is the same interface on aiohttp, for comparison or where httptools
    is missing."""

    def __init__(self, *, insecure: bool, user_agent: str):
        import httptools

        self._parser_class = httptools.HttpResponseParser
        self._idle: dict = {}  # (scheme, host, port) -> idle connections, the most recent last
        self._user_agent = user_agent
        self._insecure = insecure
        self._tls = None
        self._loop = None

    def _tls_context(self):
        if self._tls is None:
            import ssl

            self._tls = ssl.create_default_context()
            if self._insecure:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        return self._tls

    async def _connect(self, scheme: str, host: str, port: int, deadline: float) -> _Connection:
        loop = self._loop
        opening = loop.create_connection(lambda: _Connection(self._parser_class), host, port,
                                         ssl=self._tls_context() if scheme == "https" else None)
        try:
            _, connection = await asyncio.wait_for(opening, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:  # an OSError too since Python 3.11: it stays a timeout
            raise
        except (OSError, ValueError) as error:  # ValueError: a port out of range, an odd host
            raise HttpError(f"cannot connect to {host}:{port} ({getattr(error, 'strerror', None) or error})") \
                from None
        return connection

    async def request(self, method: str, url: str, cookie: str | None, form: dict | None,
                      timeout: float) -> Reply:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        loop = self._loop
        deadline = loop.time() + timeout
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        if scheme not in ("http", "https") or not host:
            raise HttpError(f"cannot fetch {url!r}: not an http(s) URL")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise HttpError(f"cannot fetch {url!r}: bad port") from None
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        if not target.isascii():
            target = quote(target, safe="/?&=%:@!$'()*+,;~-._")
        head = (f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
                f"User-Agent: {self._user_agent}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n")
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        payload = b""
        if form is not None:
            payload = urlencode(form).encode()
            head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(payload)}\r\n"
        request = (head + "\r\n").encode("latin-1") + payload
        key = (scheme, host, port)
        idle = self._idle.setdefault(key, [])
        retried = False
        while True:
            connection = None
            while idle and connection is None:
                candidate = idle.pop()
                if not candidate.closed:
                    connection = candidate
            reused = connection is not None
            if connection is None:
                connection = await self._connect(scheme, host, port, deadline)
            try:
                reply = await connection.exchange(request, deadline, loop)
            except HttpError:
                # A kept-alive connection the server had closed meanwhile (its keep-alive
                # timeout) fails before any answer: try once more on a new one, as browsers do.
                if reused and not connection.received and not retried and method == "GET":
                    retried = True
                    continue
                raise
            if not connection.closed:
                idle.append(connection)
            return reply

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()


class AiohttpClient:
    """``HttpClient``'s interface on aiohttp: one ClientSession and pool, no cookie jar
    (cookies are per user, kept by each Session)."""

    def __init__(self, *, insecure: bool, user_agent: str):
        import aiohttp

        self._aiohttp = aiohttp
        connector = aiohttp.TCPConnector(limit=0, ssl=False if insecure else None, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                              headers={"User-Agent": user_agent})
        self._timeouts: dict = {}

    async def request(self, method: str, url: str, cookie: str | None, form: dict | None,
                      timeout: float) -> Reply:
        aiohttp = self._aiohttp
        if timeout not in self._timeouts:
            self._timeouts[timeout] = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._session.request(method, url, data=form, headers={"Cookie": cookie} if cookie else None,
                                             allow_redirects=False, timeout=self._timeouts[timeout]) as response:
                body = await response.read()
                return Reply(response.status, response.headers.get("Location", ""),
                             response.headers.getall("Set-Cookie", []), body)
        except asyncio.TimeoutError:
            raise
        except aiohttp.ClientError as error:
            raise HttpError(str(error) or type(error).__name__) from None
        except (OSError, ValueError) as error:
            raise HttpError(getattr(error, "strerror", None) or str(error)) from None

    async def close(self) -> None:
        await self._session.close()


def resolve_http_client(name: str) -> str:
    """Which client ``name`` means here: "auto" is httptools where installed, else aiohttp."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        if name == "httptools":
            raise UsageError("--http-client httptools: httptools is not installed (pip install httptools), "
                             "or use --http-client aiohttp") from None
        return "aiohttp"
    return "httptools" if name == "auto" else name


def http_client(name: str, *, insecure: bool):
    """A new client: "httptools" (HttpClient) or "aiohttp" (AiohttpClient)."""
    client_class = HttpClient if name == "httptools" else AiohttpClient
    return client_class(insecure=insecure, user_agent=f"moodle_load/{__version__}")


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


# =========================================================================== recording

FAILURE_KINDS = ("http_status", "timeout", "connection", "session_lost", "login")


class UrlStats:
    """Everything measured for one URL of the config."""

    def __init__(self, blocks: int):
        self.requests = 0
        self.success = 0
        self.failures: Counter = Counter()  # "http_404", "timeout", "connection", ...
        self.redirects: Counter = Counter()  # final path -> count, when redirected
        self.response = Histogram()
        self.service = Histogram()
        self.blocks = [Histogram() for _ in range(blocks)]  # service time per time block
        # Discrete counters are tallied value by value; times go into histograms.
        self.footer_counts = {"db_reads": Counter(), "db_writes": Counter(), "included_files": Counter(),
                              "memory_peak_mb": Counter()}
        self.footer_times = {"server_time_ms": Histogram(), "session_wait_ms": Histogram()}

    def record_footer(self, footer: dict) -> None:
        for name, tally in self.footer_counts.items():
            if name in footer:
                tally[footer[name]] += 1
        for name, histogram in self.footer_times.items():
            if name in footer:
                histogram.record(footer[name])

    def to_dict(self) -> dict:
        footer = {name: {str(k): v for k, v in sorted(tally.items())}
                  for name, tally in self.footer_counts.items() if tally}
        for name, histogram in self.footer_times.items():
            if histogram.count:
                footer[name] = histogram.to_dict()
        return {
            "requests": self.requests, "success": self.success,
            "failure": self.requests - self.success,
            "failures": dict(sorted(self.failures.items())),
            "redirects": dict(self.redirects.most_common()),
            "response_ms": self.response.to_dict(), "service_ms": self.service.to_dict(),
            "blocks_service_ms": [block.to_dict() for block in self.blocks],
            "footer": footer,
        }


class TimelinePoint:
    """What happened in one slice of the measured time, by the moment requests were sent."""

    __slots__ = ("sent", "ok", "failures", "response", "service", "cpu_seconds")

    def __init__(self):
        self.sent = 0
        self.ok = 0
        self.failures: Counter = Counter()
        self.response = Histogram()
        self.service = Histogram()
        self.cpu_seconds = 0.0

    def to_dict(self, index: int, seconds: float) -> dict:
        return {"t": round(index * seconds, 3), "sent": self.sent, "ok": self.ok,
                "failures": dict(self.failures), "response_ms": self.response.to_dict(),
                "service_ms": self.service.to_dict(), "cpu_seconds": round(self.cpu_seconds, 4)}


class Recorder:
    """Collects results while the load runs; its document is the run's results."""

    def __init__(self, config: Config, blocks: int, block_seconds: float, timeline_seconds: float = 1.0):
        self.config = config
        self.block_seconds = block_seconds
        self.timeline_seconds = timeline_seconds
        self.timeline: dict[int, TimelinePoint] = {}
        self.urls = {spec.name: UrlStats(blocks) for spec in config.urls}
        self.lateness = Histogram()  # actual send minus intended start
        self.loop_lag = Histogram()  # how late a sleeping worker woke: the generator's own delay
        self.tokens_waited = 0  # already due when a worker became free
        self.tokens_dropped = 0
        self.tokens_unsent = 0  # never sent: the backlog's time ran out, or the run was stopped
        self.sent = 0
        self.sent_in_window = 0  # sent before the measured window closed: the observed rate
        self.interval = Histogram()
        self.interval_done = 0
        self.interval_failed = 0
        self.request_errors_printed = 0
        self.request_errors_suppressed = 0

    def point(self, offset: float) -> TimelinePoint:
        index = max(0, int(offset / self.timeline_seconds))
        point = self.timeline.get(index)
        if point is None:
            point = self.timeline[index] = TimelinePoint()
        return point

    def record(self, url_name: str, measured_offset: float | None, *, response_ms: float | None = None,
               service_ms: float | None = None, failure: str | None = None,
               redirected_to: str | None = None, footer: dict | None = None,
               sent_offset: float | None = None) -> None:
        if measured_offset is None:  # warm-up: executed, not counted
            return
        stats = self.urls[url_name]
        stats.requests += 1
        self.interval_done += 1
        point = self.point(measured_offset if sent_offset is None else sent_offset)
        point.sent += 1
        if redirected_to is not None:
            stats.redirects[redirected_to] += 1
        if failure is not None:
            stats.failures[failure] += 1
            point.failures[failure] += 1
            self.interval_failed += 1
            return
        stats.success += 1
        point.ok += 1
        response_bucket = Histogram.bucket_of(response_ms)
        service_bucket = Histogram.bucket_of(service_ms)
        stats.response.record(response_ms, response_bucket)
        stats.service.record(service_ms, service_bucket)
        # The timeline only draws charts: five buckets in one (values within 5 %) keep its up to
        # 600 points small, so memory stays flat over a long run.
        point.response.record(response_ms, response_bucket - response_bucket % 5 + 2)
        point.service.record(service_ms, service_bucket - service_bucket % 5 + 2)
        self.interval.record(response_ms, response_bucket)
        block = min(int(measured_offset / self.block_seconds), len(stats.blocks) - 1)
        stats.blocks[max(block, 0)].record(service_ms, service_bucket)
        if footer:
            stats.record_footer(footer)


# =========================================================================== running the load

@dataclass
class RunSettings:
    rpm: float
    duration: float
    concurrency: int = 20
    warmup: float = 0.0
    seed: int = 1
    insecure: bool = False
    login_timeout: float = 20.0
    request_timeout: float = 60.0
    progress: float = 30.0
    blocks: int = 20
    shard: tuple = (1, 1)
    grace: float = 5.0  # how long requests in flight may finish after a stop
    drain: float = 30.0  # how long a backlog may still be worked off after the schedule ends
    http_client: str = "httptools"  # or "aiohttp"


class Printer:
    """Where messages go.  Quiet keeps only what needs a person: errors and warnings.  On a
    terminal a live status line rewrites itself under the messages; in logs (CI, git bisect)
    there is none, only the [PROGRESS] lines."""

    CLEAR = "\r\033[K"

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.live = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = ""

    def __call__(self, line: str) -> None:
        if not self.quiet or line.startswith(("[ERROR]", "[WARN]")):
            if self.shown:
                self.stream.write(self.CLEAR)
            print(line, file=self.stream, flush=not self.shown)
            if self.shown:
                self.stream.write(self.shown)
                self.stream.flush()

    def status(self, line: str) -> None:
        self.shown = line
        self.stream.write(self.CLEAR + line)
        self.stream.flush()

    def end_status(self) -> None:
        if self.shown:
            self.stream.write(self.CLEAR)
            self.stream.flush()
            self.shown = ""


class PauseDetector:
    """Notices when this process stopped running (SIGSTOP, a long GC, a blocked event loop):
    a 50 ms sleep that took far longer.  Like HdrHistogram's pause detector."""

    def __init__(self, clock, tick: float = 0.05, threshold: float = 0.5):
        self.clock = clock
        self.tick = tick
        self.threshold = threshold
        self.intervals: list = []  # (from, to) of each pause

    async def watch(self) -> None:
        while True:
            before = self.clock()
            await asyncio.sleep(self.tick)
            after = self.clock()
            if after - before - self.tick > self.threshold:
                self.intervals.append((before + self.tick, after))

    def covers(self, moment: float) -> bool:
        return any(start <= moment < end for start, end in reversed(self.intervals[-16:]))


def _wake(waiter: asyncio.Future) -> None:
    """End a worker's wait for its due time (the timer fired, or the run is stopping)."""
    if not waiter.done():
        waiter.set_result(None)


class LoadRun:
    """Logs users in, then runs the schedule.  ``stop()`` ends it early (signals)."""

    def __init__(self, config: Config, settings: RunSettings, say: Printer):
        self.config = config
        self.settings = settings
        self.say = say
        self.stopping = asyncio.Event()
        self.interrupted_by: int | None = None
        self.login_failures: Counter = Counter()
        self.logins_ok = 0
        self.sessions: list[Session] = []
        shard, shards = settings.shard
        self.shard_users = [u for i, u in enumerate(user_order(config.users, settings.seed))
                            if i % shards == shard - 1]
        self.block_seconds = settings.duration / settings.blocks
        # At most ~600 points on the timeline, whatever the duration: the report stays small.
        self.timeline_seconds = max(1.0, settings.duration / 600.0)
        self.recorder = Recorder(config, settings.blocks, self.block_seconds, self.timeline_seconds)
        self.started_at = None
        self.measured_seconds = 0.0
        self.cpu_seconds = 0.0
        self.effective_concurrency = settings.concurrency
        self.run_seconds = 0.0
        self.window_end = math.inf
        self.login_url_path = urlsplit(config.base_url + config.login_path).path
        self.http = None
        self._sleepers: set = set()

    def stop(self, signum: int | None = None) -> None:
        self.window_end = min(self.window_end, time.perf_counter())
        if self.interrupted_by is None and signum is not None:
            self.interrupted_by = signum
            self.say(f"[INFO] {signal.Signals(signum).name}: stopping the schedule, finishing requests in flight")
        self.stopping.set()
        for waiter in self._sleepers:  # workers waiting for their next due time
            _wake(waiter)

    async def run(self) -> None:
        # One client and pool for all users; each Session carries its own cookies.
        self.http = http_client(self.settings.http_client, insecure=self.settings.insecure)
        try:
            await self._login_all()
            if self.sessions and not self.stopping.is_set():
                await self._run_schedule()
        finally:
            await self.http.close()

    async def _login_all(self) -> None:
        users = self.shard_users
        self.say(f"[INFO] Logging in {len(users)} users...")
        gate = asyncio.Semaphore(max(1, self.settings.concurrency))

        async def one(user: User):
            session = Session(user)
            async with gate:
                if self.stopping.is_set():
                    return
                try:
                    await login(self.http, session, self.config, self.settings.login_timeout, self.say)
                except LoginFailed as failure:
                    self.login_failures[failure.reason] += 1
                    self.say(f"[ERROR] Login failed for user {user.username}: {failure}")
                    return
            self.logins_ok += 1
            self.sessions.append(session)

        await asyncio.gather(*(one(user) for user in users))
        # Keep the seeded order whatever order the logins finished in.
        rank = {user.username: i for i, user in enumerate(users)}
        self.sessions.sort(key=lambda s: rank[s.user.username])
        self.say(f"[INFO] {self.logins_ok} of {len(users)} users logged in")

    async def _run_schedule(self) -> None:
        """The token bucket, lazily: each free worker takes the next position of the plan and
        waits for its due time; a token already due when taken waited for a free worker.
        Nothing queues up, so memory stays flat however far the site falls behind."""
        settings = self.settings
        clock = time.perf_counter  # finer than uvloop's loop.time(), and the same under both loops
        concurrency = min(settings.concurrency, len(self.sessions))
        if concurrency < settings.concurrency:
            self.say(f"[WARN] --concurrency {settings.concurrency} capped at {concurrency}: one request "
                     f"in flight per user session (Moodle locks the session), {len(self.sessions)} users "
                     f"logged in")
        self.effective_concurrency = concurrency
        shard, shards = settings.shard
        interval = 60.0 / settings.rpm  # between positions of the whole timeline, all shards
        total_seconds = settings.warmup + settings.duration
        count = int(math.floor(total_seconds / interval + 1e-9))
        plan = enumerate(plan_requests(self.config, settings.seed, count, start=shard - 1, step=shards))
        recorder = self.recorder
        sessions = self.sessions
        pauses = PauseDetector(clock)

        cpu_start = time.process_time()
        start = clock() + 0.05
        self.started_at = datetime.now(timezone.utc)
        measure_from = start + settings.warmup
        self.window_end = min(self.window_end, measure_from + settings.duration)
        # After the schedule, a backlog (too few workers, a saturated site) gets a bounded time.
        give_up_at = start + total_seconds + settings.drain
        taken = [0]

        def offset_of(due: float) -> float | None:
            return due - measure_from if due >= measure_from else None

        async def worker():
            for local, planned in plan:
                taken[0] += 1
                due = start + planned.index * interval
                measured = offset_of(due) is not None
                if clock() >= due:
                    if measured:
                        recorder.tokens_waited += 1
                else:
                    # Sleep to an absolute time, never "interval after the last one": no drift.
                    # One wake-up per request (uvloop's timers have 1 ms resolution, and
                    # re-checking sub-millisecond remainders would spin); stop() wakes it early.
                    if not self.stopping.is_set():
                        waiter = loop.create_future()
                        timer = loop.call_later(due - clock(), _wake, waiter)
                        self._sleepers.add(waiter)
                        try:
                            await waiter
                        finally:
                            self._sleepers.discard(waiter)
                            timer.cancel()
                    if measured and not self.stopping.is_set():
                        recorder.loop_lag.record((clock() - due) * 1000.0)
                if self.stopping.is_set() or clock() > give_up_at:
                    taken[0] -= 1
                    return
                if pauses.covers(due):
                    # The generator itself was stopped (SIGSTOP, a long GC, a blocked loop):
                    # firing what fell due meanwhile would be a burst no real user makes.
                    if measured:
                        recorder.tokens_dropped += 1
                    continue
                await self._perform((planned, due, sessions[local % len(sessions)]), offset_of, clock)

        async def sample_cpu():
            # The generator's own CPU use per timeline point: a trust signal for the report.
            last_cpu, index = time.process_time(), 0
            while True:
                moment = measure_from + (index + 1) * self.timeline_seconds
                await asyncio.sleep(max(0.0, moment - clock()))
                cpu = time.process_time()
                recorder.point(index * self.timeline_seconds).cpu_seconds += cpu - last_cpu
                last_cpu, index = cpu, index + 1

        loop = asyncio.get_running_loop()
        watcher = asyncio.create_task(pauses.watch())
        sampler = asyncio.create_task(sample_cpu())
        progress = asyncio.create_task(self._progress(clock, start, measure_from))
        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        done, pending = await asyncio.wait(workers, timeout=total_seconds + settings.drain + 1.0)
        if self.stopping.is_set() or pending:
            # Requests in flight may finish within the grace; the rest are cut off.
            _, pending = await asyncio.wait(pending, timeout=settings.grace) if pending else (set(), set())
            for task in pending:
                task.cancel()
            taken[0] -= len(pending)
        watcher.cancel()
        sampler.cancel()
        progress.cancel()
        if hasattr(self.say, "end_status"):
            self.say.end_status()

        def positions_due_by(moment: float) -> int:
            last = min(count - 1, math.floor((moment - start) / interval))
            return 0 if last < shard - 1 else (last - (shard - 1)) // shards + 1

        # Due (by the end, or by the interruption) but never sent.
        recorder.tokens_unsent += max(0, positions_due_by(min(clock(), start + total_seconds)) - taken[0])
        self.measured_seconds = max(0.0, min(self.window_end, measure_from + settings.duration) - measure_from)
        self.cpu_seconds = time.process_time() - cpu_start
        self.run_seconds = clock() - start

    async def _perform(self, item, offset_of, clock) -> None:
        planned, due, session = item
        spec = self.config.urls[planned.url_index]
        recorder = self.recorder
        measured = offset_of(due)
        async with session.lock:
            if session.needs_login:
                try:
                    await login(self.http, session, self.config, self.settings.login_timeout, self.say)
                    session.needs_login = False
                    session.relogins += 1
                except LoginFailed as failure:
                    self._request_error(f"re-login of {session.user.username} failed: {failure}")
                    recorder.record(spec.name, measured, failure="login")
                    return
            sent = clock()
            sent_offset = sent - due + measured if measured is not None else None
            if measured is not None:
                recorder.sent += 1
                if sent <= self.window_end:
                    recorder.sent_in_window += 1
                recorder.lateness.record((sent - due) * 1000.0)
            try:
                fetched = await fetch(self.http, session, self.config.base_url + planned.path,
                                      timeout=self.settings.request_timeout)
            except asyncio.TimeoutError:
                self._request_error(f"timeout after {self.settings.request_timeout:g} s: {planned.path}")
                recorder.record(spec.name, measured, failure="timeout", sent_offset=sent_offset)
                return
            except (HttpError, RedirectLoop) as error:
                self._request_error(f"{type(error).__name__}: {error} ({planned.path})")
                recorder.record(spec.name, measured, failure="connection", sent_offset=sent_offset)
                return
            finished = clock()
        status = fetched.status
        redirected_to = urlsplit(fetched.url).path if fetched.redirected else None
        if redirected_to is not None and redirected_to == self.login_url_path:
            # The session is gone (expired, or killed): not a success, and log in again.
            session.needs_login = True
            recorder.record(spec.name, measured, failure="session_lost", redirected_to=redirected_to,
                            sent_offset=sent_offset)
        elif 200 <= status < 300:
            recorder.record(spec.name, measured, response_ms=(finished - due) * 1000.0,
                            service_ms=(finished - sent) * 1000.0, redirected_to=redirected_to,
                            footer=parse_footer(fetched.body), sent_offset=sent_offset)
        else:
            recorder.record(spec.name, measured, failure=f"http_{status}", redirected_to=redirected_to,
                            sent_offset=sent_offset)

    def _request_error(self, message: str) -> None:
        recorder = self.recorder
        if recorder.request_errors_printed < 20:
            recorder.request_errors_printed += 1
            self.say(f"[Request error: {message}]")
        else:
            recorder.request_errors_suppressed += 1

    async def _progress(self, clock, start: float, measure_from: float) -> None:
        """[PROGRESS] lines every --progress seconds, and on a terminal a live status line."""
        every = self.settings.progress
        live = getattr(self.say, "live", False)
        if every <= 0 and not live:
            return
        tick = 1.0 if live else every
        total = self.settings.warmup + self.settings.duration
        recorder = self.recorder
        overall, since_report = Histogram(), Histogram()
        done_total = failed_total = done_since = 0
        last_report = clock()
        while True:
            await asyncio.sleep(tick)
            now = clock()
            chunk, recorder.interval = recorder.interval, Histogram()
            done, recorder.interval_done = recorder.interval_done, 0
            failed, recorder.interval_failed = recorder.interval_failed, 0
            overall.merge(chunk)
            since_report.merge(chunk)
            done_total += done
            failed_total += failed
            done_since += done
            measured = max(now - measure_from, 1e-9)
            rpm_overall = round(done_total / measured * 60.0, 1) if now > measure_from else 0.0
            if live:
                elapsed = min(now - start, total)
                phase = "warm-up" if now < measure_from else "measuring"
                self.say.status(f"[{phase}] {_clock(elapsed)} / {_clock(total)} ({_clock(total - elapsed)} left) | "
                                f"{rpm_overall:.0f} of {self.settings.rpm:g} RPM | p95 "
                                f"{_fmt(overall.percentile(95), '.0f')} ms | failed {failed_total}")
            if every > 0 and now - last_report >= every - tick / 2:  # timers may fire a little early
                snapshot = {
                    "elapsed_s": round(now - start, 1),
                    "phase": "warmup" if now < measure_from else "measure",
                    "sent": recorder.sent, "ok": done_total - failed_total, "failed": failed_total,
                    "rpm_interval": round(done_since / (now - last_report) * 60.0, 1),
                    "rpm_overall": rpm_overall,
                    "latency_ms_p50_interval": _round(since_report.percentile(50)),
                    "latency_ms_p95_interval": _round(since_report.percentile(95)),
                    "latency_ms_p95_overall": _round(overall.percentile(95)),
                }
                self.say(f"[PROGRESS] {json.dumps(snapshot)}")
                since_report, done_since, last_report = Histogram(), 0, now


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value, pattern: str = ".1f") -> str:
    return "-" if value is None else format(value, pattern)


# =========================================================================== statistics

PERCENTILES = (50, 90, 95, 99, 99.9)


def percentile_keys(prefix: str, histogram: Histogram) -> dict:
    keys = {}
    for q in PERCENTILES:
        label = str(q).replace(".", "_") if q != int(q) else str(int(q))
        keys[f"{prefix}_p{label}"] = _round(histogram.percentile(q))
    keys[f"{prefix}_max"] = _round(histogram.maximum if histogram.count else None)
    return keys


def url_summary(raw: dict) -> dict:
    """Headline numbers of one URL's recorded results."""
    response = Histogram.from_dict(raw.get("response_ms"))
    service = Histogram.from_dict(raw.get("service_ms"))
    summary = {"requests": raw["requests"], "success": raw["success"], "failure": raw["failure"]}
    summary.update(percentile_keys("latency_ms", response))
    summary.update(percentile_keys("service_ms", service))
    footer = raw.get("footer", {})
    for name in ("db_reads", "db_writes", "included_files", "memory_peak_mb"):
        if footer.get(name):
            summary[f"{name}_median"] = counter_median(footer[name])
            summary[f"{name}_max"] = max(float(k) for k in footer[name])
    for name in ("server_time_ms", "session_wait_ms"):
        if footer.get(name):
            histogram = Histogram.from_dict(footer[name])
            summary[f"{name}_median"] = _round(histogram.percentile(50))
            summary[f"{name}_max"] = _round(histogram.maximum)
    return summary


def summarize(document: dict) -> dict:
    """The run's summary: the product's keys first, then the rest.  Pure: recomputed from
    the recorded histograms, so merged documents summarise the same way."""
    meta = document["metadata"]
    response, service = Histogram(), Histogram()
    failures: Counter = Counter()
    requests = success = 0
    for raw in document["urls"].values():
        response.merge(Histogram.from_dict(raw["response_ms"]))
        service.merge(Histogram.from_dict(raw["service_ms"]))
        requests += raw["requests"]
        success += raw["success"]
        for kind, count in raw["failures"].items():
            failures[kind] += count
    # The observed rate counts requests actually sent inside the measured window: a generator
    # that fell behind and worked off its backlog later did not reach the target.
    seconds = meta.get("measured_seconds") or 0.0
    sent = document["generator"]["sent_in_window"]
    observed = sent / seconds * 60.0 if seconds > 0 else 0.0
    summary = {
        "req_per_min_target": meta["rpm"],
        "req_per_min_observed": round(observed, 1),
        "requests": requests,
        "success": success,
        "failure": requests - success,
        "latency_ms_p50": _round(response.percentile(50)),
        "latency_ms_p95": _round(response.percentile(95)),
        "latency_ms_p99": _round(response.percentile(99)),
    }
    summary.update(percentile_keys("latency_ms", response))
    summary.update(percentile_keys("service_ms", service))
    summary["error_rate"] = round((requests - success) / requests, 4) if requests else None
    summary["failures"] = dict(sorted(failures.items()))
    summary["urls"] = {name: url_summary(raw) for name, raw in document["urls"].items()}
    return summary


# ---- comparing two runs

def mann_whitney_p(a: list, b: list) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation with tie
    correction and continuity correction); fine from about 8 values a side."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return 1.0
    combined = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(combined)
    tie_term = 0.0
    i = 0
    while i < len(combined):
        j = i
        while j + 1 < len(combined) and combined[j + 1][0] == combined[i][0]:
            j += 1
        average = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[k] = average
        ties = j - i + 1
        tie_term += ties ** 3 - ties
        i = j + 1
    rank_sum_a = sum(rank for rank, (_, side) in zip(ranks, combined, strict=True) if side == 0)
    u = rank_sum_a - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2.0) - 0.5) / math.sqrt(variance)
    return max(0.0, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0))))


def block_medians(raw_url: dict, minimum_count: int = 3) -> list:
    """Per time block, the median service time: the unit of evidence (requests within a
    run are autocorrelated, blocks much less so)."""
    medians = []
    for block in raw_url.get("blocks_service_ms", []):
        histogram = Histogram.from_dict(block)
        if histogram.count >= minimum_count:
            medians.append(histogram.percentile(50))
    return medians


@dataclass
class Thresholds:
    max_regression_pct: float = 10.0
    alpha: float = 0.05
    max_db_reads_increase: float = 2.0
    min_blocks: int = 6


def ratio_interval(base_blocks: list, new_blocks: list, resamples: int = 400, seed: int = 0) -> tuple:
    """95 % bootstrap interval of the ratio of block medians (new / base), resampling blocks,
    not requests; seeded, so the same runs always give the same interval."""
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        base = statistics.median(rng.choices(base_blocks, k=len(base_blocks)))
        new = statistics.median(rng.choices(new_blocks, k=len(new_blocks)))
        ratios.append(new / base if base > 0 else math.inf)
    ratios.sort()
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


def compare_url(base: dict, new: dict, thresholds: Thresholds, alpha: float) -> dict:
    """Verdict for one URL: 'regression', 'improvement', 'same' or 'unsure' (plus why)."""
    row = {"verdict": "same", "reasons": []}
    base_blocks, new_blocks = block_medians(base), block_medians(new)
    tolerance = thresholds.max_regression_pct / 100.0
    row["blocks"] = [len(base_blocks), len(new_blocks)]
    base_reads = counter_median(base.get("footer", {}).get("db_reads", {}))
    new_reads = counter_median(new.get("footer", {}).get("db_reads", {}))
    row["db_reads"] = [base_reads, new_reads]
    if base_reads is not None and new_reads is not None \
            and new_reads - base_reads > thresholds.max_db_reads_increase:
        row["verdict"] = "regression"
        row["reasons"].append(f"DB reads {base_reads:g} -> {new_reads:g} per page")
    if len(base_blocks) < thresholds.min_blocks or len(new_blocks) < thresholds.min_blocks:
        row["ratio"] = None
        row["p_value"] = None
        if row["verdict"] == "same":
            row["verdict"] = "unsure"
            row["reasons"].append(f"too few blocks with data ({len(base_blocks)} vs {len(new_blocks)}, "
                                  f"need {thresholds.min_blocks})")
        return row
    base_median = statistics.median(base_blocks)
    new_median = statistics.median(new_blocks)
    ratio = new_median / base_median if base_median > 0 else math.inf
    p_value = mann_whitney_p(base_blocks, new_blocks)
    low, high = ratio_interval(base_blocks, new_blocks)
    row.update(base_ms=round(base_median, 2), new_ms=round(new_median, 2), ratio=round(ratio, 4),
               ratio_ci95=[round(low, 4), round(high, 4)], p_value=round(p_value, 6), alpha=round(alpha, 6))
    if ratio > 1 + tolerance:
        if p_value <= alpha:
            row["verdict"] = "regression"
            row["reasons"].append(f"median service time x{ratio:.3f} (p={p_value:.2g} <= {alpha:.2g})")
        elif p_value <= max(0.1, 2 * alpha) and row["verdict"] == "same":
            # Pinpoint's third answer: a large change the blocks cannot yet confirm.
            row["verdict"] = "unsure"
            row["reasons"].append(f"median service time x{ratio:.3f} but p={p_value:.2g}: run longer")
    elif ratio < 1 - tolerance and p_value <= alpha and row["verdict"] == "same":
        row["verdict"] = "improvement"
    return row


def compare_documents(base: dict, new: dict, thresholds: Thresholds) -> dict:
    """Compare a run with its baseline URL by URL.  Bonferroni: with k URLs each test
    runs at alpha/k, so the chance of a false alarm on some URL stays near alpha."""
    names = [name for name in new["urls"] if name in base["urls"]]
    missing = sorted(set(base["urls"]) ^ set(new["urls"]))
    alpha = thresholds.alpha / max(1, len(names))
    rows = {name: compare_url(base["urls"][name], new["urls"][name], thresholds, alpha) for name in names}
    verdicts = [row["verdict"] for row in rows.values()]
    if "regression" in verdicts:
        overall = "regression"
    elif not rows or "unsure" in verdicts:
        overall = "unsure"
    else:
        overall = "same"
    notes = []
    if base["metadata"].get("config_sha256") != new["metadata"].get("config_sha256"):
        notes.append("the two runs used different configs: compare with care")
    if base["metadata"].get("seed") != new["metadata"].get("seed"):
        notes.append("the two runs used different seeds")
    if missing:
        notes.append(f"URLs in only one run, not compared: {', '.join(missing)}")
    return {"verdict": overall, "alpha_per_url": alpha, "urls": rows, "notes": notes,
            "max_regression_pct": thresholds.max_regression_pct}


# ---- gates

@dataclass
class Gates:
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    max_error_rate: float | None = None
    min_rpm_ratio: float | None = None
    cannot_judge_error_rate: float = 0.5


def check_gates(summary: dict, gates: Gates) -> list:
    """The absolute limits this run breached, each as a line with the breaching number."""
    breaches = []
    if gates.max_p95_ms is not None and (summary["latency_ms_p95"] or 0) > gates.max_p95_ms:
        breaches.append(f"latency p95 {summary['latency_ms_p95']} ms > --max-p95-ms {gates.max_p95_ms:g}")
    if gates.max_p99_ms is not None and (summary["latency_ms_p99"] or 0) > gates.max_p99_ms:
        breaches.append(f"latency p99 {summary['latency_ms_p99']} ms > --max-p99-ms {gates.max_p99_ms:g}")
    if gates.max_error_rate is not None and (summary["error_rate"] or 0) > gates.max_error_rate:
        breaches.append(f"error rate {summary['error_rate']:.4f} > --max-error-rate {gates.max_error_rate:g}")
    if gates.min_rpm_ratio is not None and summary["req_per_min_target"]:
        ratio = summary["req_per_min_observed"] / summary["req_per_min_target"]
        if ratio < gates.min_rpm_ratio:
            breaches.append(f"observed/target RPM {ratio:.3f} < --min-rpm-ratio {gates.min_rpm_ratio:g}")
    return breaches


def decide(summary: dict, gates: Gates, comparison: dict | None) -> tuple[int, str, list]:
    """Exit status, verdict word and reasons for one run."""
    if not summary["requests"]:
        return EXIT_CANNOT_JUDGE, "cannot judge", ["no request was measured"]
    if summary["error_rate"] is not None and summary["error_rate"] >= gates.cannot_judge_error_rate:
        return EXIT_CANNOT_JUDGE, "cannot judge", [
            f"error rate {summary['error_rate']:.2%} >= {gates.cannot_judge_error_rate:.0%}: "
            f"the numbers mean nothing ({summary['failures']})"]
    reasons = check_gates(summary, gates)
    if comparison is not None and comparison["verdict"] == "regression":
        reasons += [f"{name}: {'; '.join(row['reasons'])}" for name, row in comparison["urls"].items()
                    if row["verdict"] == "regression"]
    if reasons:
        return EXIT_BAD, "bad", reasons
    if comparison is not None and comparison["verdict"] == "unsure":
        return EXIT_CANNOT_JUDGE, "cannot judge", [
            f"{name}: {'; '.join(row['reasons'])}" for name, row in comparison["urls"].items()
            if row["verdict"] == "unsure"]
    return EXIT_GOOD, "good", []


# =========================================================================== results documents

def build_document(run: LoadRun, argv: list, config_sha256: str) -> dict:
    settings = run.settings
    recorder = run.recorder
    return {
        "format": RESULTS_FORMAT,
        "tool": "moodle_load.py",
        "metadata": {
            "version": __version__,
            "argv": argv,
            "started_at": run.started_at.isoformat(timespec="seconds") if run.started_at else None,
            "target": run.config.base_url,
            "config_sha256": config_sha256,
            "seed": settings.seed,
            "rpm": settings.rpm / settings.shard[1],
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
            "measured_seconds": round(run.measured_seconds, 3),
            "blocks": settings.blocks,
            "block_seconds": run.block_seconds,
            "concurrency": run.effective_concurrency,
            "http_client": settings.http_client,
            "shards": [f"{settings.shard[0]}/{settings.shard[1]}"],
            "interrupted": run.interrupted_by is not None,
            "moodle_release": None,
            "host": socket.gethostname(),
            "python": platform.python_version(),
        },
        "logins": {"ok": run.logins_ok, "failed": dict(run.login_failures),
                   "relogins": sum(s.relogins for s in run.sessions)},
        "generator": {
            "cpu_seconds": round(run.cpu_seconds, 3),
            "run_seconds": round(run.run_seconds, 3),
            "lateness_ms": recorder.lateness.to_dict(),
            "loop_lag_ms": recorder.loop_lag.to_dict(),
            "tokens_waited_for_worker": recorder.tokens_waited,
            "tokens_dropped": recorder.tokens_dropped,
            "tokens_unsent": recorder.tokens_unsent,
            "sent_in_window": recorder.sent_in_window,
            "request_errors_suppressed": recorder.request_errors_suppressed,
        },
        "urls": {name: stats.to_dict() for name, stats in recorder.urls.items()},
        "timeline": {"seconds": run.timeline_seconds,
                     "points": [point.to_dict(index, run.timeline_seconds)
                                for index, point in sorted(recorder.timeline.items())]},
    }


def _added(histogram: dict, other: dict) -> dict:
    """Two saved histograms added together, saved again."""
    return Histogram.from_dict(histogram).merge(Histogram.from_dict(other)).to_dict()


def _merge_tallies(into: dict, other: dict) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


def merge_documents(documents: list) -> dict:
    """Add runs of the same config together (shards, processes, repeated runs): counts
    and histograms add up, the rate targets add up, the measured time is the longest."""
    if not documents:
        raise UsageError("merge: no results to merge")
    first = documents[0]
    for other in documents[1:]:
        if other["metadata"]["config_sha256"] != first["metadata"]["config_sha256"]:
            raise UsageError("merge: the results come from different configs; merge runs of one config only")
        if other["metadata"]["blocks"] != first["metadata"]["blocks"]:
            raise UsageError("merge: the results have different --blocks")
    merged = json.loads(json.dumps(first))
    meta = merged["metadata"]
    for other in documents[1:]:
        om = other["metadata"]
        meta["rpm"] += om["rpm"]
        meta["measured_seconds"] = max(meta["measured_seconds"], om["measured_seconds"])
        meta["concurrency"] += om["concurrency"]
        meta["shards"] = meta["shards"] + om["shards"]
        meta["interrupted"] = meta["interrupted"] or om["interrupted"]
        merged["logins"]["ok"] += other["logins"]["ok"]
        merged["logins"]["relogins"] += other["logins"]["relogins"]
        _merge_tallies(merged["logins"]["failed"], other["logins"]["failed"])
        generator, og = merged["generator"], other["generator"]
        generator["cpu_seconds"] = round(generator["cpu_seconds"] + og["cpu_seconds"], 3)
        generator["run_seconds"] = max(generator["run_seconds"], og["run_seconds"])
        for key in ("lateness_ms", "loop_lag_ms"):
            generator[key] = _added(generator[key], og[key])
        merged["timeline"]["points"] = merge_timelines(merged["timeline"]["points"], other["timeline"]["points"])
        for key in ("tokens_waited_for_worker", "tokens_dropped", "tokens_unsent", "sent_in_window",
                    "request_errors_suppressed"):
            generator[key] += og[key]
        for name, raw in other["urls"].items():
            if name not in merged["urls"]:
                merged["urls"][name] = json.loads(json.dumps(raw))
                continue
            target = merged["urls"][name]
            for key in ("requests", "success", "failure"):
                target[key] += raw[key]
            _merge_tallies(target["failures"], raw["failures"])
            _merge_tallies(target["redirects"], raw["redirects"])
            for key in ("response_ms", "service_ms"):
                target[key] = _added(target[key], raw[key])
            target["blocks_service_ms"] = [
                _added(a, b) for a, b in zip(target["blocks_service_ms"], raw["blocks_service_ms"], strict=True)]
            for key, value in raw["footer"].items():
                if key not in target["footer"]:
                    target["footer"][key] = value
                elif key.endswith("_ms"):
                    target["footer"][key] = _added(target["footer"][key], value)
                else:
                    _merge_tallies(target["footer"][key], value)
    merged["summary"] = summarize(merged)
    return merged


def merge_timelines(points: list, others: list) -> list:
    by_time = {point["t"]: point for point in points}
    for point in others:
        mine = by_time.get(point["t"])
        if mine is None:
            by_time[point["t"]] = point
            continue
        for key in ("sent", "ok", "cpu_seconds"):
            mine[key] += point[key]
        _merge_tallies(mine["failures"], point["failures"])
        for key in ("response_ms", "service_ms"):
            mine[key] = _added(mine[key], point[key])
    return [by_time[t] for t in sorted(by_time)]


def load_document(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"results: {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"results: {path} is not a results JSON file") from None
    if not isinstance(document, dict) or document.get("format") != RESULTS_FORMAT or "urls" not in document:
        raise UsageError(f"results: {path} is not a moodle_load.py results file (format {RESULTS_FORMAT})")
    return document


def write_json_atomically(path: str, document: dict) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")
    os.replace(temporary, path)


# =========================================================================== report

def format_report(document: dict) -> str:
    """The human view of a results document: a table per URL, then the summary JSON."""
    summary = document["summary"]
    lines = ["", "Per URL (latency = response time from the intended start; svc = service time; ms):"]
    header = f"{'url':<38} {'req':>6} {'ok':>6} {'fail':>5} {'p50':>7} {'p95':>7} {'p99':>7} " \
             f"{'max':>7} {'svc p50':>7} {'svc p95':>7} {'DB r/w':>8}"
    lines.append(header)
    lines.append("-" * len(header))
    cell = _fmt
    for name, row in summary["urls"].items():
        reads = row.get("db_reads_median")
        writes = row.get("db_writes_median")
        footer = f"{reads:g}/{writes:g}" if reads is not None and writes is not None else "-"
        shown = name if len(name) <= 38 else name[:35] + "..."
        lines.append(f"{shown:<38} {row['requests']:>6} {row['success']:>6} {row['failure']:>5} "
                     f"{cell(row['latency_ms_p50']):>7} {cell(row['latency_ms_p95']):>7} "
                     f"{cell(row['latency_ms_p99']):>7} {cell(row['latency_ms_max']):>7} "
                     f"{cell(row['service_ms_p50']):>7} {cell(row['service_ms_p95']):>7} {footer:>8}")
        raw = document["urls"][name]
        if raw["failures"]:
            lines.append(f"    failures: {', '.join(f'{k} {v}' for k, v in raw['failures'].items())}")
        if raw["redirects"]:
            lines.append(f"    redirected to: {', '.join(f'{k} {v}' for k, v in raw['redirects'].items())}")
    generator = document["generator"]
    lateness = Histogram.from_dict(generator["lateness_ms"])
    lines.append("")
    lines.append(f"Generator: {generator['cpu_seconds']:.1f} s CPU; "
                 f"{generator['tokens_waited_for_worker']} tokens waited for a free worker (worst lateness "
                 f"{cell(lateness.maximum if lateness.count else None)} ms); "
                 f"{generator['tokens_dropped']} dropped after a pause of the generator, "
                 f"{generator['tokens_unsent']} never sent")
    logins = document["logins"]
    lines.append(f"Logins: {logins['ok']} ok, {sum(logins['failed'].values())} failed, "
                 f"{logins['relogins']} re-logins after a lost session")
    lines.append("")
    lines.append("[SUMMARY] " + summary_json(summary))
    return "\n".join(lines)


def summary_json(summary: dict) -> str:
    """The summary as JSON, one line per key and one line per URL: readable and greppable."""
    head = {key: value for key, value in summary.items() if key != "urls"}
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
    urls = [f"  {json.dumps(name)}: {json.dumps(row)}" for name, row in summary["urls"].items()]
    return "{\n" + "\n".join(lines) + '\n "urls": {\n' + ",\n".join(urls) + "\n }\n}"


def rate_hints(document: dict) -> list:
    """Why the observed rate fell short of the target, when it did."""
    summary, meta, generator = document["summary"], document["metadata"], document["generator"]
    target = summary["req_per_min_target"]
    if not target or summary["req_per_min_observed"] >= 0.95 * target or meta["interrupted"]:
        return []
    hints = [f"[WARN] observed {summary['req_per_min_observed']:.0f} RPM is below the target {target:g}"]
    if generator["tokens_waited_for_worker"]:
        hints.append(f"[HINT] {generator['tokens_waited_for_worker']} requests waited for a free worker: "
                     f"raise --concurrency (now {meta['concurrency']})")
    if meta["concurrency"] >= document["logins"]["ok"]:
        hints.append("[HINT] every logged-in user was busy: give the run more users "
                     "(set_moodle_passwords.py --count)")
    if generator["tokens_unsent"]:
        hints.append(f"[HINT] {generator['tokens_unsent']} scheduled requests were never sent: the backlog "
                     f"outgrew the run (raise --concurrency, or the site is saturated)")
    if generator["tokens_dropped"]:
        hints.append(f"[HINT] {generator['tokens_dropped']} tokens were dropped after the generator "
                     f"stalled: it is short of CPU (use --processes)")
    return hints


def format_comparison(comparison: dict) -> str:
    lines = ["", f"Against the baseline (tolerance {comparison['max_regression_pct']:g} %, "
                 f"alpha per URL {comparison['alpha_per_url']:.3g}; service-time medians of time blocks):"]
    header = (f"{'url':<38} {'base ms':>8} {'new ms':>8} {'ratio':>7} {'95% interval':>13} {'p':>8} "
              f"{'DB reads':>11}  verdict")
    lines += [header, "-" * len(header)]
    for name, row in comparison["urls"].items():
        reads = row.get("db_reads") or [None, None]
        reads_text = "-" if reads[0] is None else f"{reads[0]:g}->{reads[1]:g}"
        shown = name if len(name) <= 38 else name[:35] + "..."

        def number(key, pattern, row=row):
            return "-" if row.get(key) is None else format(row[key], pattern)

        interval = "-" if not row.get("ratio_ci95") else "{:.3f}-{:.3f}".format(*row["ratio_ci95"])
        lines.append(f"{shown:<38} {number('base_ms', '.1f'):>8} {number('new_ms', '.1f'):>8} "
                     f"{number('ratio', '.3f'):>7} {interval:>13} {number('p_value', '.2g'):>8} {reads_text:>11}  "
                     f"{row['verdict']}")
    lines += [f"note: {note}" for note in comparison["notes"]]
    return "\n".join(lines)


# =========================================================================== trust

def trust_signals(document: dict) -> dict:
    """Can these numbers be trusted to describe the site?  The generator's own CPU use, how
    late it ran, how long requests waited inside it, and a warning when it, not Moodle, was
    the bottleneck."""
    generator, summary, meta = document["generator"], document["summary"], document["metadata"]
    lateness = Histogram.from_dict(generator["lateness_ms"])
    loop_lag = Histogram.from_dict(generator.get("loop_lag_ms"))
    run_seconds = generator.get("run_seconds") or 0.0
    cores = generator["cpu_seconds"] / run_seconds if run_seconds else None
    processes = len(meta.get("shards", ["1/1"]))
    requests = summary["requests"] or 0
    signals = {
        "cpu_cores_used": None if cores is None else round(cores, 3),
        "lateness_ms_p50": _round(lateness.percentile(50), 2),
        "lateness_ms_p99": _round(lateness.percentile(99), 2),
        "loop_lag_ms_p99": _round(loop_lag.percentile(99), 2),
        "tokens_waited_for_worker": generator["tokens_waited_for_worker"],
        "tokens_dropped": generator["tokens_dropped"],
        "tokens_unsent": generator["tokens_unsent"],
        "warmup_excluded_s": meta.get("warmup_s", 0),
        "error_rate": summary["error_rate"],
        "bottleneck": [],
    }
    reasons = signals["bottleneck"]
    if cores is not None and cores >= 0.9 * processes:
        reasons.append(f"its CPU use was {cores / processes:.0%} of a core per process")
    if signals["loop_lag_ms_p99"] is not None and signals["loop_lag_ms_p99"] > 50:
        reasons.append(f"its event loop woke up to {signals['loop_lag_ms_p99']:.0f} ms late (p99)")
    service_p50 = summary["service_ms_p50"] or 0.0
    if requests and signals["lateness_ms_p50"] is not None \
            and signals["lateness_ms_p50"] > max(service_p50, 10.0):
        reasons.append(f"half the requests waited over {signals['lateness_ms_p50']:.0f} ms inside the generator, "
                       f"longer than the site took to answer ({service_p50:.0f} ms)")
    return signals


def bottleneck_warning(signals: dict) -> str | None:
    if not signals["bottleneck"]:
        return None
    return ("The generator was the bottleneck (" + "; ".join(signals["bottleneck"]) + "): these numbers describe "
            "the generator, not Moodle. Raise --concurrency if its workers were busy, or spread the load with "
            "--processes N (or --shard K/N on more machines) if it was short of CPU.")


def format_trust(signals: dict) -> list:
    lines = []
    if signals["cpu_cores_used"] is not None:
        lines.append(f"Trust: generator CPU {signals['cpu_cores_used']:.0%} of a core; requests waited inside it "
                     f"p50 {_fmt(signals['lateness_ms_p50'])} ms, p99 {_fmt(signals['lateness_ms_p99'])} ms; "
                     f"event loop lag p99 {_fmt(signals['loop_lag_ms_p99'])} ms; warm-up excluded "
                     f"{signals['warmup_excluded_s']:g} s")
    warning = bottleneck_warning(signals)
    if warning:
        lines.append(f"[WARN] {warning}")
    return lines


# =========================================================================== HTML report

class ReportUnavailable(UsageError):
    pass


def _pyplot():
    """matplotlib, imported only for --report: an optional extra, not a requirement."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        raise ReportUnavailable("--report needs matplotlib: pip install matplotlib") from None
    matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                                "axes.spines.top": False, "axes.spines.right": False})
    return matplotlib, pyplot


def _svg(matplotlib, pyplot, figure, name: str) -> str:
    """The figure as inline SVG: no XML prologue, no metadata links, ids unique per chart."""
    import io

    matplotlib.rcParams["svg.hashsalt"] = name
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    pyplot.close(figure)
    text = buffer.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    return f'<figure class="chart" data-chart="{name}">{text}</figure>'


PERCENTILE_CURVE = (0, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 99.9, 99.95, 99.99)


def percentile_curve(histogram: Histogram) -> tuple[list, list]:
    """x = 1/(1-q) (so 90, 99, 99.9 are evenly spaced on a log axis), y = latency ms."""
    xs, ys = [], []
    for q in PERCENTILE_CURVE:
        if histogram.count and q <= 100 * (1 - 1 / histogram.count) + 1e-9:
            xs.append(1 / (1 - q / 100))
            ys.append(histogram.percentile(q))
    if histogram.count:
        xs.append(max(xs[-1] * 2 if xs else 2, histogram.count))
        ys.append(histogram.maximum)
    return xs, ys


def _percentile_axes(axes) -> None:
    axes.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    axes.set_xticks(ticks)
    axes.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    axes.set_xlabel("percentile")
    axes.set_ylabel("ms")


def _timeline_series(document: dict):
    points = document.get("timeline", {}).get("points", [])
    seconds = document.get("timeline", {}).get("seconds", 1.0)
    times = [point["t"] for point in points]
    return points, seconds, times


def run_charts(document: dict) -> list:
    matplotlib, pyplot = _pyplot()
    charts = []
    points, seconds, times = _timeline_series(document)
    target_per_s = document["summary"]["req_per_min_target"] / 60.0

    figure, axes = pyplot.subplots(figsize=(9, 2.6))
    axes.plot(times, [p["sent"] / seconds for p in points], label="sent/s", color="#1f77b4", linewidth=2)
    axes.plot(times, [p["ok"] / seconds for p in points], label="succeeded/s", color="#2ca02c", linestyle="--")
    axes.axhline(target_per_s, color="#d62728", linestyle="--", label="target")
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("requests/s")
    axes.set_ylim(bottom=0)
    axes.legend(loc="lower right")
    axes.set_title("Request rate against the target")
    charts.append(_svg(matplotlib, pyplot, figure, "rate"))

    figure, axes = pyplot.subplots(figsize=(9, 3))
    colours = {50: "#2ca02c", 95: "#ff7f0e", 99: "#d62728"}
    for q, colour in colours.items():
        axes.plot(times, [Histogram.from_dict(p["response_ms"]).percentile(q) for p in points], color=colour,
                  label=f"response p{q}")
        axes.plot(times, [Histogram.from_dict(p["service_ms"]).percentile(q) for p in points], color=colour,
                  linestyle=":", label=f"service p{q}")
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("ms")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper left", ncol=3, fontsize=7)
    axes.set_title("Latency over time (solid: response time from the intended start; dotted: service time)")
    charts.append(_svg(matplotlib, pyplot, figure, "latency"))

    kinds = sorted({kind for p in points for kind in p["failures"]})
    figure, axes = pyplot.subplots(figsize=(9, 2.4))
    bottom = [0.0] * len(points)
    for kind in kinds:
        values = [p["failures"].get(kind, 0) / seconds for p in points]
        axes.bar(times, values, width=seconds, bottom=bottom, label=kind, align="edge")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if not kinds:
        axes.text(0.5, 0.5, "no failures", transform=axes.transAxes, ha="center", va="center", color="#2ca02c")
        axes.set_xlim(0, max(times[-1] + seconds if times else 1.0, 1.0))
    else:
        axes.legend(loc="upper right", fontsize=7)
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("failures/s")
    axes.set_title("Failures over time by kind")
    charts.append(_svg(matplotlib, pyplot, figure, "failures"))

    figure, axes = pyplot.subplots(figsize=(9, 3.2))
    for name, raw in document["urls"].items():
        xs, ys = percentile_curve(Histogram.from_dict(raw["response_ms"]))
        if xs:
            axes.plot(xs, ys, marker=".", label=name[:40])
    _percentile_axes(axes)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", fontsize=7)
    axes.set_title("Latency distribution per URL (response time)")
    charts.append(_svg(matplotlib, pyplot, figure, "distribution"))

    figure, axes = pyplot.subplots(figsize=(9, 2.2))
    axes.plot(times, [100 * p.get("cpu_seconds", 0) / seconds for p in points], color="#7f7f7f")
    axes.axhline(90 * len(document["metadata"].get("shards", ["1/1"])), color="#d62728", linestyle="--",
                 label="bottleneck")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("seconds into the measured window")
    axes.set_ylabel("% of a core")
    axes.set_title("The generator's own CPU use")
    charts.append(_svg(matplotlib, pyplot, figure, "generator-cpu"))
    return charts


def compare_charts(base: dict, new: dict) -> list:
    matplotlib, pyplot = _pyplot()
    names = [name for name in new["urls"] if name in base["urls"]]
    if not names:
        return []
    columns = min(2, len(names))
    rows = math.ceil(len(names) / columns)
    figure, grid = pyplot.subplots(rows, columns, figsize=(9, 2.8 * rows), squeeze=False)
    for position, name in enumerate(names):
        axes = grid[position // columns][position % columns]
        for document, label, style in ((base, "baseline", "--"), (new, "this run", "-")):
            xs, ys = percentile_curve(Histogram.from_dict(document["urls"][name]["service_ms"]))
            if xs:
                axes.plot(xs, ys, linestyle=style, marker=".", label=label)
        _percentile_axes(axes)
        axes.set_title(name[:50], fontsize=8)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, loc="upper left")
        else:
            axes.text(0.5, 0.5, "no successful requests", transform=axes.transAxes, ha="center", va="center")
    for position in range(len(names), rows * columns):
        grid[position // columns][position % columns].axis("off")
    figure.suptitle("Service time percentiles, baseline against this run")
    figure.tight_layout()
    return [_svg(matplotlib, pyplot, figure, "compare-distribution")]


REPORT_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2125}
main{max-width:1000px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:1.4rem;margin:8px 0} h2{font-size:1.1rem;margin:28px 0 8px;border-bottom:1px solid #d0d4d9}
.verdict{padding:12px 16px;border-radius:6px;font-size:1.1rem;margin:10px 0}
.good{background:#dff3e2;border:1px solid #7cc48a} .bad{background:#fbe0de;border:1px solid #e08b84}
.skip{background:#fff3d6;border:1px solid #e2bb5b} .none{background:#e8eaed;border:1px solid #b8bdc4}
.warn{background:#fff3d6;border:1px solid #e2bb5b;padding:10px 14px;border-radius:6px;margin:8px 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.85rem;margin:6px 0}
th,td{border:1px solid #dde1e5;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#eef0f3} td.l,th.l{text-align:left} .regression{color:#b3261e;font-weight:bold}
.unsure{color:#8a5a00;font-weight:bold} .improvement{color:#1e7b34}
figure.chart{margin:10px 0;background:#fff;border:1px solid #dde1e5;border-radius:4px;padding:6px}
figure.chart svg{max-width:100%;height:auto}
code{background:#eef0f3;padding:1px 4px;border-radius:3px} small{color:#5f6368}
"""


def _e(value) -> str:
    import html

    return html.escape("-" if value is None else str(value))


def _table(headers: list, rows: list, left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{cell}</td>' for i, cell in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _verdict_block(verdict: tuple | None) -> str:
    if verdict is None:
        return '<div class="verdict none">No verdict: no gates and no baseline were given.</div>'
    status, word, reasons = verdict
    css = {EXIT_GOOD: "good", EXIT_BAD: "bad", EXIT_CANNOT_JUDGE: "skip"}.get(status, "none")
    label = {"good": "Good", "bad": "Regression (bad)", "cannot judge": "Cannot judge (skip)"}.get(word, word)
    items = "".join(f"<li>{_e(reason)}</li>" for reason in reasons)
    return (f'<div class="verdict {css}" id="verdict"><strong>{_e(label)}</strong> &middot; exit {status}'
            f'{f"<ul>{items}</ul>" if items else ""}</div>')


def render_report(document: dict, verdict: tuple | None = None, baseline: dict | None = None,
                  comparison: dict | None = None) -> str:
    """One self-contained HTML file: verdict, identity, trust, charts, per-URL tables, and
    with a baseline the side-by-side comparison.  Nothing is fetched when it opens."""
    summary, meta = document["summary"], document["metadata"]
    signals = trust_signals(document)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>moodle_load report: "
             f"{_e(meta.get('target'))}</title><style>{REPORT_STYLE}</style></head><body><main>",
             "<h1>Moodle load report</h1>", _verdict_block(verdict)]
    identity = [("target", meta.get("target")), ("Moodle release", meta.get("moodle_release") or "not shown"),
                ("tool", f"moodle_load.py {meta.get('version')}"), ("seed", meta.get("seed")),
                ("started", meta.get("started_at")),
                ("rate", f"{summary['req_per_min_target']:g} RPM target, {summary['req_per_min_observed']:g} observed"),
                ("measured", f"{meta.get('measured_seconds')} s after {meta.get('warmup_s', 0):g} s warm-up"),
                ("shards", ", ".join(meta.get("shards", []))), ("config", (meta.get("config_sha256") or "")[:16]),
                ("arguments", " ".join(meta.get("argv", [])))]
    parts.append(_table(["", ""], [[_e(k), _e(v)] for k, v in identity], left=2))

    parts.append("<h2>Can these numbers be trusted?</h2>")
    warning = bottleneck_warning(signals)
    if warning:
        parts.append(f'<div class="warn" id="bottleneck"><strong>Warning:</strong> {_e(warning)}</div>')
    trust_rows = [["generator CPU (share of one core)", _e(_fmt(None if signals["cpu_cores_used"] is None
                                                              else 100 * signals["cpu_cores_used"], ".0f") + " %")],
                  ["requests waited inside the generator, p50 / p99 ms",
                   f"{_e(_fmt(signals['lateness_ms_p50']))} / {_e(_fmt(signals['lateness_ms_p99']))}"],
                  ["event loop lag p99 ms", _e(_fmt(signals["loop_lag_ms_p99"]))],
                  ["tokens that waited for a free worker", _e(signals["tokens_waited_for_worker"])],
                  ["tokens dropped (generator paused) / never sent",
                   f"{_e(signals['tokens_dropped'])} / {_e(signals['tokens_unsent'])}"],
                  ["warm-up excluded", f"{_e(signals['warmup_excluded_s'])} s"],
                  ["error rate", _e(_fmt(None if summary["error_rate"] is None else 100 * summary["error_rate"],
                                         ".2f") + " %")]]
    parts.append(_table(["signal", "value"], trust_rows))

    if comparison is not None:
        parts.append("<h2>Against the baseline</h2>")
        parts.append(f"<p><small>Per URL: the median of per-block median service times, Mann-Whitney U on the "
                     f"blocks at alpha {comparison['alpha_per_url']:.3g} per URL, tolerance "
                     f"{comparison['max_regression_pct']:g} %; DB reads from Moodle's footer.</small></p>")
        rows = []
        for name, row in comparison["urls"].items():
            reads = row.get("db_reads") or [None, None]
            interval = "-" if not row.get("ratio_ci95") else "{:.3f} &ndash; {:.3f}".format(*row["ratio_ci95"])
            rows.append([_e(name), _e(_fmt(row.get("base_ms"))), _e(_fmt(row.get("new_ms"))),
                         _e(_fmt(row.get("ratio"), ".3f")), interval, _e(_fmt(row.get("p_value"), ".2g")),
                         f"{_e(reads[0])} &rarr; {_e(reads[1])}",
                         f'<span class="{_e(row["verdict"])}">{_e(row["verdict"])}</span>',
                         _e("; ".join(row["reasons"]))])
        parts.append(_table(["URL", "baseline ms", "this run ms", "ratio", "95 % interval", "p", "DB reads", "verdict",
                             "why"], rows))
        parts += [f"<p><small>note: {_e(note)}</small></p>" for note in comparison["notes"]]
    if comparison is not None and baseline is not None:
        parts += compare_charts(baseline, document)
        base_urls = summarize(baseline)["urls"] if "summary" not in baseline else baseline["summary"]["urls"]
        footer_rows = []
        for name, row in summary["urls"].items():
            before = base_urls.get(name, {})
            footer_rows.append([_e(name)] + [f"{_e(before.get(key))} &rarr; {_e(row.get(key))}" for key in (
                "db_reads_median", "db_writes_median", "server_time_ms_median", "memory_peak_mb_median")])
        parts.append(_table(["URL", "DB reads", "DB writes", "server time ms", "memory peak MB"], footer_rows))

    parts.append("<h2>Over time</h2>")
    parts += run_charts(document)

    parts.append("<h2>Per URL</h2>")
    rows = []
    for name, row in summary["urls"].items():
        raw = document["urls"][name]
        failures = ", ".join(f"{k} {v}" for k, v in raw["failures"].items()) or "none"
        redirects = ", ".join(f"{k} {v}" for k, v in raw["redirects"].items()) or "-"
        rows.append([_e(name), _e(row["requests"]), _e(row["success"]), _e(failures)]
                    + [_e(_fmt(row[key])) for key in ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99",
                                                       "latency_ms_max", "service_ms_p50", "service_ms_p95")]
                    + [_e(redirects)])
    parts.append(_table(["URL", "requests", "ok", "failures", "p50", "p95", "p99", "max", "svc p50", "svc p95",
                         "redirected to"], rows))
    parts.append("<p><small>Latencies in ms of successful requests. Response time (p50..max) runs from the "
                 "moment the schedule intended the request to the last byte; service time (svc) from sending it."
                 "</small></p>")
    footer_rows = [[_e(name)] + [_e(row.get(key)) for key in (
        "db_reads_median", "db_reads_max", "db_writes_median", "server_time_ms_median", "server_time_ms_max",
        "memory_peak_mb_median", "included_files_median", "session_wait_ms_max")]
        for name, row in summary["urls"].items()]
    if any(row.get("db_reads_median") is not None for row in summary["urls"].values()):
        parts.append("<h2>Moodle's performance footer</h2>")
        parts.append(_table(["URL", "DB reads (median)", "DB reads (max)", "DB writes", "server ms (median)",
                             "server ms (max)", "memory peak MB", "included files", "session wait ms (max)"],
                            footer_rows))
    else:
        parts.append("<p><small>The pages showed no performance footer: set <code>$CFG-&gt;perfdebug = 15</code> "
                     "to get DB reads per page, the steadiest regression signal.</small></p>")
    parts.append(f"<p><small>Made by moodle_load.py {_e(__version__)}.</small></p></main></body></html>\n")
    return "\n".join(parts)


def write_report(path: str, html_text: str) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(html_text)
    os.replace(temporary, path)


# =========================================================================== command line

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit 2, which git bisect takes for "bad"
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moodle_load.py", description="Open-loop load generator for Moodle, "
                     "with verdicts for git bisect run.",
                     epilog="Exit status: 0 good, 1 bad, 125 cannot judge (bisect skips), "
                     "128 usage or config mistake, 130/143 interrupted.")
    parser.add_argument("--config", help="path to config.json")
    parser.add_argument("--rpm", type=float, help="target requests per minute")
    parser.add_argument("--duration", type=float, help="measured duration in seconds")
    parser.add_argument("--concurrency", type=int, default=20,
                        help="parallel workers, each holding one user session (default 20)")
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument("--login-timeout", type=float, default=20, help="seconds per login HTTP step (default 20)")
    parser.add_argument("--request-timeout", type=float, default=60, help="seconds per request (default 60)")
    parser.add_argument("--drain", type=float, default=30,
                        help="seconds a backlog may still be worked off after the schedule ends (default 30)")
    parser.add_argument("--http-client", choices=("auto", "httptools", "aiohttp"), default="auto",
                        help="HTTP client: httptools (lean, the default where installed) or aiohttp")
    parser.add_argument("--progress", type=float, default=30,
                        help="progress interval in seconds; 0 = none (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the request sequence (default 1)")
    parser.add_argument("--warmup", type=float, default=0, help="seconds of load before measuring (default 0)")
    parser.add_argument("--blocks", type=int, default=20,
                        help="time blocks per run for the baseline comparison (default 20)")
    parser.add_argument("--output", help="write the results JSON document here")
    parser.add_argument("--baseline", help="results JSON of a good run to compare this one with")
    parser.add_argument("--max-regression", type=float, default=10.0, metavar="PCT",
                        help="slowdown tolerated against the baseline, percent (default 10)")
    parser.add_argument("--max-db-reads-increase", type=float, default=2.0, metavar="N",
                        help="extra DB reads per page tolerated against the baseline (default 2)")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="false-alarm rate of the baseline comparison, over all URLs (default 0.05)")
    parser.add_argument("--max-p95-ms", type=float, help="gate: latency p95 above this is bad")
    parser.add_argument("--max-p99-ms", type=float, help="gate: latency p99 above this is bad")
    parser.add_argument("--max-error-rate", type=float, help="gate: failed/all above this is bad (0..1)")
    parser.add_argument("--min-rpm-ratio", type=float, help="gate: observed/target RPM below this is bad")
    parser.add_argument("--cannot-judge-error-rate", type=float, default=0.5,
                        help="error rate from which the run cannot judge the commit: exit 125 (default 0.5)")
    parser.add_argument("--shard", default="1/1", metavar="K/N",
                        help="run shard K of N: its users and 1/N of the rate (merge with --merge)")
    parser.add_argument("--processes", type=int, default=1,
                        help="run N generator processes on this machine and merge their results")
    parser.add_argument("--compare", nargs=2, metavar=("BASE", "NEW"),
                        help="compare two saved results and exit with the verdict; no load")
    parser.add_argument("--merge", nargs="+", metavar="RESULTS", help="merge saved results into --output")
    parser.add_argument("--report", metavar="HTML",
                        help="write a self-contained HTML report (needs matplotlib): of this run, of a saved "
                             "RESULTS file, or with --compare of the comparison")
    parser.add_argument("results", nargs="?", metavar="RESULTS",
                        help="a saved results file to make the --report of, without load")
    parser.add_argument("--quiet", action="store_true", help="print only errors, warnings and the verdict")
    parser.add_argument("--shard-process", action="store_true", help=argparse.SUPPRESS)  # --processes child
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _check_numbers(args) -> None:
    if args.rpm is None or args.duration is None or args.config is None:
        raise UsageError("--config, --rpm and --duration are required for a load run")
    if not args.rpm > 0:
        raise UsageError(f"--rpm must be above 0, got {args.rpm:g}")
    if not args.duration > 0:
        raise UsageError(f"--duration must be above 0 seconds, got {args.duration:g}")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.warmup < 0:
        raise UsageError("--warmup cannot be negative")
    if args.blocks < 1:
        raise UsageError("--blocks must be at least 1")
    if args.processes < 1:
        raise UsageError("--processes must be at least 1")
    if args.processes > 1 and args.shard != "1/1":
        raise UsageError("--processes and --shard do not go together: each process is a shard")
    if args.drain < 0:
        raise UsageError("--drain cannot be negative")
    for name in ("login_timeout", "request_timeout"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be above 0")


def thresholds_from(args) -> Thresholds:
    return Thresholds(max_regression_pct=args.max_regression, alpha=args.alpha,
                      max_db_reads_increase=args.max_db_reads_increase)


def gates_from(args) -> Gates:
    return Gates(max_p95_ms=args.max_p95_ms, max_p99_ms=args.max_p99_ms,
                 max_error_rate=args.max_error_rate, min_rpm_ratio=args.min_rpm_ratio,
                 cannot_judge_error_rate=args.cannot_judge_error_rate)


def announce_verdict(say, status: int, verdict: str, reasons: list) -> None:
    if say is None:  # a --processes child: the parent judges the merged results
        return
    say(f"[VERDICT] {verdict} (exit {status})")
    for reason in reasons:
        say(f"[VERDICT]   {reason}")


def run_compare(args, say) -> int:
    base, new = load_document(args.compare[0]), load_document(args.compare[1])
    comparison = compare_documents(base, new, thresholds_from(args))
    new["summary"] = summarize(new)
    say(format_comparison(comparison))
    verdict = decide(new["summary"], gates_from(args), comparison)
    return conclude(args, say, new, verdict, baseline=base, comparison=comparison)


def run_saved_report(args, say) -> int:
    """--report HTML RESULTS: the report of a saved run, no load."""
    if not args.report:
        raise UsageError(f"a results file ({args.results}) is only read with --report or --compare")
    document = load_document(args.results)
    document["summary"] = summarize(document)
    comparison = document.get("comparison")
    verdict = decide(document["summary"], gates_from(args), comparison)
    return conclude(args, say, document, verdict, comparison=comparison)


def conclude(args, say, document: dict, verdict: tuple, *, baseline: dict | None = None,
             comparison: dict | None = None, judge=print) -> int:
    """How every mode ends: the HTML report when asked for, then the verdict and its status."""
    if args.report:
        write_report(args.report, render_report(document, verdict, baseline=baseline, comparison=comparison))
        say(f"[INFO] report written to {args.report}")
    announce_verdict(judge, *verdict)
    return verdict[0]


def run_merge(args, say) -> int:
    if not args.output:
        raise UsageError("--merge needs --output for the merged results")
    merged = merge_documents([load_document(path) for path in args.merge])
    write_json_atomically(args.output, merged)
    say(format_report(merged))
    say(f"[INFO] merged {len(args.merge)} results into {args.output}")
    return EXIT_GOOD


def run_processes(args, argv: list, say) -> tuple[dict | None, int | None, int | None]:
    """--processes N: the same command as N shard processes, results merged."""
    import subprocess
    import tempfile

    count = args.processes
    passthrough = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        # The parent alone judges, saves and reports the merged results.
        if token in ("--processes", "--output", "--baseline", "--report"):
            skip = True
            continue
        if token.startswith(("--processes=", "--output=", "--baseline=", "--report=")):
            continue
        passthrough.append(token)
    with tempfile.TemporaryDirectory(prefix="moodle-load-") as tmp:
        outputs = [os.path.join(tmp, f"shard-{k}.json") for k in range(1, count + 1)]
        children = [subprocess.Popen([sys.executable, os.path.abspath(__file__), *passthrough,
                                      "--shard", f"{k}/{count}", "--output", outputs[k - 1],
                                      "--progress", "0", "--quiet", "--shard-process"])
                    for k in range(1, count + 1)]
        interrupted = []

        def forward(signum, _frame):
            interrupted.append(signum)
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            codes = [child.wait() for child in children]
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if any(code == EXIT_USAGE for code in codes):
            return None, EXIT_USAGE, None
        documents = [load_document(path) for path in outputs if os.path.exists(path)]
        if not documents:
            return None, EXIT_CANNOT_JUDGE, None
        stopped = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}.get(interrupted[0]) \
            if interrupted else None
        return merge_documents(documents), None, stopped


def _run_with_signals(run: LoadRun) -> int | None:
    """Run the load; SIGINT/SIGTERM stop the schedule and the report still comes."""

    async def runner():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, run.stop, signum)
            except (NotImplementedError, RuntimeError):
                pass
        await run.run()

    try:
        import uvloop  # optional: a faster event loop where installed
        run_loop = uvloop.run
    except ImportError:
        run_loop = asyncio.run
    run_loop(runner())
    if run.interrupted_by == signal.SIGINT:
        return EXIT_SIGINT
    if run.interrupted_by == signal.SIGTERM:
        return EXIT_SIGTERM
    return None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        say = Printer(quiet=args.quiet)
        if args.report:
            _pyplot()  # say now, before any load, when matplotlib is missing
        if args.compare:
            return run_compare(args, say)
        if args.merge:
            return run_merge(args, say)
        if args.results:
            return run_saved_report(args, say)
        _check_numbers(args)
        config, digest = load_config(args.config)
        for warning in config.warnings:
            say(f"[WARN] {warning}")
        baseline = load_document(args.baseline) if args.baseline else None
        shard = parse_shard(args.shard)
        settings = RunSettings(rpm=args.rpm, duration=args.duration, concurrency=args.concurrency,
                               warmup=args.warmup, seed=args.seed, insecure=args.insecure,
                               login_timeout=args.login_timeout, request_timeout=args.request_timeout,
                               progress=args.progress, blocks=args.blocks, shard=shard, drain=args.drain,
                               http_client=resolve_http_client(args.http_client))
    except UsageError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return EXIT_USAGE

    say(f"[INFO] moodle_load.py {__version__}: {config.base_url}, {settings.rpm:g} RPM for "
        f"{settings.duration:g} s (+{settings.warmup:g} s warm-up), seed {settings.seed}"
        + (f", shard {shard[0]}/{shard[1]}" if shard[1] > 1 else ""))
    interrupted = None
    if args.processes > 1:
        try:
            document, early_status, interrupted = run_processes(args, argv, say)
        except UsageError as error:
            print(f"[ERROR] {error}", file=sys.stderr)
            return EXIT_USAGE
        if early_status is not None:
            say("[ERROR] the generator processes produced no results")
            return early_status
    else:
        run = LoadRun(config, settings, say)
        interrupted = _run_with_signals(run)
        document = build_document(run, argv, digest)
        document["summary"] = summarize(document)
        if run.logins_ok == 0:
            if args.output:
                write_json_atomically(args.output, document)
            reasons = ", ".join(f"{k} {v}" for k, v in run.login_failures.items()) or "interrupted"
            print(f"[ERROR] No user could log in ({reasons}): check base_url, the users' passwords "
                  f"(set_moodle_passwords.py) and that the site is up", file=sys.stderr)
            announce_verdict(None if args.shard_process else print, EXIT_CANNOT_JUDGE, "cannot judge",
                             ["no user could log in"])
            return interrupted or EXIT_CANNOT_JUDGE

    comparison = None
    if baseline is not None:
        comparison = document["comparison"] = compare_documents(baseline, document, thresholds_from(args))
    if args.output:
        write_json_atomically(args.output, document)
    say(format_report(document))
    for line in format_trust(trust_signals(document)):
        say(line)
    for hint in rate_hints(document):
        say(hint)
    if comparison is not None:
        say(format_comparison(comparison))
    if args.output:
        say(f"[INFO] results written to {args.output}")
    judge = None if args.shard_process else print
    if interrupted:
        verdict = (interrupted, "interrupted", ["the run was stopped before its end: what was measured is shown"])
    else:
        verdict = decide(document["summary"], gates_from(args), comparison)
    return conclude(args, say, document, verdict, baseline=baseline, comparison=comparison, judge=judge)


if __name__ == "__main__":
    sys.exit(main())
