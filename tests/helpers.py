"""What the tests share: paths, the simulated site's quick settings, configs and runs of
moodle_load.py, and a tiny browser for specifying the simulated site hop by hop."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import subprocess
import sys
from urllib.parse import urlencode, urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")  # real captured pages and a recorded run
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import moodle_load  # noqa: E402
from sim.ports import free_port  # noqa: E402,F401  (one copy, shared with sim and bench)
from sim.sitesettings import SiteSettings  # noqa: E402

TEMPLATE = "moodle_template"  # the seeded database each test's database is copied from
_database_numbers = itertools.count(1)

PASSWORD = "Passw0rd!"


@contextlib.contextmanager
def busy_loops(count: int):
    """``count`` processes that each hold a core for as long as the block runs: the other
    work of a shared CI runner or a laptop, made real."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def write_config(path, base_url: str, users: int = 5, urls=None, parameters=None, password: str = PASSWORD,
                 first_user: int = 1) -> str:
    config = {
        "base_url": base_url,
        "login_path": "/login/index.php",
        "users": [{"username": f"tool_generator_{n:06d}", "password": password}
                  for n in range(first_user, first_user + users)],
        "parameters": parameters if parameters is not None else {
            "courseid": {"values": [10, 11, 12, 13]}, "cmid": {"values": [104, 168, 232, 296]},
            "userid": {"min": 3, "max": 22}},
        "urls": urls if urls is not None else [
            {"path": "/my/", "name": "dashboard"},
            {"path": "/course/view.php?id={courseid}", "name": "course"},
            {"path": "/mod/forum/view.php?id={cmid}", "name": "forum"},
            {"path": "/user/profile.php?id={userid}", "name": "profile"}],
    }
    with open(path, "w") as handle:
        json.dump(config, handle)
    return str(path)


def run_load(config_path: str, *extra, rpm: float = 600, duration: float = 2, output=None) -> int:
    args = ["--config", config_path, "--rpm", str(rpm), "--duration", str(duration), "--progress", "0", *extra]
    if output is not None:
        args += ["--output", str(output)]
    return moodle_load.main(args)


def read(path) -> dict:
    with open(path) as handle:
        return json.load(handle)


def fast_settings(**overrides) -> SiteSettings:
    """The site's behaviour with page times cut to a few milliseconds, for quick tests."""
    settings = SiteSettings().scaled(0.02)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return settings


class Browser:
    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form=None, json_body=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            body = json.dumps(json_body)
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        content = response.read().decode("utf-8", "replace")
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        conn.close()
        location = response.getheader("Location") or ""
        return response.status, urlsplit(location).path + ("?" + urlsplit(location).query
                                                           if urlsplit(location).query else ""), content

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, form: dict):
        return self.request("POST", path, form)

    def login_token(self) -> str:
        status, _, page = self.get("/login/index.php")
        assert status == 200
        return re.search(r'name="logintoken" value="([^"]+)"', page).group(1)

    def login(self, username: str, password: str):
        token = self.login_token()
        return self.post("/login/index.php", {"username": username, "password": password,
                                              "logintoken": token, "anchor": ""})


def new_database(pg, template: str = TEMPLATE) -> str:
    name = f"moodle_{next(_database_numbers)}"
    import psycopg2

    conn = psycopg2.connect(**pg.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    conn.close()
    return name


class FixedApp:
    """A site that is not Moodle at all: answers every request with one handler."""

    def __init__(self, handler):
        self.handler = handler

    def app(self):
        from aiohttp import web

        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", self.handler)
        return application


TOKEN = "abcdefabcdefabcdefabcdefabcdefab"


def mini_moodle(pages):
    """A handler that logs users in the way Moodle does (token, 303 to testsession, then
    /my/) and hands every other request to ``pages(request)``: for hostile sites."""
    from aiohttp import web

    async def handler(request):
        if request.path == "/login/index.php":
            if "testsession" in request.query:
                return web.Response(status=303, headers={"Location": "/my/"})
            if request.method == "POST":
                return web.Response(status=303, headers={"Location": "/login/index.php?testsession=7",
                                                         "Set-Cookie": "MoodleSession=user; path=/"})
            return web.Response(text=f'<input type="hidden" name="logintoken" value="{TOKEN}">',
                                content_type="text/html", headers={"Set-Cookie": "MoodleSession=anon; path=/"})
        if request.path == "/my/":
            return web.Response(text="<html>dashboard</html>", content_type="text/html")
        return await pages(request)

    return handler


def valid_config(**changes) -> dict:
    """A small valid config.json as parsed JSON, with ``changes`` to its top-level keys."""
    config = {"base_url": "https://moodle.test", "users": [{"username": "u1", "password": "p"}],
              "parameters": {"courseid": {"min": 2, "max": 5}, "cmid": {"values": [7, 9]}},
              "urls": [{"path": "/course/view.php?id={courseid}"}, {"path": "/mod/forum/view.php?id={cmid}"}]}
    config.update(changes)
    return config


def installer_config(dbtype: str, dbhost: str, dbname: str, dbuser: str, dbpass: str, dboptions,
                     wwwroot: str = "https://school.example.test/moodle", prefix: str = "mdl_") -> str:
    """config.php as admin/cli/install.php writes it (install_generate_configphp: var_export)."""
    def export(value):
        if isinstance(value, int):
            return str(value)
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    lines = ["<?php  // Moodle configuration file", "", "unset($CFG);", "global $CFG;", "$CFG = new stdClass();", ""]
    for key, value in (("dbtype", dbtype), ("dblibrary", "native"), ("dbhost", dbhost), ("dbname", dbname),
                       ("dbuser", dbuser), ("dbpass", dbpass), ("prefix", prefix)):
        lines.append(f"$CFG->{key.ljust(9)} = {export(value)};")
    if dboptions is not None:
        lines.append("$CFG->dboptions = array (")
        lines += [f"  {export(key)} => {export(value)}," for key, value in dboptions.items()]
        lines.append(");")
    lines += ["", f"$CFG->wwwroot   = {export(wwwroot)};", "$CFG->dataroot  = '/var/moodledata';",
              "$CFG->admin     = 'admin';", "", "$CFG->directorypermissions = 02777;", "",
              "require_once(__DIR__ . '/lib/setup.php');", "",
              "// There is no php closing tag in this file,",
              "// it is intentional because it prevents trailing whitespace problems!", ""]
    return "\n".join(lines)
