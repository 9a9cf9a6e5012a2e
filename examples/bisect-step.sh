#!/usr/bin/env bash
# One step of `git bisect run`: bring the site to the checked-out Moodle commit, load it,
# and exit with moodle_load.py's verdict (0 good, 1 bad, 125 skip; 128+ stops the bisect).
#
#   cd /path/to/moodle                 # the Moodle checkout being bisected
#   git bisect start BAD_COMMIT GOOD_COMMIT
#   git checkout GOOD_COMMIT && /path/to/toolkit/examples/bisect-step.sh --baseline
#   git bisect run /path/to/toolkit/examples/bisect-step.sh
#   /path/to/toolkit/examples/bisect-step.sh --confirm   # culprit against its parent, in pairs
#   /path/to/toolkit/examples/bisect-step.sh --restore   # only put the snapshot back
#   /path/to/toolkit/examples/bisect-step.sh --measure OUT.json  # one prepared run, no verdict
#
# Everything is set through the environment (defaults in brackets):
#   LOAD_CONFIG      config.json of the load                       [$TOOLKIT/config.json]
#   RESULTS_DIR      where each commit's results go                [$TOOLKIT/bisect]
#   BASELINE_RUNS    runs recorded by --baseline, each on a freshly prepared site: the
#                    verdict judges against their run-to-run spread [3]
#   BASELINE         a single older baseline file, used when RESULTS_DIR has no
#                    baseline-N.json                                [$RESULTS_DIR/baseline.json]
#   MAX_RUNS         runs of one commit a step may spend: an unsure answer (125) gets
#                    another freshly prepared run, pooled, while the results say more
#                    runs would decide                              [6]
#   MAX_STEP_MINUTES no further run of a step once this much time has gone [90]
#   MAX_BASELINE_RUNS --baseline records more than BASELINE_RUNS when the baseline's own
#                    spread cannot support the tolerance within MAX_RUNS a step [12]
#   PAIRS            --confirm: parent/culprit pairs run              [4]
#   BISECT_FOR       regression, or improvement: find the commit that made a page faster
#                    (or read less). Record the baseline on the fast commit, then
#                    git bisect start --term-old=slow --term-new=fast FAST_COMMIT SLOW_COMMIT;
#                    a step answers 0 (slow) when the commit is shown slower than that
#                    baseline, 1 (fast) when shown within the tolerance of it, 125 when
#                    unsure; --confirm shows the parent slower than the culprit [regression]
#   LOAD_RPM LOAD_DURATION LOAD_WARMUP LOAD_CONCURRENCY LOAD_SEED  [600 120 30 20 1]
#   LOAD_ARGS        more moodle_load.py flags, e.g. "--max-regression 5 --insecure"; on a
#                    busy or shared machine "--judge work" (Moodle's CPU time per answer
#                    decides; the baseline's sizing and --confirm's pairs follow it)
#   PRETEST_DUMP     the snapshot restored before every step: PostgreSQL a pg_dump -Fc file,
#                    MariaDB/MySQL an SQL file from mariadb-dump or mysqldump
#   MOODLE_CONFIG    the site's config.php: the database's type, name, host, port, socket,
#                    user and password for the restore come from it (never shown in ps)
#   DB_TYPE          without MOODLE_CONFIG: pgsql, mariadb, mysqli or auroramysql [pgsql]
#   DB_NAME          without MOODLE_CONFIG: MariaDB/MySQL's database [moodle]; the client
#                    tools' own settings (PG* variables, ~/.pgpass, ~/.my.cnf) say the rest
#   RESTORE_CMD      how to restore instead                        [as PRETEST_DUMP says]
#   PREPARE_CMD      bring the code live: upgrade, purge caches, reload PHP (opcache keeps
#                    old code until php-fpm reloads)   [found per commit from its own files:
#                    Moodle after 5.1.x (public/admin/cli/upgrade.php, caches purged with
#                    public/admin/cli/purge_caches.php or bin/moodle admin:purge-caches), or
#                    up to 5.0 and 5.1.x (admin/cli/upgrade.php, admin/cli/purge_caches.php
#                    at the top, though 5.1.x serves its web code from public/); then
#                    RELOAD_CMD. A commit with neither layout stops the bisect]
#   RELOAD_CMD       e.g. "sudo systemctl reload php8.2-fpm"
#   CLEANUP_CMD      run when the step ends, whatever happened
#   PYTHON           the interpreter with the toolkit's requirements [the toolkit's .venv/bin/python
#                    where make made it, else python3]
#
# The step itself is the toolkit's `python -m moodleload.bisect`: this script finds the
# interpreter and hands it every argument and setting, unchanged.
set -u

case "${1:-}" in
    -h|--help) sed -n '2,/^set -u$/{/^set -u$/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
esac

TOOLKIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$TOOLKIT/.venv/bin/python" ]; then PYTHON=$TOOLKIT/.venv/bin/python; else PYTHON=python3; fi
fi
# An interpreter that cannot start is a fault of the machine: it stops the bisect (128),
# where the shell's own 126 or 127 would mark the commit bad.
shopt -s execfail
PYTHONPATH="$TOOLKIT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m moodleload.bisect "$@"
echo "[bisect-step] PYTHON $PYTHON cannot be run: set PYTHON to the interpreter with the toolkit's requirements" >&2
exit 128
