"""The whole workflow in under a minute, on this machine only (``make demo``):

1. a throwaway PostgreSQL with a Moodle-shaped database (maketestsite --size=S users);
2. set_moodle_passwords.py gives 12 users a known password and writes config.json;
3. the simulated Moodle site, reading those users from the database, on a loopback port;
4. moodle_load.py runs a short load against it: single page views beside Moodle HQ's test
   plan as a journey (course, page, forum, discussion, reply form, a reply posted,
   participants, logout, login again; each page with the web-service calls its JavaScript
   makes), and reports; the results JSON and an HTML report (open
   demo-output/report.html in a browser) go to demo-output/.

Without PostgreSQL binaries the demo still runs steps 3 and 4 (the site then holds its
users itself) and says what it skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg2

from .moodledb import SiteData, create_schema, seed_testsite
from .pgcluster import PgCluster, PgUnavailable
from .server import SimServer
from .site import MoodleSite
from .sitesettings import SiteSettings
from .siteusers import MemoryUsers, PostgresUsers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.environ.get("DEMO_OUTPUT") or os.path.join(ROOT, "demo-output")  # tests point it elsewhere
PASSWORD = "Passw0rd!"


def run(command: list, env: dict | None = None) -> int:
    shown = " ".join(f"{key}=... " for key in env or {})
    print(f"\n$ {shown}{' '.join(command[1:])}", flush=True)
    return subprocess.call([sys.executable, *command[1:]], cwd=ROOT,
                           env={**os.environ, **env} if env else None)


def load_step(base_url: str, config_path: str) -> int:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    config["base_url"] = base_url
    with open(os.path.join(ROOT, "examples", "moodle-hq-plan.json"), encoding="utf-8") as handle:
        config["journeys"] = json.load(handle)["journeys"]  # its courseid comes from --params-from-db
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    return run([sys.executable, "moodle_load.py", "--config", os.path.relpath(config_path, ROOT),
                "--rpm", "600", "--duration", "20", "--warmup", "3", "--concurrency", "10",
                "--progress", "5", "--output", os.path.relpath(os.path.join(OUTPUT, "results.json"), ROOT),
                "--report", os.path.relpath(os.path.join(OUTPUT, "report.html"), ROOT)])


def main() -> int:
    os.makedirs(OUTPUT, exist_ok=True)
    config_path = os.path.join(OUTPUT, "config.json")
    if os.path.exists(config_path):
        os.unlink(config_path)
    try:
        cluster = PgCluster()
    except PgUnavailable as missing:
        print(f"[DEMO] skipping the database steps: {missing}")
        with open(os.path.join(ROOT, "config.example.json"), encoding="utf-8") as handle:
            config = json.load(handle)
        config["users"] = [{"username": f"tool_generator_{n:06d}", "password": PASSWORD} for n in range(1, 13)]
        config["parameters"] = {"courseid": {"values": list(range(10, 14))},
                                "cmid": {"values": [104, 168, 232, 296]},
                                "userid": {"min": 3, "max": 102}}
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2)
        site = MoodleSite(MemoryUsers.testsite(100, PASSWORD), SiteData.testsite(100), SiteSettings())
        with SimServer(site) as server:
            print(f"[DEMO] simulated Moodle at {server.url} (users in memory)")
            return load_step(server.url, config_path)

    with cluster:
        print(f"[DEMO] throwaway PostgreSQL on {cluster.socketdir} port {cluster.port}")
        cluster.create_database("moodle")
        conn = psycopg2.connect(**cluster.dsn("moodle"))
        create_schema(conn)
        seed_testsite(conn, users=100)
        # The site first: set_moodle_passwords.py writes its address into config.json.
        data = SiteData.from_database(conn)
        conn.close()
        users = PostgresUsers(cluster.dsn("moodle"))
        try:
            with SimServer(MoodleSite(users, data, SiteSettings())) as server:
                status = run([sys.executable, "set_moodle_passwords.py", "--db-name", "moodle",
                              "--db-host", cluster.socketdir, "--db-port", str(cluster.port),
                              "--db-user", cluster.superuser, "--count", "12", "--base-url", server.url,
                              "--params-from-db", "--config", os.path.relpath(config_path, ROOT)],
                             env={"MOODLE_TEST_PASSWORD": PASSWORD})  # never on the command line: ps shows it
                if status != 0:
                    return status
                print(f"\n[DEMO] simulated Moodle at {server.url} (users from PostgreSQL)")
                status = load_step(server.url, config_path)
        finally:
            users.close()
    print(f"\n[DEMO] done: config, results and report.html in {os.path.relpath(OUTPUT, ROOT)}/ (exit {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
