"""The HTTP clients of moodle_load.py, against real servers on loopback: an aiohttp
application for ordinary answers, and raw asyncio servers for the awkward ones (a
keep-alive connection closed under a request, a body ended by closing, no answer at all,
garbage).  Both clients must behave the same way, so most tests run on both."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import time
import zlib

import pytest
from aiohttp import web
from loadhelp import free_port

import moodle_load
from moodle_load import HttpError, decode_body, parse_set_cookie

CLIENTS = ("httptools", "aiohttp")


def client(name: str, insecure: bool = False):
    return moodle_load.http_client(name, insecure=insecure)


async def serve_app(app: web.Application, ssl_context=None):
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def counting_app() -> tuple[web.Application, dict]:
    """Pages that say which connection they came over, and what was sent."""
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
    app.router.add_route("*", "/cookies", cookies)
    app.router.add_get("/gzip", compressed)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/redirect", redirect)
    app.router.add_route("*", "/{tail:.*}", page)
    return app, seen


async def raw_server(handler):
    """An asyncio server whose connections are handled by ``handler(reader, writer)``."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


OK_KEEP_ALIVE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# ---- pure parts

def test_set_cookie_gives_name_and_value():
    assert parse_set_cookie("MoodleSession=abc123; path=/; HttpOnly") == ("MoodleSession", "abc123", False)


def test_set_cookie_with_max_age_zero_deletes_the_cookie():
    header = "MoodleSession=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/"
    assert parse_set_cookie(header) == ("MoodleSession", "deleted", True)
    assert parse_set_cookie("a=b; max-age=-1")[2] is True


def test_set_cookie_with_quoted_value_is_unquoted():
    assert parse_set_cookie('theme="boost"; Path=/') == ("theme", "boost", False)


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


# ---- both clients against a real server

@pytest.mark.parametrize("name", CLIENTS)
def test_sequential_requests_reuse_one_connection(name):
    async def scenario():
        app, seen = counting_app()
        runner, port = await serve_app(app)
        http = client(name)
        try:
            for number in range(20):
                reply = await http.request("GET", f"http://127.0.0.1:{port}/my/?n={number}", None, None, 5)
                assert reply.status == 200 and reply.body == f"page /my/?n={number}".encode()
        finally:
            await http.close()
            await runner.cleanup()
        return seen

    seen = asyncio.run(scenario())
    assert len(seen["requests"]) == 20
    assert len(seen["connections"]) == 1


@pytest.mark.parametrize("name", CLIENTS)
def test_cookie_header_and_form_are_sent(name):
    async def scenario():
        app, seen = counting_app()
        runner, port = await serve_app(app)
        http = client(name)
        try:
            await http.request("POST", f"http://127.0.0.1:{port}/login/index.php", "MoodleSession=s1",
                               {"username": "student 1", "password": "P&ss=w0rd!"}, 5)
        finally:
            await http.close()
            await runner.cleanup()
        return seen

    seen = asyncio.run(scenario())
    assert seen["requests"] == [("POST", "/login/index.php", "MoodleSession=s1",
                                 {"username": "student 1", "password": "P&ss=w0rd!"})]


@pytest.mark.parametrize("name", CLIENTS)
def test_every_set_cookie_header_is_returned(name):
    async def scenario():
        runner, port = await serve_app(counting_app()[0])
        http = client(name)
        try:
            return await http.request("GET", f"http://127.0.0.1:{port}/cookies", None, None, 5)
        finally:
            await http.close()
            await runner.cleanup()

    reply = asyncio.run(scenario())
    assert sorted(parse_set_cookie(header)[:2] for header in reply.set_cookies) == \
        [("MOODLEID1_", "sodium%3Axyz"), ("MoodleSession", "abc123")]


@pytest.mark.parametrize("name", CLIENTS)
def test_redirect_is_returned_not_followed(name):
    async def scenario():
        runner, port = await serve_app(counting_app()[0])
        http = client(name)
        try:
            return await http.request("GET", f"http://127.0.0.1:{port}/redirect", None, None, 5)
        finally:
            await http.close()
            await runner.cleanup()

    reply = asyncio.run(scenario())
    assert (reply.status, reply.location) == (303, "/my/")


@pytest.mark.parametrize("name", CLIENTS)
def test_gzip_and_chunked_bodies_arrive_whole(name):
    async def scenario():
        runner, port = await serve_app(counting_app()[0])
        http = client(name)
        try:
            zipped = await http.request("GET", f"http://127.0.0.1:{port}/gzip", None, None, 5)
            chunks = await http.request("GET", f"http://127.0.0.1:{port}/chunked", None, None, 5)
        finally:
            await http.close()
            await runner.cleanup()
        return zipped, chunks

    zipped, chunks = asyncio.run(scenario())
    assert zipped.body == b"<html>" + b"x" * 50_000 + b"</html>"
    assert chunks.body == b"part0;part1;part2;part3;part4;"


