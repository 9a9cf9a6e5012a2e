"""How long set_moodle_passwords.py takes for 10,000 users, against the obvious loop.

Seeds 10,000 users in a throwaway PostgreSQL, then in the same run times:
- set_moodle_passwords.py (one hash, set-based statements, one transaction), whole command;
- the obvious per-user loop (a fresh bcrypt hash and an UPDATE per user, cost 10), on a
  sample of users, extrapolated linearly to 10,000 (running it in full takes ~10 minutes).
Writes a Markdown table to bench/results/passwords.md and prints it.

    .venv/bin/python bench/passwords.py [--users 10000] [--loop-sample 200]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import bcrypt
import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sim.moodledb import create_schema, seed_testsite  # noqa: E402
from sim.pgcluster import PgCluster  # noqa: E402


def obvious_loop(conn, ids: list, password: str) -> float:
    started = time.perf_counter()
    with conn.cursor() as cur:
        for userid in ids:
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
            cur.execute("UPDATE mdl_user SET password = %s, auth = 'manual', confirmed = 1 WHERE id = %s",
                        (hashed, userid))
            conn.commit()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--loop-sample", type=int, default=200)
    args = parser.parse_args()
    with PgCluster() as cluster:
        cluster.create_database("moodle")
        conn = psycopg2.connect(**cluster.dsn("moodle"))
        create_schema(conn)
        seed_testsite(conn, users=args.users)
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, os.path.join(ROOT, "set_moodle_passwords.py"), "--db-name", "moodle",
                       "--db-host", cluster.socketdir, "--db-port", str(cluster.port), "--db-user",
                       cluster.superuser, "--count", str(args.users),
                       "--config", os.path.join(tmp, "config.json")]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True,
                           env={**os.environ, "MOODLE_TEST_PASSWORD": "Passw0rd!"})
            tool_seconds = time.perf_counter() - started
        sample_ids = list(range(3, 3 + args.loop_sample))
        loop_seconds = obvious_loop(conn, sample_ids, "Passw0rd!") * args.users / args.loop_sample
        conn.close()
    ratio = loop_seconds / tool_seconds
    table = "\n".join([
        f"# set_moodle_passwords.py: {args.users:,} users",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, bcrypt {importlib.metadata.version('bcrypt')}, "
        "PostgreSQL (throwaway, fsync off)",
        "",
        "| approach | seconds for all users |",
        "|---|---|",
        f"| set_moodle_passwords.py (whole command: start, one hash, set-based, one transaction) | "
        f"{tool_seconds:.2f} |",
        f"| per-user loop: hash + UPDATE + commit each (measured on {args.loop_sample}, extrapolated) | "
        f"{loop_seconds:.1f} |",
        f"| ratio (loop / tool) | {ratio:.0f}x |",
        "",
    ])
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "passwords.md"), "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
