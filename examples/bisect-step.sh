#!/usr/bin/env bash
# One step of `git bisect run`: bring the site to the checked-out Moodle commit, load it,
# and exit with moodle_load.py's verdict (0 good, 1 bad, 125 skip; 128+ stops the bisect).
#
#   cd /path/to/moodle                 # the Moodle checkout being bisected
#   git bisect start BAD_COMMIT GOOD_COMMIT
#   git checkout GOOD_COMMIT && /path/to/toolkit/examples/bisect-step.sh --baseline
#   git bisect run /path/to/toolkit/examples/bisect-step.sh
#   /path/to/toolkit/examples/bisect-step.sh --restore   # only put the snapshot back
#
# Everything is set through the environment (defaults in brackets):
#   LOAD_CONFIG      config.json of the load                       [$TOOLKIT/config.json]
#   RESULTS_DIR      where each commit's results go                [$TOOLKIT/bisect]
#   BASELINE_RUNS    runs recorded by --baseline, each on a freshly prepared site: the
#                    verdict judges against their run-to-run spread [3]
#   BASELINE         a single older baseline file, used when RESULTS_DIR has no
#                    baseline-N.json                                [$RESULTS_DIR/baseline.json]
#   MAX_RERUNS       runs added to a step whose answer was unsure, pooled, before it says
#                    125 (skip)                                     [2]
#   LOAD_RPM LOAD_DURATION LOAD_WARMUP LOAD_CONCURRENCY LOAD_SEED  [600 120 30 20 1]
#   LOAD_ARGS        more moodle_load.py flags, e.g. "--max-regression 5 --insecure"
#   PRETEST_DUMP     the snapshot restored before every step: PostgreSQL a pg_dump -Fc file,
#                    MariaDB/MySQL an SQL file from mariadb-dump or mysqldump
#   MOODLE_CONFIG    the site's config.php: the database's type, name, host, port, socket,
#                    user and password for the restore come from it (never shown in ps)
#   DB_TYPE          without MOODLE_CONFIG: pgsql, mariadb, mysqli or auroramysql [pgsql]
#   DB_NAME          without MOODLE_CONFIG: MariaDB/MySQL's database [moodle]; the client
#                    tools' own settings (PG* variables, ~/.pgpass, ~/.my.cnf) say the rest
#   RESTORE_CMD      how to restore instead                        [as PRETEST_DUMP says]
#   PREPARE_CMD      bring the code live: upgrade, purge caches, reload PHP (opcache keeps
#                    old code until php-fpm reloads, FACTS.md)     [upgrade + purge if admin/cli
#                    exists, then RELOAD_CMD]
#   RELOAD_CMD       e.g. "sudo systemctl reload php8.2-fpm"
#   CLEANUP_CMD      run when the step ends, whatever happened
#   PYTHON           the interpreter with the toolkit's requirements [python3]
set -u

TOOLKIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
RESULTS_DIR=${RESULTS_DIR:-$TOOLKIT/bisect}
BASELINE=${BASELINE:-$RESULTS_DIR/baseline.json}
LOAD_CONFIG=${LOAD_CONFIG:-$TOOLKIT/config.json}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

say() { echo "[bisect-step $COMMIT] $*" >&2; }
skip() { say "cannot test this commit: $*"; exit 125; }

cleanup() { if [ -n "${CLEANUP_CMD:-}" ]; then bash -c "$CLEANUP_CMD" || say "cleanup failed"; fi; }
trap cleanup EXIT

mkdir -p "$RESULTS_DIR" || { say "cannot create $RESULTS_DIR"; exit 128; }

# The snapshot back, with the same settings set_moodle_passwords.py reads (config.php).
restore_snapshot() {
    local family
    if [ -n "${MOODLE_CONFIG:-}" ]; then
        local assignments
        assignments=$(PYTHONPATH="$TOOLKIT" "$PYTHON" -m moodleload.moodleconfig --shell "$MOODLE_CONFIG") \
            || return 1
        eval "$assignments"  # DB_FAMILY, DB_NAME and, for PostgreSQL, PG* exports
        family=$DB_FAMILY
    else
        case "${DB_TYPE:-pgsql}" in
            pgsql) family=pgsql ;;
            mariadb|mysqli|auroramysql|mysql) family=mysql ;;
            *) say "DB_TYPE ${DB_TYPE} is not pgsql, mariadb, mysqli or auroramysql"; return 1 ;;
        esac
    fi
    if [ "$family" = pgsql ]; then
        pg_restore --clean --if-exists --no-owner -d "${PGDATABASE:-moodle}" "$PRETEST_DUMP"
        return
    fi
    local client
    client=$(command -v mariadb || command -v mysql) || { say "no mariadb or mysql client on PATH"; return 1; }
    if [ -n "${MOODLE_CONFIG:-}" ]; then
        # The password reaches the client through a pipe, as an option file: never in argv.
        "$client" --defaults-extra-file=<(PYTHONPATH="$TOOLKIT" "$PYTHON" -m moodleload.moodleconfig --my-cnf \
            "$MOODLE_CONFIG") "$DB_NAME" < "$PRETEST_DUMP"
    else
        "$client" "${DB_NAME:-moodle}" < "$PRETEST_DUMP"
    fi
}

