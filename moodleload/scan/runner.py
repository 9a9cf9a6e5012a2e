"""A scan of a commit range: every k-th commit measured, the change points found, then a
bisect inside each step and the confirmation of the commit it names.

``examples/scan-range.sh GOOD BAD`` (run in the Moodle checkout) calls ``main``.  Each
commit is measured by the bisect step's ``--measure`` (``python -m moodleload.bisect``),
the same preparation and load a bisect step uses, into RESULTS_DIR/NNN-<commit>.json; a
file is written whole or not at all, so a scan started again measures only what it lacks.
The per-commit series of every page (and its DB reads) go to moodleload.scan.changepoints.
Each step found is bisected between the two measured commits around it with the bisect
step, its baseline the runs the scan
already made on the old level (for an improvement: on the new, fast level, with
BISECT_FOR=improvement), and the first commit the bisect names is confirmed against its
parent by interleaved runs (the step's --confirm).  The bisect's tolerance is half the
step (or the configured one, if smaller): the two levels are then equally far from it.
What was found goes to RESULTS_DIR/scan.json and, with matplotlib, RESULTS_DIR/range.html.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from moodleload.bisect.settings import whole_number
from moodleload.console import clock_text, printable
from moodleload.exits import EXIT_USAGE, Stopped, UsageError, exit_for_signal, raise_stopped
from moodleload.files import read_json, write_json_atomically
from moodleload.judging.compare import incomparable
from moodleload.needs import IMPORT_ROOT
from moodleload.scan.changepoints import MIN_SEGMENT, Found, describe, find_all, is_work
from moodleload.scan.plan import (
    CONFIRMATIONS,
    REGRESSION,
    SCAN_FORMAT,
    TERMS,
    Interval,
    StepOutcome,
    baseline_positions,
    bisect_tolerances,
    configured_tolerances,
    first_commit,
    intervals_of,
    outcome_problem,
    picked_positions,
    scan_exit,
    verdict_lines,
)

# ---- the I/O: git, the step script, the files

@dataclass
class Scan:
    toolkit: str
    results_dir: str
    commits: list[str]  # every first-parent commit of the range, oldest first (the good one first)
    picked: list[int]  # positions in ``commits`` measured
    environment: dict[str, str]  # what the step script is run with
    stride: int
    bisect: bool  # False (BISECT=0): measure and name the steps only
    baseline_runs: int
    seconds_per_run: int  # for the cost said first
    pairs: int
    tolerances: tuple[float, float]  # the configured (max regression %, max DB reads increase)

    @property
    def step_script(self) -> str:
        """The step as a user runs it by hand (the commands the scan prints)."""
        return os.path.join(self.toolkit, "examples", "bisect-step.sh")

    @property
    def step_command(self) -> list[str]:
        """The step as the scan runs it: the package's, in this interpreter (``environment``
        puts the toolkit on PYTHONPATH)."""
        return [sys.executable, "-m", "moodleload.bisect"]

    def short(self, index: int) -> str:
        return self.commits[index][:7]

    def file_of(self, position: int) -> str:
        index = self.picked[position]
        return os.path.join(self.results_dir, f"{index:03d}-{self.short(index)}.json")

    def label(self, position: int) -> str:
        return os.path.basename(self.file_of(position))[:-5]


def say(text: str) -> None:
    print(f"[scan] {text}", file=sys.stderr, flush=True)


def git(*args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {result.stderr.strip() or 'failed'}")
    return result.stdout.strip()

if TYPE_CHECKING:
    from moodleload.results.model import Results


CHILD_GRACE = 30.0  # a step's load ends within its own 5 s grace and writes its report; then the rest


def run_child(command: list[str], **options: Any) -> subprocess.CompletedProcess[Any]:
    """A step script (or git bisect run) in a process group of its own: a signal that stops
    the scan is passed to the whole group (the bisect, the step, its load), and the scan
    waits for it to end before it puts the checkout back."""
    process = subprocess.Popen(command, start_new_session=True, **options)
    try:
        out, err = process.communicate()
    except BaseException as stopping:
        stop_group(process, stopping.signum if isinstance(stopping, Stopped) else signal.SIGINT)
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def stop_group(process: subprocess.Popen[Any], signum: int) -> None:
    """``signum`` to the child's group, CHILD_GRACE for all of it to end, then SIGKILL."""
    for sent in (signum, signal.SIGKILL):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            break
        if group_ended(process, CHILD_GRACE):
            break
    process.wait()


