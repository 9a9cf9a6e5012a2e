"""config.json: what it may hold, checked whole, one line per mistake."""


import pytest

from helpers import valid_config
from moodleload.config import fill_url, validate_config
from moodleload.exits import UsageError
from moodleload.steps.call import CallStep
from moodleload.steps.kinds import STEP_KINDS
from moodleload.steps.logout import LogoutStep
from moodleload.steps.page import PageStep
from moodleload.steps.submit import SubmitStep


def error_of(raw) -> str:
    with pytest.raises(UsageError) as caught:
        validate_config(raw, STEP_KINDS)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_valid_config_loads_with_defaults():
    config = validate_config(valid_config(), STEP_KINDS)
    assert config.login_path == "/login/index.php"
    assert [u.name for u in config.urls] == ["/course/view.php?id={courseid}", "/mod/forum/view.php?id={cmid}"]
    assert [u.weight for u in config.urls] == [1.0, 1.0]
    assert config.warnings == []


@pytest.mark.parametrize("changes, complaint", [
    ({"users": []}, "users must be a non-empty list"),
    ({"users": [{"username": "x"}]}, "users[0] needs a 'username' and a 'password'"),
    ({"urls": []}, "urls must be a non-empty list"),
    ({"urls": [{"path": "/x?id={nope}"}]}, "urls[0].path uses {nope} but parameters has no 'nope'"),
    ({"parameters": {"courseid": {"min": 9, "max": 2}}}, "parameters.courseid: min 9 is greater than max 2"),
    ({"parameters": {"courseid": {"min": 1.5, "max": 2}}}, "parameters.courseid.min must be an integer"),
    ({"parameters": {"courseid": {"min": "1", "max": 2}}}, "parameters.courseid.min must be an integer"),
    ({"parameters": {"courseid": {"values": []}}}, "parameters.courseid.values must be a non-empty list"),
    ({"base_url": "ftp://moodle.test"}, "base_url must be an http:// or https:// URL"),
    ({"base_url": "moodle.test"}, "base_url must be an http:// or https:// URL"),
    ({"urls": [{"path": "/my/", "weight": 0}]}, "urls[0].weight must be a positive number"),
    ({"urls": [{"path": "my/"}]}, "urls[0] needs a 'path' starting with '/'"),
    ({"urls": [{"path": "/a", "name": "x"}, {"path": "/b", "name": "x"}]}, "is used twice"),
    ({"users": [{"username": "u1", "password": "p"}, {"username": "u1", "password": "q"}]},
     "users[0] and users[1] are both 'u1': each user logs in once"),
], ids=lambda v: str(v)[:40])
def test_each_config_mistake_is_one_line_naming_the_key(changes, complaint):
    raw = valid_config(**changes)
    if "parameters" in changes and "urls" not in changes:
        raw["urls"] = [{"path": "/course/view.php?id={courseid}"}]
    assert complaint in error_of(raw)


def test_unknown_top_level_keys_only_warn():
    config = validate_config(valid_config(colour="blue"), STEP_KINDS)
    assert config.warnings == ["config: unknown key 'colour' ignored"]


def test_placeholders_are_filled_from_ranges_and_value_lists():
    config = validate_config(valid_config(), STEP_KINDS)
    units = [0.0, 0.2499, 0.25, 0.5, 0.75, 0.9999]
    courses = [fill_url(config.urls[0], config.parameters, iter([u])) for u in units]
    assert courses == [f"/course/view.php?id={n}" for n in (2, 2, 3, 4, 5, 5)]
    forums = [fill_url(config.urls[1], config.parameters, iter([u])) for u in units]
    assert forums == [f"/mod/forum/view.php?id={n}" for n in (7, 7, 7, 9, 9, 9)]


# ---- journeys

def journey(*steps, name="j") -> dict:
    return {"name": name, "steps": list(steps)}


@pytest.mark.parametrize("steps, complaint", [
    ([{"path": "/mod/forum/discuss.php?d={discussion}"}], "uses {discussion}, which is no parameter"),
    ([{"submit": "mformforum"}], "the step before it must be the page holding it"),
    ([{"path": "/x", "take": {"id": "no group"}}], "needs exactly one (group)"),
    ([{"path": "/x", "take": {"id": "(unclosed"}}], "is not a regular expression"),
    ([{"path": "/a", "name": "same"}, {"path": "/b", "name": "same"}], "'same' is used twice"),
    ([{"path": "/a", "logout": True}], "exactly one of 'path', 'submit', 'call', 'logout'"),
    ([{"call": {"methodname": "Bad Name!"}}], "needs a 'methodname'"),
    ([{"path": "/a", "name": "login"}], "'login' is the row of the logins after a logout"),
    ([{"path": "/a", "calls": "all"}], "calls must be \"browser\" or a list"),
])
def test_each_journey_mistake_is_one_line_naming_the_step(steps, complaint):
    with pytest.raises(UsageError) as error:
        validate_config(valid_config(journeys=[journey(*steps)]), STEP_KINDS)
    assert complaint in str(error.value) and "journeys[0].steps" in str(error.value)


def test_values_taken_by_a_step_fill_the_steps_after_it():
    config = validate_config(valid_config(journeys=[journey(
        {"name": "forum", "path": "/mod/forum/view.php?id={cmid}", "take": {"discussion": r"d=(\d+)"}},
        {"name": "discussion", "path": "/mod/forum/discuss.php?d={discussion}&k={sesskey}"},
        {"name": "reply", "submit": "mformforum", "fields": {"message[text]": "by {username} at {position}"}},
        {"name": "unsent", "call": {"methodname": "core_message_get_unsent_message", "args": {"d": "{discussion}"}}},
        {"logout": True})]), STEP_KINDS)
    (walk,) = config.journeys
    assert [type(step) for step in walk.steps] == [PageStep, PageStep, SubmitStep, CallStep, LogoutStep]
    assert walk.draws == ("cmid",)  # parameters are drawn once, when the journey starts
    assert config.row_names()[-6:] == ["forum", "discussion", "reply", "unsent", "logout", "login"]


def test_a_config_of_journeys_alone_needs_no_urls():
    raw = valid_config(journeys=[journey({"path": "/my/"})])
    del raw["urls"]
    assert validate_config(raw, STEP_KINDS).urls == []


def test_web_service_arguments_keep_numbers_numbers():
    from moodleload.config import fill_args

    assert fill_args({"d": "{discussion}", "text": "reply to {discussion}", "ids": ["{discussion}", 3], "on": True},
                     {"discussion": 9}) == {"d": 9, "text": "reply to 9", "ids": [9, 3], "on": True}
