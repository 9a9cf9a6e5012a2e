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
set -u

# --help prints the header above; anything but the modes it names is a usage mistake, which
# must stop a bisect (128), never be run as a step.
case "${1:-}" in
    -h|--help) sed -n '2,/^set -u$/{/^set -u$/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    ""|--baseline|--confirm|--restore|--measure) ;;
    *) echo "[bisect-step] unknown option '$1': the modes are --baseline, --confirm [COMMIT], --restore," \
            "--measure OUT.json, or none (a step); see --help" >&2
       exit 128 ;;
esac

TOOLKIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$TOOLKIT/.venv/bin/python" ]; then PYTHON=$TOOLKIT/.venv/bin/python; else PYTHON=python3; fi
fi
RESULTS_DIR=${RESULTS_DIR:-$TOOLKIT/bisect}
BASELINE=${BASELINE:-$RESULTS_DIR/baseline.json}
LOAD_CONFIG=${LOAD_CONFIG:-$TOOLKIT/config.json}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

say() { echo "[bisect-step $COMMIT] $*" >&2; }
skip() { say "cannot test this commit: $*"; exit 125; }

cleanup() { if [ -n "${CLEANUP_CMD:-}" ]; then bash -c "$CLEANUP_CMD" || say "cleanup failed"; fi; }
trap cleanup EXIT

mkdir -p "$RESULTS_DIR" || { say "cannot create $RESULTS_DIR"; exit 128; }
BISECT_FOR=${BISECT_FOR:-regression}
case "$BISECT_FOR" in regression|improvement) ;; *) say "BISECT_FOR must be regression or improvement"; exit 128 ;; esac
# Files every step needs, checked before anything runs: a snapshot that is not there would
# otherwise make every commit "cannot test" (125) and the bisect skip its way to nothing.
for setting in PRETEST_DUMP MOODLE_CONFIG; do
    if [ -n "${!setting:-}" ] && [ ! -r "${!setting}" ]; then
        say "$setting ${!setting} is not a readable file: fix the path (relative paths are read from $(pwd))"
        exit 128
    fi
done
new_term=bad old_term=good  # git bisect's terms: refs/bisect/<new_term>, refs/bisect/<old_term>-*
[ "$BISECT_FOR" = improvement ] && new_term=fast old_term=slow

# The snapshot back, with the same settings set_moodle_passwords.py reads (config.php).
restore_snapshot() {
    local family
    if [ -n "${MOODLE_CONFIG:-}" ]; then
        local assignments
        assignments=$(PYTHONPATH="$TOOLKIT" "$PYTHON" -m moodleload.database.moodleconfig --shell "$MOODLE_CONFIG") \
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
        # Extensions (pg_stat_statements for --query-stats) are a superuser's: the Moodle
        # user may neither drop nor create them, so the restore list leaves them out, and
        # what they hold stays as the superuser made it.
        local list
        list=$(mktemp) || return 1
        pg_restore -l "$PRETEST_DUMP" | grep -v -E '^[0-9]+; [0-9]+ [0-9]+ (EXTENSION|COMMENT - EXTENSION) ' \
            > "$list" || { rm -f "$list"; return 1; }
        pg_restore --clean --if-exists --no-owner -L "$list" -d "${PGDATABASE:-moodle}" "$PRETEST_DUMP"
        local status=$?
        rm -f "$list"
        return $status
    fi
    local client
    client=$(command -v mariadb || command -v mysql) || { say "no mariadb or mysql client on PATH"; return 1; }
    if [ -n "${MOODLE_CONFIG:-}" ]; then
        # The password reaches the client through a pipe, as an option file: never in argv.
        "$client" --defaults-extra-file=<(PYTHONPATH="$TOOLKIT" "$PYTHON" -m moodleload.database.moodleconfig --my-cnf \
            "$MOODLE_CONFIG") "$DB_NAME" < "$PRETEST_DUMP"
    else
        "$client" "${DB_NAME:-moodle}" < "$PRETEST_DUMP"
    fi
}

