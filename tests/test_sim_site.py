"""The simulated site behaves like the real Moodle of shared/moodle/FACTS.md."""

import json
import os
import re
import threading
import time

import bcrypt
import psycopg2
import pytest

from helpers import DATA, Browser, busy_loops, fast_settings
from sim.sitesettings import PageProfile
from sim.siteusers import password_matches

USER, PASSWORD = "tool_generator_000002", "Passw0rd!"


def test_login_page_sets_session_cookie_and_carries_a_32_character_token(sim_factory):
    browser = Browser(sim_factory().url)
    token = browser.login_token()
    assert len(token) == 32
    assert "MoodleSession" in browser.cookies


def test_login_answers_303_to_testsession_with_a_new_session_id(sim_factory):
    browser = Browser(sim_factory().url)
    token = browser.login_token()
    before = browser.cookies["MoodleSession"]
    status, location, _ = browser.post("/login/index.php", {"username": USER, "password": PASSWORD,
                                                            "logintoken": token, "anchor": ""})
    assert (status, location) == (303, "/login/index.php?testsession=4")
    assert browser.cookies["MoodleSession"] != before
    assert "MOODLEID1_" in browser.cookies
    assert browser.get(location)[:2] == (303, "/my/")
    assert browser.get("/my/")[0] == 200


def test_wrong_password_redirects_to_loginredirect_then_shows_the_error(sim_factory):
    browser = Browser(sim_factory().url)
    status, location, _ = browser.login(USER, "wrong")
    assert (status, location) == (303, "/login/index.php?loginredirect=1")
    status, _, page = browser.get(location)
    assert status == 200
    assert 'id="loginerrormessage"' in page and "Invalid login, please try again" in page


def test_a_logintoken_works_only_once_even_after_a_failed_attempt(sim_factory):
    browser = Browser(sim_factory().url)
    token = browser.login_token()
    browser.post("/login/index.php", {"username": USER, "password": "wrong", "logintoken": token})
    status, location, _ = browser.post("/login/index.php", {"username": USER, "password": PASSWORD,
                                                            "logintoken": token})
    assert (status, location) == (303, "/login/index.php?loginredirect=1")


def test_no_cookie_on_a_page_redirects_to_the_login_page(sim_factory):
    assert Browser(sim_factory().url).get("/my/")[:2] == (303, "/login/index.php")


def test_expired_session_lands_on_the_login_page_with_the_timeout_message(sim_factory):
    server = sim_factory(fast_settings(session_timeout=0.3))
    browser = Browser(server.url)
    browser.login(USER, PASSWORD)
    assert browser.get("/my/")[0] == 200
    time.sleep(0.5)
    assert browser.get("/my/")[:2] == (303, "/login/index.php")
    assert browser.get("/login/index.php")[:2] == (303, "/login/index.php?loginredirect=1")
    status, _, page = browser.get("/login/index.php?loginredirect=1")
    assert status == 200 and "Your session has timed out. Please log in again." in page


def test_two_concurrent_requests_on_one_session_are_served_one_after_the_other(sim_factory):
    settings = fast_settings()
    settings.pages["my"] = PageProfile(latency_ms=300, jitter=0, body_kb=10)
    server = sim_factory(settings)
    browser = Browser(server.url)
    browser.login(USER, PASSWORD)
    finished = []

    def fetch():
        browser.get("/my/")
        finished.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(finished) - started >= 0.6  # the second waited for the first
    assert server.site.stats.overlaps == 1


def test_unknown_course_and_forum_are_404_with_moodles_error(sim_factory):
    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    for path in ("/course/view.php?id=999999", "/mod/forum/view.php?id=999999"):
        status, _, page = browser.get(path)
        assert status == 404
        assert "Can&#039;t find data record in database." in page


def test_unknown_profile_is_200(sim_factory):
    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    assert browser.get("/user/profile.php?id=999999")[0] == 200