# The same database state and the checked-out code live, before every run.
prepare_site() {
    if [ -n "${RESTORE_CMD:-}" ]; then
        bash -c "$RESTORE_CMD" || skip "RESTORE_CMD failed"
    elif [ -n "${PRETEST_DUMP:-}" ]; then
        restore_snapshot || skip "restoring $PRETEST_DUMP failed"
    fi
    if [ -n "${PREPARE_CMD:-}" ]; then
        bash -c "$PREPARE_CMD" || skip "PREPARE_CMD failed"
    elif [ -f admin/cli/upgrade.php ]; then
        php admin/cli/upgrade.php --non-interactive >/dev/null || skip "upgrade failed"
        php admin/cli/purge_caches.php || skip "purge_caches failed"
        if [ -n "${RELOAD_CMD:-}" ]; then bash -c "$RELOAD_CMD" || skip "RELOAD_CMD failed"; fi
    fi
}

# The same load every time; its output is kept to see why a run could not judge.
args=(--config "$LOAD_CONFIG" --rpm "${LOAD_RPM:-600}" --duration "${LOAD_DURATION:-120}"
      --warmup "${LOAD_WARMUP:-30}" --concurrency "${LOAD_CONCURRENCY:-20}" --seed "${LOAD_SEED:-1}"
      --progress 0)
load() {  # load OUTPUT [more moodle_load.py arguments]
    local output=$1; shift
    # shellcheck disable=SC2086
    "$PYTHON" "$TOOLKIT/moodle_load.py" "${args[@]}" --output "$output" "$@" ${LOAD_ARGS:-} \
        | tee "$output.log"
    return "${PIPESTATUS[0]}"
}

if [ "${1:-}" = "--restore" ]; then
    [ -n "${PRETEST_DUMP:-}" ] || { say "set PRETEST_DUMP to the snapshot to restore"; exit 128; }
    restore_snapshot || { say "restoring $PRETEST_DUMP failed"; exit 128; }
    say "restored $PRETEST_DUMP"
    exit 0
fi

if [ "${1:-}" = "--baseline" ]; then
    rm -f "$RESULTS_DIR"/baseline-*.json
    for run in $(seq "${BASELINE_RUNS:-3}"); do
        [ "$run" -gt 1 ] && cleanup
        prepare_site
        load "$RESULTS_DIR/baseline-$run.json"
        status=$?
        say "baseline run $run written to $RESULTS_DIR/baseline-$run.json (exit $status)"
        [ "$status" -eq 0 ] || exit "$status"
    done
    exit 0
fi

baselines=()
for file in "$RESULTS_DIR"/baseline-*.json; do [ -f "$file" ] && baselines+=("$file"); done
if [ ${#baselines[@]} -eq 0 ] && [ -f "$BASELINE" ]; then baselines=("$BASELINE"); fi
if [ ${#baselines[@]} -eq 0 ]; then
    say "no baseline in $RESULTS_DIR: run this script with --baseline on the good commit first"
    exit 128
fi

prepare_site
load "$RESULTS_DIR/$COMMIT.json" --baseline "${baselines[@]}"
status=$?
runs=("$RESULTS_DIR/$COMMIT.json")
# Pinpoint's "need more data", made automatic: an unsure answer gets more runs, pooled.
while [ "$status" -eq 125 ] && grep -q "more runs may decide" "${runs[-1]}.log" \
        && [ ${#runs[@]} -le "${MAX_RERUNS:-2}" ]; do
    say "unsure: one more run of this commit ($(( ${#runs[@]} + 1 )) in all)"
    cleanup
    prepare_site
    output="$RESULTS_DIR/$COMMIT-$(( ${#runs[@]} + 1 )).json"
    load "$output" --baseline "${baselines[@]}" --rerun "${runs[@]}"
    status=$?
    runs+=("$output")
done
say "verdict exit $status"
exit "$status"
