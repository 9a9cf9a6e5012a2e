"""What Moodle answers: the login form's token and the performance footer, on real captured pages."""

import os

import pytest

from helpers import DATA
from moodleload.config import User
from moodleload.site.moodle import Footer, Session, find_logintoken, parse_footer


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
    assert footer == Footer(db_reads=43, db_writes=1, server_time_ms=pytest.approx(78.92),
                            memory_peak_mb=8.2, included_files=566, session_wait_ms=0.0,
                            db_time_ms=pytest.approx(19.17), session_size_kb=4.3, cpu_ticks=FOOTER_MY_CPU)


# Every captured real footer (tests/data/footers) and the worker's CPU ticks it shows:
# user + sys from "ticks: R user: U sys: S" (Moodle prints "user: 36sys: 5").
REAL_FOOTER_CPU = {
    "5.0": {"01-login-page": 2, "03-login-error-page": 3, "05-login-page-again": 2, "08-my-first-visit": 12,
            "09-my-second-visit": 6, "10-course-enrolled": 11, "12-enrol-page": 4, "13-course-missing": 2,
            "14-forum": 10, "15-forum-missing": 4, "16-profile": 3, "17-profile-missing": 2,
            "21-session-expired-message": 1},
    "5.1": {"01-login-page": 5, "03-login-error-page": 3, "05-login-page-again": 4, "08-my-first-visit": 42,
            "09-my-second-visit": 19, "10-course-enrolled": 41, "12-enrol-page": 17, "13-course-missing": 7,
            "14-forum": 27, "15-forum-missing": 7, "16-profile": 8, "17-profile-missing": 10,
            "21-session-expired-message": 3},
}


@pytest.mark.parametrize("layout,page", [(layout, page) for layout, pages in REAL_FOOTER_CPU.items()
                                         for page in pages])
def test_every_real_footer_gives_the_workers_cpu_ticks(layout, page):
    with open(os.path.join(DATA, "footers", layout, page + ".html"), "rb") as handle:
        footer = parse_footer(b"<html>" + b"x" * 50000 + handle.read())
    assert footer is not None and footer.cpu_ticks == REAL_FOOTER_CPU[layout][page]
    assert footer.cpu_unreadable is None


def test_every_captured_footer_is_in_the_table():
    for layout, pages in REAL_FOOTER_CPU.items():
        files = {name[:-5] for name in os.listdir(os.path.join(DATA, "footers", layout)) if name.endswith(".html")}
        assert files == set(pages)


CPU_LINE = '<div class="performanceinfo"><ul><li class="posixtimes col-sm-4">{}</li></ul></div>'


@pytest.mark.parametrize("line", [
    "ticks: 8 user: -1sys: 2 cuser: 0 csys: 0",  # a counter that went backwards
    "ticks: -5 user: 1sys: 0 cuser: 0 csys: 0",
    "ticks: 8 user: 30sys: 2 cuser: 0 csys: 0",  # more CPU than wall time on one thread
    "ticks: 9999999 user: 9999990sys: 2 cuser: 0 csys: 0",  # absurd
])
def test_a_cpu_reading_that_cannot_be_true_is_unreadable_not_a_number(line):
    footer = parse_footer(CPU_LINE.format(line).encode())
    assert footer == Footer(cpu_unreadable=1)


def test_cpu_a_little_above_the_wall_reading_is_rounding_and_kept():
    footer = parse_footer(CPU_LINE.format("ticks: 2 user: 2sys: 1 cuser: 0 csys: 0").encode())
    assert footer == Footer(cpu_ticks=3)


def test_a_footer_without_the_cpu_line_has_no_cpu():
    footer = parse_footer(b'<div class="performanceinfo"><li class="dbqueries">DB reads/writes: 4/1</li></div>')
    assert footer == Footer(db_reads=4, db_writes=1)


def test_a_page_without_footer_has_no_counters():
    assert parse_footer(b"<html><body>no footer</body></html>") is None


FOOTER_MY_CPU = 6  # footer-my.html: "ticks: 8 user: 4sys: 2"

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
