"""Reading pages for the next request, on real Moodle 5.0.6+ markup (tests/data)."""

import json
import os
import re

from helpers import DATA
from moodleload.site.forms import (
    browser_calls,
    error_page,
    find_form,
    find_sesskey,
    form_errors,
    service_failure,
    service_request,
    take,
)


def page(name: str) -> bytes:
    with open(os.path.join(DATA, name), "rb") as handle:
        return handle.read()


def test_the_sesskey_comes_from_the_pages_javascript_config():
    assert find_sesskey(page("forum-page.html")) == "erM0Rks8qs"
    assert find_sesskey(b'<a href="/login/logout.php?sesskey=AbC123xyZ9">Log out</a>') == "AbC123xyZ9"
    assert find_sesskey(b"<html>no key here</html>") is None


def test_a_moodle_form_gives_every_field_a_browser_sends_hidden_ones_included():
    form = find_form(page("forum-page.html"), "mformforum")
    assert form.action == "http://127.0.0.1:8080/mod/forum/post.php" and form.method == "post"
    values = form.values()
    assert values["sesskey"] == "erM0Rks8qs"
    assert values["_qf__mod_forum_post_form"] == "1"
    assert values["message[itemid]"] == "939476693"  # the draft area of this page view
    assert values["course"] == "10" and values["forum"] == "9" and values["reply"] == "0"
    assert values["subject"] == "" and values["message[text]"] == ""
    assert ("submitbutton", "Post to forum") in form.buttons
    assert "cancelbtn" not in values  # a type="button" is never sent


def test_overrides_replace_fields_and_the_first_submit_button_is_pressed():
    form = find_form(page("forum-page.html"), "mformforum")
    pairs = form.submission({"subject": "Load test", "message[text]": "<p>Hi</p>"})
    assert ("subject", "Load test") in pairs and ("message[text]", "<p>Hi</p>") in pairs
    assert [name for name, _ in pairs].count("subject") == 1
    assert pairs[-1] == ("submitbutton", "Post to forum")


def test_checkboxes_selects_and_textareas_are_sent_as_a_browser_sends_them():
    markup = b"""<form id="f" method="post" action="/x.php">
      <input type="checkbox" name="subscribe" value="1" checked>
      <input type="checkbox" name="pinned" value="1">
      <input type="radio" name="r" value="a"><input type="radio" name="r" value="b" checked="checked">
      <select name="single"><option value="1">one</option><option value="2">two</option></select>
      <select name="chosen"><option value="1">one</option><option value="2" selected>two</option></select>
      <select name="tags[]" multiple><option value="x">x</option></select>
      <textarea name="text">line &amp; <b>one</b>
second</textarea>
      <input type="text" name="off" value="v" disabled>
      <input type="file" name="upload">
      <input type="submit" name="save" value="Save"><input type="submit" name="cancel" value="Cancel">
    </form>"""
    form = find_form(markup, "f")
    assert form.fields == [("subscribe", "1"), ("r", "b"), ("single", "1"), ("chosen", "2"),
                           ("text", "line & <b>one</b>\r\nsecond")]
    assert form.submission({}, button="save")[-1] == ("save", "Save")


def test_a_page_without_the_form_gives_none():
    assert find_form(page("my-page.html"), "mformforum") is None


def test_validation_errors_and_error_pages_are_recognised():
    rejected = (b'<div class="form-control-feedback invalid-feedback" id="id_error_subject" >'
                b' Required</div>')
    assert form_errors(rejected) == [("subject", "Required")]
    error = (b'<p class="errormessage">Your session has most likely timed out.</p><a href="https://docs.moodle.org'
             b'/500/en/error/moodle/invalidsesskey?errorcode=invalidsesskey">')
    assert error_page(error) == "invalidsesskey"
    assert error_page(page("forum-page.html")) is None
    assert form_errors(page("forum-page.html")) == []  # Moodle renders every field's error div, empty


