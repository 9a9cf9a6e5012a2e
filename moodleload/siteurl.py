"""The site's address: checked, and kept apart from the credentials it may carry."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit, urlunsplit

from moodleload.exits import UsageError

EXAMPLE_BASE_URL = "https://moodle.example.test"  # config.example.json's placeholder: never a real site


def check_base_url(base_url: object) -> tuple[str, str | None]:
    """The site's URL without credentials, and the HTTP basic auth they stand for (staging
    sites often sit behind it).  Credentials are never printed or stored: only the URL
    without them goes into messages, results and reports."""
    shown = base_url if not isinstance(base_url, str) else without_credentials(base_url)
    if base_url is None:
        raise UsageError("config: base_url is missing: add the site's address as the load reaches it "
                         "(\"base_url\": \"https://your.site\"), or let set_moodle_passwords.py write it "
                         "(--base-url, or --moodle-config for config.php's wwwroot)")
    if isinstance(base_url, str) and base_url.rstrip("/") == EXAMPLE_BASE_URL:
        raise UsageError(f"config: base_url is config.example.json's placeholder {EXAMPLE_BASE_URL}: set it to "
                         f"your site's address as the load reaches it")
    if not isinstance(base_url, str):
        raise UsageError(f"config: base_url must be an http:// or https:// URL, got {shown!r}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"config: base_url must be an http:// or https:// URL, got {shown!r}")
    try:
        parts.port  # noqa: B018  (raises on a port out of range or not a number)
    except ValueError:
        raise UsageError(f"config: base_url {shown!r} has a port that is not a number from 1 to 65535") from None
    if parts.port == 0:
        raise UsageError(f"config: base_url {shown!r} has port 0")
    if parts.query or parts.fragment:
        raise UsageError(f"config: base_url {shown!r} must not have a query or fragment: give the site's wwwroot")
    basic_auth = None
    if parts.username is not None or parts.password is not None:
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        basic_auth = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return without_credentials(base_url).rstrip("/"), basic_auth


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