def group_ended(process: subprocess.Popen[Any], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        process.poll()  # reaps the child itself, so that its group can empty
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


MEASURE_TRIES = 3  # runs of one commit a scan makes before a run that could not judge stops it


def measure(scan: Scan) -> int | None:
    """Every picked commit without a results file measured; None when all went well, else
    the exit status that stops the scan.  A scan is an overnight job: a run that could not
    judge (the machine was busy, the site hiccuped) is made again, up to MEASURE_TRIES, its
    reason said and its log kept; a usage mistake or a fault (128 and above) stops at once."""
    todo = [position for position in range(len(scan.picked)) if not os.path.exists(scan.file_of(position))]
    reference = one_series(scan, [position for position in range(len(scan.picked)) if position not in todo])
    started = time.monotonic()
    for done, position in enumerate(todo):
        output = scan.file_of(position)
        index = scan.picked[position]
        git("checkout", "-q", scan.commits[index])
        # what is left, from the runs made so far (the configured guess before the first)
        per_run = (time.monotonic() - started) / done if done else getattr(scan, "seconds_per_run", 0)
        left = f", about {clock_text(per_run * (len(todo) - done))} left" if per_run else ""
        for attempt in range(1, MEASURE_TRIES + 1):
            say(f"measuring commit {index + 1} of {len(scan.commits)} ({scan.short(index)}; run {done + 1} of "
                f"{len(todo)}{left})" + (f", try {attempt} of {MEASURE_TRIES}" if attempt > 1 else ""))
            status = measure_once(scan, output, attempt)
            if status is None:
                reference = position if reference is None else reference
                one_series(scan, [reference, position], refused=position)
                break
            if status > 127 or attempt == MEASURE_TRIES:
                say(f"the run of {scan.short(index)} could not be measured (exit {status}"
                    + (f", {attempt} tries" if attempt > 1 else "") + f"): its logs are kept beside "
                    f"{os.path.basename(output)}; fix what they say, then start the scan again (what is "
                    f"measured stays)")
                return status if status > 127 else 1
    return None


def one_series(scan: Scan, positions: list[int], refused: int | None = None) -> int | None:
    """Refuse (UsageError) runs that cannot be one series: another load (LOAD_RPM,
    LOAD_CONFIG, seed, warm-up, blocks changed since a scan began) would show its change as
    a step of every page.  The first of ``positions`` is the reference, returned; a run that
    does not match it and is ``refused`` is set aside (not measured) first."""
    from moodleload.results.model import load_document

    if not positions:
        return None
    first = load_document(scan.file_of(positions[0]))
    for position in positions[1:]:
        reasons = incomparable(first, load_document(scan.file_of(position)))
        if not reasons:
            continue
        where = os.path.basename(scan.file_of(position))
        if position == refused:
            os.replace(scan.file_of(position), scan.file_of(position)[:-5] + ".refused.json")
            where += " (set aside as .refused.json)"
        raise UsageError(f"{where} cannot join the runs of this scan ({'; '.join(reasons)}, against "
                         f"{os.path.basename(scan.file_of(positions[0]))}): put the settings back, or scan with "
                         f"another RESULTS_DIR")
    return positions[0]


def measure_once(scan: Scan, output: str, attempt: int) -> int | None:
    """One --measure run into ``output``: None when it gave a whole results file, else its
    status, with its log kept as OUTPUT.tryN.log and its reason said."""
    partial = output + ".partial"
    try:
        status = run_child([*scan.step_command, "--measure", partial], env=scan.environment).returncode
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)  # a stopped run is not measured; its log stays for the curious
        raise
    if os.path.exists(partial) and status <= 1:
        os.replace(partial, output)  # only a whole run counts as measured when the scan resumes
        if os.path.exists(partial + ".log"):
            os.replace(partial + ".log", output + ".log")
        return None
    if os.path.exists(partial):
        os.unlink(partial)
    kept = f"{output[:-5]}.try{attempt}.log"
    reason = "it wrote no log"
    if os.path.exists(partial + ".log"):
        os.replace(partial + ".log", kept)
        reason = verdict_of(kept) or f"see {os.path.basename(kept)}"
    say(f"try {attempt} ended with exit {status}: {reason}")
    return status


def verdict_of(log: str) -> str | None:
    """The verdict lines at the end of a run's log, as one line (terminal escapes dropped)."""
    with open(log, encoding="utf-8", errors="replace") as handle:
        text = handle.read()[-20000:]
    lines = [line.strip() for line in text.splitlines() if line.startswith("[VERDICT]")]
    shown = " ".join(lines[-4:])
    return printable(shown)[:600] or None


