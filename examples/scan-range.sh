#!/usr/bin/env bash
# Scan a commit range before bisecting: every STRIDE-th commit between GOOD and BAD
# measured with bisect-step.sh's own preparation and load, one results file each, then
# the change points of every page (python -m moodleload.changepoints) and, for each step,
# the git bisect that finds its commit.
#
#   cd /path/to/moodle
#   /path/to/toolkit/examples/scan-range.sh GOOD_COMMIT BAD_COMMIT
#
# Settings: everything bisect-step.sh reads (LOAD_CONFIG, PRETEST_DUMP, MOODLE_CONFIG,
# PREPARE_CMD, LOAD_RPM, ...), and
#   STRIDE        measure every STRIDE-th commit of the first-parent history    [5]
#   RESULTS_DIR   where the results go: NNN-<commit>.json in commit order       [$TOOLKIT/scan]
#   SECONDS_PER_RUN  for the cost said before it starts  [LOAD_WARMUP + LOAD_DURATION + 60]
# An interrupted scan started again measures only the commits it has no results for.
# Exit: 0 the scan is complete (steps or none), 128 usage, other: a run failed.
set -u

TOOLKIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$TOOLKIT/.venv/bin/python" ]; then PYTHON=$TOOLKIT/.venv/bin/python; else PYTHON=python3; fi
fi
say() { echo "[scan] $*" >&2; }
[ $# -eq 2 ] || { say "usage: scan-range.sh GOOD_COMMIT BAD_COMMIT"; exit 128; }
good=$(git rev-parse --verify -q "$1^{commit}") || { say "$1 is not a commit here"; exit 128; }
bad=$(git rev-parse --verify -q "$2^{commit}") || { say "$2 is not a commit here"; exit 128; }
git merge-base --is-ancestor "$good" "$bad" || { say "$1 is not an ancestor of $2"; exit 128; }
STRIDE=${STRIDE:-5}
case "$STRIDE" in ''|*[!0-9]*|0) say "STRIDE must be a whole number above 0"; exit 128 ;; esac
export RESULTS_DIR=${RESULTS_DIR:-$TOOLKIT/scan}
mkdir -p "$RESULTS_DIR" || { say "cannot create $RESULTS_DIR"; exit 128; }

mapfile -t range < <(echo "$good"; git rev-list --reverse --first-parent "$good..$bad")
picked=()
for index in "${!range[@]}"; do
    if [ $(( index % STRIDE )) -eq 0 ] || [ "$index" -eq $(( ${#range[@]} - 1 )) ]; then picked+=("$index"); fi
done
if [ ${#picked[@]} -lt 6 ]; then
    say "${#picked[@]} commits to measure: a step needs three on each side; lower STRIDE (now $STRIDE)"
    exit 128
fi
file_of() { printf '%s/%03d-%s.json' "$RESULTS_DIR" "$1" "$(git rev-parse --short "${range[$1]}")"; }
todo=0
for index in "${picked[@]}"; do [ -f "$(file_of "$index")" ] || todo=$(( todo + 1 )); done
per_run=${SECONDS_PER_RUN:-$(( ${LOAD_WARMUP:-30} + ${LOAD_DURATION:-120} + 60 ))}
say "${#range[@]} commits, every $STRIDE-th: ${#picked[@]} to measure, $todo not yet measured, about" \
    "$(( (todo * per_run + 59) / 60 )) minutes ($per_run s a run)"

back=$(git symbolic-ref -q --short HEAD || git rev-parse HEAD)
trap 'git checkout -q "$back"' EXIT
for index in "${picked[@]}"; do
    output=$(file_of "$index")
    [ -f "$output" ] && continue
    git checkout -q "${range[$index]}" || { say "cannot check out ${range[$index]}"; exit 128; }
    say "measuring commit $(( index + 1 )) of ${#range[@]} ($(git rev-parse --short HEAD))"
    "$TOOLKIT/examples/bisect-step.sh" --measure "$output.partial"
    status=$?
    if [ ! -f "$output.partial" ] || [ "$status" -gt 1 ]; then
        rm -f "$output.partial"
        say "the run of $(git rev-parse --short HEAD) ended with exit $status and is not kept: fix that, then" \
            "start the scan again (what is measured stays)"
        exit $(( status > 127 ? status : 1 ))
    fi
    mv "$output.partial" "$output"  # only a whole run counts as measured when the scan resumes
    [ -f "$output.partial.log" ] && mv "$output.partial.log" "$output.log"
done

files=()
for index in "${picked[@]}"; do files+=("$(file_of "$index")"); done
steps=$(PYTHONPATH="$TOOLKIT" "$PYTHON" -m moodleload.changepoints "${files[@]}") || exit 128
echo "$steps"
# For each step, the bisect that names its commit: between the two measured commits around it.
grep -o 'between [^ ]* and [^ ]*' <<<"$steps" | sort -u | while read -r _ before _ after; do
    before_commit=$(basename "$before" .json); before_commit=${before_commit#*-}
    after_commit=$(basename "$after" .json); after_commit=${after_commit#*-}
    echo "bisect this step: git checkout $before_commit && $TOOLKIT/examples/bisect-step.sh --baseline &&" \
         "git bisect start $after_commit $before_commit && git bisect run $TOOLKIT/examples/bisect-step.sh"
done
exit 0
