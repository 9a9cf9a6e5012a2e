"""config.json of a load: what it may hold, checked whole before anything runs."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from moodleload.exits import UsageError
from moodleload.files import read_json
from moodleload.siteurl import check_base_url


@dataclass(frozen=True)
class Parameter:
    """A URL placeholder's values: an inclusive integer range or an explicit list."""

    name: str
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[int | str, ...] = ()

    def pick(self, unit: float) -> int | str:
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
    placeholders: tuple[str, ...]


@dataclass(frozen=True)
class User:
    username: str
    password: str


@dataclass(frozen=True)
class Call:
    """One web-service call as Moodle's JavaScript makes it (lib/ajax/service.php)."""

    methodname: str
    args: dict[str, Any]  # string values may hold {placeholders}
    name: str  # its row in the reports


class JourneyStep(Protocol):
    """One step of a journey, as the config knows it; its kind (steps/) knows the rest:
    its own fields, its requests."""

    @property
    def name(self) -> str: ...

    @property
    def takes(self) -> tuple[tuple[str, re.Pattern[bytes]], ...]: ...

    def rows(self) -> Iterator[tuple[str, str]]:
        """(row name, row kind) of every row the step adds to the reports."""
        ...


class StepParser(Protocol):
    """A journey step kind, as config.json meets it: the key that makes a step of the kind,
    and its parser (steps.kinds.STEP_KINDS lists them)."""

    @property
    def KEY(self) -> str: ...

    def parse(self, source: StepSource) -> JourneyStep: ...


@dataclass(frozen=True)
class Journey:
    name: str
    weight: float
    steps: tuple[JourneyStep, ...]
    draws: tuple[str, ...]  # the parameters drawn when the journey starts, in order of first use


LOGIN_ROW = "login"  # the row of the logins after a logout: a journey after it begins there


@dataclass
class Config:
    base_url: str
    login_path: str
    users: list[User]
    parameters: dict[str, Parameter]
    urls: list[UrlSpec]
    warnings: list[str] = field(default_factory=list)
    basic_auth: str | None = None  # "Basic ..." from user:password@ in base_url, sent to the site only
    journeys: list[Journey] = field(default_factory=list)

    def row_names(self) -> list[str]:
        """Every row the reports have: the URLs, the journeys' steps and calls, in order."""
        return list(self.row_kinds())

    def row_kinds(self) -> dict[str, str]:
        """name -> what the row is, for the reports' headings: a page of ``urls``, a journey
        step, or a web-service call (of a step, or of a page's browser calls, which are
        named when first seen and are calls too)."""
        kinds = {spec.name: PAGE_ROW for spec in self.urls}
        for journey in self.journeys:
            for step in journey.steps:
                for name, kind in step.rows():
                    kinds.setdefault(name, kind)
        return kinds


PAGE_ROW, STEP_ROW, CALL_ROW = "page", "journey step", "web-service call"
ROW_KINDS = (PAGE_ROW, STEP_ROW, CALL_ROW)


