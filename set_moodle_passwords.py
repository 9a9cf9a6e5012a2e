#!/usr/bin/env python3
"""Give a Moodle site's test users one known password and list them in config.json.

Connects to the site's database (PostgreSQL, or MariaDB/MySQL: Moodle's pgsql, mariadb,
mysqli and auroramysql), with the settings of its config.php or the flags, and picks the most recent ``--count``
accounts that are plainly test data (maketestsite's ``tool_generator_*`` unless
``--where`` says otherwise), never deleted or suspended accounts, the guest, site
admins, other MNet hosts' users, accounts of another auth method than ``manual`` or
unconfirmed ones unless named (``--allow-auth``, ``--allow-unconfirmed``).  In ONE
transaction it sets their password to a bcrypt hash Moodle accepts, ``auth='manual'``,
``confirmed=1``, and clears their login lockout and forced password change.  Then it
writes their usernames and the password into the ``users`` list of config.json for
moodle_load.py, keeping every other key.

Usage:
    MOODLE_TEST_PASSWORD=... set_moodle_passwords.py --db-name moodle --count 50
    set_moodle_passwords.py --db-name moodle --db-user moodleuser --db-host localhost \\
        --db-port 5433 --prefix m_ --count 50 --password-file test-password \\
        --config config.json [--where "u.username LIKE 'loadtest%'"] [--params-from-db] [--dry-run]

Connection settings not given fall back to libpq's own defaults and environment
(PGHOST, PGPORT, PGUSER, PGPASSWORD, ~/.pgpass).  The password comes from
--password-file, MOODLE_TEST_PASSWORD, the password already in --config, or a prompt;
--password and --db-pass work too, with a warning (ps shows them).

Exit status: 0 done; 1 database problem (unreachable, authentication, permissions,
wrong prefix, bad --where); 2 usage or input mistake; 3 no user matched;
129/130/143 interrupted (nothing changed unless it says the change was completed first).
"""

import sys

from moodleload.database.passwords import main

if __name__ == "__main__":
    sys.exit(main())
