"""A Moodle-shaped database (PostgreSQL, or MariaDB/MySQL): the tables this toolkit touches,
seeded the way ``admin/tool/generator/cli/maketestsite.php --size=S`` seeds a site.

Column names, types, defaults and unique indexes follow Moodle's ``lib/db/install.xml``
(only the columns that matter here; the rest of a real table is irrelevant to us).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

SCHEMA = """
CREATE TABLE {p}user (
    id {serial},
    auth varchar(20) NOT NULL DEFAULT 'manual',
    confirmed smallint NOT NULL DEFAULT 0,
    policyagreed smallint NOT NULL DEFAULT 0,
    deleted smallint NOT NULL DEFAULT 0,
    suspended smallint NOT NULL DEFAULT 0,
    mnethostid bigint NOT NULL DEFAULT 0,
    username varchar(100) NOT NULL DEFAULT '',
    password varchar(255) NOT NULL DEFAULT '',
    idnumber varchar(255) NOT NULL DEFAULT '',
    firstname varchar(100) NOT NULL DEFAULT '',
    lastname varchar(100) NOT NULL DEFAULT '',
    email varchar(100) NOT NULL DEFAULT '',
    emailstop smallint NOT NULL DEFAULT 0,
    lang varchar(30) NOT NULL DEFAULT 'en',
    firstaccess bigint NOT NULL DEFAULT 0,
    lastaccess bigint NOT NULL DEFAULT 0,
    lastlogin bigint NOT NULL DEFAULT 0,
    currentlogin bigint NOT NULL DEFAULT 0,
    lastip varchar(45) NOT NULL DEFAULT '',
    secret varchar(15) NOT NULL DEFAULT '',
    timecreated bigint NOT NULL DEFAULT 0,
    timemodified bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX {p}user_mneuse_uix ON {p}user (mnethostid, username);
CREATE INDEX {p}user_del_ix ON {p}user (deleted);
CREATE INDEX {p}user_con_ix ON {p}user (confirmed);
CREATE INDEX {p}user_aut_ix ON {p}user (auth);

CREATE TABLE {p}user_preferences (
    id {serial},
    userid bigint NOT NULL DEFAULT 0,
    name varchar(255) NOT NULL DEFAULT '',
    value text NOT NULL
);
CREATE UNIQUE INDEX {p}userpref_usenam_uix ON {p}user_preferences (userid, name);

CREATE TABLE {p}config (
    id {serial},
    name varchar(255) NOT NULL,
    value text NOT NULL
);
CREATE UNIQUE INDEX {p}conf_nam_uix ON {p}config (name);

CREATE TABLE {p}course (
    id {serial},
    category bigint NOT NULL DEFAULT 0,
    sortorder bigint NOT NULL DEFAULT 0,
    fullname varchar(1333) NOT NULL DEFAULT '',
    shortname varchar(255) NOT NULL DEFAULT '',
    idnumber varchar(100) NOT NULL DEFAULT '',
    format varchar(21) NOT NULL DEFAULT 'topics',
    visible smallint NOT NULL DEFAULT 1,
    startdate bigint NOT NULL DEFAULT 0,
    enddate bigint NOT NULL DEFAULT 0,
    timecreated bigint NOT NULL DEFAULT 0,
    timemodified bigint NOT NULL DEFAULT 0
);
CREATE INDEX {p}cour_cat_ix ON {p}course (category);

CREATE TABLE {p}enrol (
    id {serial},
    enrol varchar(20) NOT NULL DEFAULT '',
    status bigint NOT NULL DEFAULT 0,
    courseid bigint NOT NULL,
    sortorder bigint NOT NULL DEFAULT 0,
    roleid bigint DEFAULT 0,
    timecreated bigint NOT NULL DEFAULT 0,
    timemodified bigint NOT NULL DEFAULT 0
);
CREATE INDEX {p}enro_cou_ix ON {p}enrol (courseid);

CREATE TABLE {p}user_enrolments (
    id {serial},
    status bigint NOT NULL DEFAULT 0,
    enrolid bigint NOT NULL,
    userid bigint NOT NULL,
    timestart bigint NOT NULL DEFAULT 0,
    timeend bigint NOT NULL DEFAULT 2147483647,
    modifierid bigint NOT NULL DEFAULT 0,
    timecreated bigint NOT NULL DEFAULT 0,
    timemodified bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX {p}userenro_enruse_uix ON {p}user_enrolments (enrolid, userid);

CREATE TABLE {p}modules (
    id {serial},
    name varchar(20) NOT NULL DEFAULT '',
    cron bigint NOT NULL DEFAULT 0,
    lastcron bigint NOT NULL DEFAULT 0,
    search varchar(255) NOT NULL DEFAULT '',
    visible smallint NOT NULL DEFAULT 1
);
CREATE INDEX {p}modu_nam_ix ON {p}modules (name);

CREATE TABLE {p}course_modules (
    id {serial},
    course bigint NOT NULL DEFAULT 0,
    module bigint NOT NULL DEFAULT 0,
    instance bigint NOT NULL DEFAULT 0,
    section bigint NOT NULL DEFAULT 0,
    idnumber varchar(100),
    added bigint NOT NULL DEFAULT 0,
    visible smallint NOT NULL DEFAULT 1,
    deletioninprogress smallint NOT NULL DEFAULT 0
);
CREATE INDEX {p}courmodu_cou_ix ON {p}course_modules (course);
CREATE INDEX {p}courmodu_mod_ix ON {p}course_modules (module);

CREATE TABLE {p}forum (
    id {serial},
    course bigint NOT NULL DEFAULT 0,
    type varchar(20) NOT NULL DEFAULT 'general',
    name varchar(255) NOT NULL DEFAULT ''
);
CREATE INDEX {p}foru_cou_ix ON {p}forum (course);

CREATE TABLE {p}forum_discussions (
    id {serial},
    course bigint NOT NULL DEFAULT 0,
    forum bigint NOT NULL DEFAULT 0,
    name varchar(255) NOT NULL DEFAULT '',
    firstpost bigint NOT NULL DEFAULT 0,
    userid bigint NOT NULL DEFAULT 0,
    groupid bigint NOT NULL DEFAULT -1,
    timemodified bigint NOT NULL DEFAULT 0
);
CREATE INDEX {p}forudisc_for_ix ON {p}forum_discussions (forum);

CREATE TABLE {p}forum_posts (
    id {serial},
    discussion bigint NOT NULL DEFAULT 0,
    parent bigint NOT NULL DEFAULT 0,
    userid bigint NOT NULL DEFAULT 0,
    created bigint NOT NULL DEFAULT 0,
    subject varchar(255) NOT NULL DEFAULT '',
    message text NOT NULL,
    deleted smallint NOT NULL DEFAULT 0
);
CREATE INDEX {p}forupost_dis_ix ON {p}forum_posts (discussion);
"""

PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,20}$")

# maketestsite --size=S: small courses 2..9 enrol only the first generated user,
# the large courses 10..13 enrol everybody (FACTS.md).
SMALL_COURSES = range(2, 10)
LARGE_COURSES = range(10, 14)
MODULES_PER_SMALL_COURSE = 5
MODULES_PER_LARGE_COURSE = 64


def generated_username(n: int) -> str:
    return f"tool_generator_{n:06d}"


SERIAL = {"pgsql": "bigserial PRIMARY KEY", "mysql": "bigint NOT NULL AUTO_INCREMENT PRIMARY KEY"}


def family_of_connection(conn) -> str:
    return "pgsql" if type(conn).__module__.startswith("psycopg2") else "mysql"


def create_schema(conn, prefix: str = "mdl_") -> None:
    """Create the Moodle tables with ``prefix`` (in either family); commits."""
    if not PREFIX_PATTERN.match(prefix):
        raise ValueError(f"bad table prefix {prefix!r}")
    text = SCHEMA.format(p=prefix, serial=SERIAL[family_of_connection(conn)])
    with conn.cursor() as cur:
        for statement in text.split(";"):
            if statement.strip():
                cur.execute(statement)
    conn.commit()


def testsite_rows(users: int, password_hash: str, now: int) -> dict:
    """Every row seed_testsite() writes, by table (column names first)."""
    rows: dict[str, list[tuple]] = {
        "user": [("id", "auth", "confirmed", "mnethostid", "username", "password", "firstname", "lastname",
                  "email", "timecreated", "timemodified"),
                 (1, "manual", 1, 1, "guest", password_hash, "Guest user", " ", "root@localhost", 0, now),
                 (2, "manual", 1, 1, "admin", password_hash, "Admin", "User", "admin@example.com", 0, now)]
        + [(2 + n, "manual", 1, 1, generated_username(n), password_hash, "Test", f"User {n}",
            f"tool_generator_{n}@example.com", now, now) for n in range(1, users + 1)],
        "config": [("name", "value"), ("siteadmins", "2"), ("lockoutthreshold", "0"), ("mnet_localhost_id", "1"),
                   ("release", "5.0.6+ (Build: 20251120)")],
        "course": [("id", "category", "fullname", "shortname", "format", "timecreated"),
                   (1, 0, "Site", "site", "site", 0)],
        "enrol": [("id", "enrol", "status", "courseid", "roleid")],
        "user_enrolments": [("enrolid", "userid", "timecreated")],
        "modules": [("id", "name"), (1, "forum"), (2, "page"), (3, "resource")],
        "course_modules": [("id", "course", "module", "instance", "section", "added")],
        "forum": [("id", "course", "type", "name")],
        "forum_discussions": [("id", "course", "forum", "name", "firstpost", "userid", "timemodified")],
        "forum_posts": [("id", "discussion", "parent", "userid", "created", "subject", "message")],
    }
    for courseid in [*SMALL_COURSES, *LARGE_COURSES]:
        rows["course"].append((courseid, 1, f"Test course {courseid}", f"testcourse_{courseid}", "topics", now))
        rows["enrol"].append((courseid, "manual", 0, courseid, 5))
        enrolled = range(3, 4) if courseid in SMALL_COURSES else range(3, 3 + users)
        rows["user_enrolments"] += [(courseid, userid, now) for userid in enrolled]
    rows["user_enrolments"] += [(courseid, 2, 0) for courseid in SMALL_COURSES]
    cmid = 0
    for courseid, per_course in ([(c, MODULES_PER_SMALL_COURSE) for c in SMALL_COURSES]
                                 + [(c, MODULES_PER_LARGE_COURSE) for c in LARGE_COURSES]):
        for position in range(1, per_course + 1):
            cmid += 1
            module = 1 if position == per_course else (2 if position % 2 else 3)
            rows["course_modules"].append((cmid, courseid, module, cmid, 1, now))
            if module == 1:  # a forum: its instance id is its cmid here
                rows["forum"].append((cmid, courseid, "general", f"Forum {cmid}"))
    # The same discussions and first posts the simulated site makes (SiteData.add_forum_content).
    content = SiteData(forum_courses={forum[0]: forum[1] for forum in rows["forum"][1:]}).add_forum_content()
    for post, (discussion, subject, author) in content.posts.items():
        forum = content.discussions[discussion]
        rows["forum_discussions"].append((discussion, content.forum_courses[forum], forum, subject, post, author, now))
        rows["forum_posts"].append((post, discussion, 0, author, now, subject, "<p>The first post.</p>"))
    return rows


def seed_testsite(conn, prefix: str = "mdl_", users: int = 100, password_hash: str = "") -> None:
    """Seed like maketestsite --size=S: guest (1), admin (2), then ``users`` generated users
    (ids 3..), courses 2..13 with enrolments, and course modules 1..296 with forums at
    cmids 5, 10, ..., 40 and 104, 168, 232, 296.  Commits."""
    family = family_of_connection(conn)
    with conn.cursor() as cur:
        for name, (columns, *values) in testsite_rows(users, password_hash, int(time.time())).items():
            cur.executemany(f"INSERT INTO {prefix}{name} ({', '.join(columns)})"
                            f" VALUES ({', '.join(['%s'] * len(columns))})", values)
            if family == "pgsql" and "id" in columns:  # explicit ids leave the sequence behind
                cur.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM {prefix}{name}))",
                            (prefix + name,))
    conn.commit()


@dataclass
class SiteData:
    """What the simulated site needs to know about courses, forums and users."""

    course_enrolments: dict[int, set[int]] = field(default_factory=dict)  # courseid -> userids
    forum_courses: dict[int, int] = field(default_factory=dict)  # forum cmid -> courseid
    module_courses: dict[int, int] = field(default_factory=dict)  # any cmid -> courseid
    page_courses: dict[int, int] = field(default_factory=dict)  # page resource cmid -> courseid
    user_ids: set[int] = field(default_factory=set)
    release: str = "5.0.6+ (Build: 20251120)"
    # Forum content lives in the site only (the bisect step restores the database anyway):
    # discussion id -> forum cmid, and post id -> (discussion id, subject, author).
    discussions: dict[int, int] = field(default_factory=dict)
    posts: dict[int, tuple] = field(default_factory=dict)

    DISCUSSIONS_PER_FORUM = 2

    def add_forum_content(self) -> SiteData:
        """Two discussions in every forum, each opened by a post of the admin, as the
        generator's forums have; ids in cmid order."""
        for cmid in sorted(self.forum_courses):
            for _ in range(self.DISCUSSIONS_PER_FORUM):
                discussion = len(self.discussions) + 1
                self.discussions[discussion] = cmid
                self.posts[len(self.posts) + 1] = (discussion, f"Discussion {discussion}", 2)
        return self

    def add_post(self, discussion: int, subject: str, author: int) -> int:
        post = max(self.posts, default=0) + 1
        self.posts[post] = (discussion, subject, author)
        return post

    def posts_of(self, discussion: int) -> list:
        return [post for post, (d, _, _) in self.posts.items() if d == discussion]

    @classmethod
    def testsite(cls, users: int = 100) -> SiteData:
        """The same site as seed_testsite() seeds, without a database."""
        data = cls(user_ids=set(range(1, 3 + users)))
        for courseid in SMALL_COURSES:
            data.course_enrolments[courseid] = {2, 3}
        for courseid in LARGE_COURSES:
            data.course_enrolments[courseid] = set(range(3, 3 + users))
        cmid = 0
        for courseid, per_course in ([(c, MODULES_PER_SMALL_COURSE) for c in SMALL_COURSES]
                                     + [(c, MODULES_PER_LARGE_COURSE) for c in LARGE_COURSES]):
            for position in range(1, per_course + 1):
                cmid += 1
                data.module_courses[cmid] = courseid
                if position == per_course:
                    data.forum_courses[cmid] = courseid
                elif position % 2:
                    data.page_courses[cmid] = courseid
        return data.add_forum_content()

    @classmethod
    def from_database(cls, conn, prefix: str = "mdl_") -> SiteData:
        data = cls()
        p = prefix
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {p}course WHERE id > 1")
            for (courseid,) in cur.fetchall():
                data.course_enrolments[courseid] = set()
            cur.execute(f"SELECT e.courseid, ue.userid FROM {p}user_enrolments ue"
                        f" JOIN {p}enrol e ON e.id = ue.enrolid WHERE ue.status = 0 AND e.status = 0")
            for courseid, userid in cur.fetchall():
                data.course_enrolments.setdefault(courseid, set()).add(userid)
            cur.execute(f"SELECT cm.id, cm.course, m.name FROM {p}course_modules cm"
                        f" JOIN {p}modules m ON m.id = cm.module")
            for cmid, courseid, modname in cur.fetchall():
                data.module_courses[cmid] = courseid
                if modname == "forum":
                    data.forum_courses[cmid] = courseid
                elif modname == "page":
                    data.page_courses[cmid] = courseid
            cur.execute(f"SELECT id FROM {p}user WHERE deleted = 0")
            data.user_ids = {row[0] for row in cur.fetchall()}
            cur.execute(f"SELECT value FROM {p}config WHERE name = 'release'")
            row = cur.fetchone()
            if row:
                data.release = row[0]
            cur.execute(f"SELECT d.id, cm.id FROM {p}forum_discussions d JOIN {p}course_modules cm"
                        f" ON cm.instance = d.forum JOIN {p}modules m ON m.id = cm.module AND m.name = 'forum'")
            data.discussions = {discussion: cmid for discussion, cmid in cur.fetchall()}
            cur.execute(f"SELECT id, discussion, subject, userid FROM {p}forum_posts WHERE deleted = 0")
            data.posts = {post: (discussion, subject, author) for post, discussion, subject, author in cur.fetchall()}
        conn.rollback()
        return data
