"""config.json of a load: what it may hold, checked whole before anything runs."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from moodleload.exits import UsageError
from moodleload.files import read_json
from moodleload.siteurl import check_base_url


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
        assert self.minimum is not None and self.maximum is not None  # a range, where there is no list
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


@dataclass(frozen=True)
class Call:
    """One web-service call as Moodle's JavaScript makes it (lib/ajax/service.php)."""

    methodname: str
    args: dict  # string values may hold {placeholders}
    name: str  # its row in the reports


@dataclass(frozen=True)
class Step:
    """One step of a journey: a page, a form submitted from the page before it, a
    web-service call, or the logout (``kind``); ``login`` is the step a journey after a
    logout begins with."""

    name: str
    kind: str  # "page", "submit", "call", "logout", "login"
    path: str = ""  # page: the URL path template
    calls: object = ()  # page: tuple of Call, or "browser" (what the page's JavaScript calls)
    form: str | None = None  # submit: the form's id on the page before
    fields: tuple = ()  # submit: (name, template) pairs that replace the form's values
    button: str | None = None  # submit: the submit button pressed (default the first)
    expect: str | None = None  # submit: the path a good submission redirects to
    takes: tuple = ()  # (variable, compiled pattern): values read from this step's answer
    counts: str | None = None  # what each success of this step counts as (work done)
    call: Call | None = None  # call: the call


@dataclass(frozen=True)
class Journey:
    name: str
    weight: float
    steps: tuple
    draws: tuple  # the parameters drawn when the journey starts, in order of first use


LOGIN_STEP = Step(name="login", kind="login")


@dataclass
class Config:
    base_url: str
    login_path: str
    users: list
    parameters: dict
    urls: list
    warnings: list = field(default_factory=list)
    basic_auth: str | None = None  # "Basic ..." from user:password@ in base_url, sent to the site only
    journeys: list = field(default_factory=list)

    def row_names(self) -> list:
        """Every row the reports have: the URLs, the journeys' steps and calls, in order."""
        return list(self.row_kinds())

    def row_kinds(self) -> dict:
        """name -> what the row is, for the reports' headings: a page of ``urls``, a journey
        step, or a web-service call (of a step, or of a page's browser calls, which are
        named when first seen and are calls too)."""
        kinds = {spec.name: PAGE_ROW for spec in self.urls}
        for journey in self.journeys:
            for step in journey.steps:
                kinds.setdefault(step.name, CALL_ROW if step.kind == "call" else STEP_ROW)
                if step.kind == "page" and step.calls != "browser":
                    for call in step.calls:  # type: ignore[attr-defined]  # a tuple of Call here
                        kinds.setdefault(call.name, CALL_ROW)
        if any(step.kind == "logout" for journey in self.journeys for step in journey.steps):
            kinds.setdefault(LOGIN_STEP.name, STEP_ROW)
        return kinds


PAGE_ROW, STEP_ROW, CALL_ROW = "page", "journey step", "web-service call"
ROW_KINDS = (PAGE_ROW, STEP_ROW, CALL_ROW)


KNOWN_KEYS = {"base_url", "login_path", "users", "parameters", "urls", "journeys"}
BUILT_IN_PLACEHOLDERS = ("sesskey", "username", "position")
METHODNAME = re.compile(r"^[a-z][a-z0-9_]{2,165}$")
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
    users = check_users(raw.get("users"))
    parameters = check_parameters(raw.get("parameters", {}))
    urls, names = check_urls(raw.get("urls", []), parameters, bool(raw.get("journeys")))
    journeys = check_journeys(raw.get("journeys", []), parameters, names)
    total_weight = sum(spec.weight for spec in urls) + sum(journey.weight for journey in journeys)
    if not math.isfinite(total_weight):
        raise UsageError("config: the weights add up to more than a number can hold; use smaller weights")
    return Config(base_url, login_path, users, parameters, urls, warnings, basic_auth, journeys)


def check_users(users_raw) -> list:
    if not isinstance(users_raw, list) or not users_raw:
        raise UsageError("config: users must be a non-empty list (run set_moodle_passwords.py to fill it)")
    users = []
    for position, entry in enumerate(users_raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("username"), str) \
                or not entry.get("username") or not isinstance(entry.get("password"), str):
            raise UsageError(f"config: users[{position}] needs a 'username' and a 'password' string")
        users.append(User(entry["username"], entry["password"]))
    places: dict = {}
    for position, user in enumerate(users):
        if user.username in places:  # two sessions of one user would share Moodle's session lock
            raise UsageError(f"config: users[{places[user.username]}] and users[{position}] are both "
                             f"{user.username!r}: each user logs in once; remove the repeat")
        places[user.username] = position
    return users


def check_parameters(params_raw) -> dict:
    if not isinstance(params_raw, dict):
        raise UsageError("config: parameters must be an object of name -> {min, max} or {values}")
    parameters = {}
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
    return parameters


