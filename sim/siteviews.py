"""The pages a logged-in user of the simulated site sees: the dashboard, courses, forums
and their discussions and reply form, pages, participants, profiles.  Each is a function
of one page view; LOGGED_IN_PAGES routes a path to it, as Moodle's scripts are files."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Protocol

from .sitepages import DASHBOARD_BLOCKS, INVALID_SESSKEY_PAGE, editor_script, reply_form, tour_script, whole_number

if TYPE_CHECKING:
    import random

    from aiohttp import web

    from .moodledb import SiteData
    from .sitesession import Session
    from .sitesettings import SiteSettings
    from .sitestats import SiteStats


class Site(Protocol):
    """What a page view asks of the site that answers it (sim.site.MoodleSite)."""

    data: SiteData
    settings: SiteSettings
    stats: SiteStats
    random: random.Random

    async def _work(self, kind: str) -> float: ...

    def _redirect(self, request: web.Request, location: str, session: Session | None = None) -> web.Response: ...

    def _page(self, request: web.Request, kind: str, *, status: int = 200, title: str, body_id: str,
              content: str, session: Session | None, server_seconds: float, session_wait: float,
              set_cookie: bool = False, page_config: dict | None = None, scripts: str = "") -> web.Response: ...


class PageView:
    """One logged-in page view: the request, its session, and how the site answers it."""

    def __init__(self, site: Site, request: web.Request, session: Session, session_wait: float):
        self.site, self.request, self.session, self.session_wait = site, request, session, session_wait
        self.data = site.data

    @property
    def userid(self) -> int:
        """The logged-in user: page views are served to logged-in sessions only."""
        if self.session.userid is None:
            raise RuntimeError("a logged-in page view of a session without a user")
        return self.session.userid

    def integer(self, name: str) -> int | None:
        try:
            return int(self.request.query.get(name, ""))
        except ValueError:
            return None

    async def page(self, kind: str, title: str, body_id: str, content: str = "", status: int = 200,
                   page_config: dict | None = None, scripts: str = ""):
        seconds = await self.site._work(kind)
        if status == 200:
            status = self.site.settings.pages[kind].status
        return self.site._page(self.request, kind, status=status, title=title, body_id=body_id, content=content,
                               session=self.session, server_seconds=seconds, session_wait=self.session_wait,
                               page_config=page_config, scripts=scripts)

    def enrolled(self, courseid) -> bool:
        return self.session.userid in self.data.course_enrolments.get(courseid, set())

    async def to_enrol(self, courseid):
        await self.site._work("redirect")
        return self.site._redirect(self.request, f"/enrol/index.php?id={courseid}")

    async def refusal(self, courseid, known: bool):
        """What Moodle answers instead of a course's page: 404 for an unknown course or
        activity (``known`` false), its enrolment page for a user not enrolled; else None."""
        if not known:
            return await self.not_found()
        if not self.enrolled(courseid):
            return await self.to_enrol(courseid)
        return None

    async def not_found(self):
        return await self.page("notfound", "Error", "page-site-index", status=404,
                               content="<p class=\"errormessage\">Can&#039;t find data record in database.</p>")


async def dashboard(view: PageView):
    return await view.page("my", "Dashboard", "page-my-index", DASHBOARD_BLOCKS,
                           page_config={"courseId": 1, "contextid": 100 + (view.session.userid or 0)},
                           scripts=tour_script(5))


async def change_password(view: PageView):
    return await view.page("login", "Change password", "page-login-change_password")


async def course(view: PageView):
    courseid = view.integer("id")
    if courseid is None:
        return await view.not_found()
    refused = await view.refusal(courseid, courseid in view.data.course_enrolments)
    if refused is not None:
        return refused
    return await view.page("course", f"Course: Test course {courseid}", "page-course-view-topics",
                           course_content(view, courseid),
                           page_config={"courseId": courseid, "contextid": 10 + courseid}, scripts=tour_script(2))


def course_content(view: PageView, courseid: int) -> str:
    """Links to the course's activities, as a course page lists them."""
    links = []
    for cmid, owner in sorted(view.data.module_courses.items()):
        if owner != courseid:
            continue
        if cmid in view.data.forum_courses:
            links.append(f'<li class="activity forum"><a href="/mod/forum/view.php?id={cmid}">Forum</a></li>')
        elif cmid in view.data.page_courses:
            links.append(f'<li class="activity page"><a href="/mod/page/view.php?id={cmid}">Page</a></li>')
    return f'<ul class="section">{"".join(links)}</ul>'


async def forum(view: PageView):
    cmid = view.integer("id")
    courseid = None if cmid is None else view.data.forum_courses.get(cmid)
    if cmid is None or courseid is None:
        return await view.not_found()
    refused = await view.refusal(courseid, True)
    if refused is not None:
        return refused
    links = "".join(f'<a href="/mod/forum/discuss.php?d={d}">Discussion {d}</a>\n'
                    for d, owner in view.data.discussions.items() if owner == cmid)
    return await view.page("forum", "Forum", "page-mod-forum-view", links,
                           page_config={"courseId": courseid, "contextid": 200 + cmid}, scripts=editor_script())