def bisect_environment(scan: Scan, interval: Interval, folder: str, max_regression: float,
                       max_reads: float) -> dict[str, str]:
    load_args = scan.environment.get("LOAD_ARGS", "")
    # A step that only the work showed (the time was too noisy to) is bisected by the work.
    judge = " --judge work" if all(is_work(item.series) for item in interval.found) else ""
    return {**scan.environment, "RESULTS_DIR": folder, "BISECT_FOR": interval.direction,
            "LOAD_ARGS": f"{load_args} --max-regression {max_regression:g} --max-db-reads-increase {max_reads:g}"
                         f"{judge}"}


def prepare_baseline(scan: Scan, interval: Interval, intervals: list[Interval], folder: str,
                     environment: dict[str, str]) -> list[str]:
    """The bisect's baseline in ``folder``: the scan's own runs of the level compared with
    (up to BASELINE_RUNS), and fresh runs of the commit on that side made now, at least one:
    the scan's runs may be hours old, and a baseline whose spread includes the drift since
    then makes the bisect unsure (125) where the machine changed, not wrong.  Returns what
    it is, for the record."""
    for name in os.listdir(folder):
        if name.startswith("baseline-") and name.endswith(".json"):
            os.unlink(os.path.join(folder, name))
    wanted = scan.baseline_runs
    positions = baseline_positions(interval, intervals, len(scan.picked), wanted)
    for number, position in enumerate(positions, 1):
        shutil.copyfile(scan.file_of(position), os.path.join(folder, f"baseline-{number}.json"))
    side = scan.picked[interval.before if interval.direction == REGRESSION else interval.after]
    git("checkout", "-q", scan.commits[side])
    fresh = max(1, wanted - len(positions))
    for number in range(len(positions) + 1, len(positions) + fresh + 1):
        output = os.path.join(folder, f"baseline-{number}.json")
        status = run_child([*scan.step_command, "--measure", output], env=environment).returncode
        if status > 1 or not os.path.exists(output):
            raise UsageError(f"a baseline run of {scan.short(side)} failed (exit {status})")
    return [scan.label(position) for position in positions] + [f"{fresh} new run(s) of {scan.short(side)}"]


def run_bisect(scan: Scan, interval: Interval, folder: str, environment: dict[str, str]) -> str:
    """``git bisect run`` between the interval's two commits; its output, kept in bisect.log."""
    old, new = TERMS[interval.direction]
    terms = [] if interval.direction == REGRESSION else [f"--term-old={old}", f"--term-new={new}"]
    git("bisect", "start", "--first-parent", *terms, scan.commits[scan.picked[interval.after]],
        scan.commits[scan.picked[interval.before]])
    try:
        with open(os.path.join(folder, "bisect.log"), "w", encoding="utf-8") as log:
            run_child(["git", "bisect", "run", *scan.step_command], env=environment, stdout=log, text=True)
    finally:
        git("bisect", "reset", check=False)
    with open(os.path.join(folder, "bisect.log"), encoding="utf-8") as log:
        return log.read()


