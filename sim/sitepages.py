"""The markup the simulated site serves: pages of the size a real Moodle sends, its
performance footer, the login and forum reply forms as Moodle 5.0 renders them, and the
answers service.php gives the calls a browser makes (docs/browser-calls.md)."""

from __future__ import annotations

import html
import json
import secrets

from .sitesettings import PageProfile

PADDING = ("<!-- " + "moodle-page-content " * 16 + "-->\n").encode() * 800  # ~270 KB


def footer_html(profile: PageProfile, server_seconds: float, session_wait: float, cpu: tuple[int, int]) -> str:
    """Moodle's performance footer; ``cpu``: the worker's (user, sys) ticks for this request."""
    user, system = cpu
    wall = max(int(server_seconds * 100), user + system)
    return (
        '<div class="performanceinfo siteinfo container-fluid px-md-0 overflow-auto pt-3">'
        '<ul class="list-unstyled row mx-md-0">'
        f'<li class="timeused col-sm-4">{server_seconds:.6f} secs</li> '
        f'<li class="memoryused col-sm-4">RAM: {profile.memory_peak_mb * 0.88:.1f} MB</li> '
        f'<li class="memoryused col-sm-4">RAM peak: {profile.memory_peak_mb:.1f} MB</li> </ul>'
        '<ul class="list-unstyled row mx-md-0">'
        f'<li class="included col-sm-4">Included {profile.included_files} files</li> '
        "<li class='contextswithfilters col-sm-4'>Contexts for which filters were loaded: 2 </li> "
        "<li class='langcountgetstring col-sm-4'>get_string calls: 570 </li> "
        f'<li class="dbqueries col-sm-4">DB reads/writes: {profile.db_reads}/{profile.db_writes}</li> '
        f'<li class="dbtime col-sm-4">DB queries time: {server_seconds * 0.2:.5f} secs</li> '
        f'<li class="posixtimes col-sm-4">ticks: {wall} user: {user}sys: {system} cuser: 0 csys: 0</li> '
        '<li class="serverload col-sm-4">Load average: 0.67</li> '
        '<li class="serverload col-sm-4"><div class="sessionsize">Session (core\\session\\file): 4.3 KB</div></li>'
        f'<li class="sessionwait col-sm-4">Session wait: {session_wait:.3f} secs</li></ul>'
        '<div class="table-responsive"><table class="cachesused table table-dark table-sm w-auto table-bordered">'
        "<tr><td>core/config</td><td>12</td><td>0</td><td>0</td></tr></table></div></div>"
    )


def page_html(*, title: str, body_id: str, wwwroot: str, content: str, profile: PageProfile,
              sesskey: str | None, footer: str | None, page_config: dict | None = None, scripts: str = "") -> bytes:
    config = {"wwwroot": wwwroot, "sesskey": sesskey or "", "sessiontimeout": "28800", **(page_config or {})}
    head = (
        '<!DOCTYPE html>\n<html  dir="ltr" lang="en" xml:lang="en">\n<head>\n'
        f"    <title>{title} | rig</title>\n"
        '    <meta http-equiv="Content-Type" content="text/html; charset=utf-8" />\n'
        f"<script>M.cfg = {json.dumps(config, separators=(',', ':'))};</script>\n</head>\n"
        f'<body  id="{body_id}" class="format-site dir-ltr lang-en">\n'
        f'<div id="page"><div role="main">{content}</div>\n'
    )
    logout = (f'<a href="{wwwroot}/login/logout.php?sesskey={sesskey}">Log out</a>\n' if sesskey else "")
    tail = f"{footer or ''}</div>\n{logout}{scripts}</body>\n</html>\n"
    encoded_head, encoded_tail = head.encode(), tail.encode()
    padding = max(0, int(profile.body_kb * 1024) - len(encoded_head) - len(encoded_tail))
    return b"".join((encoded_head, PADDING[:padding], encoded_tail))


def login_form(wwwroot: str, token: str | None, error: str | None) -> str:
    alert = (f'<div class="alert alert-danger" id="loginerrormessage" role="alert">{error}</div>'
             if error else "")
    token_input = f'<input type="hidden" name="logintoken" value="{token}">\n' if token else ""
    return (
        f"{alert}"
        f'<form class="login-form" action="{wwwroot}/login/index.php" method="post" id="login">\n'
        '<input id="anchor" type="hidden" name="anchor" value="">\n'
        f"{token_input}"
        '<input type="text" name="username" id="username" class="form-control" value="">\n'
        '<input type="password" name="password" id="password" value="" class="form-control">\n'
        '<button class="btn btn-primary" type="submit" id="loginbtn">Log in</button></form>\n'
        f'<form action="{wwwroot}/login/index.php" method="post" id="guestlogin">\n'
        f"{token_input}"
        '<input type="hidden" name="username" value="guest" />\n'
        '<input type="hidden" name="password" value="guest" />\n'
        '<button class="btn btn-secondary" type="submit">Access as a guest</button></form>\n'
    )


