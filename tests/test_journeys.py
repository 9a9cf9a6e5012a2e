"""Journeys against the simulated site: forms with their session key and draft areas,
web-service calls judged by their JSON, logout and login again, at a fixed rate."""

import json
import os
import urllib.request

from aiohttp import web

from helpers import PASSWORD, ROOT, FixedApp, mini_moodle, read, run_load, write_config
from moodleload.results.model import Results
from sim.server import SimServer

HQ_PLAN = os.path.join(ROOT, "examples", "moodle-hq-plan.json")


def site_stats(server) -> dict:
    with urllib.request.urlopen(server.url + "/__sim/stats") as answer:
        return json.load(answer)


def journey_config(path, base_url: str, steps: list, users: int = 6, parameters=None) -> str:
    config = {"base_url": base_url,
              "users": [{"username": f"tool_generator_{n:06d}", "password": PASSWORD} for n in range(1, users + 1)],
              "parameters": parameters or {"courseid": {"values": [10, 11, 12, 13]}},
              "journeys": [{"name": "test", "steps": steps}]}
    path.write_text(json.dumps(config))
    return str(path)


def to_the_reply_form() -> list:
    return [
        {"name": "course", "path": "/course/view.php?id={courseid}",
         "take": {"forum": r"/mod/forum/view\.php\?id=(\d+)"}},
        {"name": "forum", "path": "/mod/forum/view.php?id={forum}", "take": {"discussion": r"discuss\.php\?d=(\d+)"}},
        {"name": "discussion", "path": "/mod/forum/discuss.php?d={discussion}", "take": {"post": r"reply=(\d+)"}},
        {"name": "reply form", "path": "/mod/forum/post.php?reply={post}"},
    ]


def test_the_hq_plan_walks_every_step_and_posts_replies_at_the_target_rate(sim_factory, tmp_path):
    server = sim_factory()
    with open(HQ_PLAN) as handle:
        config = json.load(handle)
    config["base_url"] = server.url
    config["users"] = [{"username": f"tool_generator_{n:06d}", "password": PASSWORD} for n in range(1, 11)]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert run_load(str(tmp_path / "config.json"), rpm=1200, duration=8, output=tmp_path / "run.json") == 0
    document = read(tmp_path / "run.json")
    steps = [step["name"] for step in config["journeys"][0]["steps"]]
    for name in [*steps, "login", "core_message_get_unsent_message", "tool_usertours_fetch_and_start_tour",
                 "core_courseformat_get_state", "tiny_autosave_resume_session"]:
        row = document["urls"][name]
        assert row["requests"] > 0 and row["success"] == row["requests"], (name, row["failures"])
    posted = document["urls"]["reply posted"]["success"]
    assert document["work_done"] == {"replies posted": posted}
    assert site_stats(server)["posts_added"] == posted
    assert document["urls"]["reply posted"]["redirects"] == {"/mod/forum/discuss.php": posted}
    assert abs(document["summary"]["req_per_min_observed"] - 1200) <= 1200 * 0.02  # the rate counts steps
    assert document["urls"]["course view"]["footer"]["db_reads"]  # each step keeps its footer counters


def test_a_logout_ends_the_journey_and_the_next_journey_logs_in_again(sim_factory, tmp_path):
    server = sim_factory()
    steps = [{"name": "dashboard", "path": "/my/"}, {"name": "logout", "logout": True}]
    config = journey_config(tmp_path / "config.json", server.url, steps, users=4)
    assert run_load(config, rpm=1200, duration=4, output=tmp_path / "run.json") == 0
    urls = read(tmp_path / "run.json")["urls"]
    assert urls["logout"]["success"] == urls["logout"]["requests"] > 2
    assert abs(urls["login"]["success"] - urls["logout"]["success"]) <= 4  # each user's next journey logs in
    assert site_stats(server)["bad_sesskeys"] == 0  # every logout carried the user's own session key


def test_a_form_sent_with_a_wrong_sesskey_is_refused_as_moodle_refuses_it(sim_factory, tmp_path):
    server = sim_factory()
    steps = [*to_the_reply_form(), {"name": "reply posted", "submit": "mformforum", "counts": "replies posted",
                                    "fields": {"message[text]": "<p>x</p>", "sesskey": "WRONGKEY00"}}]
    config = journey_config(tmp_path / "config.json", server.url, steps)
    run_load(config, rpm=1200, duration=3, output=tmp_path / "run.json")
    document = read(tmp_path / "run.json")
    row = document["urls"]["reply posted"]
    assert row["requests"] > 0 and row["failures"] == {"error_invalidsesskey": row["requests"]}
    assert document["work_done"] == {} and site_stats(server)["posts_added"] == 0