# The same database state and the checked-out code live, before every run.
# A fault of the machine (the snapshot, the database, PHP's reload) is no verdict on the
# commit: it stops the bisect (128) instead of skipping every commit after it.
machine_fault() { say "$*: a fault of the machine, not of this commit; fix it, then run git bisect run again"; exit 128; }

prepare_site() {
    if [ -n "${RESTORE_CMD:-}" ]; then
        bash -c "$RESTORE_CMD" || machine_fault "RESTORE_CMD failed"
    elif [ -n "${PRETEST_DUMP:-}" ]; then
        restore_snapshot || machine_fault "restoring $PRETEST_DUMP failed"
    fi
    if [ -n "${PREPARE_CMD:-}" ]; then
        bash -c "$PREPARE_CMD" || skip "PREPARE_CMD failed"
        return
    fi
    # Moodle 5.1 moved its web code into public/ (config.php stays at the top); 5.1.x kept
    # the CLI scripts at the top (admin/cli/), later trees moved them to public/admin/cli/.
    # A bisect may cross both moves, so each checked-out commit's own files decide.
    local code purge
    if [ -f public/admin/cli/upgrade.php ]; then code=public
    elif [ -f admin/cli/upgrade.php ]; then code=.
    else
        say "neither public/admin/cli/upgrade.php (Moodle after 5.1.x) nor admin/cli/upgrade.php (up to 5.0, and" \
            "5.1.x) is in $(pwd): cannot prepare this commit; run from the Moodle checkout or set PREPARE_CMD"
        exit 128
    fi
    if [ -f "$code/admin/cli/purge_caches.php" ]; then purge=("$code/admin/cli/purge_caches.php")
    elif [ -f bin/moodle ]; then purge=(bin/moodle admin:purge-caches)
    else say "no purge_caches.php in $code/admin/cli and no bin/moodle: set PREPARE_CMD"; exit 128
    fi
    php "$code/admin/cli/upgrade.php" --non-interactive >/dev/null || skip "upgrade failed"
    php "${purge[@]}" >/dev/null || skip "purging the caches failed"
    if [ -n "${RELOAD_CMD:-}" ]; then bash -c "$RELOAD_CMD" || machine_fault "RELOAD_CMD failed"; fi
}

# The same load every time; its output is kept to see why a run could not judge.
args=(--config "$LOAD_CONFIG" --rpm "${LOAD_RPM:-600}" --duration "${LOAD_DURATION:-120}"
      --warmup "${LOAD_WARMUP:-30}" --concurrency "${LOAD_CONCURRENCY:-20}" --seed "${LOAD_SEED:-1}"
      --progress 0 --in-bisect no)  # the step re-runs and sizes its baseline itself
# The Moodle under test named in every result (release, version, commit), in either layout.
if [ -f public/version.php ] || [ -f version.php ]; then args+=(--moodle-dir "$(pwd)"); fi
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

# The tolerance and alpha the load is judged with, for the sizing (read from LOAD_ARGS).
sizing_args=()
# shellcheck disable=SC2206
load_args=(${LOAD_ARGS:-})
for position in "${!load_args[@]}"; do
    case "${load_args[$position]}" in
        --max-regression|--alpha|--judge|--max-failure-rise) sizing_args+=("${load_args[$position]}" "${load_args[$((position + 1))]:-}") ;;
    esac
done
sizing() { PYTHONPATH="$TOOLKIT" "$PYTHON" -m moodleload.judging.sizing "$@" "${sizing_args[@]}"; }
MAX_RUNS=${MAX_RUNS:-6}
MAX_STEP_SECONDS=$(( ${MAX_STEP_MINUTES:-90} * 60 ))

