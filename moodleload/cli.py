"""moodle_load.py's command line: parse and check everything, run the mode asked for, say
the verdict, return its exit status.  Every mode ends in ``conclude``."""

from __future__ import annotations

import asyncio
import signal
import sys

from . import __version__
from .charts import load_pyplot
from .compare import compare_documents
from .config import load_config
from .console import Printer
from .exits import EXIT_CANNOT_JUDGE, EXIT_GOOD, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, UsageError
from .htmlreport import render_report, write_report
from .httpclient import resolve_http_client
from .options import argv_for, build_parser, check_load_options, check_numbers, gates_from, thresholds_from
from .plan import parse_shard
from .processes import PARENT_ONLY, run_processes
from .results import build_document, load_document, merge_documents, save_document, summarize
from .scheduler import LoadRun, RunSettings
from .textreport import format_comparison, format_report, format_trust, rate_hints
from .verdict import Verdict, decide
from .views import trust_signals


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check_numbers(args)
        say = Printer(quiet=args.quiet)
        if args.report:
            load_pyplot()  # say now, before any load, when matplotlib is missing
        if args.compare:
            return run_compare(args, say)
        if args.merge:
            return run_merge(args, say)
        if args.results:
            return run_saved_report(args, say)
        check_load_options(args)
        return run_load(args, argv, parser, say)
    except UsageError as error:
        print(f"[ERROR] {error}", file=sys.stderr)
        return EXIT_USAGE


def run_compare(args, say) -> int:
    base, new = load_document(args.compare[0]), load_document(args.compare[1])
    comparison = compare_documents(base, new, thresholds_from(args))
    new["summary"] = summarize(new)
    say(format_comparison(comparison))
    verdict = decide(new["summary"], gates_from(args), comparison)
    return conclude(args, say, new, verdict, baseline=base, comparison=comparison)


def run_saved_report(args, say) -> int:
    """--report HTML RESULTS: the report of a saved run, no load."""
    if not args.report:
        raise UsageError(f"a results file ({args.results}) is only read with --report or --compare")
    document = load_document(args.results)
    document["summary"] = summarize(document)
    comparison = document.get("comparison")
    verdict = decide(document["summary"], gates_from(args), comparison)
    return conclude(args, say, document, verdict, comparison=comparison)


def run_merge(args, say) -> int:
    if not args.output:
        raise UsageError("--merge needs --output for the merged results")
    merged = merge_documents([load_document(path) for path in args.merge])
    merged["summary"] = summarize(merged)
    save_document(args.output, merged)
    say(format_report(merged))
    say(f"[INFO] merged {len(args.merge)} results into {args.output}")
    return EXIT_GOOD


def run_load(args, argv: list, parser, say) -> int:
    config, digest = load_config(args.config)
    for warning in config.warnings:
        say(f"[WARN] {warning}")
    baseline = load_document(args.baseline) if args.baseline else None
    shard = parse_shard(args.shard)
    settings = RunSettings(rpm=args.rpm, duration=args.duration, concurrency=args.concurrency,
                           warmup=args.warmup, seed=args.seed, insecure=args.insecure,
                           login_timeout=args.login_timeout, request_timeout=args.request_timeout,
                           progress=args.progress, blocks=args.blocks, shard=shard, drain=args.drain,
                           http_client=resolve_http_client(args.http_client))
    say(f"[INFO] moodle_load.py {__version__}: {config.base_url}, {settings.rpm:g} RPM for "
        f"{settings.duration:g} s (+{settings.warmup:g} s warm-up), seed {settings.seed}"
        + (f", shard {shard[0]}/{shard[1]}" if shard[1] > 1 else ""))
    judge = None if args.shard_process else print  # a --processes child: the parent judges
    if args.processes > 1:
        document, early_status, interrupted = run_processes(args.processes, argv_for(parser, args, PARENT_ONLY))
        if early_status is not None:
            say("[ERROR] the generator processes produced no results")
            return early_status
    else:
        run = LoadRun(config, settings, say)
        interrupted = run_with_signals(run)
        document = build_document(run, argv, digest)
        if run.logins_ok == 0:
            document["summary"] = summarize(document)
            if args.output:
                save_document(args.output, document)
            reasons = ", ".join(f"{k} {v}" for k, v in run.login_failures.items()) or "interrupted"
            print(f"[ERROR] No user could log in ({reasons}): check base_url, the users' passwords "
                  f"(set_moodle_passwords.py) and that the site is up", file=sys.stderr)
            announce(judge, Verdict.cannot_judge(["no user could log in"]))
            return interrupted or EXIT_CANNOT_JUDGE
    document["summary"] = summarize(document)

    comparison = None
    if baseline is not None:
        comparison = document["comparison"] = compare_documents(baseline, document, thresholds_from(args))
    if args.output:
        save_document(args.output, document)
    say(format_report(document))
    for line in format_trust(trust_signals(document)):
        say(line)
    for hint in rate_hints(document):
        say(hint)
    if comparison is not None:
        say(format_comparison(comparison))
    if args.output:
        say(f"[INFO] results written to {args.output}")
    if interrupted:
        verdict = Verdict(interrupted, "interrupted",
                          ("the run was stopped before its end: what was measured is shown",))
    else:
        verdict = decide(document["summary"], gates_from(args), comparison)
    return conclude(args, say, document, verdict, baseline=baseline, comparison=comparison, judge=judge)


def run_with_signals(run: LoadRun) -> int | None:
    """Run the load; SIGINT/SIGTERM stop the schedule and the report still comes."""

    async def runner():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, run.stop, signum)
            except (NotImplementedError, RuntimeError):
                pass
        await run.run()

    try:
        import uvloop  # optional: a faster event loop where installed
        run_loop = uvloop.run
    except ImportError:
        run_loop = asyncio.run
    run_loop(runner())
    return {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}.get(run.interrupted_by)


def conclude(args, say, document: dict, verdict: Verdict, *, baseline: dict | None = None,
             comparison: dict | None = None, judge=print) -> int:
    """How every mode ends: the HTML report when asked for, then the verdict and its status."""
    if args.report:
        write_report(args.report, render_report(document, verdict, baseline=baseline, comparison=comparison))
        say(f"[INFO] report written to {args.report}")
    announce(judge, verdict)
    return verdict.status


def announce(judge, verdict: Verdict) -> None:
    if judge is not None:
        for line in verdict.lines():
            judge(line)