def test_a_form_shown_again_with_errors_is_a_failure_named_after_the_form(sim_factory, tmp_path):
    server = sim_factory()
    steps = [*to_the_reply_form(), {"name": "reply posted", "submit": "mformforum",
                                    "fields": {"subject": "", "message[text]": "<p>x</p>"}}]
    config = journey_config(tmp_path / "config.json", server.url, steps)
    run_load(config, rpm=1200, duration=3, output=tmp_path / "run.json")
    row = read(tmp_path / "run.json")["urls"]["reply posted"]
    assert row["requests"] > 0 and row["failures"] == {"invalid_mformforum": row["requests"]}


def test_a_web_service_exception_is_a_failure_that_names_it_although_http_said_200(sim_factory, tmp_path):
    server = sim_factory()
    steps = [{"name": "dashboard", "path": "/my/"},
             {"name": "missing function", "call": {"methodname": "core_no_such_function", "args": {"id": 1}}},
             {"name": "unsent", "call": {"methodname": "core_message_get_unsent_message"}}]
    config = journey_config(tmp_path / "config.json", server.url, steps)
    run_load(config, rpm=1200, duration=3, output=tmp_path / "run.json")
    urls = read(tmp_path / "run.json")["urls"]
    assert urls["missing function"]["failures"] == {"ws_invalidrecord": urls["missing function"]["requests"]}
    assert urls["unsent"]["requests"] == 0  # the journey stops at a failed step; the next one starts afresh
    assert urls["dashboard"]["success"] == urls["dashboard"]["requests"] > 0


def test_the_sesskey_placeholder_is_the_users_own(sim_factory, tmp_path):
    server = sim_factory()
    steps = [{"name": "dashboard", "path": "/my/"},
             {"name": "logout link", "path": "/login/logout.php?sesskey={sesskey}"}]
    config = journey_config(tmp_path / "config.json", server.url, steps, users=3)
    run_load(config, rpm=600, duration=3, output=tmp_path / "run.json")
    row = read(tmp_path / "run.json")["urls"]["logout link"]
    assert row["requests"] > 0 and row["redirects"] == {"/": row["requests"]}  # logged out: sent to the front page
    assert site_stats(server)["bad_sesskeys"] == 0


def test_the_same_seed_does_the_same_work(sim_factory, tmp_path):
    counts = []
    for run in (1, 2):
        server = sim_factory()
        steps = [*to_the_reply_form(), {"name": "reply posted", "submit": "mformforum", "counts": "replies posted",
                                        "fields": {"message[text]": "<p>run {position}</p>"}}]
        config = journey_config(tmp_path / f"config{run}.json", server.url, steps)
        assert run_load(config, rpm=1200, duration=4, output=tmp_path / f"run{run}.json") == 0
        document = read(tmp_path / f"run{run}.json")
        counts.append(({name: row["requests"] for name, row in document["urls"].items()}, document["work_done"]))
    assert counts[0] == counts[1] and counts[0][1]["replies posted"] > 0


def test_a_form_that_posts_to_another_host_is_never_sent(tmp_path):
    elsewhere_requests = []

    async def elsewhere(request):
        elsewhere_requests.append(request.path)
        return web.Response(text="phished")

    with SimServer(FixedApp(elsewhere)) as other:
        async def pages(request):
            form = (f'<form id="f" method="post" action="http://localhost:{other.port}/steal">'
                    '<input type="hidden" name="sesskey" value="abc"></form>')
            return web.Response(text=form, content_type="text/html")

        with SimServer(FixedApp(mini_moodle(pages))) as server:
            steps = [{"name": "page", "path": "/page"}, {"name": "send", "submit": "f"}]
            config = journey_config(tmp_path / "config.json", server.url, steps, users=2)
            run_load(config, rpm=1200, duration=2, output=tmp_path / "run.json")
    row = read(tmp_path / "run.json")["urls"]["send"]
    assert row["requests"] > 0 and row["failures"] == {"offsite_form": row["requests"]}
    assert elsewhere_requests == []  # neither the form nor the user's cookies reached the other host


