"""config.json of a load: what it may hold, checked whole before anything runs."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from .exits import UsageError
from .files import read_json


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
    basic_auth: str | None = None  # "Basic ..." from user:password@ in base_url, sent to the site only


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

    base_url, basic_auth = check_base_url(raw.get("base_url"))
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
    total_weight = sum(spec.weight for spec in urls)
    if not math.isfinite(total_weight):
        raise UsageError("config: the urls' weights add up to more than a number can hold; use smaller weights")
    return Config(base_url, login_path, users, parameters, urls, warnings, basic_auth)


def check_base_url(base_url) -> tuple[str, str | None]:
    """The site's URL without credentials, and the HTTP basic auth they stand for (staging
    sites often sit behind it).  Credentials are never printed or stored: only the URL
    without them goes into messages, results and reports."""
    shown = base_url if not isinstance(base_url, str) else _without_credentials(base_url)
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
    return _without_credentials(base_url).rstrip("/"), basic_auth


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def load_config(path: str) -> tuple[Config, str]:
    """Read and validate config.json; returns the config and the SHA-256 of its load
    (users' passwords excluded, so a password reset does not break comparisons)."""
    try:
        raw = read_json(path, "config")
    except FileNotFoundError:
        raise UsageError(f"config: {path} not found (copy config.example.json or run "
                         f"set_moodle_passwords.py)") from None
    config = validate_config(raw)
    return config, config_digest(raw)


def config_digest(raw: dict) -> str:
    """Hash of what shapes the load: URLs, parameters, base URL and the user names."""
    shape = {key: raw.get(key) for key in ("login_path", "parameters", "urls")}
    shape["base_url"] = check_base_url(raw.get("base_url"))[0]  # never the credentials
    shape["users"] = sorted(u.get("username", "") for u in raw.get("users", []) if isinstance(u, dict))
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def fill_url(spec: UrlSpec, parameters: dict, units) -> str:
    """The URL's path with each {placeholder} replaced by its parameter's value for the next
    uniform number from ``units`` (an iterator of floats in [0, 1))."""
    if not spec.placeholders:
        return spec.path
    return PLACEHOLDER.sub(lambda m: str(parameters[m.group(1)].pick(next(units))), spec.path)