@pytest.mark.parametrize("name", CLIENTS)
def test_keep_alive_connection_closed_under_a_get_is_retried_on_a_new_one(name):
    """The server answers one request per connection and closes the connection when the
    next request arrives, without answering (what a keep-alive timeout looks like when it
    races with a request)."""
    connections = []

    async def one_answer_then_close(reader, writer):
        connections.append(writer)
        await read_request(reader)
        writer.write(OK_KEEP_ALIVE)
        await writer.drain()
        await read_request(reader)
        writer.close()

    async def scenario():
        server, port = await raw_server(one_answer_then_close)
        http = client(name)
        try:
            return [(await http.request("GET", f"http://127.0.0.1:{port}/my/", None, None, 5)).body
                    for _ in range(3)]
        finally:
            await http.close()
            server.close()

    assert asyncio.run(scenario()) == [b"ok", b"ok", b"ok"]
    assert len(connections) == 3


def test_post_on_a_connection_closed_under_it_is_not_sent_twice():
    """A POST may have been acted on before the connection died: it is a failure, not a retry."""
    posts = []

    async def one_answer_then_close(reader, writer):
        request = await read_request(reader)
        posts.append(request.split(b" ", 1)[0])
        writer.write(OK_KEEP_ALIVE)
        await writer.drain()
        request = await read_request(reader)
        posts.append(request.split(b" ", 1)[0])
        writer.close()

    async def scenario():
        server, port = await raw_server(one_answer_then_close)
        http = client("httptools")
        try:
            await http.request("GET", f"http://127.0.0.1:{port}/", None, None, 5)
            with pytest.raises(HttpError):
                await http.request("POST", f"http://127.0.0.1:{port}/login/index.php", None, {"a": "b"}, 5)
        finally:
            await http.close()
            server.close()

    asyncio.run(scenario())
    assert posts == [b"GET", b"POST"]


@pytest.mark.parametrize("name", CLIENTS)
def test_body_ended_by_closing_the_connection_is_whole(name):
    async def close_delimited(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 30_000)
        await writer.drain()
        writer.close()

    async def scenario():
        server, port = await raw_server(close_delimited)
        http = client(name)
        try:
            return await http.request("GET", f"http://127.0.0.1:{port}/", None, None, 5)
        finally:
            await http.close()
            server.close()

    reply = asyncio.run(scenario())
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

    async def scenario():
        server, port = await raw_server(early_hints)
        http = client(name)
        try:
            return await http.request("GET", f"http://127.0.0.1:{port}/", None, None, 5)
        finally:
            await http.close()
            server.close()

    reply = asyncio.run(scenario())
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

    async def scenario():
        server, port = await raw_server(silent_once)
        http = client(name)
        try:
            started = time.perf_counter()
            with pytest.raises(asyncio.TimeoutError):
                await http.request("GET", f"http://127.0.0.1:{port}/", None, None, 0.3)
            waited = time.perf_counter() - started
            after = await http.request("GET", f"http://127.0.0.1:{port}/", None, None, 5)
        finally:
            await http.close()
            server.close()
        return waited, after

    waited, after = asyncio.run(scenario())
    assert 0.25 < waited < 2.5
    assert after.body == b"ok"
    assert len(connections) == 2


@pytest.mark.parametrize("name", CLIENTS)
def test_garbage_instead_of_http_is_a_connection_error(name):
    async def garbage(reader, writer):
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\nnot http at all\r\n")
        await writer.drain()
        writer.close()

    async def scenario():
        server, port = await raw_server(garbage)
        http = client(name)
        try:
            with pytest.raises(HttpError):
                await http.request("GET", f"http://127.0.0.1:{port}/", None, None, 5)
        finally:
            await http.close()
            server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("name", CLIENTS)
def test_refused_connection_is_a_connection_error(name):
    async def scenario():
        http = client(name)
        try:
            with pytest.raises(HttpError):
                await http.request("GET", f"http://127.0.0.1:{free_port()}/", None, None, 5)
        finally:
            await http.close()

    asyncio.run(scenario())


def test_non_ascii_path_is_percent_encoded():
    async def scenario():
        app, seen = counting_app()
        runner, port = await serve_app(app)
        http = client("httptools")
        try:
            await http.request("GET", f"http://127.0.0.1:{port}/course/search.php?q=café", None, None, 5)
        finally:
            await http.close()
            await runner.cleanup()
        return seen

    seen = asyncio.run(scenario())
    assert seen["requests"][0][1] == "/course/search.php?q=caf%C3%A9"


# ---- TLS

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    key, certificate = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True)
    return str(certificate), str(key)


def tls_fetch(name: str, self_signed, insecure: bool):
    import ssl

    async def scenario():
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self_signed)
        runner, port = await serve_app(counting_app()[0], ssl_context=context)
        http = client(name, insecure=insecure)
        try:
            first = await http.request("GET", f"https://127.0.0.1:{port}/my/", None, None, 5)
            second = await http.request("GET", f"https://127.0.0.1:{port}/my/", None, None, 5)
            return first.body, second.body
        finally:
            await http.close()
            await runner.cleanup()

    return asyncio.run(scenario())


@pytest.mark.parametrize("name", CLIENTS)
def test_https_with_insecure_accepts_a_self_signed_certificate(name, self_signed):
    assert tls_fetch(name, self_signed, insecure=True) == (b"page /my/", b"page /my/")


@pytest.mark.parametrize("name", CLIENTS)
def test_https_refuses_an_unverified_certificate(name, self_signed):
    with pytest.raises(HttpError):
        tls_fetch(name, self_signed, insecure=False)