def test_course_without_enrolment_redirects_to_the_enrol_page(sim_factory):
    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)  # user id 4: only in the large courses 10-13
    assert browser.get("/course/view.php?id=2")[:2] == (303, "/enrol/index.php?id=2")
    assert browser.get("/enrol/index.php?id=2")[0] == 200
    assert browser.get("/course/view.php?id=10")[0] == 200
    assert browser.get("/mod/forum/view.php?id=5")[:2] == (303, "/enrol/index.php?id=2")
    assert browser.get("/mod/forum/view.php?id=104")[0] == 200


def test_pages_carry_the_performance_footer_with_the_configured_counters(sim_factory):
    settings = fast_settings()
    settings.pages["course"].db_reads = 73
    browser = Browser(sim_factory(settings).url)
    browser.login(USER, PASSWORD)
    _, _, page = browser.get("/course/view.php?id=10")
    assert '<li class="dbqueries col-sm-4">DB reads/writes: 73/1</li>' in page
    assert "performanceinfo" in browser.get("/login/index.php")[2]


def _cpu_ticks(browser, path: str, views: int) -> list:
    from moodleload.site.moodle import parse_footer
    return [parse_footer(browser.get(path)[2].encode()).cpu_ticks for _ in range(views)]


def test_a_page_that_does_cpu_work_reports_the_workers_measured_ticks_and_an_idle_one_none(sim_factory):
    settings = fast_settings()
    settings.pages["course"].cpu_ms = 40
    browser = Browser(sim_factory(settings).url)
    browser.login(USER, PASSWORD)
    course = _cpu_ticks(browser, "/course/view.php?id=10", 40)
    # 40 ms of work is 4 ticks; each request's reading is two readings rounded down to a tick
    assert 3.0 <= sum(course) / len(course) <= 5.5
    assert set(course) <= {2, 3, 4, 5, 6, 7}
    assert _cpu_ticks(browser, "/my/", 5) == [0] * 5


def test_busy_loops_stretch_a_pages_wall_time_but_not_its_cpu_ticks(sim_factory):
    from moodleload.site.moodle import parse_footer
    settings = fast_settings()
    settings.pages["course"].cpu_ms = 30
    settings.pages["course"].cpu_jitter = 0.0
    browser = Browser(sim_factory(settings).url)
    browser.login(USER, PASSWORD)
    quiet = [parse_footer(browser.get("/course/view.php?id=10")[2].encode()) for _ in range(30)]
    with busy_loops(2 * (os.cpu_count() or 2)):
        busy = [parse_footer(browser.get("/course/view.php?id=10")[2].encode()) for _ in range(30)]

    def mean(footers, name):
        return sum(getattr(footer, name) for footer in footers) / len(footers)
    assert mean(busy, "server_time_ms") > 1.2 * mean(quiet, "server_time_ms")
    assert abs(mean(busy, "cpu_ticks") - mean(quiet, "cpu_ticks")) <= 0.25 * mean(quiet, "cpu_ticks")


def test_page_bodies_have_the_configured_size(sim_factory):
    settings = fast_settings()
    settings.pages["my"].body_kb = 237
    browser = Browser(sim_factory(settings).url)
    browser.login(USER, PASSWORD)
    assert abs(len(browser.get("/my/")[2]) - 237 * 1024) < 2048


def test_logged_in_pages_carry_the_sesskey_and_logout_link(sim_factory):
    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    page = browser.get("/my/")[2]
    sesskey = re.search(r'"sesskey":"([A-Za-z0-9]{10})"', page).group(1)  # as Moodle writes M.cfg
    assert f"logout.php?sesskey={sesskey}" in page


@pytest.mark.parametrize("prefix", ["$2y$", "$2b$", "$2a$"])
def test_every_bcrypt_variant_validates_like_moodle_5(prefix):
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
    assert password_matches("secret", prefix + hashed[4:])
    assert not password_matches("other", prefix + hashed[4:])


def test_passwords_over_128_characters_never_validate():
    long_password = "x" * 129
    hashed = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(4)).decode()
    assert not password_matches(long_password, hashed)


# ---- against the real PostgreSQL database