def test_take_picks_a_value_from_the_page_the_same_way_for_the_same_draw():
    body = page("course-page.html")
    forums = re.compile(rb"/mod/forum/view\.php\?id=(\d+)")
    assert take(body, forums, 0.0) == take(body, forums, 0.0) == "104"
    assert take(body, re.compile(rb"nothing=(\d+)"), 0.5) is None


def test_a_web_service_call_is_the_json_moodles_javascript_posts():
    assert json.loads(service_request("core_message_get_unsent_message", {})) == [
        {"index": 0, "methodname": "core_message_get_unsent_message", "args": {}}]


def test_a_web_service_exception_is_a_failure_named_by_its_errorcode_although_http_said_200():
    assert service_failure(b'[{"error":false,"data":[]}]') is None
    answer = b'[{"error":true,"exception":{"message":"Invalid sesskey","errorcode":"invalidsesskey"}}]'
    assert service_failure(answer) == "invalidsesskey"
    assert service_failure(b"<html>an error page</html>") == "not_json"


def test_the_dashboard_makes_the_calls_a_real_browser_made():
    calls = browser_calls(page("my-page.html"), "http://127.0.0.1:8080/my/", 1795651200, set())
    assert [name for name, _ in calls] == [
        "core_message_get_unsent_message", "block_recentlyaccesseditems_get_recent_items",
        "core_calendar_get_action_events_by_timesort", "tool_usertours_fetch_and_start_tour"]
    assert calls[3][1] == {"tourid": "5", "context": 124, "pageurl": "http://127.0.0.1:8080/my/"}
    assert calls[2][1]["timesortto"] - calls[2][1]["timesortfrom"] == 7 * 86400


def test_a_course_page_asks_for_its_state_only_on_the_first_visit():
    seen = set()
    first = [name for name, _ in browser_calls(page("course-page.html"), "u", 0, seen)]
    again = [name for name, _ in browser_calls(page("course-page.html"), "u", 0, seen)]
    assert "core_courseformat_get_state" in first and "core_courseformat_get_state" not in again
    assert "tool_usertours_fetch_and_start_tour" in again


def test_an_editor_page_resumes_its_autosave_session():
    calls = dict(browser_calls(page("forum-page.html"), "u", 0, set()))
    assert calls["tiny_autosave_resume_session"] == {
        "contextid": 223, "pagehash": "e50d73590bce01f4161c65da8e04da588808c8ee",
        "pageinstance": "c86e6ed6b48fedd9e0c0ad8a4a38a83f", "elementid": "id_message", "draftid": 939476693}



def test_a_sites_error_text_with_control_characters_becomes_a_printable_failure_name():
    page = (b'<div class="box errorbox alert alert-danger"><p class="errormessage">Bad \x1b[31mred\x1b[0m'
            b'\r\nthing</p></div>')
    word = error_page(page)
    assert word is not None and word.isprintable() and "\x1b" not in word and "red" in word


def test_a_web_service_errorcode_with_control_characters_becomes_printable():
    answer = b'[{"error":true,"exception":{"errorcode":"bad\\u001b]0;pwned\\u0007code"}}]'
    assert service_failure(answer) == "bad?]0;pwned?code"


def test_one_calls_success_is_known_from_the_first_bytes_and_nesting_beyond_reason_is_not_json():
    assert service_failure(b'[{"error":false,"data":' + b"[" * 10 + b"]" * 10 + b"}]") is None
    assert service_failure(b"[" * 100_000 + b"]" * 100_000) == "not_json"


def test_a_dashboard_with_mains_continue_learning_block_asks_for_its_course():
    dashboard = page("my-page.html").replace(b"block_recentlyaccesseditems", b"block_continue_learning")
    calls = dict(browser_calls(dashboard, "http://127.0.0.1:8080/my/", 1795651200, set()))
    assert calls["block_continue_learning_get_course"] == {}
    assert "block_recentlyaccesseditems_get_recent_items" not in calls
