"""HTTP for the load: a lean HTTP/1.1 client on httptools, its limits and errors, and the
helpers the aiohttp client (``aioclient``) shares; ``clients`` picks one of the two."""

from __future__ import annotations

import asyncio
import errno
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast
from urllib.parse import quote, urlencode, urlsplit

if TYPE_CHECKING:  # ssl is imported on the first https request: plain-http runs never pay for it
    import ssl


# (scheme, host, port) of a site, and the Authorization header sent to it only (basic auth
# from user:password@ in base_url).
Origin = tuple[str, str, int]
Authorization = tuple[Origin, str]


class HttpError(Exception):
    """The connection failed, or what came back was not HTTP: a "connection" failure."""


OUT_OF_FILES = (errno.EMFILE, errno.ENFILE)


class Unreachable(HttpError):
    """No connection could be opened at all: refused, an unknown host, no route, or this
    process out of file descriptors (``out_of_files``).  Not an answer of the site: nothing
    about the commit can be learned from it."""

    def __init__(self, message: str, out_of_files: bool = False):
        super().__init__(message)
        self.out_of_files = out_of_files


def unreachable(host: str, port: int | str | None, error: BaseException) -> Unreachable:
    number = getattr(error, "errno", None)
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return Unreachable(f"cannot connect to {host}:{port} ({reason})", out_of_files=number in OUT_OF_FILES)


class Client(Protocol):
    """What a run sends its requests through: HttpClient (httptools), or aioclient's AiohttpClient."""

    async def request(self, method: str, url: str, cookie: str | None, form: Form | None,
                      timeout: float) -> Reply: ...

    async def close(self) -> None: ...


@dataclass
class Reply:
    """What one HTTP exchange gave back, as much as a load test needs of it."""

    status: int
    location: str  # the Location header, "" if none
    set_cookies: list[str]  # the raw Set-Cookie headers
    body: bytes  # decoded from gzip/deflate by the client's request()
    encoding: bytes = b""  # the Content-Encoding still to decode, inside the client only


@dataclass(frozen=True)
class Body:
    """A request body other than a plain form: a JSON web-service call, say, with the
    headers the page's JavaScript sends along."""

    content_type: str
    data: bytes
    headers: tuple[tuple[str, str], ...] = ()  # more (name, value) pairs


# What a POST sends: a plain form (a dict, or (name, value) pairs in the order a browser sends
# them) or another Body.
Form = dict[str, str] | list[tuple[str, str]] | Body


def encode_body(form: Form) -> tuple[bytes, str, tuple[tuple[str, str], ...]]:
    """(bytes, Content-Type, extra headers) of a form (a dict or (name, value) pairs) or a Body."""
    if isinstance(form, Body):
        return form.data, form.content_type, form.headers
    return urlencode(form).encode(), "application/x-www-form-urlencoded", ()


class SetCookie(NamedTuple):
    name: str
    value: str
    deleted: bool
    path: str | None  # None: the default path of the URL that set it
    domain: str | None  # None: host-only
    secure: bool


def parse_set_cookie(header: str) -> SetCookie | None:
    """One Set-Cookie header, or None if it names no cookie.  A cookie is deleted the ways
    PHP deletes one: ``Max-Age=0`` (or less), or its placeholder value ``deleted``."""
    pair, _, attributes = header.partition(";")
    name, equals, value = pair.partition("=")
    name = name.strip()
    if not equals or not name:
        return None
    value = value.strip()
    if len(value) > 1 and value[0] == value[-1] == '"':
        value = value[1:-1]
    deleted = value == "deleted"
    path = domain = None
    secure = False
    for attribute in attributes.split(";"):
        key, _, setting = attribute.partition("=")
        key = key.strip().lower()
        if key == "max-age":
            try:
                deleted = deleted or int(setting.strip()) <= 0
            except ValueError:
                pass
        elif key == "path" and setting.strip().startswith("/"):
            path = setting.strip()
        elif key == "domain" and setting.strip().strip("."):
            domain = setting.strip().lstrip(".").lower()
        elif key == "secure":
            secure = True
    return SetCookie(name, value, deleted, path, domain, secure)


# What may not stand raw in a request line: a space or CR/LF there would break (or split) it.
UNSAFE_IN_TARGET = re.compile(r"[^!-~]|[\"<>\\^`{|}]")

DEFAULT_MAX_BODY = 64 * 1024 * 1024  # bytes of an answer's body, as sent and as decoded
DECODE_INLINE_UP_TO = 256 * 1024  # larger compressed bodies are decoded off the event loop


class BodyTooLarge(HttpError):
    """An answer's body, as sent or decoded, over the limit (--max-body-mb): its own failure kind."""


MAX_HEAD_BYTES = 256 * 1024  # of an answer's status line and headers: what Chromium accepts


class HeadersTooLarge(HttpError):
    """An answer whose headers never end within MAX_HEAD_BYTES: its own failure kind."""


