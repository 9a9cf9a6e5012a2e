"""The HTTP clients of moodle_load.py, against real servers on loopback: an aiohttp
application for ordinary answers, and raw asyncio servers for the awkward ones (a
keep-alive connection closed under a request, a body ended by closing, no answer at all,
garbage).  Both clients must behave the same way, so most tests run on both."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
import time
import zlib

import pytest
from aiohttp import web

from helpers import free_port
from moodleload.site.clients import http_client
from moodleload.site.httpclient import BodyTooLarge, HttpError, Reply, decode_body, parse_set_cookie

CLIENTS = ("httptools", "aiohttp")
OK_KEEP_ALIVE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def exchanges(name: str, server, *requests, tls: ssl.SSLContext | None = None, insecure: bool = False) -> list:
    """Start ``server`` (an aiohttp application, or a ``handler(reader, writer)`` for a raw
    asyncio server, or None for a port nothing listens on), send ``requests`` one after
    the other through one client of ``name``, and give back for each its Reply or the
    exception it raised.  A request is ``(method, path)`` or ``(method, path, cookie,
    form, timeout)``."""

    async def scenario():
        if isinstance(server, web.Application):
            runner = web.AppRunner(server, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
            await site.start()
            port, stop = runner.addresses[0][1], runner.cleanup
        elif server is not None:
            raw = await asyncio.start_server(server, "127.0.0.1", 0)
            port = raw.sockets[0].getsockname()[1]

            async def stop():
                raw.close()
        else:
            port = free_port()

            async def stop():
                pass

        http = http_client(name, insecure=insecure)
        results = []
        try:
            for method, path, *rest in requests:
                cookie, form, timeout = rest or (None, None, 5)
                url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
                try:
                    results.append(await http.request(method, url, cookie, form, timeout))
                except (HttpError, asyncio.TimeoutError) as error:
                    results.append(error)
        finally:
            await http.close()
            await stop()
        return results

    return asyncio.run(scenario())


def moodle_like_app() -> tuple[web.Application, dict]:
    """Pages that record which connection they came over and what was sent, and the
    answers a Moodle page can give: cookies, gzip, chunks, a redirect."""
    seen = {"connections": set(), "requests": []}

    async def page(request: web.Request):
        seen["connections"].add(id(request.transport))
        form = dict(await request.post()) if request.method == "POST" else {}
        seen["requests"].append((request.method, request.path_qs, request.headers.get("Cookie"), form))
        return web.Response(text=f"page {request.path_qs}")

    async def cookies(request: web.Request):
        response = web.Response(text="cookies")
        response.set_cookie("MoodleSession", "abc123", path="/", httponly=True)
        response.set_cookie("MOODLEID1_", "sodium%3Axyz", path="/")
        return response

    async def compressed(request: web.Request):
        response = web.Response(body=b"<html>" + b"x" * 50_000 + b"</html>")
        response.enable_compression(web.ContentCoding.gzip)
        return response

    async def chunked(request: web.Request):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in range(5):
            await response.write(f"part{part};".encode())
        await response.write_eof()
        return response

    async def redirect(request: web.Request):
        raise web.HTTPSeeOther("/my/")

    app = web.Application()
    app.router.add_get("/cookies", cookies)
    app.router.add_get("/gzip", compressed)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/redirect", redirect)
    app.router.add_route("*", "/{tail:.*}", page)
    return app, seen


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


def answer_once_then_close(data: bytes):
    """A raw server that reads one request, sends ``data`` and closes the connection."""

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(data)
        await writer.drain()
        writer.close()

    return handler


def one_answer_per_connection(arrived: list):
    """A raw server that answers one request per connection, then closes the connection
    when the next request arrives without answering it: what a keep-alive timeout looks
    like when it races with a request.  ``arrived`` gets each request's method."""

    async def handler(reader, writer):
        arrived.append((await read_request(reader)).split(b" ", 1)[0])
        writer.write(OK_KEEP_ALIVE)
        await writer.drain()
        arrived.append((await read_request(reader)).split(b" ", 1)[0])
        writer.close()

    return handler