record_baseline() {  # record_baseline NUMBER
    local output="$RESULTS_DIR/baseline-$1.json" status left=""
    [ "$1" -gt 1 ] && cleanup
    if [ "$1" -gt 1 ] && [ "$1" -le "${BASELINE_RUNS:-3}" ]; then
        left=", about $(( (SECONDS - started) / ($1 - 1) * (${BASELINE_RUNS:-3} - $1 + 1) / 60 + 1 )) min left"
    fi
    say "baseline run $1 of ${BASELINE_RUNS:-3}$left"
    prepare_site
    load "$output"
    status=$?
    if [ "$status" -ne 0 ] || [ ! -f "$output" ]; then
        say "baseline run $1 exited $status$([ -f "$output" ] || echo ' and wrote no results'): fix that first"
        rm -f "$output"
        exit $(( status > 127 ? status : 128 ))
    fi
    say "baseline run $1 written to $output"
}

if [ "${1:-}" = "--baseline" ]; then
    rm -f "$RESULTS_DIR"/baseline-*.json
    started=$SECONDS
    recorded=0
    for run in $(seq "${BASELINE_RUNS:-3}"); do record_baseline "$run"; recorded=$run; done
    commits=$(git rev-list --count "refs/bisect/$new_term" --not $(git for-each-ref --format='%(refname)' \
        "refs/bisect/$old_term-*") 2>/dev/null || true)
    # Baseline runs serve every step of the bisect: where their own spread cannot support
    # the tolerance within MAX_RUNS a step, more of them are recorded now.
    while :; do
        per_run=$(( (SECONDS - started) / recorded ))
        assignments=$(sizing baseline --max-runs "$MAX_RUNS" --seconds-per-run "$per_run" \
            ${commits:+--commits "$commits"} "$RESULTS_DIR"/baseline-*.json) || exit 128
        eval "$assignments"  # extra_baseline_runs, runs_per_step
        [ -n "${extra_baseline_runs:-}" ] && [ "$extra_baseline_runs" -gt 0 ] || break
        if [ "$recorded" -ge "${MAX_BASELINE_RUNS:-12}" ]; then
            say "MAX_BASELINE_RUNS ${MAX_BASELINE_RUNS:-12} reached: steps will often answer 125 (skip)"
            break
        fi
        recorded=$(( recorded + 1 ))
        record_baseline "$recorded"
    done
    exit 0
fi

if [ "${1:-}" = "--measure" ]; then
    # One prepared run of the checked-out commit, judged against nothing: what
    # examples/scan-range.sh records for each commit it measures.
    [ -n "${2:-}" ] || { say "--measure needs the results file to write"; exit 128; }
    prepare_site
    load "$2" >/dev/null
    status=$?
    [ -f "$2" ] || { say "the run wrote no results (exit $status)"; exit $(( status > 127 ? status : 128 )); }
    exit "$status"
fi

