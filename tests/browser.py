"""A tiny synchronous HTTP client for specifying the simulated site hop by hop: keeps
cookies like a browser, never follows redirects."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlencode, urlsplit


class Browser:
    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
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