# ---- pure parts

def test_set_cookie_gives_name_and_value():
    assert parse_set_cookie("MoodleSession=abc123; path=/; HttpOnly")[:3] == ("MoodleSession", "abc123", False)


def test_set_cookie_with_max_age_zero_deletes_the_cookie():
    header = "MoodleSession=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/"
    assert parse_set_cookie(header)[:3] == ("MoodleSession", "deleted", True)
    assert parse_set_cookie("a=b; max-age=-1")[2] is True


def test_set_cookie_with_quoted_value_is_unquoted():
    assert parse_set_cookie('theme="boost"; Path=/')[:3] == ("theme", "boost", False)


def test_set_cookie_without_a_pair_is_ignored():
    assert parse_set_cookie("garbage; path=/") is None
    assert parse_set_cookie("=value") is None


def test_gzip_and_both_kinds_of_deflate_are_decoded():
    page = b"<html>" + b"moodle " * 1000 + b"</html>"
    assert decode_body(gzip.compress(page), b"gzip") == page
    assert decode_body(zlib.compress(page), b"deflate") == page
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_body(raw.compress(page) + raw.flush(), b"deflate") == page
    assert decode_body(page, b"") == page


# ---- both clients against real servers

@pytest.mark.parametrize("name", CLIENTS)
def test_sequential_requests_reuse_one_connection(name):
    app, seen = moodle_like_app()
    replies = exchanges(name, app, *(("GET", f"/my/?n={number}") for number in range(20)))
    assert [reply.body for reply in replies] == [f"page /my/?n={number}".encode() for number in range(20)]
    assert len(seen["requests"]) == 20 and len(seen["connections"]) == 1


@pytest.mark.parametrize("name", CLIENTS)
def test_cookie_header_and_form_are_sent(name):
    app, seen = moodle_like_app()
    form = {"username": "student 1", "password": "P&ss=w0rd!"}
    exchanges(name, app, ("POST", "/login/index.php", "MoodleSession=s1", form, 5))
    assert seen["requests"] == [("POST", "/login/index.php", "MoodleSession=s1", form)]


@pytest.mark.parametrize("name", CLIENTS)
def test_every_set_cookie_header_is_returned(name):
    [reply] = exchanges(name, moodle_like_app()[0], ("GET", "/cookies"))
    assert sorted(parse_set_cookie(header)[:2] for header in reply.set_cookies) == \
        [("MOODLEID1_", "sodium%3Axyz"), ("MoodleSession", "abc123")]


@pytest.mark.parametrize("name", CLIENTS)
def test_redirect_is_returned_not_followed(name):
    [reply] = exchanges(name, moodle_like_app()[0], ("GET", "/redirect"))
    assert (reply.status, reply.location) == (303, "/my/")


@pytest.mark.parametrize("name", CLIENTS)
def test_gzip_and_chunked_bodies_arrive_whole(name):
    zipped, chunks = exchanges(name, moodle_like_app()[0], ("GET", "/gzip"), ("GET", "/chunked"))
    assert zipped.body == b"<html>" + b"x" * 50_000 + b"</html>"
    assert chunks.body == b"part0;part1;part2;part3;part4;"


@pytest.mark.parametrize("name", CLIENTS)
def test_keep_alive_connection_closed_under_a_get_is_retried_on_a_new_one(name):
    arrived = []
    replies = exchanges(name, one_answer_per_connection(arrived), *[("GET", "/my/")] * 3)
    assert [reply.body for reply in replies] == [b"ok", b"ok", b"ok"]
    assert arrived == [b"GET"] * 5  # the second and third were each sent again on a new connection


def test_post_on_a_connection_closed_under_it_is_not_sent_twice():
    """A POST may have been acted on before the connection died: a failure, not a retry."""
    arrived = []
    ok, failed = exchanges("httptools", one_answer_per_connection(arrived), ("GET", "/"),
                           ("POST", "/login/index.php", None, {"a": "b"}, 5))
    assert ok.body == b"ok" and isinstance(failed, HttpError)
    assert arrived == [b"GET", b"POST"]