def check_urls(urls_raw, parameters: dict, has_journeys: bool) -> tuple[list, set]:
    if not isinstance(urls_raw, list) or (not urls_raw and not has_journeys):
        raise UsageError("config: urls must be a non-empty list of {\"path\": ...} (or give journeys)")
    urls, names = [], set()
    for position, entry in enumerate(urls_raw):
        key = f"urls[{position}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or not entry["path"].startswith("/"):
            raise UsageError(f"config: {key} needs a 'path' starting with '/'")
        path = entry["path"]
        placeholders = tuple(_check_placeholders(path, f"{key}.path", set(parameters),
                                                 " but parameters has no '{name}'"))
        weight = _weight(entry, key)
        name = _name(entry, key, path)
        if name in names:
            raise UsageError(f"config: {key}.name {name!r} is used twice; give each URL its own name")
        names.add(name)
        urls.append(UrlSpec(path=path, name=name, weight=weight, placeholders=placeholders))
    return urls, names


def _weight(entry: dict, key: str) -> float:
    weight = entry.get("weight", 1)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0 or not math.isfinite(weight):
        raise UsageError(f"config: {key}.weight must be a positive number, got {weight!r}")
    return float(weight)


def _name(entry: dict, key: str, default: str | None = None) -> str:
    name = entry.get("name", default)
    if not isinstance(name, str) or not name:
        raise UsageError(f"config: {key}.name must be a non-empty string")
    return name


UNKNOWN_IN_JOURNEY = (", which is no parameter, no value taken by an earlier step and none of "
                      + ", ".join(BUILT_IN_PLACEHOLDERS))


def _check_placeholders(text: str, key: str, known: set, unknown: str = UNKNOWN_IN_JOURNEY) -> list:
    """The {placeholders} of ``text``; each must be a plain name in ``known`` (``unknown``
    says why not, with {name} standing for it)."""
    found = PLACEHOLDER.findall(text)
    for placeholder in found:
        if not IDENTIFIER.match(placeholder):
            raise UsageError(f"config: {key} has a bad placeholder {{{placeholder}}}")
        if placeholder not in known:
            raise UsageError(f"config: {key} uses {{{placeholder}}}" + unknown.replace("{name}", placeholder))
    return found


