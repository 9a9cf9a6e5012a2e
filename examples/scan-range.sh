#!/usr/bin/env bash
# Scan a commit range: every STRIDE-th commit between GOOD and BAD measured with
# bisect-step.sh's own preparation and load (one results file each), the change points of
# every page and of its DB reads found, then for each step a git bisect between the two
# measured commits around it (its baseline: the scan's runs on the old level; for an
# improvement the new one, BISECT_FOR=improvement) and the commit it names confirmed
# against its parent by interleaved runs (bisect-step.sh --confirm).
#
#   cd /path/to/moodle
#   /path/to/toolkit/examples/scan-range.sh GOOD_COMMIT BAD_COMMIT
#
# Settings: everything bisect-step.sh reads (LOAD_CONFIG, PRETEST_DUMP, MOODLE_CONFIG,
# PREPARE_CMD, LOAD_RPM, LOAD_ARGS, MAX_RUNS, PAIRS, ...), and
#   STRIDE        measure every STRIDE-th commit of the first-parent history    [5]
#   RESULTS_DIR   NNN-<commit>.json per measured commit in commit order, step-*/ per
#                 bisect, scan.json (what was found) and range.html       [$TOOLKIT/scan]
#   BISECT        0: only measure and name the steps, print each bisect's commands [1]
#   BASELINE_RUNS runs of the old level a bisect's baseline takes from the scan (fresh
#                 runs where the scan has fewer than two between two steps)  [3]
#   SECONDS_PER_RUN  for the cost said before it starts  [LOAD_WARMUP + LOAD_DURATION + 60]
# An interrupted scan started again measures only the commits it has no results for and
# bisects only the steps it has no outcome for.
# Exit: 0 every step's commit named and confirmed (or no step), 1 a step's commit not
# named or not confirmed (the output and range.html say why), 128 usage, other: a run failed.
set -u

case "${1:-}" in
    -h|--help) sed -n '2,/^set -u$/{/^set -u$/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
esac

TOOLKIT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$TOOLKIT/.venv/bin/python" ]; then PYTHON=$TOOLKIT/.venv/bin/python; else PYTHON=python3; fi
fi
export TOOLKIT PYTHON
PYTHONPATH="$TOOLKIT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m moodleload.scan.runner "$@"