@pytest.mark.parametrize("name", CLIENTS)
def test_body_ended_by_closing_the_connection_is_whole(name):
    close_delimited = answer_once_then_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 30_000)
    [reply] = exchanges(name, close_delimited, ("GET", "/"))
    assert (reply.status, reply.body) == (200, b"y" * 30_000)


@pytest.mark.parametrize("name", CLIENTS)
def test_an_early_hints_answer_is_skipped_for_the_final_one(name):
    async def early_hints(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </theme/styles.php>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(OK_KEEP_ALIVE)
        await writer.drain()

    [reply] = exchanges(name, early_hints, ("GET", "/"))
    assert (reply.status, reply.body) == (200, b"ok")


@pytest.mark.parametrize("name", CLIENTS)
def test_no_answer_times_out_and_the_connection_is_not_reused(name):
    connections = []

    async def silent_once(reader, writer):
        connections.append(writer)
        await read_request(reader)
        if len(connections) == 1:
            await asyncio.sleep(3)
        writer.write(OK_KEEP_ALIVE)
        await writer.drain()

    started = time.perf_counter()
    timed_out, after = exchanges(name, silent_once, ("GET", "/", None, None, 0.3), ("GET", "/"))
    assert isinstance(timed_out, asyncio.TimeoutError)
    assert time.perf_counter() - started < 2.5  # not the server's 3 s
    assert after.body == b"ok"
    assert len(connections) == 2


@pytest.mark.parametrize("name", CLIENTS)
def test_garbage_instead_of_http_is_a_connection_error(name):
    garbage = answer_once_then_close(b"SSH-2.0-OpenSSH_9.2\r\n\r\nnot http at all\r\n")
    [failed] = exchanges(name, garbage, ("GET", "/"))
    assert isinstance(failed, HttpError)


@pytest.mark.parametrize("name", CLIENTS)
def test_refused_connection_is_a_connection_error(name):
    [failed] = exchanges(name, None, ("GET", "/"))
    assert isinstance(failed, HttpError)


def test_non_ascii_path_is_percent_encoded():
    app, seen = moodle_like_app()
    exchanges("httptools", app, ("GET", "/course/search.php?q=café"))
    assert seen["requests"][0][1] == "/course/search.php?q=caf%C3%A9"


# ---- TLS

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    key, certificate = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate), str(key))
    return context


@pytest.mark.parametrize("name", CLIENTS)
def test_https_with_insecure_accepts_a_self_signed_certificate(name, self_signed):
    replies = exchanges(name, moodle_like_app()[0], ("GET", "/my/"), ("GET", "/my/"), tls=self_signed, insecure=True)
    assert [reply.body for reply in replies] == [b"page /my/", b"page /my/"]
    assert all(isinstance(reply, Reply) for reply in replies)


@pytest.mark.parametrize("name", CLIENTS)
def test_https_refuses_an_unverified_certificate(name, self_signed):
    [failed] = exchanges(name, moodle_like_app()[0], ("GET", "/my/"), tls=self_signed)
    assert isinstance(failed, HttpError)


def test_set_cookie_attributes_that_scope_it_are_read():
    cookie = parse_set_cookie("MoodleSession=x; Path=/moodle/; Domain=.Example.TEST; Secure; HttpOnly")
    assert (cookie.path, cookie.domain, cookie.secure) == ("/moodle/", "example.test", True)
    assert parse_set_cookie("a=b").path is None and parse_set_cookie("a=b").domain is None


def test_a_compressed_body_is_never_inflated_past_the_limit():
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    with pytest.raises(BodyTooLarge):
        decode_body(bomb, b"gzip", limit=1024 * 1024)
    assert len(decode_body(bomb, b"gzip", limit=8 * 1024 * 1024)) == 8 * 1024 * 1024