def _strings_of(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_of(item)


def _call(raw, key: str, known: set, draws: list) -> Call:
    if not isinstance(raw, dict) or not isinstance(raw.get("methodname"), str) \
            or not METHODNAME.match(raw["methodname"]):
        raise UsageError(f"config: {key} needs a 'methodname' (a web-service function, e.g. "
                         f"core_message_get_unsent_message)")
    args = raw.get("args", {})
    if not isinstance(args, dict):
        raise UsageError(f"config: {key}.args must be an object")
    for text in _strings_of(args):
        draws += _check_placeholders(text, f"{key}.args", known)
    return Call(raw["methodname"], args, _name(raw, key, raw["methodname"]))


def check_journeys(raw, parameters: dict, names: set) -> list:
    """Journeys: ordered steps one user walks through.  Every placeholder must be a
    parameter (drawn once when the journey starts), a value an earlier step takes from its
    page, or a built-in; a form is submitted from the page step right before it."""
    if not isinstance(raw, list):
        raise UsageError("config: journeys must be a list of {\"name\", \"steps\": [...]}")
    journeys = []
    for number, entry in enumerate(raw):
        key = f"journeys[{number}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("steps"), list) or not entry["steps"]:
            raise UsageError(f"config: {key} needs a non-empty 'steps' list")
        journey_name = _name(entry, key, f"journey {number + 1}")
        known = set(parameters) | set(BUILT_IN_PLACEHOLDERS)
        draws: list = []
        steps: list[Step] = []
        for position, raw_step in enumerate(entry["steps"]):
            step_key = f"{key}.steps[{position}]"
            if not isinstance(raw_step, dict):
                raise UsageError(f"config: {step_key} must be an object")
            kinds = [kind for kind in STEP_KINDS if kind in raw_step]
            if len(kinds) != 1:
                raise UsageError(f"config: {step_key} needs exactly one of "
                                 + ", ".join(f"'{kind}'" for kind in STEP_KINDS))
            kind = kinds[0]
            step = _step(raw_step, kind, step_key, known, draws, steps)
            if step.name in names:
                raise UsageError(f"config: {step_key}.name {step.name!r} is used twice; give each step its own name")
            if step.name == LOGIN_STEP.name:
                raise UsageError(f"config: {step_key}.name 'login' is the row of the logins after a logout; "
                                 f"choose another")
            names.add(step.name)
            for variable, _ in step.takes:
                known.add(variable)
            steps.append(step)
        draws = [name for name in dict.fromkeys(draws) if name in parameters]
        journeys.append(Journey(journey_name, _weight(entry, key), tuple(steps), tuple(draws)))
    return journeys


def _step(raw: dict, kind: str, key: str, known: set, draws: list, before: list) -> Step:
    """A journey step: what every kind has (take, counts), then its kind's own parser."""
    takes = raw.get("take", {})
    if not isinstance(takes, dict) or not all(isinstance(v, str) for v in takes.values()):
        raise UsageError(f"config: {key}.take must map names to regular expressions with one group")
    compiled = []
    for variable, pattern in takes.items():
        if not IDENTIFIER.match(variable):
            raise UsageError(f"config: {key}.take: {variable!r} is not a plain name")
        try:
            regex = re.compile(pattern.encode())
        except (re.error, UnicodeEncodeError) as error:
            raise UsageError(f"config: {key}.take.{variable} is not a regular expression: {error}") from None
        if regex.groups != 1:
            raise UsageError(f"config: {key}.take.{variable} needs exactly one (group): the value to take")
        compiled.append((variable, regex))
    counts = raw.get("counts")
    if counts is not None and (not isinstance(counts, str) or not counts):
        raise UsageError(f"config: {key}.counts must name what a success counts as, e.g. \"replies posted\"")
    step = STEP_KINDS[kind](raw, key, known, draws, before)
    return replace(step, takes=tuple(compiled), counts=counts)


def _page_step(raw: dict, key: str, known: set, draws: list, before: list) -> Step:
    path = raw["path"]
    if not isinstance(path, str) or not path.startswith("/"):
        raise UsageError(f"config: {key}.path must start with '/'")
    draws += _check_placeholders(path, f"{key}.path", known)
    calls = raw.get("calls", [])
    if calls != "browser":
        if not isinstance(calls, list):
            raise UsageError(f"config: {key}.calls must be \"browser\" or a list of {{\"methodname\", \"args\"}}")
        calls = tuple(_call(call, f"{key}.calls[{n}]", known, draws) for n, call in enumerate(calls))
    return Step(name=_name(raw, key, path), kind="page", path=path, calls=calls)


def _submit_step(raw: dict, key: str, known: set, draws: list, before: list) -> Step:
    if not before or before[-1].kind != "page":
        raise UsageError(f"config: {key} submits a form, so the step before it must be the page holding it")
    form = raw["submit"]
    if not isinstance(form, str) or not form:
        raise UsageError(f"config: {key}.submit must be the form's id, e.g. \"mformforum\"")
    fields = raw.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise UsageError(f"config: {key}.fields must map field names to strings")
    for value in fields.values():
        draws += _check_placeholders(value, f"{key}.fields", known)
    expect = raw.get("expect")
    if expect is not None and (not isinstance(expect, str) or not expect.startswith("/")):
        raise UsageError(f"config: {key}.expect must be the path a good submission redirects to")
    button = raw.get("button")
    if button is not None and not isinstance(button, str):
        raise UsageError(f"config: {key}.button must be the name of a submit button")
    return Step(name=_name(raw, key, f"{before[-1].name}: submit"), kind="submit", form=form,
                fields=tuple(fields.items()), button=button, expect=expect)


def _call_step(raw: dict, key: str, known: set, draws: list, before: list) -> Step:
    call = _call(raw["call"], f"{key}.call", known, draws)
    return Step(name=_name(raw, key, call.name), kind="call", call=call)


def _logout_step(raw: dict, key: str, known: set, draws: list, before: list) -> Step:
    if raw["logout"] is not True:
        raise UsageError(f"config: {key}.logout must be true")
    return Step(name=_name(raw, key, "logout"), kind="logout")


# The kinds of journey step: the config key that makes a step of that kind, and its parser.
# A new kind is one parser here and one runner in journeys.STEP_RUNNERS.
STEP_KINDS: dict[str, Callable[[dict, str, set, list, list], Step]] = {
    "path": _page_step, "submit": _submit_step, "call": _call_step, "logout": _logout_step}


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
    if raw.get("journeys"):
        shape["journeys"] = raw["journeys"]  # only when present: digests of older configs stay as they were
    shape["base_url"] = check_base_url(raw.get("base_url"))[0]  # never the credentials
    shape["users"] = sorted(u.get("username", "") for u in raw.get("users", []) if isinstance(u, dict))
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def fill(template: str, values: dict) -> str:
    """``template`` with each {placeholder} replaced by its value in ``values``."""
    if "{" not in template:
        return template
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def fill_args(args, values: dict):
    """Web-service arguments with the placeholders in their strings filled; a string that
    is one placeholder of a number becomes that number."""
    if isinstance(args, str):
        whole = PLACEHOLDER.fullmatch(args)
        if whole and isinstance(values[whole.group(1)], int):
            return values[whole.group(1)]
        return fill(args, values)
    if isinstance(args, dict):
        return {key: fill_args(value, values) for key, value in args.items()}
    if isinstance(args, list):
        return [fill_args(value, values) for value in args]
    return args


def fill_url(spec: UrlSpec, parameters: dict, units) -> str:
    """The URL's path with each {placeholder} replaced by its parameter's value for the next
    uniform number from ``units`` (an iterator of floats in [0, 1))."""
    if not spec.placeholders:
        return spec.path
    return PLACEHOLDER.sub(lambda m: str(parameters[m.group(1)].pick(next(units))), spec.path)