async def discussion(view: PageView):
    number = view.integer("d")
    cmid = None if number is None else view.data.discussions.get(number)
    if number is None or cmid is None:
        return await view.not_found()
    courseid = view.data.forum_courses[cmid]
    refused = await view.refusal(courseid, True)
    if refused is not None:
        return refused
    posts = "".join(f'<article id="p{post}"><h3>{html.escape(view.data.posts[post][1])}</h3>'
                    f'<a href="/mod/forum/post.php?reply={post}">Reply</a></article>\n'
                    for post in view.data.posts_of(number))
    return await view.page("discussion", "Discussion", "page-mod-forum-discuss", posts,
                           page_config={"courseId": courseid, "contextid": 200 + cmid})


async def forum_post(view: PageView):
    """post.php: the reply form (GET ?reply=) and its submission (POST), checked as
    moodleform checks it: the session key, the draft areas this page view handed out,
    and a subject and a message."""
    site, session = view.site, view.session
    if view.request.method == "POST":
        form = await view.request.post()
        reply = whole_number(form.get("reply"))
    else:
        form, reply = None, whole_number(view.request.query.get("reply"))
    if reply not in view.data.posts:
        return await view.not_found()
    number, subject, _ = view.data.posts[reply]
    cmid = view.data.discussions[number]
    courseid = view.data.forum_courses[cmid]
    if not view.enrolled(courseid):
        return await view.to_enrol(courseid)
    page_config = {"courseId": courseid, "contextid": 200 + cmid}
    if form is None:
        drafts = (site.random.randrange(10**8, 10**9), site.random.randrange(10**8, 10**9))
        session.drafts.add(drafts)
        return await view.page("postform", "Reply", "page-mod-forum-post",
                               reply_form(session.sesskey, courseid, number, reply, subject, drafts),
                               page_config=page_config, scripts=editor_script())
    if form.get("_qf__mod_forum_post_form") == "1" and form.get("sesskey") != session.sesskey:
        site.stats.bad_sesskeys += 1
        return await view.page("notfound", "Error", "page-mod-forum-post", INVALID_SESSKEY_PAGE)
    drafts = (whole_number(form.get("message[itemid]")), whole_number(form.get("attachments")))
    errors = {}
    if not str(form.get("subject", "")).strip():
        errors["subject"] = "Required"
    if not str(form.get("message[text]", "")).strip():
        errors["message"] = "Required"
    if drafts not in session.drafts:
        errors["message"] = "The draft area of this form has expired; open the form again"
    if errors:
        return await view.page("postform", "Reply", "page-mod-forum-post",
                               reply_form(session.sesskey, courseid, number, reply, subject, drafts, errors,
                                          str(form.get("subject", ""))))
    session.drafts.discard(drafts)
    await site._work("post")
    post = view.data.add_post(number, str(form["subject"]), view.userid)
    site.stats.posts_added += 1
    return site._redirect(view.request, f"/mod/forum/discuss.php?d={number}#p{post}")


async def page_resource(view: PageView):
    cmid = view.integer("id")
    courseid = None if cmid is None else view.data.page_courses.get(cmid)
    if cmid is None or courseid is None:
        return await view.not_found()
    refused = await view.refusal(courseid, True)
    if refused is not None:
        return refused
    return await view.page("page", "Page", "page-mod-page-view", "<p>Page content.</p>",
                           page_config={"courseId": courseid, "contextid": 200 + cmid})


async def participants(view: PageView):
    courseid = view.integer("id")
    if courseid is None:
        return await view.not_found()
    refused = await view.refusal(courseid, courseid in view.data.course_enrolments)
    if refused is not None:
        return refused
    rows = "".join(f'<tr><td><a href="/user/view.php?id={user}&course={courseid}">User {user}</a></td></tr>'
                   for user in sorted(view.data.course_enrolments[courseid])[:20])
    return await view.page("participants", "Participants", "page-user-index", f"<table>{rows}</table>",
                           page_config={"courseId": courseid, "contextid": 10 + courseid})


async def profile(view: PageView):
    return await view.page("profile", "Public profile", "page-user-profile")


async def enrol(view: PageView):
    courseid = view.integer("id")
    if courseid not in view.data.course_enrolments:
        return await view.not_found()
    return await view.page("enrol", f"testcourse_{courseid}", "page-enrol-index")


LOGGED_IN_PAGES = {
    "/my/": dashboard, "/my/index.php": dashboard, "/login/change_password.php": change_password,
    "/course/view.php": course, "/mod/forum/view.php": forum, "/mod/forum/discuss.php": discussion,
    "/mod/forum/post.php": forum_post, "/mod/page/view.php": page_resource, "/user/index.php": participants,
    "/user/profile.php": profile, "/enrol/index.php": enrol,
}
