"""What a page holds for the next request: its session key, a form's fields as a browser
would send them, values to take from it, and how Moodle says a submission or a web-service
call failed.  Pure functions over the page's bytes, kept cheap: a form is located with a
byte search and only its own few kilobytes are parsed."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

SESSKEY_IN_CONFIG = re.compile(rb'"sesskey":"([A-Za-z0-9]{1,32})"')
SESSKEY_ELSEWHERE = re.compile(rb'(?:name="sesskey"\s+value="|[?&]sesskey=)([A-Za-z0-9]{1,32})')
FORM_START = re.compile(rb"<form\b[^>]*>", re.IGNORECASE)
CONTROL = re.compile(r"<(input|textarea|select|option|button)\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>"
                     r"|</(select|textarea)\s*>", re.IGNORECASE)
ATTRIBUTE = re.compile(r"""([A-Za-z_:][-\w:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
# Moodle's form error markup: the element's feedback div, or the form-wide alert.
FIELD_ERROR = re.compile(rb'id="id_error_([^"]+)"[^>]*>\s*([^<]*[^<\s])', re.IGNORECASE)
ERROR_MESSAGE = re.compile(rb'<p class="errormessage">([^<]*)</p>')
ERROR_CODE = re.compile(rb'errorcode=([a-z0-9_]+)')


def find_sesskey(body: bytes) -> str | None:
    """The session key every logged-in Moodle page carries (M.cfg, a hidden input, the
    logout link); it changes when the user logs in again."""
    match = SESSKEY_IN_CONFIG.search(body) or SESSKEY_ELSEWHERE.search(body)
    if match is None:
        return None
    value = match.group(1).decode("ascii")
    return value or None


def _attributes(text: str) -> dict[str, str]:
    return {name.lower(): html.unescape(double if double is not None and double != "" else
                                        single if single else bare or double or "")
            for name, double, single, bare in ATTRIBUTE.findall(text)}


@dataclass
class Form:
    """A form as the browser would submit it: its action, method, encoding and the
    successful controls in document order (hidden ones included)."""

    action: str
    method: str
    enctype: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # (name, value) pairs, repeats allowed
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (name, value) of submit buttons, in order

    def values(self) -> dict[str, str]:
        return {name: value for name, value in self.fields}

    def submission(self, overrides: dict[str, str], button: str | None = None) -> list[tuple[str, str]]:
        """The pairs to send: every field, the overrides replacing (or adding) theirs, and the
        submit button the user pressed (by name; default the first, as Enter does)."""
        pairs, done = [], set()
        for name, value in self.fields:
            if name in overrides:
                if name not in done:
                    pairs.append((name, overrides[name]))
                    done.add(name)
                continue
            pairs.append((name, value))
        pairs += [(name, value) for name, value in overrides.items() if name not in done]
        pressed = [b for b in self.buttons if button is None or b[0] == button][:1]
        return pairs + pressed


def find_form(body: bytes, form_id: str | None = None) -> Form | None:
    """The form with ``id`` (or the page's first POST form), parsed; None where the page has none."""
    for match in FORM_START.finditer(body):
        attributes = _attributes(match.group(0)[5:-1].decode("utf-8", "replace"))
        if form_id is not None and attributes.get("id") != form_id:
            continue
        if form_id is None and attributes.get("method", "get").lower() != "post":
            continue
        end = body.find(b"</form", match.end())
        inner = body[match.end():end if end >= 0 else len(body)].decode("utf-8", "replace")
        form = Form(attributes.get("action", ""), attributes.get("method", "get").lower(),
                    attributes.get("enctype", "application/x-www-form-urlencoded").lower())
        _read_controls(inner, form)
        return form
    return None


def _read_controls(inner: str, form: Form) -> None:
    """Successful controls as HTML defines them: enabled, named; checkboxes and radios only
    when checked; a select's selected options (a single select without one: its first);
    textareas' text; file inputs and non-submit buttons never."""
    select: tuple[str, bool, list[str], list[str]] | None = None  # (name, multiple, options, selected)
    textarea: tuple[str, int] | None = None  # (name, start of its text)
    for match in CONTROL.finditer(inner):
        tag, rest, closing = match.group(1), match.group(2), match.group(3)
        if closing:
            closing = closing.lower()
            if closing == "textarea" and textarea is not None:
                form.fields.append((textarea[0], html.unescape(inner[textarea[1]:match.start()]).lstrip("\n")
                                    .replace("\r\n", "\n").replace("\n", "\r\n")))
                textarea = None
            elif closing == "select" and select is not None:
                select_name, multiple, options, chosen = select
                if not chosen and not multiple and options:
                    chosen = options[:1]
                form.fields += [(select_name, value) for value in chosen]
                select = None
            continue
        if textarea is not None:
            continue  # markup inside a textarea is its text
        tag = tag.lower()
        attributes = _attributes(rest)
        if "disabled" in attributes and tag != "option":
            continue
        name = attributes.get("name")
        if tag == "option":
            if select is not None and "disabled" not in attributes:
                option = attributes.get("value")
                if option is None:
                    end = inner.find("<", match.end())
                    option = html.unescape(inner[match.end():end]).strip()
                select[2].append(option)
                if "selected" in attributes:
                    select[3].append(option)
            continue
        if not name:
            continue
        if tag == "select":
            select = (name, "multiple" in attributes, [], [])
        elif tag == "textarea":
            textarea = (name, match.end())
        elif tag == "button":
            if attributes.get("type", "submit").lower() == "submit":
                form.buttons.append((name, attributes.get("value", "")))
        else:
            kind = attributes.get("type", "text").lower()
            if kind in ("submit", "image"):
                form.buttons.append((name, attributes.get("value", "")))
            elif kind in ("checkbox", "radio"):
                if "checked" in attributes:
                    form.fields.append((name, attributes.get("value", "on")))
            elif kind not in ("file", "button", "reset"):
                form.fields.append((name, attributes.get("value", "")))


def multipart(pairs: list[tuple[str, str]], boundary: str) -> tuple[bytes, str]:
    """(body, Content-Type) of the pairs as ``multipart/form-data``, as a browser encodes a
    form that says so (no files: a load test uploads none)."""
    parts = []
    for name, value in pairs:
        quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")  # as browsers escape names
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{quoted}"\r\n\r\n'.encode()
                     + str(value).encode("utf-8") + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def form_errors(body: bytes) -> list[tuple[str, str]]:
    """The fields Moodle's form validation complained about, with its words."""
    return [(name.decode("utf-8", "replace"), html.unescape(text.decode("utf-8", "replace")).strip())
            for name, text in FIELD_ERROR.findall(body)]


def failure_word(text: str, limit: int) -> str:
    """A site's own words made fit to name a failure: no control characters (a terminal
    escape in an error message must not reach the console), no more than ``limit`` long."""
    return "".join(character if character.isprintable() else "?" for character in text[:limit]).strip() or "error"


def error_page(body: bytes) -> str | None:
    """The message of Moodle's error page (an exception shown to the user), if this is one."""
    match = ERROR_MESSAGE.search(body)
    if match is None:
        return None
    code = ERROR_CODE.search(body)
    return failure_word(code.group(1).decode("ascii") if code else
                        html.unescape(match.group(1).decode("utf-8", "replace")), 80)


def take(body: bytes, pattern: re.Pattern[bytes], unit: float) -> str | None:
    """One of the values ``pattern`` (one group) finds in the page, picked by ``unit`` in
    [0, 1): the same page and the same draw give the same value."""
    found = pattern.findall(body)
    if not found:
        return None
    distinct = list(dict.fromkeys(found))
    return distinct[min(int(unit * len(distinct)), len(distinct) - 1)].decode("utf-8", "replace")


# ----------------------------------------------------------------------------- web services

def service_request(methodname: str, args: dict[str, Any]) -> bytes:
    """The body Moodle's JavaScript (core/ajax) posts to lib/ajax/service.php."""
    return json.dumps([{"index": 0, "methodname": methodname, "args": args}], separators=(",", ":")).encode()


SERVICE_SUCCESS = b'[{"error":false,'  # how Moodle's service.php begins the answer to one call that worked
MAX_SERVICE_PARSE = 1024 * 1024  # an error answer is a few hundred bytes: a larger one is not read


def service_failure(body: bytes) -> str | None:
    """Why a service.php answer is a failure although HTTP said 200: ``"error": true`` with
    the exception's errorcode, or an answer that is not Moodle's JSON at all.  One call's
    success is known from its first bytes: a 40 MB answer is never parsed on the event loop,
    and JSON nested beyond reason fails that call, not the run."""
    if body.startswith(SERVICE_SUCCESS):
        return None
    if len(body) > MAX_SERVICE_PARSE:
        return "not_json"
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return "not_json"
    if isinstance(answer, dict):  # a whole-request failure (e.g. bad JSON, no login)
        answer = [answer]
    if not isinstance(answer, list) or not answer:
        return "not_json"
    for item in answer:
        if not isinstance(item, dict):
            return "not_json"
        if item.get("error"):
            exception = item.get("exception") or {}
            code = exception.get("errorcode") if isinstance(exception, dict) else None
            return failure_word(str(code or item.get("errorcode") or "error"), 60)
    return None


TOUR = re.compile(rb'\{"tourId":"(\d+)","startTour":true')
CONTEXT_ID = re.compile(rb'"contextid":(\d+)')
COURSE_ID = re.compile(rb'"courseId":(\d+)')
AUTOSAVE = re.compile(rb'"pagehash":"([0-9a-f]{40})","pageinstance":"([0-9a-f]{32})"')
MESSAGE_DRAFT = re.compile(rb'name="message\[itemid\]" value="(\d+)"')


def browser_calls(body: bytes, page_url: str, midnight: int,
                  seen_courses: set[int]) -> list[tuple[str, dict[str, Any]]]:
    """The service.php calls Moodle 5.0's JavaScript makes after this page loads, as a real
    browser was seen making them (docs/browser-calls.md), found from what the page holds:
    the dashboard's blocks, a course page's state (first visit per session only), a user
    tour, the editor's autosave.  (methodname, args) in order."""
    calls: list[tuple[str, dict[str, Any]]] = [("core_message_get_unsent_message", {})]
    context = CONTEXT_ID.search(body)
    if b"block_recentlyaccesseditems" in body:
        calls.append(("block_recentlyaccesseditems_get_recent_items", {"limit": 9}))
    if b"block_continue_learning" in body:  # main's successor (docs/moodle-5.1.md)
        calls.append(("block_continue_learning_get_course", {}))
    if b"block_timeline" in body:
        calls.append(("core_calendar_get_action_events_by_timesort",
                      {"limitnum": 6, "timesortfrom": midnight, "timesortto": midnight + 7 * 86400,
                       "limittononsuspendedevents": True}))
    course = COURSE_ID.search(body)
    if b'id="page-course-view-' in body and course and int(course.group(1)) > 1:
        courseid = int(course.group(1))
        if courseid not in seen_courses:  # the browser keeps the state in sessionStorage after that
            seen_courses.add(courseid)
            calls.append(("core_courseformat_get_state", {"courseid": courseid}))
    tour = TOUR.search(body)
    if tour and context:
        calls.append(("tool_usertours_fetch_and_start_tour",
                      {"tourid": tour.group(1).decode(), "context": int(context.group(1)), "pageurl": page_url}))
    autosave = AUTOSAVE.search(body)
    draft = MESSAGE_DRAFT.search(body)
    if autosave and context and draft:
        calls.append(("tiny_autosave_resume_session",
                      {"contextid": int(context.group(1)), "pagehash": autosave.group(1).decode(),
                       "pageinstance": autosave.group(2).decode(), "elementid": "id_message",
                       "draftid": int(draft.group(1))}))
    return calls
