"""moodle_load.py's command line: parse and check everything, run the mode asked for, say
the verdict, return its exit status.  Every mode ends in ``conclude``."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from moodleload import __version__
from moodleload.config import Config, load_config
from moodleload.console import Printer, silence_closed_stdout
from moodleload.database.connection import connection_settings
from moodleload.database.families import database_for
from moodleload.database.family import DatabaseError
from moodleload.exits import (
    EXIT_FAULT,
    EXIT_SIGINT,
    EXIT_USAGE,
    STOPPING_SIGNALS,
    UsageError,
    exit_for_signal,
)
from moodleload.files import check_output_path, write_atomically
from moodleload.judging.baseline import judge_against
from moodleload.judging.pairs import confirm
from moodleload.judging.verdict import (
    RunFacts,
    Verdict,
    VerdictWord,
    baseline_limit,
    delivery_problems,
    incomplete_run,
    judge_run,
    refused_passwords,
)
from moodleload.load.document import build_document
from moodleload.load.machine import ensure_open_files
from moodleload.load.metrics import Scraper, argv_shown, check_metrics_urls, host_lines, saturation_notes
from moodleload.load.processes import run_processes
from moodleload.load.scheduler import LoadRun, RunSettings
from moodleload.load.statements import Watcher
from moodleload.options import Command, build_parser, check_load_options, check_numbers, run_settings
from moodleload.reports.charts import load_pyplot
from moodleload.reports.exporters import Exported
from moodleload.reports.text import format_comparison, format_report, format_trust, rate_hints
from moodleload.reports.views import trust_signals
from moodleload.results.comparison import Comparison
from moodleload.results.model import Results, check_distinct, load_document, save_document
from moodleload.results.statements import hidden_warning
from moodleload.site.moodletree import MoodleUnderTest, bisect_in_progress, describe
from moodleload.steps.kinds import STEP_KINDS

Say = Callable[[str], object]  # where a line goes: the Printer, or print


def main(argv: list[str] | None = None) -> int:
    """Every way out is an exit status git bisect can trust: a verdict (0, 1, 125), a usage
    mistake (128), an interruption (129, 130, 143), or a fault of the tool itself (200),
    which stops the bisect instead of marking the commit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    measured = Measured()  # what a load run measured, saved by the last-resort guard
    try:
        args = parser.parse_args(argv)
        check_numbers(args)
        say = Printer(quiet=args.quiet)
        command = Command.read(parser, args)  # the options, typed once: nothing below reads args
        check_outputs(command)
        if any(exporter.option == "--report" for exporter, _ in command.exports):
            load_pyplot()  # say now, before any load, when matplotlib is missing
        if command.pairs:
            status = run_pairs(command, say)
        elif command.compare:
            status = run_compare(command, say)
        elif command.merge:
            status = run_merge(command, say)
        elif command.results:
            status = run_saved_report(command, say)
        else:
            check_load_options(args)
            status = run_load(command, run_settings(args, command.start_at, say.live), argv, say, measured)
        sys.stdout.flush()  # here, where a closed pipe is still caught below
        return status
    except UsageError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (| head): one line where it can still be read, and no
        # second failure when Python flushes standard output at exit.
        silence_closed_stdout()
        print("[ERROR] standard output was closed before the end (| head?): run again without it, or "
              "with --quiet", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside a load (a --compare, a --report): one line, no traceback
        where = saved_somewhere(measured)
        print("[ERROR] interrupted (SIGINT) before the end: nothing was half-written"
              + (f"; what was measured is in {where}" if where else ""), file=sys.stderr)
        return EXIT_SIGINT
    except Exception as error:  # noqa: BLE001  the last resort: a fault of the tool is never a verdict
        where = saved_somewhere(measured)
        print(f"[ERROR] moodle_load.py failed ({type(error).__name__}: {error}); this is a fault of the tool, "
              f"not of the commit: exit {EXIT_FAULT} stops a bisect"
              + (f"; what was measured is in {where}" if where else ""), file=sys.stderr)
        return EXIT_FAULT


def check_outputs(command: Command) -> None:
    """Every file this run will write can be written, and none is one of its inputs."""
    inputs = {"--config": command.config} if command.config else {}
    for option, paths in (("--baseline", command.baseline), ("--rerun", command.rerun),
                          ("--compare", command.compare), ("--merge", command.merge)):
        for position, path in enumerate(paths):
            inputs[f"{option} file {position + 1}"] = path
    if command.results:
        inputs["RESULTS"] = command.results
    if command.output:
        check_output_path(command.output, "--output", inputs)
    written = {"--output": command.output} if command.output else {}
    for exporter, path in command.exports:
        check_output_path(path, exporter.option, {**inputs, **written})
        written[exporter.option] = path


@dataclass
class Measured:
    """What a load measured, for the last-resort guard: its results once built, and where
    they were saved (None: not yet)."""

    document: Results | None = None
    saved_to: str | None = None


def saved_somewhere(measured: Measured) -> str | None:
    """Where a load's results are: where they were saved already, else a fallback file
    written now; None without a load or where nothing could be written.  One run leaves
    one file, however many ways out it takes."""
    if measured.saved_to is None and measured.document is not None:
        measured.saved_to = save_fallback(measured.document)
    return measured.saved_to


def save_results(path: str, document: Results, say: Say, measured: Measured | None = None) -> Verdict | None:
    """Save the results; if that fails (disk full, folder gone), save them elsewhere and
    return the verdict that says the run could not be recorded where asked.  ``measured``
    learns where they went."""
    measured = Measured() if measured is None else measured
    try:
        save_document(path, document)
        measured.saved_to = path
        return None
    except OSError as error:
        where = measured.saved_to = save_fallback(document)
        saved = f"they were saved to {where} instead" if where else "and could not be saved anywhere"
        say(f"[ERROR] cannot write the results to {path} ({error.strerror or error}): {saved}")
        return Verdict(EXIT_FAULT, VerdictWord.NOT_RECORDED,
                       (f"the results could not be written to {path}: {saved}",))


def save_fallback(document: Results) -> str | None:
    """Where the results went when they could not go where asked, or None."""
    for folder in (os.getcwd(), tempfile.gettempdir()):
        path = os.path.join(folder, f"moodle-load-results-{os.getpid()}-{int(time.time())}.json")
        try:
            save_document(path, document)
            return path
        except OSError:
            continue
    return None


def open_query_stats(command: Command, say: Say) -> Watcher | None:
    """--query-stats: the database's statement statistics, read once before any load.  Wrong
    settings are the user's to fix (exit 128); statistics that are off get one line and the
    run goes on without them."""
    flags = command.database
    if not flags.moodle_config and command.moodle_dir and not (flags.db_name or flags.db_host or flags.db_socket):
        candidate = os.path.join(command.moodle_dir, "config.php")
        if os.path.isfile(candidate):
            flags = replace(flags, moodle_config=candidate)
    site = connection_settings(flags)
    watcher = Watcher(database_for(site.family, site.settings, "moodle_load"))
    try:
        line = watcher.open()
    except DatabaseError as error:
        raise UsageError(f"--query-stats: {error}") from None
    if line:
        say(f"[WARN] {line}")
        return None
    return watcher


def undelivered(document: Results, others: dict[str, Results]) -> list[str]:
    """What makes these runs unable to speak for the commit by their own trust signals: this
    run's (delivery_problems), then each other run's (``others``: label -> Results), named."""
    problems = []
    for label, run in {"": document, **others}.items():
        signals = trust_signals(run)
        problems += [f"{label}: {line}" if label else line
                     for line in delivery_problems(run.generator, run.metadata, signals.bottleneck, signals.saturated)]
    return problems


def labelled(option: str, paths: Sequence[str], documents: Sequence[Results]) -> dict[str, Results]:
    """label -> document of the files of one option, each named by its place and path."""
    if len(paths) == 1:
        return {f"{option} {paths[0]}": documents[0]}
    return {f"{option} file {place} ({path})": document
            for place, (path, document) in enumerate(zip(paths, documents, strict=True), 1)}


def run_compare(command: Command, say: Say) -> int:
    if len(command.compare) < 2:
        raise UsageError("--compare needs BASE ... NEW: at least two results files")
    bases = [load_document(path) for path in command.compare[:-1]]
    new = load_document(command.compare[-1])
    reruns = [load_document(path) for path in command.rerun]
    check_distinct({**labelled("--compare", command.compare, [*bases, new]),
                    **labelled("--rerun", command.rerun, reruns)})
    comparison = judge_against(bases, [new, *reruns], command.thresholds, say)
    base = bases[0]
    say(format_comparison(comparison))
    others = {**labelled("--compare", command.compare[:-1], bases), **labelled("--rerun", command.rerun, reruns)}
    # --output: NEW again, with this comparison in it (results as data, judged as asked now)
    not_recorded = None
    if command.output:
        new.comparison = comparison
        not_recorded = save_results(command.output, new, say)
        if not_recorded is None:
            say(f"[INFO] {command.compare[-1]} with this comparison written to {command.output}")
    verdict = judge_run(RunFacts(new.summary, command.gates, comparison, new.logins,
                                 undelivered=tuple(undelivered(new, others)), not_recorded=not_recorded,
                                 stopped_early=new.metadata.interrupted))
    return conclude(command, say, new, verdict, baseline=base, comparison=comparison)


def run_pairs(command: Command, say: Say) -> int:
    """--pairs PARENT CULPRIT ...: confirm (0), clear (1) or cannot tell (125) a culprit."""
    asked = [exporter.option for exporter, _ in command.exports]
    if asked:
        raise UsageError(f"--pairs writes no {', '.join(asked)}: a confirmation is its verdict lines; report one "
                         f"run with --report HTML RESULTS, or a pair with --compare PARENT CULPRIT")
    documents = [load_document(path) for path in command.pairs]
    if len(documents) % 2:
        raise UsageError("--pairs needs PARENT CULPRIT PARENT CULPRIT ...: an even number of results files")
    check_distinct(labelled("--pairs", command.pairs, documents))
    parents, culprits = documents[0::2], documents[1::2]
    confirmation, _ = confirm(parents, culprits, command.thresholds)
    verdict = judge_run(RunFacts(None, command.gates, confirmation=confirmation))
    announce(print, verdict)
    return verdict.status


def run_saved_report(command: Command, say: Say) -> int:
    """--report HTML RESULTS (or another export): the report of a saved run, no load."""
    if not command.exports:
        raise UsageError(f"a results file ({command.results}) is only read with --report, --export-csv, "
                         f"--export-junit or --compare")
    assert command.results is not None  # the mode of a saved run (main)
    document = load_document(command.results)
    comparison = document.comparison
    verdict = judge_run(RunFacts(document.summary, command.gates, comparison, document.logins,
                                 undelivered=tuple(undelivered(document, {})),
                                 stopped_early=document.metadata.interrupted))
    return conclude(command, say, document, verdict, comparison=comparison)


def run_merge(command: Command, say: Say) -> int:
    if not command.output:
        raise UsageError("--merge needs --output for the merged results")
    merged = Results.merge([load_document(path) for path in command.merge])
    not_recorded = save_results(command.output, merged, say)
    say(format_report(merged))
    if not_recorded is None:
        say(f"[INFO] merged {len(command.merge)} results into {command.output}")
    # The merged run is judged as the --processes parent judges its shards' merge; one file
    # of a run of several is not the run either.
    missing = incomplete_run(merged.metadata.shards) if len(merged.metadata.shards) == 1 else None
    verdict = judge_run(RunFacts(merged.summary, command.gates, logins=merged.logins,
                                 undelivered=(*undelivered(merged, {}), *([missing] if missing else [])),
                                 not_recorded=not_recorded,
                                 stopped_early=merged.metadata.interrupted))
    return conclude(command, say, merged, verdict)


def run_load(command: Command, settings: RunSettings, argv: list[str], say: Printer, measured: Measured) -> int:
    """A load: everything checked, the load made (in this process or in --processes shards),
    then reported and judged."""
    assert command.config is not None  # required for a load (check_load_options)
    config, digest = load_config(command.config, STEP_KINDS)
    if command.processes > len(config.users):
        raise UsageError(f"--processes {command.processes} is more than the {len(config.users)} users in "
                         f"{command.config}: each process needs users of its own")
    for warning in config.warnings:
        say(f"[WARN] {warning}")
    moodle = describe(command.moodle_dir) if command.moodle_dir else None  # checked before the first login
    ensure_open_files(min(settings.concurrency, len(config.users)))
    bases = [load_document(path) for path in command.baseline]
    reruns = [load_document(path) for path in command.rerun]
    if reruns and not bases:
        raise UsageError("--rerun needs --baseline: earlier runs of this commit are judged against a baseline")
    check_distinct({**labelled("--baseline", command.baseline, bases),
                    **labelled("--rerun", command.rerun, reruns)})
    shard = settings.shard
    say(f"[INFO] moodle_load.py {__version__}: {config.base_url}, {settings.rpm:g} RPM for "
        f"{settings.duration:g} s (+{settings.warmup:g} s warm-up), seed {settings.seed}"
        + (f", shard {shard[0]}/{shard[1]}" if shard[1] > 1 else ""))
    judge = None if command.shard_process else print  # a --processes child: the parent judges
    # The statistics are the whole database's: one shard reads them for all (the parent only checks them).
    watcher = open_query_stats(command, say) \
        if command.query_stats and (command.processes > 1 or shard[0] == 1) else None
    if command.metrics:
        check_metrics_urls(command.metrics)
    if command.processes > 1:
        if watcher is not None:
            watcher.close()
        document, interrupted, dead_shards, early = run_in_processes(command, say, moodle)
    else:
        document, interrupted, early = run_in_process(command, config, settings, watcher, moodle, argv, digest,
                                                      say, measured)
        dead_shards = []
    if early is not None:  # nobody logged in, or no process saved results
        early = refused_passwords(early, document.logins if document is not None else None,
                                  any(base.logins.ok for base in bases) if bases else None)
        if document is None:
            announce(judge, early)
            return early.status
        return conclude(command, say, document, early, judge=judge)
    assert document is not None  # only an early verdict comes without results
    measured.document = document
    comparison = None
    if bases:
        comparison = document.comparison = judge_against(bases, [document, *reruns], command.thresholds, say)
    not_recorded = save_results(command.output, document, say, measured) if command.output else None
    say_report(say, document, comparison)
    if command.output and not_recorded is None:
        say(f"[INFO] results written to {command.output}")
    others = {**labelled("--baseline", command.baseline, bases), **labelled("--rerun", command.rerun, reruns)}
    verdict = judge_run(RunFacts(document.summary, command.gates, comparison, document.logins,
                                 undelivered=tuple(undelivered(document, others)), not_recorded=not_recorded,
                                 dead_shards=tuple(dead_shards), interrupted=interrupted))
    return conclude(command, say, document, verdict, baseline=bases[0] if bases else None, comparison=comparison,
                    judge=judge)


def run_in_processes(command: Command, say: Say,
                     moodle: MoodleUnderTest | None) -> tuple[Results | None, int | None, list[str],
                                                                      Verdict | None]:
    """--processes N: (merged results with the Moodle under test, the status of a stopping
    signal, the shards that died, the verdict when no results came: a child's mistake or
    fault, or nothing saved)."""
    document, child_failed, interrupted, dead_shards = run_processes(command.processes, list(command.child_argv))
    for line in dead_shards:
        say(f"[ERROR] {line}")
    if document is not None:
        return document.with_moodle(moodle) if moodle is not None else document, interrupted, dead_shards, None
    return None, interrupted, dead_shards, judge_run(RunFacts(None, command.gates, child_failed=child_failed,
                                                              dead_shards=tuple(dead_shards),
                                                              interrupted=interrupted))


def run_in_process(command: Command, config: Config, settings: RunSettings, watcher: Watcher | None,
                   moodle: MoodleUnderTest | None, argv: list[str], digest: str, say: Printer,
                   measured: Measured) -> tuple[Results, int | None, Verdict | None]:
    """The load in this process: (results, the status of a stopping signal, the verdict when
    nobody could log in).  A fault of the tool is raised after what was measured is kept."""
    run = LoadRun(config, settings, say)
    run.window_watch = watcher
    if command.metrics and settings.shard[0] == 1:
        run.metrics_scraper = Scraper(command.metrics)
    try:
        interrupted = run_with_signals(run)
    finally:
        if watcher is not None:
            watcher.close()
    if watcher is not None and watcher.problem:
        say(f"[WARN] {watcher.problem}")
    hidden = hidden_warning(watcher.result, watcher.database.settings.user) if watcher is not None else None
    if hidden:
        say(f"[WARN] {hidden}")
    document = measured.document = build_document(run, argv_shown(argv), digest)
    if moodle is not None:
        document = measured.document = document.with_moodle(moodle)
    if run.fault is not None:
        raise run.fault
    if run.logins_ok:
        return document, interrupted, None
    not_recorded = save_results(command.output, document, say, measured) if command.output else None
    reasons = ", ".join(f"{k} {v}" for k, v in run.login_failures.items()) or "interrupted"
    print(f"[ERROR] No user could log in ({reasons}): check base_url, the users' passwords "
          f"(set_moodle_passwords.py) and that the site is up", file=sys.stderr)
    return document, interrupted, judge_run(RunFacts(document.summary, command.gates,
                                                     logins=document.logins, logged_in=0,
                                                     not_recorded=not_recorded, interrupted=interrupted))


def say_report(say: Say, document: Results, comparison: Comparison | None) -> None:
    """The text report of a run: the tables, its trust signals, the servers beside it, and
    the comparison."""
    say(format_report(document))
    for line in format_trust(trust_signals(document)):
        say(line)
    for line in host_lines(document.metrics):
        say(line)
    for note in saturation_notes(document.metrics):
        say(f"[WARN] {note}")
    for hint in rate_hints(document):
        say(hint)
    if comparison is not None:
        say(format_comparison(comparison))


def run_with_signals(run: LoadRun) -> int | None:
    """Run the load; SIGINT/SIGTERM stop the schedule and the report still comes."""

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        for signum in STOPPING_SIGNALS:
            try:
                loop.add_signal_handler(signum, run.stop, signum)
            except (NotImplementedError, RuntimeError):
                pass
        await run.run()

    try:
        import uvloop  # optional: a faster event loop where installed
    except ImportError:
        asyncio.run(runner())
    else:
        uvloop.run(runner())
    return None if run.interrupted_by is None else exit_for_signal(run.interrupted_by)


def conclude(command: Command, say: Say, document: Results, verdict: Verdict, *,
             baseline: Results | None = None, comparison: Comparison | None = None,
             judge: Say | None = print) -> int:
    """How every mode ends: the exports asked for (HTML report, CSV, JUnit), then the verdict
    and its status; inside a git bisect, a 125 that every step would repeat stops it."""
    if in_bisect(command):
        verdict = baseline_limit(verdict, comparison)
    exported = Exported(document, verdict, baseline, comparison)
    for exporter, path in command.exports:
        write_atomically(path, exporter.render(exported))
        say(f"[INFO] {exporter.what} written to {path}")
    announce(judge, verdict)
    return verdict.status


def in_bisect(command: Command) -> bool:
    """--in-bisect, or (auto) a git bisect in progress in the repository of the current folder,
    which is where `git bisect run` runs its script."""
    return command.in_bisect == "yes" or (command.in_bisect == "auto" and bisect_in_progress(os.getcwd()))


def announce(judge: Say | None, verdict: Verdict) -> None:
    if judge is not None:
        for line in verdict.lines():
            judge(line)
