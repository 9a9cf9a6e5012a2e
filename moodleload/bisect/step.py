"""One step of ``git bisect run``: bring the site to the checked-out Moodle commit, load it,
and exit with moodle_load.py's verdict (0 good, 1 bad, 125 skip; 128 and above stop the
bisect).  The modes (``examples/bisect-step.sh --help`` has the whole text):

    python -m moodleload.bisect                 a step: runs pooled until decided
    python -m moodleload.bisect --baseline      the baseline's runs, as many as its spread needs
    python -m moodleload.bisect --confirm [C]   the culprit against its parent, in pairs
    python -m moodleload.bisect --restore       only put the snapshot back
    python -m moodleload.bisect --measure OUT   one prepared run, no verdict (the range scan's)
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from moodleload.bisect.prepare import prepare_site, restore_snapshot, shell
from moodleload.bisect.settings import StepEnd, StepSettings, read_settings, stop
from moodleload.exits import EXIT_CANNOT_JUDGE, EXIT_GOOD, EXIT_USAGE, UsageError
from moodleload.judging.compare import Thresholds
from moodleload.judging.sizing import more_runs_of, plan_for, thresholds_of
from moodleload.judging.work import JUDGE_BOTH, JUDGE_CHOICES
from moodleload.needs import IMPORT_ROOT
from moodleload.results.model import load_document

MODES = ("", "--baseline", "--confirm", "--restore", "--measure")


def git(*arguments: str) -> str | None:
    """What a git command printed, or None where it failed."""
    result = subprocess.run(["git", *arguments], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: 128 + the signal that ended it."""
    return 128 - returncode if returncode < 0 else returncode