def test_a_multipart_form_is_sent_as_multipart(tmp_path):
    received = []

    async def pages(request):
        if request.method == "POST":
            received.append((request.content_type, dict(await request.post())))
            return web.Response(status=303, headers={"Location": "/done"})
        if request.path == "/done":
            return web.Response(text="saved", content_type="text/html")
        form = ('<form id="upload" method="post" action="/save" enctype="multipart/form-data">'
                '<input type="hidden" name="sesskey" value="abc"><input type="text" name="title" value="">'
                '<input type="file" name="attachment"><input type="submit" name="save" value="Save"></form>')
        return web.Response(text=form, content_type="text/html")

    with SimServer(FixedApp(mini_moodle(pages))) as server:
        steps = [{"name": "form page", "path": "/edit"},
                 {"name": "saved", "submit": "upload", "fields": {"title": "Caf\u00e9 \"quoted\""}}]
        config = journey_config(tmp_path / "config.json", server.url, steps, users=2)
        run_load(config, rpm=600, duration=2, output=tmp_path / "run.json")
    row = read(tmp_path / "run.json")["urls"]["saved"]
    assert row["requests"] > 0 and row["success"] == row["requests"]
    assert received[0] == ("multipart/form-data", {"sesskey": "abc", "title": "Caf\u00e9 \"quoted\"", "save": "Save"})


def hostile_submission(tmp_path, action: str, answer) -> tuple:
    """A journey posting a form of a hostile page; (the submit row, the requests another host saw)."""
    elsewhere_requests = []

    async def elsewhere(request):
        elsewhere_requests.append(request.path)
        return web.Response(text="phished")

    with SimServer(FixedApp(elsewhere)) as other:
        async def pages(request):
            if request.method == "POST":
                return answer(other.port)
            form = f'<form id="f" method="post" action="{action}"><input type="hidden" name="a" value="1"></form>'
            return web.Response(text=form, content_type="text/html")

        with SimServer(FixedApp(mini_moodle(pages))) as server:
            steps = [{"name": "page", "path": "/page"}, {"name": "send", "submit": "f"}]
            config = journey_config(tmp_path / "config.json", server.url, steps, users=2)
            assert run_load(config, rpm=1200, duration=2, output=tmp_path / "run.json") != 200  # never a tool fault
    return read(tmp_path / "run.json")["urls"]["send"], elsewhere_requests


def test_a_submission_redirected_to_another_host_is_not_followed(tmp_path):
    row, elsewhere = hostile_submission(
        tmp_path, "/save", lambda port: web.Response(status=303, headers={"Location": f"http://localhost:{port}/x"}))
    assert row["requests"] > 0 and row["failures"] == {"offsite_redirect": row["requests"]}
    assert elsewhere == []


def test_a_submission_answered_with_a_malformed_location_is_a_failure_not_a_crash(tmp_path):
    row, _ = hostile_submission(tmp_path, "/save",
                                lambda port: web.Response(status=303, headers={"Location": "http://[::1/oops"}))
    assert row["requests"] > 0 and row["failures"] == {"bad_redirect": row["requests"]}


def test_a_form_whose_action_is_not_a_url_is_a_failure_not_a_crash(tmp_path):
    row, _ = hostile_submission(tmp_path, "http://[::1/oops", lambda port: web.Response(text="never"))
    assert row["requests"] > 0 and row["failures"] == {"bad_form_action": row["requests"]}


def test_a_submission_that_lands_on_the_login_form_is_a_lost_session(tmp_path):
    with open(os.path.join(ROOT, "tests", "data", "login-session-expired.html"), "rb") as handle:
        login_form = handle.read()
    row, _ = hostile_submission(tmp_path, "/save",
                                lambda port: web.Response(body=login_form, content_type="text/html"))
    assert row["requests"] > 0 and row["failures"] == {"session_lost": row["requests"]}


def test_pages_journey_steps_and_web_service_calls_are_reported_under_their_own_headings(sim_factory, tmp_path):
    from moodleload.reports.text import format_report

    server = sim_factory()
    config = write_config(tmp_path / "config.json", server.url, urls=[{"path": "/my/", "name": "dashboard"}])
    with open(config) as handle:
        raw = json.load(handle)
    raw["journeys"] = [{"name": "browse", "steps": [
        {"path": "/course/view.php?id={courseid}", "name": "course", "calls": "browser"}]}]
    raw["parameters"] = {"courseid": {"min": 2, "max": 3}}
    with open(config, "w") as handle:
        json.dump(raw, handle)
    assert run_load(config, output=tmp_path / "run.json") == 0
    document = read(tmp_path / "run.json")
    assert document["row_kinds"]["dashboard"] == "page" and document["row_kinds"]["course"] == "journey step"
    assert document["row_kinds"]["core_courseformat_get_state"] == "web-service call"
    text = format_report(Results.from_dict(document))
    headings = [line.strip() for line in text.splitlines() if line.startswith("  ") and line.strip().endswith(":")]
    assert headings == ["pages:", "journey steps:", "web-service calls:"]
    assert text.index("dashboard") < text.index("journey steps:") < text.index("course ")