baselines=()
for file in "$RESULTS_DIR"/baseline-*.json; do [ -f "$file" ] && baselines+=("$file"); done
if [ ${#baselines[@]} -eq 0 ] && [ -f "$BASELINE" ]; then baselines=("$BASELINE"); fi
if [ ${#baselines[@]} -eq 0 ]; then
    say "no baseline in $RESULTS_DIR: run this script with --baseline on the good commit first"
    exit 128
fi

if [ "${1:-}" = "--confirm" ]; then
    # The culprit against its parent, alternately on freshly prepared sites: per-pair
    # ratios cancel slow drift of the machine; the order swaps every pair (A B, B A, ...)
    # so that a steady drift does not favour either side.
    culprit=$(git rev-parse --verify "${2:-refs/bisect/$new_term}^{commit}" 2>/dev/null) \
        || { say "no culprit to confirm: give a commit, or run after git bisect run"; exit 128; }
    parent=$(git rev-parse --verify "$culprit^" 2>/dev/null) || { say "$culprit has no parent"; exit 128; }
    back=$(git symbolic-ref -q --short HEAD || git rev-parse HEAD)
    trap 'cleanup; git checkout -q "$back"' EXIT
    runs=()
    started_runs=0
    for pair in $(seq "${PAIRS:-4}"); do
        order=(parent culprit); [ $(( pair % 2 )) -eq 0 ] && order=(culprit parent)
        for side in "${order[@]}"; do
            commit=$parent; [ "$side" = culprit ] && commit=$culprit
            [ "$started_runs" -gt 0 ] && cleanup  # the last run's site goes before the next is prepared
            started_runs=$(( started_runs + 1 ))
            git checkout -q "$commit" || { say "cannot check out $commit"; exit 128; }
            COMMIT=$(git rev-parse --short HEAD)
            prepare_site
            output="$RESULTS_DIR/confirm-$pair-$side.json"
            load "$output" >/dev/null
            status=$?
            [ -f "$output" ] || { say "the $side run of pair $pair wrote no results (exit $status)"; exit 128; }
        done
        if [ "$BISECT_FOR" = improvement ]; then
            # The same test the other way round: the parent shown slower than the culprit.
            runs+=("$RESULTS_DIR/confirm-$pair-culprit.json" "$RESULTS_DIR/confirm-$pair-parent.json")
        else
            runs+=("$RESULTS_DIR/confirm-$pair-parent.json" "$RESULTS_DIR/confirm-$pair-culprit.json")
        fi
    done
    [ "$BISECT_FOR" = improvement ] && say "an improvement: the parent's runs are judged against the culprit's"
    # shellcheck disable=SC2086
    "$PYTHON" "$TOOLKIT/moodle_load.py" --pairs "${runs[@]}" ${LOAD_ARGS:-}
    exit $?
fi

started=$SECONDS
prepare_site
load "$RESULTS_DIR/$COMMIT.json" --baseline "${baselines[@]}"
status=$?
runs=("$RESULTS_DIR/$COMMIT.json")
# Pinpoint's "need more data", sized from the noise: while the answer is unsure and the
# results say how many more runs would decide, another run, pooled with the earlier ones.
# One baseline run cannot show the run-to-run spread, so its block verdict is never the
# last word: a second run of this commit is always made, and the two show the spread.
first_look_only() { [ ${#baselines[@]} -eq 1 ] && [ ${#runs[@]} -eq 1 ] && [ "$status" -lt 128 ]; }
while { [ "$status" -eq 125 ] || first_look_only; } && [ ${#runs[@]} -lt "$MAX_RUNS" ]; do
    if [ "$status" -eq 125 ]; then
        eval "$(sizing next "${runs[-1]}")"  # more_runs
        [ -n "${more_runs:-}" ] || { say "more runs of this commit would not decide: 125 (skip)"; break; }
    else
        more_runs=1
    fi
    per_run=$(( (SECONDS - started) / ${#runs[@]} ))
    if [ $(( SECONDS - started + per_run )) -gt "$MAX_STEP_SECONDS" ]; then
        say "MAX_STEP_MINUTES ${MAX_STEP_MINUTES:-90} reached: 125 (skip)"
        break
    fi
    say "unsure: about $more_runs more run(s) would decide; run $(( ${#runs[@]} + 1 )) of at most $MAX_RUNS"
    cleanup
    prepare_site
    output="$RESULTS_DIR/$COMMIT-$(( ${#runs[@]} + 1 )).json"
    load "$output" --baseline "${baselines[@]}" --rerun "${runs[@]}"
    status=$?
    runs+=("$output")
done
if [ "$BISECT_FOR" = improvement ] && { [ "$status" -eq 0 ] || [ "$status" -eq 1 ]; }; then
    # Against the fast baseline: shown slower is the old state (0), shown as fast the new (1).
    say "verdict exit $status against the fast baseline: $([ "$status" -eq 1 ] && echo slow, exit 0 || echo fast, exit 1)"
    exit $(( 1 - status ))
fi
say "verdict exit $status"
exit "$status"
