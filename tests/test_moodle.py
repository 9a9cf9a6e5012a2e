"""What Moodle answers: the login form's token and the performance footer, on real captured pages."""

import os

import pytest

from helpers import DATA
from moodleload.config import User
from moodleload.moodle import Session, find_logintoken, parse_footer


@pytest.mark.parametrize("html", [
    '<input type="hidden" name="logintoken" value="abcDEF0123456789abcDEF0123456789">',
    "<input value='abcDEF0123456789abcDEF0123456789' name='logintoken' type='hidden'/>",
    '<INPUT name=logintoken type=hidden value=abcDEF0123456789abcDEF0123456789>',
    '<input\n  type="hidden"\n  value="abcDEF0123456789abcDEF0123456789"\n  name="logintoken"\n>',
])
def test_logintoken_is_found_whatever_the_attribute_order_and_quoting(html):
    page = f'<form id="login"><input name="username" value="">{html}</form>'
    assert find_logintoken(page) == "abcDEF0123456789abcDEF0123456789"


def test_a_page_without_logintoken_gives_none():
    assert find_logintoken('<form><input name="username"></form>') is None


def test_real_moodle_login_page_token_is_found():
    with open(os.path.join(DATA, "login-page.html"), encoding="utf-8") as handle:
        assert find_logintoken(handle.read()) == "lNKlqWkGszD7K8sRb1ucA29MtvMvGCtV"


def test_the_footer_of_a_real_moodle_page_is_parsed():
    with open(os.path.join(DATA, "footer-my.html"), "rb") as handle:
        footer = parse_footer(b"<html>" + b"x" * 200000 + handle.read())
    assert footer == {"db_reads": 43, "db_writes": 1, "server_time_ms": pytest.approx(78.92),
                      "memory_peak_mb": 8.2, "included_files": 566, "session_wait_ms": 0.0,
                      "db_time_ms": pytest.approx(19.17), "session_size_kb": 4.3}


def test_a_page_without_footer_has_no_counters():
    assert parse_footer(b"<html><body>no footer</body></html>") is None


SITE = ("https", "moodle.test", 443)


def session() -> Session:
    return Session(User("u", "p"), SITE)


def test_cookies_another_host_tries_to_set_are_refused():
    jar = session()
    jar.keep(["MoodleSession=mine; path=/", "tracker=x; Domain=evil.test; path=/", "ok=1; Domain=moodle.test"],
             "https://moodle.test/login/index.php")
    assert jar.cookies == {"MoodleSession": "mine", "ok": "1"}


def test_secure_cookies_never_travel_over_http():
    jar = session()
    jar.keep(["MoodleSession=s; path=/; Secure", "plain=p; path=/"], "https://moodle.test/")
    assert jar.cookie_header(True, "/my/") == "MoodleSession=s; plain=p"
    assert jar.cookie_header(False, "/my/") == "plain=p"


def test_a_cookie_goes_only_under_its_path():
    jar = session()
    jar.keep(["MoodleSession=s; path=/moodle/", "MOODLEID1_=i; path=/moodle"], "https://moodle.test/moodle/login/")
    assert jar.cookie_header(True, "/moodle/my/") == "MoodleSession=s; MOODLEID1_=i"
    assert jar.cookie_header(True, "/moodles/") is None
    assert jar.cookie_header(True, "/other/") is None


def test_a_deleted_cookie_is_no_longer_sent():
    jar = session()
    jar.keep(["MoodleSession=s; path=/"], "https://moodle.test/")
    jar.keep(["MoodleSession=deleted; path=/; Max-Age=0"], "https://moodle.test/")
    assert jar.cookie_header(True, "/") is None


def test_the_header_for_a_url_follows_the_same_rules_as_for_a_path():
    jar = session()
    jar.keep(["MoodleSession=s; path=/"], "https://moodle.test/")
    assert jar.cookie_header_for("http://moodle.test/my/") == "MoodleSession=s"
    jar.keep(["MoodleSession=s; path=/; Secure"], "https://moodle.test/")
    assert jar.cookie_header_for("https://moodle.test/my/") == "MoodleSession=s"
    assert jar.cookie_header_for("http://moodle.test/my/") is None
    jar.keep(["deep=d; path=/moodle/"], "https://moodle.test/moodle/")
    assert jar.cookie_header_for("https://moodle.test/moodle/my/") == "MoodleSession=s; deep=d"
    assert jar.cookie_header_for("https://moodle.test/other/") == "MoodleSession=s"
