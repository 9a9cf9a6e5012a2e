"""The target every generator of bench/generators.py loads: nginx with one worker, pinned
to one CPU, serving pages of a Moodle's size and footer and its login form, so each
generator's own cost is what differs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sim.ports import free_port  # noqa: E402

TARGET_CPU = "0"
TOKEN = "abcDEF0123456789abcDEF0123456789"


FOOTER = (
    '<div class="performanceinfo siteinfo"><ul><li class="timeused col-sm-4">0.078920 secs</li> '
    '<li class="memoryused col-sm-4">RAM peak: 8.2\u00a0MB</li> <li class="included col-sm-4">Included 566 files</li>'
    ' <li class="dbqueries col-sm-4">DB reads/writes: 43/1</li> '
    '<li class="sessionwait col-sm-4">Session wait: 0.000 secs</li></ul></div>'
)


def page(title: str, size: int, body: str = "", footer: bool = True) -> str:
    head = f'<!DOCTYPE html><html><head><title>{title}</title></head><body id="page-{title}">{body}'
    tail = (FOOTER if footer else "") + "</body></html>\n"
    filler = "<!-- moodle page content -->\n" * ((size - len(head) - len(tail)) // 30)
    return head + filler + tail


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    default_type text/html;
    keepalive_requests 10000000;
    keepalive_timeout 300;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {tmp}/www;
        location = /login/index.php {{
            if ($request_method = POST) {{
                add_header Set-Cookie "MoodleSession=$request_id; Path=/; HttpOnly";
                return 303 /login/index.php?testsession=3;
            }}
            if ($arg_testsession) {{ return 303 /my/; }}
            add_header Set-Cookie "MoodleSession=$request_id; Path=/; HttpOnly";
            try_files /login.html =404;
        }}
        location = /my/ {{ try_files /my.html =404; }}
        location = /course/view.php {{ try_files /course.html =404; }}
        location = /mod/forum/view.php {{ try_files /forum.html =404; }}
        location = /user/profile.php {{ try_files /profile.html =404; }}
    }}
}}
"""


class Target:
    def __init__(self, tmp: str):
        self.tmp = tmp
        self.port = free_port()
        www = os.path.join(tmp, "www")
        os.makedirs(www)
        form = (f'<form class="login-form" method="post" id="login"><input type="hidden" name="logintoken" '
                f'value="{TOKEN}"><input name="username"><input name="password" type="password"></form>')
        files = {"login.html": page("login-index", 31_000, form), "my.html": page("my-index", 100_000),
                 "course.html": page("course-view", 100_000), "forum.html": page("mod-forum-view", 100_000),
                 "profile.html": page("user-profile", 100_000)}
        for name, text in files.items():
            with open(os.path.join(www, name), "w", encoding="utf-8") as handle:
                handle.write(text)
        for path in (tmp, www):
            os.chmod(path, 0o755)
        with open(os.path.join(tmp, "nginx.conf"), "w") as handle:
            handle.write(NGINX_CONF.format(tmp=tmp, port=self.port))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Target:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(["taskset", "-c", TARGET_CPU, nginx, "-c",
                                         os.path.join(self.tmp, "nginx.conf"), "-p", self.tmp],
                                        stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start: " + open(os.path.join(self.tmp, "error.log")).read())

    def stop(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGQUIT)
            self.process.wait(10)