def test_database_users_log_in_with_the_password_in_mdl_user(moodle_db, db_site):
    hashed = "$2y$" + bcrypt.hashpw(b"Dbpass1!", bcrypt.gensalt(4)).decode()[4:]
    moodle_db.query("UPDATE mdl_user SET password = %s WHERE username = %s", (hashed, USER))
    browser = Browser(db_site.url)
    assert browser.login(USER, "Dbpass1!")[1] == "/login/index.php?testsession=4"
    assert Browser(db_site.url).login(USER, "Passw0rd!")[1] == "/login/index.php?loginredirect=1"


def test_locked_out_user_gets_200_with_the_locked_message(moodle_db, db_site):
    hashed = "$2y$" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()[4:]
    moodle_db.query("UPDATE mdl_user SET password = %s WHERE id = 4", (hashed,))
    moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value) VALUES (4, 'login_lockout', '1')")
    status, _, page = Browser(db_site.url).login(USER, "pw")
    assert status == 200 and "Your account is locked" in page


def test_forced_password_change_redirects_every_page_to_change_password(moodle_db, db_site):
    hashed = "$2y$" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()[4:]
    moodle_db.query("UPDATE mdl_user SET password = %s WHERE id = 4", (hashed,))
    moodle_db.query("INSERT INTO mdl_user_preferences (userid, name, value)"
                    " VALUES (4, 'auth_forcepasswordchange', '1')")
    browser = Browser(db_site.url)
    _, location, _ = browser.login(USER, "pw")
    assert browser.get(location)[:2] == (303, "/login/change_password.php")
    assert browser.get("/my/")[:2] == (303, "/login/change_password.php")


def test_schema_has_the_unique_index_on_mnethostid_and_username(pg_db):
    rows = pg_db.query("SELECT indexdef FROM pg_indexes WHERE tablename = 'mdl_user' AND indexdef LIKE "
                           "'%UNIQUE%'")
    assert any("(mnethostid, username)" in row[0] for row in rows)
    with pytest.raises(psycopg2.errors.UniqueViolation):
        pg_db.query("INSERT INTO mdl_user (mnethostid, username) VALUES (1, 'admin')")
    pg_db.query("INSERT INTO mdl_user (mnethostid, username) VALUES (2, 'admin')")


def test_seed_is_like_maketestsite(moodle_db):
    assert moodle_db.query("SELECT id, username FROM mdl_user WHERE id <= 3 ORDER BY id") == [
        (1, "guest"), (2, "admin"), (3, "tool_generator_000001")]
    assert moodle_db.query("SELECT value FROM mdl_config WHERE name = 'siteadmins'") == [("2",)]
    forums = moodle_db.query("SELECT cm.id FROM mdl_course_modules cm JOIN mdl_modules m ON m.id = cm.module"
                             " WHERE m.name = 'forum' ORDER BY cm.id")
    assert [row[0] for row in forums] == [5, 10, 15, 20, 25, 30, 35, 40, 104, 168, 232, 296]


def test_a_second_table_prefix_works(pg):
    from helpers import new_database
    from sim.moodledb import create_schema, seed_testsite

    name = new_database(pg, "postgres")
    conn = psycopg2.connect(**pg.dsn(name))
    create_schema(conn, "m_")
    seed_testsite(conn, "m_", users=5)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM m_user")
        assert cur.fetchone()[0] == 7
        cur.execute("SELECT to_regclass('mdl_user')")
        assert cur.fetchone()[0] is None
    conn.close()


# ---- forms, session keys and web services, as the real pages have them (tests/data, docs/browser-calls.md)

def sesskey_of(page: str) -> str:
    return re.search(r'"sesskey":"([A-Za-z0-9]{10})"', page).group(1)


def reply_form_page(browser) -> str:
    status, _, page = browser.get("/mod/forum/post.php?reply=17")  # the first post of forum 104 (course 10)
    assert status == 200
    return page


# The reply form's fields in the order a real browser sent them (docs/browser-calls.md).
REAL_REPLY_FIELDS = ["timestart", "timeend", "course", "forum", "discussion", "parent", "groupid", "edit", "reply",
                     "sesskey", "_qf__mod_forum_post_form", "mform_isexpanded_id_general",
                     "mform_isexpanded_id_tagshdr", "subject", "message[text]", "message[format]", "message[itemid]",
                     "discussionsubscribe", "attachments", "tags"]


