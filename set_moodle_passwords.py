#!/usr/bin/env python3
"""Give a Moodle site's test users one known password and list them in config.json.

Connects to the site's PostgreSQL database, picks the most recent ``--count`` users
that are safe to touch (never deleted or suspended users, the guest, site admins or
other MNet hosts' users), and in ONE transaction sets their password to a bcrypt hash
Moodle accepts, ``auth='manual'``, ``confirmed=1``, and clears their login lockout and
forced password change.  Then it writes their usernames and the password into the
``users`` list of config.json for moodle_load.py, keeping every other key.

Usage:
    set_moodle_passwords.py --db-name moodle --count 50 --password 'Passw0rd!'
    set_moodle_passwords.py --db-name moodle --db-user moodleuser --db-host localhost \\
        --db-port 5433 --prefix m_ --count 50 --where "username LIKE 'tool_generator_%'" \\
        --config config.json [--params-from-db] [--dry-run]

Connection settings not given fall back to libpq's own defaults and environment
(PGHOST, PGPORT, PGUSER, PGPASSWORD, ~/.pgpass).  The password falls back to the
MOODLE_TEST_PASSWORD environment variable, then to the password already in --config.

Exit status: 0 done; 1 database problem (unreachable, authentication, permissions,
wrong prefix, bad --where); 2 usage or input mistake; 3 no user matched.
"""

import sys

from moodleload.passwords import main

if __name__ == "__main__":
    sys.exit(main())