def decode_body(body: bytes, encoding: bytes, limit: int = DEFAULT_MAX_BODY) -> bytes:
    """The body without its Content-Encoding (gzip or deflate, the two we ask for), never
    more than ``limit`` bytes of it: a compression bomb is stopped, not inflated."""
    if encoding == b"gzip":
        return _inflate(body, 16 + zlib.MAX_WBITS, limit)
    if encoding == b"deflate":
        try:  # what the RFC calls deflate is zlib-wrapped; some servers send it raw
            return _inflate(body, zlib.MAX_WBITS, limit)
        except zlib.error:
            return _inflate(body, -zlib.MAX_WBITS, limit)
    return body


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    data = inflater.decompress(body, limit + 1)
    if len(data) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"the decoded body is over {limit // 1048576} MB")
    return data


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time.  The answer
    is parsed by httptools (llhttp, Node.js's parser in C), called back as bytes arrive."""

    def __init__(self, parser_class: Callable[[_Connection], Any], max_body: int = DEFAULT_MAX_BODY):
        self.parser = parser_class(self)
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Reply] | None = None
        self.closed = False
        self.received = False  # any byte of the current answer
        self.timer: asyncio.TimerHandle | None = None
        self._new_message()

    def _new_message(self) -> None:
        self.location = ""
        self.set_cookies: list[str] = []
        self.encoding = b""
        self.delimited = False  # Content-Length or chunked: else the body ends when the server closes
        self.headers_done = False
        self.head_bytes = 0
        self.chunks: list[bytes] = []
        self.body_bytes = 0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection (create_connection); uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        if not self.headers_done:
            # Counted before parsing: llhttp keeps a header's value whole, however long it grows.
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES + len(data):
                self._fail(HeadersTooLarge(f"the headers are over {MAX_HEAD_BYTES // 1024} KB"))
                return
        try:
            self.parser.feed_data(data)
        except Exception as error:  # httptools.HttpParserError and its kinds
            self._fail(HttpError(f"not an HTTP answer ({error})"))

    def connection_lost(self, error: Exception | None) -> None:
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
        self.body_bytes += len(body)
        if self.body_bytes > self.max_body:
            self._fail(BodyTooLarge(f"the body is over {self.max_body // 1048576} MB"))
            return
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
        waiter.set_result(Reply(status, location, cookies, body, encoding))

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

    async def exchange(self, request: bytes, deadline: float, loop: asyncio.AbstractEventLoop) -> Reply:
        self.received = False
        self.waiter = loop.create_future()
        self.timer = loop.call_at(deadline, self._timed_out)
        assert self.transport is not None  # connection_made came before the first exchange
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

    def __init__(self, *, insecure: bool, user_agent: str, max_body: int = DEFAULT_MAX_BODY,
                 authorization: Authorization | None = None):
        import httptools

        self._parser_class = httptools.HttpResponseParser
        self._max_body = max_body
        # ((scheme, host, port), "Basic ...") of base_url's user:password@: sent to that origin only.
        self._authorization = authorization
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}  # the most recent last
        self._user_agent = user_agent
        self._insecure = insecure
        self._tls: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            import ssl

            context = ssl.create_default_context()
            if self._insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context
        return self._tls

    async def _connect(self, scheme: str, host: str, port: int, deadline: float) -> _Connection:
        loop = self._loop
        assert loop is not None  # set by request() before it connects
        opening = loop.create_connection(lambda: _Connection(self._parser_class, self._max_body), host, port,
                                         ssl=self._tls_context() if scheme == "https" else None)
        try:
            _, connection = await asyncio.wait_for(opening, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:  # an OSError too since Python 3.11: it stays a timeout
            raise
        except OSError as error:
            raise unreachable(host, port, error) from None
        except ValueError as error:  # a port out of range, an odd host
            raise HttpError(f"cannot connect to {host}:{port} ({error})") from None
        return connection

    async def request(self, method: str, url: str, cookie: str | None, form: Form | None,
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
        if UNSAFE_IN_TARGET.search(target):  # a space, a control character, non-ASCII: as a browser sends them
            target = quote(target, safe="/?&=%:@!$'()*+,;~-._")
        head = (f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc.rpartition('@')[2]}\r\n"
                f"User-Agent: {self._user_agent}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n")
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        key = (scheme, host, port)
        if self._authorization is not None and self._authorization[0] == key:
            head += f"Authorization: {self._authorization[1]}\r\n"
        payload = b""
        if form is not None:
            payload, content_type, extra = encode_body(form)
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
            for name, value in extra:
                head += f"{name}: {value}\r\n"
        request = (head + "\r\n").encode("latin-1") + payload
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
            if reply.encoding:
                reply.body = await self._decoded(reply.body, reply.encoding)
                reply.encoding = b""
            return reply

    async def _decoded(self, body: bytes, encoding: bytes) -> bytes:
        """Decoded within the limit; a large body off the event loop, so inflating it never
        stalls the schedule of every other request."""
        try:
            if len(body) <= DECODE_INLINE_UP_TO:
                return decode_body(body, encoding, self._max_body)
            assert self._loop is not None  # set by the first request, which this answers
            return await self._loop.run_in_executor(None, decode_body, body, encoding, self._max_body)
        except zlib.error as error:
            raise HttpError(f"bad {encoding.decode('latin-1')} body ({error})") from None

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
