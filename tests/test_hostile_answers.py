"""Hostile answers on the wire: what a site (or anything pretending to be one) sends that
a browser would refuse or bound fails its request, never the run, and never leaks a secret.
Real hostile servers on loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
import time

from aiohttp import web

from helpers import FixedApp, mini_moodle, read, run_load, write_config
from moodleload.exits import (
    EXIT_FAULT,
    EXIT_GOOD,
)
from sim.server import SimServer

ONE_URL = [{"path": "/my/", "name": "dashboard"}, {"path": "/page", "name": "page"}]


# ---- browser-grade safety on the wire

def test_a_redirect_off_the_site_is_not_followed_and_is_its_own_outcome(tmp_path):
    elsewhere_requests = []

    async def elsewhere(request):
        elsewhere_requests.append(dict(request.headers))
        return web.Response(text="phished")

    with SimServer(FixedApp(elsewhere)) as other:
        async def pages(request):
            return web.Response(status=302, headers={"Location": f"http://localhost:{other.port}/steal"})

        with SimServer(FixedApp(mini_moodle(pages))) as server:
            config = write_config(tmp_path / "c.json", server.url, users=2, urls=ONE_URL)
            run_load(config, rpm=1200, duration=2, output=tmp_path / "r.json")
    page = read(tmp_path / "r.json")["urls"]["page"]
    assert page["success"] == 0 and page["failures"] == {"offsite_redirect": page["requests"]}
    assert page["redirects"] == {f"localhost:{other.port}": page["requests"]}
    assert elsewhere_requests == []  # nothing, and so no MoodleSession, ever reached the other host


def test_an_answer_over_the_size_limit_fails_as_too_large_also_when_compressed(tmp_path):
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MB in about 64 KB

    async def pages(request):
        if request.path == "/bomb":
            return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "text/html"})
        return web.Response(body=b"x" * (3 * 1024 * 1024))

    urls = [{"path": "/bomb", "name": "bomb"}, {"path": "/big", "name": "big"}, {"path": "/my/", "name": "fine"}]
    with SimServer(FixedApp(mini_moodle(pages))) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=urls)
        run_load(config, "--max-body-mb", "2", rpm=600, duration=3, output=tmp_path / "r.json")
    result = read(tmp_path / "r.json")["urls"]
    assert result["bomb"]["failures"] == {"too_large": result["bomb"]["requests"]} and result["bomb"]["requests"]
    assert result["big"]["failures"] == {"too_large": result["big"]["requests"]} and result["big"]["requests"]
    assert result["fine"]["failure"] == 0


def test_basic_auth_in_base_url_is_used_and_never_shown(tmp_path, capsys):
    import base64

    expected = "Basic " + base64.b64encode(b"stage:s3cret!").decode()
    inner = mini_moodle(lambda request: None)

    async def guarded(request):
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="staging"'})
        return await inner(request)

    with SimServer(FixedApp(guarded)) as server:
        config = write_config(tmp_path / "c.json", server.url.replace("http://", "http://stage:s3cret%21@"),
                              users=2, urls=[{"path": "/my/"}])
        assert run_load(config, output=tmp_path / "r.json") == EXIT_GOOD
    out = capsys.readouterr().out
    assert "s3cret" not in out and "s3cret" not in (tmp_path / "r.json").read_text()
    assert read(tmp_path / "r.json")["metadata"]["target"] == server.url



# ---- bounded resources: a hostile answer fails its request, never the run

def journey(tmp_path, base_url: str, steps: list) -> str:
    config = json.loads(open(write_config(tmp_path / "c.json", base_url, users=2)).read())
    del config["urls"]
    config["journeys"] = [{"name": "hostile", "steps": steps}]
    (tmp_path / "c.json").write_text(json.dumps(config))
    return str(tmp_path / "c.json")


def test_headers_that_never_end_fail_their_request_without_being_read_whole(tmp_path):
    async def pages(request):
        return web.Response(text="x", headers={"X-Endless": "a" * (2 * 1024 * 1024)})

    with SimServer(FixedApp(mini_moodle(pages))) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=ONE_URL)
        started = time.monotonic()
        run_load(config, rpm=600, duration=2, output=tmp_path / "r.json")
        assert time.monotonic() - started < 20
    page = read(tmp_path / "r.json")["urls"]["page"]
    assert page["requests"] and page["failures"] == {"headers_too_large": page["requests"]}


def test_service_json_nested_beyond_reason_fails_that_call_not_the_run(tmp_path):
    async def pages(request):
        if request.path == "/lib/ajax/service.php":
            return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")
        return web.Response(text='<html><script>M.cfg = {"sesskey":"abcdefghij"};</script></html>',
                            content_type="text/html")

    with SimServer(FixedApp(mini_moodle(pages))) as server:
        steps = [{"name": "page", "path": "/page"}, {"name": "deep", "call": {"methodname": "core_x", "args": {}}}]
        status = run_load(journey(tmp_path, server.url, steps), rpm=600, duration=2, output=tmp_path / "r.json")
    assert status != EXIT_FAULT
    deep = read(tmp_path / "r.json")["urls"]["deep"]
    assert deep["requests"] and deep["failures"] == {"ws_not_json": deep["requests"]}


def test_a_huge_successful_service_answer_is_known_from_its_first_bytes(tmp_path):
    big = b'[{"error":false,"data":"' + b"x" * (40 * 1024 * 1024) + b'"}]'

    async def pages(request):
        if request.path == "/lib/ajax/service.php":
            return web.Response(body=big, content_type="application/json")
        return web.Response(text='<html><script>M.cfg = {"sesskey":"abcdefghij"};</script></html>',
                            content_type="text/html")

    with SimServer(FixedApp(mini_moodle(pages))) as server:
        steps = [{"name": "page", "path": "/page"}, {"name": "big", "call": {"methodname": "core_x", "args": {}}}]
        run_load(journey(tmp_path, server.url, steps), "--max-body-mb", "64", rpm=120, duration=4,
                 output=tmp_path / "r.json")
    result = read(tmp_path / "r.json")
    assert result["urls"]["big"]["success"] == result["urls"]["big"]["requests"] > 0
    assert result["generator"]["paused_s"] == 0  # the event loop never stood still for it


def test_a_redirect_loop_is_its_own_failure_not_a_connection_failure(tmp_path):
    async def pages(request):
        return web.Response(status=302, headers={"Location": "/page"})

    with SimServer(FixedApp(mini_moodle(pages))) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=ONE_URL)
        run_load(config, rpm=600, duration=2, output=tmp_path / "r.json")
    page = read(tmp_path / "r.json")["urls"]["page"]
    assert page["requests"] and page["failures"] == {"redirect_loop": page["requests"]}


def test_the_request_timeout_is_for_the_whole_request_not_each_redirect(tmp_path):
    async def pages(request):
        hop = int(request.query.get("hop", "0"))
        await asyncio.sleep(0.4)
        if hop < 3:
            return web.Response(status=302, headers={"Location": f"/page?hop={hop + 1}"})
        return web.Response(text="arrived")

    with SimServer(FixedApp(mini_moodle(pages))) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=ONE_URL)
        run_load(config, "--request-timeout", "1", rpm=120, duration=3, output=tmp_path / "r.json")
    page = read(tmp_path / "r.json")["urls"]["page"]
    assert page["requests"] and page["failures"] == {"timeout": page["requests"]}  # 4 hops of 0.4 s > 1 s


def test_a_space_in_a_parameter_value_is_sent_encoded_not_raw(tmp_path):
    seen = []

    async def pages(request):
        seen.append((request.query.get("q"), request.headers.get("X-Injected")))
        return web.Response(text="found")

    urls = [{"path": "/search?q={q}", "name": "search"}]
    with SimServer(FixedApp(mini_moodle(pages))) as server:
        config = write_config(tmp_path / "c.json", server.url, users=2, urls=urls,
                              parameters={"q": {"values": ["two words", "a\r\nX-Injected: 1"]}})
        run_load(config, rpm=600, duration=2, output=tmp_path / "r.json")
    search = read(tmp_path / "r.json")["urls"]["search"]
    assert search["requests"] and search["success"] == search["requests"]
    assert ("two words", None) in seen
    assert all(header is None for _, header in seen)  # a CR LF in a value never starts a header of its own
    assert any(value and "X-Injected" in value for value, _ in seen)