class Step:
    """A step's runs, in the checked-out Moodle tree ``cwd``."""

    def __init__(self, settings: StepSettings, cwd: str):
        self.settings = settings
        self.cwd = cwd
        self.commit = git("rev-parse", "--short", "HEAD") or "unknown"
        self.back: str | None = None  # the checkout to return to when the step ends (--confirm)

    def say(self, text: str) -> None:
        print(f"[bisect-step {self.commit}] {text}", file=sys.stderr, flush=True)

    def cleanup(self) -> None:
        if self.settings.cleanup_cmd is not None and not shell(self.settings.cleanup_cmd):
            self.say("cleanup failed")

    def prepare(self) -> None:
        prepare_site(self.settings, self.say, self.cwd)

    def load(self, output: str, *more: str, shown: bool = True) -> int:
        """One run of the same load, written to ``output``; what it prints is kept beside it
        (``output``.log) to see why a run could not judge."""
        settings = self.settings
        moodle_dir = ["--moodle-dir", self.cwd] if any(
            os.path.isfile(os.path.join(self.cwd, where, "version.php")) for where in ("public", ".")) else []
        command = [sys.executable, os.path.join(settings.toolkit, "moodle_load.py"), "--config", settings.load_config,
                   *settings.load, "--progress", "0", "--in-bisect", "no", *moodle_dir, "--output", output, *more,
                   *settings.load_args]  # the step re-runs and sizes its baseline itself: --in-bisect no
        with open(f"{output}.log", "wb") as log, subprocess.Popen(command, stdout=subprocess.PIPE) as child:
            assert child.stdout is not None  # stdout=PIPE
            for line in child.stdout:
                log.write(line)
                if shown:
                    sys.stdout.buffer.write(line)
                    sys.stdout.flush()
            return exit_status(child.wait())

    # ---- the modes

    def restore(self) -> int:
        dump = self.settings.pretest_dump
        if dump is None:
            raise stop("set PRETEST_DUMP to the snapshot to restore")
        if not restore_snapshot(self.settings, dump, self.say):
            raise stop(f"restoring {dump} failed")
        self.say(f"restored {dump}")
        return EXIT_GOOD

    def measure(self, output: str | None) -> int:
        """One prepared run of the checked-out commit, judged against nothing: what the
        range scan records for each commit it measures."""
        if not output:
            raise stop("--measure needs the results file to write")
        self.prepare()
        status = self.load(output, shown=False)
        if not os.path.isfile(output):
            raise StepEnd(max(status, EXIT_USAGE), f"the run wrote no results (exit {status})")
        return status

    def baseline(self) -> int:
        """BASELINE_RUNS runs, each on a freshly prepared site, and more while their own spread
        cannot support the tolerance within MAX_RUNS a step: baseline runs serve every step."""
        settings = self.settings
        for old in glob.glob(os.path.join(settings.results_dir, "baseline-*.json")):
            os.remove(old)
        started = time.monotonic()
        for run in range(1, settings.baseline_runs + 1):
            self.record_baseline(run, started)
        recorded = settings.baseline_runs
        commits = git("rev-list", "--count", f"refs/bisect/{settings.new_term}", "--not",
                      *(git("for-each-ref", "--format=%(refname)", f"refs/bisect/{settings.old_term}-*") or "").split())
        thresholds = self.sizing_thresholds()
        while True:
            per_run = int(time.monotonic() - started) // max(recorded, 1)
            try:
                plan = plan_for([load_document(path) for path in self.baseline_files()], thresholds,
                                settings.max_runs, per_run, int(commits) if commits else None)
            except UsageError as error:
                raise stop(str(error)) from None
            print(f"[bisect] {plan.line}", file=sys.stderr, flush=True)
            if not plan.extra_baseline_runs:
                return EXIT_GOOD
            if recorded >= settings.max_baseline_runs:
                self.say(f"MAX_BASELINE_RUNS {settings.max_baseline_runs} reached: steps will often answer 125 "
                         f"(skip)")
                return EXIT_GOOD
            recorded += 1
            self.record_baseline(recorded, started)

    def record_baseline(self, number: int, started: float) -> None:
        planned = self.settings.baseline_runs
        output = os.path.join(self.settings.results_dir, f"baseline-{number}.json")
        if number > 1:
            self.cleanup()
        left = ""
        if 1 < number <= planned:
            minutes = int(time.monotonic() - started) // (number - 1) * (planned - number + 1) // 60 + 1
            left = f", about {minutes} min left"
        self.say(f"baseline run {number} of {planned}{left}")
        self.prepare()
        status = self.load(output)
        if status != 0 or not os.path.isfile(output):
            written = "" if os.path.isfile(output) else " and wrote no results"
            if os.path.exists(output):
                os.remove(output)
            raise StepEnd(status if status > 127 else EXIT_USAGE,
                          f"baseline run {number} exited {status}{written}: fix that first")
        self.say(f"baseline run {number} written to {output}")

    def sizing_thresholds(self) -> Thresholds:
        """The tolerance, alpha, judge and failure margin the load is judged with (LOAD_ARGS)."""
        flags = self.settings.sizing_flags
        judge = flags.get("--judge", JUDGE_BOTH)
        if judge not in JUDGE_CHOICES:
            raise stop(f"LOAD_ARGS --judge {judge!r} is not one of {', '.join(JUDGE_CHOICES)}")
        try:
            return thresholds_of(float(flags.get("--max-regression", 10.0)), float(flags.get("--alpha", 0.05)), judge,
                                 float(flags.get("--max-failure-rise", 2.0)))
        except ValueError:
            raise stop("LOAD_ARGS gives --max-regression, --alpha or --max-failure-rise a value that is not a "
                       "number") from None

    def baseline_files(self) -> list[str]:
        files = [path for path in sorted(glob.glob(os.path.join(self.settings.results_dir, "baseline-*.json")))
                 if os.path.isfile(path)]
        if not files and os.path.isfile(self.settings.baseline):
            files = [self.settings.baseline]
        return files

    def judged_against(self) -> list[str]:
        """The baseline runs a step or a confirmation needs, or StepEnd(128) saying how to make them."""
        files = self.baseline_files()
        if not files:
            raise stop(f"no baseline in {self.settings.results_dir}: run this script with --baseline on the good "
                       f"commit first")
        return files

    def confirm(self, given: str | None) -> int:
        """The culprit against its parent, alternately on freshly prepared sites: per-pair
        ratios cancel slow drift of the machine; the order swaps every pair (A B, B A, ...) so
        that a steady drift does not favour either side."""
        settings = self.settings
        culprit = git("rev-parse", "--verify", f"{given or f'refs/bisect/{settings.new_term}'}^{{commit}}")
        if culprit is None:
            raise stop("no culprit to confirm: give a commit, or run after git bisect run")
        parent = git("rev-parse", "--verify", f"{culprit}^")
        if parent is None:
            raise stop(f"{culprit} has no parent")
        self.back = git("symbolic-ref", "-q", "--short", "HEAD") or git("rev-parse", "HEAD")
        runs: list[str] = []
        started_runs = 0
        for pair in range(1, settings.pairs + 1):
            for side in ("parent", "culprit") if pair % 2 else ("culprit", "parent"):
                if started_runs > 0:
                    self.cleanup()  # the last run's site goes before the next is prepared
                started_runs += 1
                commit = culprit if side == "culprit" else parent
                if subprocess.run(["git", "checkout", "-q", commit]).returncode != 0:
                    raise stop(f"cannot check out {commit}")
                self.commit = git("rev-parse", "--short", "HEAD") or commit[:7]
                self.prepare()
                output = os.path.join(settings.results_dir, f"confirm-{pair}-{side}.json")
                status = self.load(output, shown=False)
                if not os.path.isfile(output):
                    raise stop(f"the {side} run of pair {pair} wrote no results (exit {status})")
            order = ("culprit", "parent") if settings.bisect_for == "improvement" else ("parent", "culprit")
            runs += [os.path.join(settings.results_dir, f"confirm-{pair}-{side}.json") for side in order]
        if settings.bisect_for == "improvement":
            # The same test the other way round: the parent shown slower than the culprit.
            self.say("an improvement: the parent's runs are judged against the culprit's")
        command = [sys.executable, os.path.join(settings.toolkit, "moodle_load.py"), "--pairs", *runs,
                   *settings.load_args]
        return exit_status(subprocess.run(command).returncode)

    def step(self) -> int:
        """A run of the checked-out commit against the baseline; while the answer is unsure
        and the results say how many more runs would decide (Pinpoint's "need more data",
        sized from the noise), another run, pooled with the earlier ones.  One baseline run
        cannot show the run-to-run spread, so its block verdict is never the last word: a
        second run of this commit is always made, and the two show the spread."""
        settings = self.settings
        baselines = self.judged_against()
        started = time.monotonic()
        self.prepare()
        first = os.path.join(settings.results_dir, f"{self.commit}.json")
        status = self.load(first, "--baseline", *baselines)
        runs = [first]
        while (status == EXIT_CANNOT_JUDGE or (len(baselines) == 1 and len(runs) == 1 and status < 128)) \
                and len(runs) < settings.max_runs:
            if status == EXIT_CANNOT_JUDGE:
                more = self.more_runs(runs[-1])
                if more is None:
                    self.say("more runs of this commit would not decide: 125 (skip)")
                    break
            else:
                more = 1
            elapsed = int(time.monotonic() - started)
            if elapsed + elapsed // len(runs) > settings.max_step_seconds:
                self.say(f"MAX_STEP_MINUTES {settings.max_step_seconds // 60} reached: 125 (skip)")
                break
            self.say(f"unsure: about {more} more run(s) would decide; run {len(runs) + 1} of at most "
                     f"{settings.max_runs}")
            self.cleanup()
            self.prepare()
            output = os.path.join(settings.results_dir, f"{self.commit}-{len(runs) + 1}.json")
            status = self.load(output, "--baseline", *baselines, "--rerun", *runs)
            runs.append(output)
        if settings.bisect_for == "improvement" and status in (0, 1):
            # Against the fast baseline: shown slower is the old state (0), shown as fast the new (1).
            self.say(f"verdict exit {status} against the fast baseline: "
                     f"{'slow, exit 0' if status == 1 else 'fast, exit 1'}")
            return 1 - status
        self.say(f"verdict exit {status}")
        return status

    def more_runs(self, results: str) -> int | None:
        """How many more runs the last run's comparison says would decide (None: none would)."""
        try:
            more, undecided = more_runs_of(load_document(results))
        except UsageError as error:
            print(f"[ERROR] {error}", file=sys.stderr)
            return None
        if undecided:
            print(f"[bisect] {undecided}", file=sys.stderr, flush=True)
        return more


