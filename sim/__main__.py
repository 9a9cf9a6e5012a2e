"""Run the simulated Moodle site on its own.

    python -m sim --port 8081                       # users held in memory, password 'Passw0rd!'
    python -m sim --port 8081 --db-host /tmp/sock --db-port 5432 --db-name moodle --db-user me
    python -m sim --port 8081 --site-config site.json --latency-scale 0.1

site.json holds SiteSettings: {"pages": {"course": {"latency_ms": 250, "db_reads": 73}},
"session_timeout": 600, "workers": 4}.  GET /__sim/stats shows what the site saw.
"""

from __future__ import annotations

import argparse
import json
import sys

from aiohttp import web

from .moodledb import SiteData
from .site import MoodleSite
from .sitesettings import SiteSettings
from .siteusers import MemoryUsers, PostgresUsers, UserStore


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--site-config", help="JSON file with site settings (page latencies, footer counters)")
    parser.add_argument("--latency-scale", type=float, default=1.0, help="multiply every page latency")
    parser.add_argument("--users", type=int, default=100, help="in-memory users tool_generator_000001..")
    parser.add_argument("--password", default="Passw0rd!", help="password of the in-memory users")
    parser.add_argument("--db-host", help="read users and courses from this Moodle database")
    parser.add_argument("--db-port", type=int)
    parser.add_argument("--db-name", default="moodle")
    parser.add_argument("--db-user")
    parser.add_argument("--db-pass")
    parser.add_argument("--prefix", default="mdl_")
    args = parser.parse_args(argv)

    settings = SiteSettings()
    if args.site_config:
        with open(args.site_config, encoding="utf-8") as handle:
            settings = SiteSettings.from_dict(json.load(handle))
    if args.latency_scale != 1.0:
        settings = settings.scaled(args.latency_scale)

    if args.db_host:
        import psycopg2

        dsn = {"host": args.db_host, "dbname": args.db_name}
        dsn.update({k: v for k, v in (("port", args.db_port), ("user", args.db_user),
                                        ("password", args.db_pass)) if v is not None})
        conn = psycopg2.connect(**dsn)
        data = SiteData.from_database(conn, args.prefix)
        conn.close()
        users: UserStore = PostgresUsers(dsn, args.prefix)
    else:
        data = SiteData.testsite(args.users)
        users = MemoryUsers.testsite(args.users, args.password)
    site = MoodleSite(users, data, settings)
    print(f"[SIM] simulated Moodle on http://{args.host}:{args.port}/ "
          f"({'database' if args.db_host else 'in-memory'} users)", flush=True)
    web.run_app(site.app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