def test_the_reply_form_has_the_fields_of_the_real_one(sim_factory):
    from moodleload.site.forms import find_form

    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    form = find_form(reply_form_page(browser).encode(), "mformforum")
    assert [name for name, _ in form.fields] == REAL_REPLY_FIELDS
    assert form.buttons[0] == ("submitbutton", "Post to forum")


def test_a_reply_is_stored_and_shown_in_its_discussion(sim_factory):
    from moodleload.site.forms import find_form

    server = sim_factory()
    browser = Browser(server.url)
    browser.login(USER, PASSWORD)
    form = find_form(reply_form_page(browser).encode(), "mformforum")
    status, location, _ = browser.post("/mod/forum/post.php", dict(form.submission(
        {"subject": "Re: stored", "message[text]": "<p>hello</p>"})))
    assert status == 303 and location.startswith("/mod/forum/discuss.php?d=17")
    assert "Re: stored" in browser.get("/mod/forum/discuss.php?d=17")[2]


def test_a_reply_with_a_wrong_sesskey_gets_moodles_invalidsesskey_page(sim_factory):
    from moodleload.site.forms import error_page, find_form

    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    form = find_form(reply_form_page(browser).encode(), "mformforum")
    status, _, page = browser.post("/mod/forum/post.php", dict(form.submission(
        {"subject": "x", "message[text]": "y", "sesskey": "WRONGKEY00"})))
    assert error_page(page.encode()) == "invalidsesskey"


def test_an_empty_subject_shows_the_form_again_with_its_error(sim_factory):
    from moodleload.site.forms import find_form, form_errors

    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    form = find_form(reply_form_page(browser).encode(), "mformforum")
    status, _, page = browser.post("/mod/forum/post.php", dict(form.submission({"subject": "", "message[text]": "y"})))
    assert status == 200 and form_errors(page.encode()) == [("subject", "Required")]


def test_the_pages_make_the_calls_the_real_pages_make(sim_factory):
    from moodleload.site.forms import browser_calls

    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    with open(os.path.join(DATA, "my-page.html"), "rb") as handle:
        real_dashboard = [name for name, _ in browser_calls(handle.read(), "u", 0, set())]
    with open(os.path.join(DATA, "course-page.html"), "rb") as handle:
        real_course = [name for name, _ in browser_calls(handle.read(), "u", 0, set())]
    simulated = {path: [name for name, _ in browser_calls(browser.get(path)[2].encode(), "u", 0, set())]
                 for path in ("/my/", "/course/view.php?id=10")}
    assert simulated["/my/"] == real_dashboard
    assert simulated["/course/view.php?id=10"] == real_course


def test_service_php_answers_200_with_the_error_in_its_json(sim_factory):
    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    sesskey = sesskey_of(browser.get("/my/")[2])
    call = [{"index": 0, "methodname": "core_message_get_unsent_message", "args": {}}]
    status, _, answer = browser.request("POST", f"/lib/ajax/service.php?sesskey={sesskey}&info=x", json_body=call)
    assert status == 200 and json.loads(answer) == [{"error": False, "data": []}]
    status, _, answer = browser.request("POST", "/lib/ajax/service.php?sesskey=WRONGKEY00&info=x", json_body=call)
    assert status == 200 and json.loads(answer)[0]["exception"]["errorcode"] == "invalidsesskey"
    unknown = [{"index": 0, "methodname": "core_nothing", "args": {}}]
    status, _, answer = browser.request("POST", f"/lib/ajax/service.php?sesskey={sesskey}&info=x", json_body=unknown)
    assert json.loads(answer)[0]["error"] is True


def test_logout_needs_the_sesskey(sim_factory):
    browser = Browser(sim_factory().url)
    browser.login(USER, PASSWORD)
    sesskey = sesskey_of(browser.get("/my/")[2])
    status, _, page = browser.get("/login/logout.php?sesskey=WRONGKEY00")
    assert status == 200 and "Do you really want to log out?" in page
    assert browser.get(f"/login/logout.php?sesskey={sesskey}")[:2] == (303, "/")
    assert browser.get("/my/")[:2] == (303, "/login/index.php")