def bisect_interval(scan: Scan, interval: Interval, intervals: list[Interval], labels: list[str]) -> StepOutcome:
    """Bisect one step and confirm the commit found; the outcome is kept in the step's
    folder, so a scan started again does not bisect it twice."""
    # Named by the commits, not by their positions: a scan resumed with another STRIDE
    # must not take one interval's outcome for another's.
    folder = os.path.join(scan.results_dir,
                          f"step-{labels[interval.before]}-{labels[interval.after]}-{interval.direction}")
    done = os.path.join(folder, "outcome.json")
    if os.path.exists(done):
        kept = read_json(done, "a scan's step outcome")
        problem = outcome_problem(kept)
        if problem:
            raise UsageError(f"{done} is damaged ({problem}): remove the folder {folder} to bisect that step again")
        return StepOutcome.from_dict(kept)
    os.makedirs(folder, exist_ok=True)
    max_regression, max_reads = bisect_tolerances(interval, *scan.tolerances)
    environment = bisect_environment(scan, interval, folder, max_regression, max_reads)
    outcome = StepOutcome((labels[interval.before], labels[interval.after]), interval.direction,
                          tuple(describe(item.series, item.step, labels, item.counter) for item in interval.found),
                          max_regression, max_reads)
    say(f"bisecting the {interval.direction} between {labels[interval.before]} and {labels[interval.after]} "
        f"(tolerance {max_regression:g} %, {max_reads:g} DB reads)")
    try:
        outcome = replace(outcome, baseline=tuple(prepare_baseline(scan, interval, intervals, folder, environment)))
    except UsageError as error:
        return replace(outcome, reasons=(str(error),))  # not kept: a scan started again tries once more
    text = run_bisect(scan, interval, folder, environment)
    commit = first_commit(text, interval.direction)
    if commit is None:
        tail = [line for line in text.splitlines() if line.strip()][-3:]
        outcome = replace(outcome, reasons=("the bisect named no single commit", *tail))
    else:
        subject = git("log", "-1", "--format=%s", commit)
        result = run_child([*scan.step_command, "--confirm", commit], env=environment, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        with open(os.path.join(folder, "confirm.log"), "w", encoding="utf-8") as log:
            log.write(result.stdout + result.stderr)
        outcome = replace(outcome, commit=commit, subject=subject,
                          confirmation=CONFIRMATIONS.get(result.returncode, f"failed (exit {result.returncode})"),
                          reasons=tuple(verdict_lines(result.stdout)[1:] or result.stderr.strip().splitlines()[-2:]))
    write_json_atomically(done, outcome.to_dict())
    return outcome


def outcome_lines(outcome: StepOutcome) -> list[str]:
    word = "slower" if outcome.direction == REGRESSION else "faster"
    head = f"{outcome.direction} between {outcome.interval[0]} and {outcome.interval[1]}"
    if not outcome.commit:
        return [f"{head}: no commit named", *(f"  {reason}" for reason in outcome.reasons)]
    return [f"{head}: first {word} commit {outcome.commit[:12]} \"{outcome.subject}\", "
            f"{outcome.confirmation} against its parent", *(f"  {reason}" for reason in outcome.reasons)]


def bisect_commands(scan: Scan, interval: Interval) -> str:
    before, after = scan.short(scan.picked[interval.before]), scan.short(scan.picked[interval.after])
    step = scan.step_script
    if interval.direction == REGRESSION:
        return (f"bisect this step: git checkout {before} && {step} --baseline && git bisect start {after} {before}"
                f" && git bisect run {step}")
    return (f"bisect this step: git checkout {after} && BISECT_FOR=improvement {step} --baseline && git bisect start"
            f" --term-old=slow --term-new=fast {after} {before} && BISECT_FOR=improvement git bisect run {step}")


def seconds(environment: dict[str, str], name: str, default: float) -> float:
    text = environment.get(name, "") or str(default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{name} must be a number of seconds, not {text!r}")
    return value


def open_scan(good: str, bad: str, environment: dict[str, str]) -> Scan:
    """The scan of GOOD..BAD as the environment sets it, everything checked before a run."""
    toolkit = environment.get("TOOLKIT") or IMPORT_ROOT
    stride = whole_number(environment, "STRIDE", 5)
    bisect = environment.get("BISECT", "1") != "0"
    baseline_runs = whole_number(environment, "BASELINE_RUNS", 3)
    pairs = whole_number(environment, "PAIRS", 4, minimum=2)
    if environment.get("SECONDS_PER_RUN"):
        per_run = whole_number(environment, "SECONDS_PER_RUN", 1)
    else:  # the run, and a minute to prepare the site
        per_run = round(seconds(environment, "LOAD_WARMUP", 30) + seconds(environment, "LOAD_DURATION", 120) + 60)
    configured = configured_tolerances(environment.get("LOAD_ARGS", ""))
    commits = []
    for name in (good, bad):
        commit = git("rev-parse", "--verify", "-q", f"{name}^{{commit}}", check=False)
        if not commit:
            raise UsageError(f"{name} is not a commit here: run in the Moodle checkout")
        commits.append(commit)
    if subprocess.run(["git", "merge-base", "--is-ancestor", *commits]).returncode != 0:
        raise UsageError(f"{good} is not an ancestor of {bad}")
    if bisect and os.path.exists(git("rev-parse", "--git-path", "BISECT_LOG")):
        raise UsageError("a git bisect is in progress here: finish it (git bisect reset) first, or set BISECT=0")
    history = [commits[0], *git("rev-list", "--reverse", "--first-parent", f"{commits[0]}..{commits[1]}").split()]
    picked = picked_positions(len(history), stride)
    if len(picked) < 2 * MIN_SEGMENT:
        raise UsageError(f"{len(picked)} commits to measure: a step needs {MIN_SEGMENT} commits on each side; lower "
                         f"STRIDE (now {stride})")
    results_dir = environment.get("RESULTS_DIR") or os.path.join(toolkit, "scan")
    try:
        os.makedirs(results_dir, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create RESULTS_DIR {results_dir}: {error.strerror}") from None
    import_path = os.pathsep.join(filter(None, (toolkit, environment.get("PYTHONPATH"))))
    return Scan(toolkit, results_dir, history, picked,
                {**environment, "RESULTS_DIR": results_dir, "PYTHONPATH": import_path}, stride, bisect,
                baseline_runs, per_run, pairs, configured)


def cost_line(scan: Scan) -> str:
    stride, per_run = scan.stride, scan.seconds_per_run
    todo = sum(not os.path.exists(scan.file_of(position)) for position in range(len(scan.picked)))
    line = (f"{len(scan.commits)} commits, every {stride}-th: {len(scan.picked)} to measure, {todo} not yet measured, "
            f"about {(todo * per_run + 59) // 60} minutes ({per_run} s a run)")
    if scan.bisect:
        steps = max(1, math.ceil(math.log2(stride)))
        runs = 1 + steps + 2 * scan.pairs  # a fresh baseline run, the bisect's steps, the confirmation's pairs
        line += (f"; then each step found: about {runs} runs ({(runs * per_run + 59) // 60} minutes) to bisect "
                 f"and confirm")
    return line


def write_summary(scan: Scan, found: list[Found], outcomes: list[StepOutcome], labels: list[str]) -> None:
    write_json_atomically(os.path.join(scan.results_dir, "scan.json"), {
        "format": SCAN_FORMAT, "tool": "moodleload.scan.runner", "range": [scan.commits[0], scan.commits[-1]],
        "measured": [{"label": label, "commit": scan.commits[index]} for label, index in zip(labels, scan.picked,
                                                                                           strict=True)],
        "steps": [{"series": item.series, "before": labels[item.step.before], "after": labels[item.step.after],
                   "direction": item.direction, "ratio": None if item.counter else round(item.step.ratio, 4),
                   "change": round(item.step.change, 4), "p_value": float(f"{item.step.p_value:.3g}")}
                  for item in found],
        "bisects": [outcome.to_dict() for outcome in outcomes]})


def write_range_report(scan: Scan, documents: list[Results], found: list[Found], outcomes: list[StepOutcome],
                       labels: list[str]) -> None:
    from moodleload.reports.html import write_report
    from moodleload.scan.report import render_range_report

    path = os.path.join(scan.results_dir, "range.html")
    try:
        write_report(path, render_range_report(documents, labels, found, outcomes,
                                               (scan.short(0), scan.short(len(scan.commits) - 1))))
    except UsageError as error:
        say(f"[WARN] no range report: {error}")
        return
    say(f"range report written to {path}")


def run_scan(scan: Scan) -> int:
    from moodleload.results.model import load_document

    stopped = measure(scan)
    if stopped is not None:
        return stopped
    documents = [load_document(scan.file_of(position)) for position in range(len(scan.picked))]
    labels = [scan.label(position) for position in range(len(scan.picked))]
    found = find_all(documents)
    for item in found:
        print(describe(item.series, item.step, labels, item.counter), flush=True)
    if not found:
        print("no step: every page stayed level across these commits")
    intervals = intervals_of(found)
    outcomes = []
    for interval in intervals:
        if not scan.bisect:
            print(bisect_commands(scan, interval))
            continue
        outcome = bisect_interval(scan, interval, intervals, labels)
        outcomes.append(outcome)
        print("\n".join(outcome_lines(outcome)), flush=True)
    write_summary(scan, found, outcomes, labels)
    write_range_report(scan, documents, found, outcomes, labels)
    return scan_exit(outcomes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0].startswith("-"):
        say("usage: scan-range.sh GOOD_COMMIT BAD_COMMIT (settings through the environment: scan-range.sh --help)")
        return EXIT_USAGE
    try:
        scan = open_scan(argv[0], argv[1], dict(os.environ))
    except UsageError as error:
        say(str(error))
        return EXIT_USAGE
    say(cost_line(scan))
    back = git("symbolic-ref", "-q", "--short", "HEAD", check=False) or git("rev-parse", "HEAD")
    for stopping in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stopping, raise_stopped)
    try:
        return run_scan(scan)
    except UsageError as error:
        say(str(error))
        return EXIT_USAGE
    except (KeyboardInterrupt, Stopped) as stop:
        signum = stop.signum if isinstance(stop, Stopped) else int(signal.SIGINT)
        say(f"{signal.Signals(signum).name}: the step that ran is stopped and the checkout put back on {back}; "
            f"what is measured and bisected stays: start the scan again to go on")
        return exit_for_signal(signum)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the checkout is put back whole
        git("checkout", "-q", back, check=False)


if __name__ == "__main__":
    sys.exit(main())