DASHBOARD_BLOCKS = ('<section class="block_timeline block"><div data-region="timeline"></div></section>'
                    '<section class="block_recentlyaccesseditems block"><div data-region="recent"></div></section>')
INVALID_SESSKEY_PAGE = ('<p class="errormessage">Your session has most likely timed out. Please log in again.</p>'
                        '<a href="https://docs.moodle.org/500/en/error/moodle/invalidsesskey?errorcode=invalidsesskey">'
                        'More information about this error</a>')
# What service.php answers the calls a browser was seen making (docs/browser-calls.md).
SERVICE_ANSWERS = {
    "core_message_get_unsent_message": [],
    "block_recentlyaccesseditems_get_recent_items": [],
    "core_calendar_get_action_events_by_timesort": {"events": [], "firstid": 0, "lastid": 0},
    "tool_usertours_fetch_and_start_tour": {"startTour": False},
    "tool_usertours_complete_tour": [],
    "core_courseformat_get_state": "{}",
    "tiny_autosave_resume_session": {"drafttext": ""},
    "tiny_autosave_update_session": [],
    "tiny_autosave_reset_session": [],
    "core_fetch_notifications": [],
}


def whole_number(value) -> int:
    """A form or query value read as PARAM_INT would read a missing or non-numeric one: 0."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else 0


def tour_script(tour: int) -> str:
    return ("<script>require(['tool_usertours/usertours'], function(amd) {amd.init([{\"tourId\":\""
            f"{tour}\",\"startTour\":true,\"filtervalues\":{{\"cssselector\":{{}}}}}}], [])}});</script>\n")


def editor_script() -> str:
    page_hash, instance = secrets.token_hex(20), secrets.token_hex(16)
    return ('<script>M.util.js_pending("editor_tiny/editor"); var config = {"tiny_autosave\\/plugin":{"config":'
            f'{{"pagehash":"{page_hash}","pageinstance":"{instance}","backoffTime":500}}}}}};</script>\n')


def reply_form(sesskey: str, courseid: int, discussion: int, reply: int, subject: str, drafts: tuple,
               errors: dict | None = None, typed_subject: str | None = None) -> str:
    """mod_forum's reply form, with the fields and markup a real Moodle 5.0 renders."""
    errors = errors or {}

    def error(name: str) -> str:
        return (f'<div class="form-control-feedback invalid-feedback" id="id_error_{name}" >'
                f' {html.escape(errors.get(name, ""))}</div>')

    hidden = [("timestart", "0"), ("timeend", "0"), ("course", str(courseid)), ("forum", "0"),
              ("discussion", str(discussion)), ("parent", str(reply)), ("groupid", "0"), ("edit", "0"),
              ("reply", str(reply)), ("sesskey", sesskey), ("_qf__mod_forum_post_form", "1"),
              ("mform_isexpanded_id_general", "1"), ("mform_isexpanded_id_tagshdr", "1")]
    inputs = "".join(f'<input name="{name}" type="hidden" value="{value}" />\n' for name, value in hidden)
    shown_subject = subject if typed_subject is None else typed_subject
    return (
        '<form id="mformforum" autocomplete="off" action="/mod/forum/post.php" method="post" '
        'accept-charset="utf-8" class="mform">\n<div style="display: none;">' + inputs + '</div>\n'
        f'<input type="text" class="form-control " name="subject" id="id_subject" value="{html.escape(shown_subject)}"'
        ' size="48" maxlength="255">\n' + error("subject") +
        '<textarea id="id_message" name="message[text]" class="form-control" rows="15" cols="80" '
        'spellcheck="true" ></textarea>\n' + error("message") +
        '<input name="message[format]" id="menumessageformat" type="hidden" value="1"/>\n'
        f'<input type="hidden" name="message[itemid]" value="{drafts[0]}" />\n'
        '<input type="checkbox" name="discussionsubscribe" class="form-check-input " value="1"'
        ' id="id_discussionsubscribe" checked>\n'
        f'<input type="hidden" name="attachments" value="{drafts[1]}" />\n'
        '<input type="hidden" name="tags" value="_qf__force_multiselect_submission">\n'
        '<select class="form-select" multiple name="tags[]" id="id_tags"></select>\n'
        '<input type="submit" class="btn btn-primary" name="submitbutton" id="id_submitbutton" value="Post to forum">\n'
        '<input type="submit" class="btn btn-secondary" name="cancel" id="id_cancel" value="Cancel">\n'
        '</form>\n'
    )
