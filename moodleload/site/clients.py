"""Which HTTP client a run uses: httptools (``httpclient``) where installed, else aiohttp
(``aioclient``), each refused up front with its install command when its package is missing."""

from __future__ import annotations

from moodleload import __version__
from moodleload.needs import have, require
from moodleload.site.httpclient import DEFAULT_MAX_BODY, Authorization, Client, HttpClient


def resolve_http_client(name: str) -> str:
    """Which client ``name`` means here: "auto" is httptools where installed, else aiohttp;
    a client whose package is missing is refused now, with the install command."""
    if name == "auto":
        if have("httptools"):
            return "httptools"
        require(["aiohttp"], "the load (without httptools)")
        return "aiohttp"
    require([name], f"--http-client {name}")
    return name


def http_client(name: str, *, insecure: bool, max_body: int = DEFAULT_MAX_BODY,
                authorization: Authorization | None = None) -> Client:
    """A new client: "httptools" (HttpClient) or "aiohttp" (AiohttpClient)."""
    if name == "httptools":
        client_class: type = HttpClient
    else:
        from moodleload.site.aioclient import AiohttpClient  # imports aiohttp, only when it is asked for

        client_class = AiohttpClient
    return client_class(insecure=insecure, user_agent=f"moodle_load/{__version__}", max_body=max_body,
                        authorization=authorization)