def stopped_by(signum: int, frame: FrameType | None) -> None:
    """A stopping signal (the scan passes them to the step's process group): the step ends
    as a shell would, after its cleanup."""
    raise StepEnd(128 + signum)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    mode = arguments[0] if arguments else ""
    if mode in ("-h", "--help"):
        print(__doc__)
        return EXIT_GOOD
    if mode not in MODES:
        print(f"[bisect-step] unknown option '{mode}': the modes are --baseline, --confirm [COMMIT], --restore, "
              f"--measure OUT.json, or none (a step); see --help", file=sys.stderr)
        return EXIT_USAGE
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, stopped_by)
    cwd = os.getcwd()
    cleanup_cmd = os.environ.get("CLEANUP_CMD") or None
    step: Step | None = None
    try:
        settings = read_settings(os.environ, IMPORT_ROOT, cwd)
        step = Step(settings, cwd)
        try:
            os.makedirs(settings.results_dir, exist_ok=True)
        except OSError:
            raise stop(f"cannot create {settings.results_dir}") from None
        if mode == "--restore":
            return step.restore()
        if mode == "--baseline":
            return step.baseline()
        if mode == "--measure":
            return step.measure(arguments[1] if len(arguments) > 1 else None)
        if mode == "--confirm":
            step.judged_against()
            return step.confirm(arguments[1] if len(arguments) > 1 else None)
        return step.step()
    except StepEnd as end:
        if end.message:
            if step is not None:
                step.say(end.message)
            else:
                print(f"[bisect-step {git('rev-parse', '--short', 'HEAD') or 'unknown'}] {end.message}",
                      file=sys.stderr)
        return end.status
    finally:
        if step is not None:
            step.cleanup()
            if step.back is not None:
                subprocess.run(["git", "checkout", "-q", step.back])
        elif cleanup_cmd is not None and not shell(cleanup_cmd):
            print("[bisect-step] cleanup failed", file=sys.stderr)