KNOWN_KEYS = {"base_url", "login_path", "users", "parameters", "urls", "journeys"}
BUILT_IN_PLACEHOLDERS = ("sesskey", "username", "position")
METHODNAME = re.compile(r"^[a-z][a-z0-9_]{2,165}$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(raw: Any, step_kinds: Sequence[StepParser]) -> Config:
    """Check a parsed config.json and build a Config, its journeys' steps of ``step_kinds``
    (steps.kinds.STEP_KINDS); raise UsageError naming the key."""
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
    journeys = check_journeys(raw.get("journeys", []), parameters, names, step_kinds)
    total_weight = sum(spec.weight for spec in urls) + sum(journey.weight for journey in journeys)
    if not math.isfinite(total_weight):
        raise UsageError("config: the weights add up to more than a number can hold; use smaller weights")
    return Config(base_url, login_path, users, parameters, urls, warnings, basic_auth, journeys)


def check_users(users_raw: Any) -> list[User]:
    if not isinstance(users_raw, list) or not users_raw:
        raise UsageError("config: users must be a non-empty list (run set_moodle_passwords.py to fill it)")
    users = []
    for position, entry in enumerate(users_raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("username"), str) \
                or not entry.get("username") or not isinstance(entry.get("password"), str):
            raise UsageError(f"config: users[{position}] needs a 'username' and a 'password' string")
        users.append(User(entry["username"], entry["password"]))
    places: dict[str, int] = {}
    for position, user in enumerate(users):
        if user.username in places:  # two sessions of one user would share Moodle's session lock
            raise UsageError(f"config: users[{places[user.username]}] and users[{position}] are both "
                             f"{user.username!r}: each user logs in once; remove the repeat")
        places[user.username] = position
    return users


def check_parameters(params_raw: Any) -> dict[str, Parameter]:
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


def check_urls(urls_raw: Any, parameters: dict[str, Parameter], has_journeys: bool) -> tuple[list[UrlSpec], set[str]]:
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


def _weight(entry: dict[str, Any], key: str) -> float:
    weight = entry.get("weight", 1)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0 or not math.isfinite(weight):
        raise UsageError(f"config: {key}.weight must be a positive number, got {weight!r}")
    return float(weight)


def _name(entry: dict[str, Any], key: str, default: str | None = None) -> str:
    name = entry.get("name", default)
    if not isinstance(name, str) or not name:
        raise UsageError(f"config: {key}.name must be a non-empty string")
    return name


UNKNOWN_IN_JOURNEY = (", which is no parameter, no value taken by an earlier step and none of "
                      + ", ".join(BUILT_IN_PLACEHOLDERS))


def _check_placeholders(text: str, key: str, known: set[str], unknown: str = UNKNOWN_IN_JOURNEY) -> list[str]:
    """The {placeholders} of ``text``; each must be a plain name in ``known`` (``unknown``
    says why not, with {name} standing for it)."""
    found = PLACEHOLDER.findall(text)
    for placeholder in found:
        if not IDENTIFIER.match(placeholder):
            raise UsageError(f"config: {key} has a bad placeholder {{{placeholder}}}")
        if placeholder not in known:
            raise UsageError(f"config: {key} uses {{{placeholder}}}" + unknown.replace("{name}", placeholder))
    return found


def _strings_of(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_of(item)


def _call(raw: Any, key: str, known: set[str], draws: list[str]) -> Call:
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


def check_journeys(raw: Any, parameters: dict[str, Parameter], names: set[str],
                   step_kinds: Sequence[StepParser]) -> list[Journey]:
    """Journeys: ordered steps one user walks through, each of one of ``step_kinds``.  Every
    placeholder must be a parameter (drawn once when the journey starts), a value an earlier
    step takes from its page, or a built-in; a form is submitted from the page step right
    before it."""
    if not isinstance(raw, list):
        raise UsageError("config: journeys must be a list of {\"name\", \"steps\": [...]}")
    journeys = []
    for number, entry in enumerate(raw):
        key = f"journeys[{number}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("steps"), list) or not entry["steps"]:
            raise UsageError(f"config: {key} needs a non-empty 'steps' list")
        journey_name = _name(entry, key, f"journey {number + 1}")
        known = set(parameters) | set(BUILT_IN_PLACEHOLDERS)
        draws: list[str] = []
        steps: list[JourneyStep] = []
        for position, raw_step in enumerate(entry["steps"]):
            step_key = f"{key}.steps[{position}]"
            if not isinstance(raw_step, dict):
                raise UsageError(f"config: {step_key} must be an object")
            kinds = [kind for kind in step_kinds if kind.KEY in raw_step]
            if len(kinds) != 1:
                raise UsageError(f"config: {step_key} needs exactly one of "
                                 + ", ".join(f"'{kind.KEY}'" for kind in step_kinds))
            takes, counts = _step_common(raw_step, step_key)
            step = kinds[0].parse(StepSource(raw_step, step_key, takes, counts, tuple(steps), known, draws))
            if step.name in names:
                raise UsageError(f"config: {step_key}.name {step.name!r} is used twice; give each step its own name")
            if step.name == LOGIN_ROW:
                raise UsageError(f"config: {step_key}.name 'login' is the row of the logins after a logout; "
                                 f"choose another")
            names.add(step.name)
            for variable, _ in step.takes:
                known.add(variable)
            steps.append(step)
        draws = [name for name in dict.fromkeys(draws) if name in parameters]
        journeys.append(Journey(journey_name, _weight(entry, key), tuple(steps), tuple(draws)))
    return journeys


def _step_common(raw: dict[str, Any], key: str) -> tuple[tuple[tuple[str, re.Pattern[bytes]], ...], str | None]:
    """What every kind of step may have: the values it takes from its answer, and what each
    of its successes counts as."""
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
    return tuple(compiled), counts


@dataclass
class StepSource:
    """One journey step's object in config.json, for its kind's parser: the object, its key
    (errors name it), what every kind has (already checked), and the journey before it."""

    raw: dict[str, Any]
    key: str
    takes: tuple[tuple[str, re.Pattern[bytes]], ...]
    counts: str | None
    before: tuple[JourneyStep, ...]
    known: set[str]  # the placeholders a template here may use
    draws: list[str]  # the placeholders the journey's templates use, in order (kinds add theirs)

    def error(self, problem: str) -> UsageError:
        """The error of this step: ``problem`` follows its key (".path must ...")."""
        return UsageError(f"config: {self.key}{problem}")

    def name(self, default: str) -> str:
        """The step's row name: its own "name", or the kind's default."""
        return _name(self.raw, self.key, default)

    def placeholders(self, template: str, where: str) -> None:
        """Check a template's placeholders (each known here) and note the ones it draws."""
        self.draws += _check_placeholders(template, f"{self.key}{where}", self.known)

    def call(self, raw_call: Any, where: str) -> Call:
        """A web-service call of this step, checked, its placeholders noted."""
        return _call(raw_call, f"{self.key}{where}", self.known, self.draws)


def load_config(path: str, step_kinds: Sequence[StepParser]) -> tuple[Config, str]:
    """Read and validate config.json (``step_kinds`` as for validate_config); returns the
    config and the SHA-256 of its load (users' passwords excluded, so a password reset does
    not break comparisons)."""
    try:
        raw = read_json(path, "config")
    except FileNotFoundError:
        raise UsageError(f"config: {path} not found (copy config.example.json or run "
                         f"set_moodle_passwords.py)") from None
    config = validate_config(raw, step_kinds)
    return config, config_digest(raw)


def config_digest(raw: dict[str, Any]) -> str:
    """Hash of what shapes the load: URLs, parameters, base URL and the user names."""
    shape = {key: raw.get(key) for key in ("login_path", "parameters", "urls")}
    if raw.get("journeys"):
        shape["journeys"] = raw["journeys"]  # only when present: digests of older configs stay as they were
    shape["base_url"] = check_base_url(raw.get("base_url"))[0]  # never the credentials
    shape["users"] = sorted(u.get("username", "") for u in raw.get("users", []) if isinstance(u, dict))
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def fill(template: str, values: dict[str, Any]) -> str:
    """``template`` with each {placeholder} replaced by its value in ``values``."""
    if "{" not in template:
        return template
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def fill_args(args: Any, values: dict[str, Any]) -> Any:
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


def fill_url(spec: UrlSpec, parameters: dict[str, Parameter], units: Iterator[float]) -> str:
    """The URL's path with each {placeholder} replaced by its parameter's value for the next
    uniform number from ``units`` (an iterator of floats in [0, 1))."""
    if not spec.placeholders:
        return spec.path
    return PLACEHOLDER.sub(lambda m: str(parameters[m.group(1)].pick(next(units))), spec.path)
