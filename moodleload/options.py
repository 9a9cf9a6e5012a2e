"""moodle_load.py's options: the parser, every number checked before the first request,
and the settings, gates and thresholds built from them."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from moodleload import __version__
from moodleload.database.connection import DatabaseFlags
from moodleload.database.families import DBTYPE_NAMES
from moodleload.exits import UsageError
from moodleload.judging.compare import Thresholds
from moodleload.judging.verdict import Gates
from moodleload.judging.work import JUDGE_BOTH, JUDGE_CHOICES
from moodleload.load.processes import CHILD_OPTIONS
from moodleload.load.scheduler import RunSettings
from moodleload.reports.exporters import EXPORTERS, Exporter
from moodleload.results.comparison import Judge
from moodleload.shards import parse_shard, parse_start_at, start_at_text
from moodleload.site.clients import resolve_http_client


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit 2, which git bisect takes for "bad"
        raise UsageError(message)


EXAMPLES = """examples:
  a run:          moodle_load.py --config config.json --rpm 600 --duration 300 --warmup 60 --output run.json
  a comparison:   moodle_load.py --compare base-1.json base-2.json base-3.json run.json --report cmp.html
  a bisect step:  moodle_load.py --config config.json --rpm 600 --duration 300 --warmup 60 \\
                      --baseline base-1.json base-2.json base-3.json --judge work   # or examples/bisect-step.sh
"""
EXIT_STATUSES = ("exit status: 0 good, 1 bad, 125 cannot judge (bisect skips), 128 usage or config mistake,\n"
                 "  129/130/143 interrupted, 200 a fault of the tool, 201 the site could not be reached (these stop\n"
                 "  a bisect); with --pairs: 0 confirmed, 1 not confirmed, 125 cannot tell")
# What --help leaves to --help-all and docs/configuration.md: the options few runs need.
ADVANCED = {"--login-timeout", "--request-timeout", "--drain", "--http-client", "--seed", "--blocks", "--max-body-mb",
            "--shard", "--rerun", "--max-db-reads-increase", "--in-bisect", "--alpha", "--max-other-cpu",
            "--max-p99-ms", "--min-rpm-ratio", "--cannot-judge-error-rate", "--max-login-failures", "--merge",
            "--db-type", "--db-name", "--db-user", "--db-pass-file", "--db-host", "--db-port", "--db-socket",
            "--progress", "--max-failure-rise", "--start-at"}


class _Help(argparse.Action):
    """-h: the options most runs need, grouped, after three examples; --help-all: every one."""

    def __init__(self, option_strings: list[str], dest: str, every: bool = False, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.every = every

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(help_text(every=self.every), end="")
        parser.exit(0)


def help_text(every: bool = False) -> str:
    parser = build_parser()
    if not every:
        for action in parser._actions:
            if set(action.option_strings) & ADVANCED:
                action.help = argparse.SUPPRESS
        parser.epilog = ("more options (timeouts, seeds, blocks, gates, shards, database settings): --help-all;\n"
                         "every one with its default: docs/configuration.md\n" + EXIT_STATUSES)
    return parser.format_help()


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30, width=100)


def build_parser() -> argparse.ArgumentParser:
    usage = ("moodle_load.py --config FILE --rpm N --duration S [options]\n"
             "       moodle_load.py --compare BASE... NEW | --pairs P C [P C ...] | RESULTS --report HTML")
    description = "Open-loop load generator for Moodle, with verdicts for git bisect run.\n\n" + EXAMPLES
    parser = _Parser(prog="moodle_load.py", allow_abbrev=False, add_help=False, formatter_class=_formatter,
                     usage=usage, epilog=EXIT_STATUSES, description=description)
    add_load_options(parser)
    add_judging_options(parser)
    add_mode_options(parser)
    add_query_stats_options(parser)
    other = parser.add_argument_group("help and output")
    other.add_argument("-h", "--help", action=_Help, help="the options most runs need; --help-all: every one")
    other.add_argument("--help-all", action=_Help, every=True, help=argparse.SUPPRESS)
    other.add_argument("--quiet", action="store_true", help="print only errors, warnings and the verdict")
    other.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--shard-process", action="store_true", help=argparse.SUPPRESS)  # --processes child
    return parser


def add_load_options(parser: argparse._ActionsContainer) -> None:
    """The load: what is sent, how fast, for how long, from how many processes."""
    load = parser.add_argument_group("the load")
    load.add_argument("--config", metavar="FILE", help="config.json: the site, its users, the pages")
    load.add_argument("--rpm", type=float, metavar="N", help="target requests per minute (journeys: steps a minute)")
    load.add_argument("--duration", type=float, metavar="S", help="measured seconds")
    load.add_argument("--warmup", type=float, default=0, metavar="S",
                      help="seconds of load before measuring (default 0)")
    load.add_argument("--concurrency", type=int, default=20, metavar="N",
                      help="workers, each holding one user session (default 20)")
    load.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser = load
    parser.add_argument("--login-timeout", type=float, default=20, help="seconds per login HTTP step (default 20)")
    parser.add_argument("--request-timeout", type=float, default=60, help="seconds per request (default 60)")
    parser.add_argument("--drain", type=float, default=30,
                        help="seconds a backlog may still be worked off after the schedule ends (default 30)")
    parser.add_argument("--http-client", choices=("auto", "httptools", "aiohttp"), default="auto",
                        help="HTTP client: httptools (lean, the default where installed) or aiohttp")
    parser.add_argument("--progress", type=float, metavar="S",
                        help="seconds between [PROGRESS] JSON lines, 0 for none (default: 30 in logs and pipes; "
                             "none on a terminal, where a live status line shows the same)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the request sequence (default 1)")
    parser.add_argument("--blocks", type=int, default=20,
                        help="time blocks per run for the baseline comparison (default 20)")
    parser.add_argument("--output", metavar="FILE", help="write the results JSON document here")
    parser.add_argument("--max-body-mb", type=float, default=64, metavar="MB",
                        help="largest answer body, as sent and as decoded; larger ones fail as too_large "
                             "(default 64)")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="N generator processes on this machine, merged (a run past one core)")
    parser.add_argument("--shard", default="1/1", metavar="K/N",
                        help="run shard K of N: its users and 1/N of the rate (merge with --merge)")
    parser.add_argument("--start-at", metavar="T0",
                        help="log in, then open the schedule at T0: a UTC time (2026-12-05T09:00:00Z) or +S "
                             "seconds from now; shards on several machines given one T0 send one run's load")
    parser.add_argument("--metrics", action="append", metavar="URL",
                        help="a server's Prometheus exporter, scraped beside the load; repeat per host")


def add_judging_options(parser: argparse._ActionsContainer) -> None:
    """How the run is judged: the baseline, the tolerance and the gates."""
    parser = parser.add_argument_group("judging against a baseline")
    parser.add_argument("--baseline", nargs="+", metavar="RESULTS",
                        help="runs of the good commit (3 or more, each on a freshly prepared site)")
    parser.add_argument("--rerun", nargs="+", metavar="RESULTS",
                        help="earlier runs of this same commit, judged together with this one (or with NEW of "
                             "--compare): what a bisect step adds when the answer was unsure")
    parser.add_argument("--max-regression", type=float, default=10.0, metavar="PCT",
                        help="slowdown tolerated against the baseline, percent (default 10)")
    parser.add_argument("--judge", choices=JUDGE_CHOICES, default=JUDGE_BOTH,
                        help="what decides: time, work (Moodle's own CPU time per answer, DB reads: for a busy "
                             "machine) or both (default)")
    parser.add_argument("--max-failure-rise", type=float, default=2.0, metavar="PCT",
                        help="a rise of failures, percent of requests, that good needs ruled out (default 2: the usual "
                             "runs of a few hundred requests a page rule it out when nothing failed; short runs may "
                             "need more)")
    parser.add_argument("--max-db-reads-increase", type=float, default=2.0, metavar="N",
                        help="extra DB reads per page tolerated against the baseline (default 2)")
    parser.add_argument("--in-bisect", choices=("auto", "yes", "no"), default="auto",
                        help="inside a git bisect, a 'cannot judge' that every step would repeat (one baseline run; "
                             "a baseline spread no run count overcomes) stops the bisect (128) with the remedy; "
                             "auto: when a bisect is in progress in the current folder's repository (default)")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="false-alarm rate of the baseline comparison, over all URLs (default 0.05)")
    parser.add_argument("--max-other-cpu", type=float, metavar="SHARE",
                        help="a run taken while other processes kept more than this share of the load machine's "
                             "CPUs busy is not comparable: 125 (default: no limit, the contention is only named)")
    parser.add_argument("--max-p95-ms", type=float, metavar="MS", help="gate: latency p95 above this is bad")
    parser.add_argument("--max-p99-ms", type=float, metavar="MS", help="gate: latency p99 above this is bad")
    parser.add_argument("--max-error-rate", type=float, metavar="R", help="gate: failed/all above this is bad (0..1)")
    parser.add_argument("--min-rpm-ratio", type=float, help="gate: observed/target RPM below this is bad")
    parser.add_argument("--cannot-judge-error-rate", type=float, default=0.5,
                        help="error rate from which the run cannot judge the commit: exit 125 (default 0.5)")
    parser.add_argument("--max-login-failures", type=float, default=0.1, metavar="SHARE",
                        help="share of users that may fail to log in before the run cannot judge: exit 125 "
                             "(default 0.1)")


def add_mode_options(parser: argparse._ActionsContainer) -> None:
    """The modes without a load, and the reports every mode can write."""
    top = parser
    parser = parser.add_argument_group("outputs, and the modes without a load")
    parser.add_argument("--compare", nargs="+", metavar="RESULTS",
                        help="BASE [BASE ...] NEW: judge saved results, the last one against the others; no load")
    parser.add_argument("--merge", nargs="+", metavar="RESULTS", help="merge saved results into --output")
    for exporter in EXPORTERS:
        parser.add_argument(exporter.option, dest=exporter.dest, metavar=exporter.metavar, help=exporter.help)
    top.add_argument("results", nargs="?", metavar="RESULTS",
                     help="a saved results file to make the --report of, without load")
    parser.add_argument("--moodle-dir", metavar="DIR",
                        help="the Moodle checkout under test: its release and commit go into the results")
    parser.add_argument("--pairs", nargs="+", metavar="RESULTS",
                        help="PARENT CULPRIT ...: confirm a culprit from runs made in alternation")


def add_query_stats_options(parser: argparse.ArgumentParser) -> None:
    """--query-stats and the database settings it reads."""
    stats = parser.add_argument_group("the database's own statistics")
    stats.add_argument("--query-stats", action="store_true",
                       help="record each statement's calls, time and work (pg_stat_statements, performance_schema) "
                            "beside the run: the comparison names those that changed")
    stats.add_argument("--moodle-config", metavar="PATH", help="the site's config.php (database settings)")
    stats.add_argument("--db-type", help=f"{DBTYPE_NAMES} (default: config.php's, else pgsql)")
    stats.add_argument("--db-name", help="database name")
    stats.add_argument("--db-user", help="database user")
    stats.add_argument("--db-pass-file", metavar="FILE", help="read the database password from FILE's first line")
    stats.add_argument("--db-host", help="database host (PostgreSQL: or a socket directory)")
    stats.add_argument("--db-port", type=int, help="database port")
    stats.add_argument("--db-socket", metavar="PATH", help="unix socket (MariaDB/MySQL: its file)")


# Every number an option takes, with its range: checked before the first login, so no
# infinity, NaN or absurd value reaches the run and changes a verdict later.
#   dest: (lowest, lowest is allowed, highest)
NUMBER_RANGES = {
    "rpm": (0, False, 10_000_000),
    "duration": (0, False, 7 * 86400),
    "concurrency": (1, True, 100_000),
    "login_timeout": (0, False, 3600),
    "request_timeout": (0, False, 3600),
    "drain": (0, True, 86400),
    "progress": (0, True, 86400),
    "warmup": (0, True, 86400),
    "blocks": (1, True, 1000),
    "max_regression": (0, True, 1000),
    "max_db_reads_increase": (0, True, 1_000_000),
    "max_failure_rise": (0, False, 100),
    "alpha": (0, False, 0.5),
    "max_p95_ms": (0, True, 1e9),
    "max_p99_ms": (0, True, 1e9),
    "max_error_rate": (0, True, 1),
    "min_rpm_ratio": (0, True, 100),
    "cannot_judge_error_rate": (0, False, 1),
    "processes": (1, True, 256),
    "max_login_failures": (0, True, 1),
    "max_other_cpu": (0, True, 1),
    "max_body_mb": (0, False, 4096),
    "db_port": (1, True, 65535),
}


def check_numbers(args: argparse.Namespace) -> None:
    """Each numeric option finite and in its range; one line naming the option otherwise."""
    for dest, (lowest, lowest_allowed, highest) in NUMBER_RANGES.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        option = "--" + dest.replace("_", "-")
        if not math.isfinite(value):
            raise UsageError(f"{option} must be a finite number, got {value}")
        if value < lowest or (value == lowest and not lowest_allowed) or value > highest:
            low = f"at least {lowest:g}" if lowest_allowed else f"above {lowest:g}"
            raise UsageError(f"{option} must be {low} and at most {highest:g}, got {value:g}")
    if args.progress is not None and 0 < args.progress < 0.1:
        raise UsageError(f"--progress must be 0 (none) or at least 0.1 seconds, got {args.progress:g}")


def check_load_options(args: argparse.Namespace) -> None:
    if args.rpm is None or args.duration is None or args.config is None:
        raise UsageError("--config, --rpm and --duration are required for a load run")
    if args.processes > 1 and args.shard != "1/1":
        raise UsageError("--processes and --shard do not go together: each process is a shard")


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    return Thresholds(max_regression_pct=args.max_regression, alpha=args.alpha,
                      max_db_reads_increase=args.max_db_reads_increase, max_other_cpu=args.max_other_cpu,
                      judge=Judge(args.judge), failure_margin=args.max_failure_rise / 100.0)


def gates_from(args: argparse.Namespace) -> Gates:
    return Gates(max_p95_ms=args.max_p95_ms, max_p99_ms=args.max_p99_ms,
                 max_error_rate=args.max_error_rate, min_rpm_ratio=args.min_rpm_ratio,
                 cannot_judge_error_rate=args.cannot_judge_error_rate,
                 max_login_failures=args.max_login_failures)


def argv_for(parser: argparse.ArgumentParser, args: argparse.Namespace, keep: frozenset[str],
             resolved: dict[str, Any] | None = None) -> list[str]:
    """The command line that gives the options of ``args`` named in ``keep`` again, built from
    the parsed values (``resolved``: values read once here that replace the parsed ones): what
    a --processes child runs."""
    argv = []
    for action in parser._actions:
        if action.dest not in keep or not action.option_strings:
            continue
        value = (resolved or {}).get(action.dest, getattr(args, action.dest, None))
        if value is None or value == action.default or isinstance(action, argparse._VersionAction):
            continue
        option = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(option)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                argv += [option, str(item)]
        elif isinstance(value, list):
            argv += [option, *map(str, value)]
        else:
            argv += [option, repr(value) if isinstance(value, float) else str(value)]
    return argv


def child_options() -> frozenset[str]:
    """The options a --processes child is given: the load's, and the exports it may write."""
    return CHILD_OPTIONS | {exporter.dest for exporter in EXPORTERS if exporter.child_writes}


@dataclass(frozen=True)
class Command:
    """What moodle_load.py was asked, read once from its parsed command line (``read``): the
    mode and its files, what it writes, and the typed settings of each part.  The load's
    own settings (RunSettings) are read only for a load (run_settings): a --compare needs no
    HTTP client."""

    config: str | None
    baseline: tuple[str, ...]
    rerun: tuple[str, ...]
    compare: tuple[str, ...]
    pairs: tuple[str, ...]
    merge: tuple[str, ...]
    results: str | None  # a saved run to report (RESULTS)
    output: str | None
    exports: tuple[tuple[Exporter, str], ...]  # the formats asked for, each with its path
    processes: int
    moodle_dir: str | None
    metrics: tuple[str, ...]
    query_stats: bool
    shard_process: bool  # a --processes child: the parent judges
    in_bisect: str  # "yes", "no" or "auto"
    start_at: float | None  # --start-at in seconds since the epoch, resolved once
    thresholds: Thresholds
    gates: Gates
    database: DatabaseFlags
    child_argv: tuple[str, ...]  # what each --processes child is run with

    @classmethod
    def read(cls, parser: argparse.ArgumentParser, args: argparse.Namespace) -> Command:
        start_at = None if args.start_at is None else parse_start_at(args.start_at, time.time())
        # One absolute time from here on: a --processes child reads the same T0, never "+S" of its own.
        child = argv_for(parser, args, child_options(),
                         {"start_at": None if start_at is None else start_at_text(start_at)})
        return cls(
            config=args.config, baseline=tuple(args.baseline or ()), rerun=tuple(args.rerun or ()),
            compare=tuple(args.compare or ()), pairs=tuple(args.pairs or ()), merge=tuple(args.merge or ()),
            results=args.results, output=args.output,
            exports=tuple((exporter, path) for exporter in EXPORTERS if (path := getattr(args, exporter.dest))),
            processes=args.processes, moodle_dir=args.moodle_dir, metrics=tuple(args.metrics or ()),
            query_stats=args.query_stats, shard_process=args.shard_process, in_bisect=args.in_bisect,
            start_at=start_at, thresholds=thresholds_from(args), gates=gates_from(args),
            database=DatabaseFlags.from_options(args), child_argv=tuple(child))


PROGRESS_IN_LOGS = 30.0  # seconds between [PROGRESS] lines where no live line shows the run


def run_settings(args: argparse.Namespace, start_at: float | None, live: bool = False) -> RunSettings:
    """The load's settings, read from the parsed options once (``start_at`` as Command
    resolved it); on a terminal (``live``) the status line replaces the JSON progress lines
    unless --progress asks for them."""
    progress = args.progress if args.progress is not None else (0.0 if live else PROGRESS_IN_LOGS)
    return RunSettings(rpm=args.rpm, duration=args.duration, concurrency=args.concurrency,
                       warmup=args.warmup, seed=args.seed, insecure=args.insecure,
                       login_timeout=args.login_timeout, request_timeout=args.request_timeout,
                       progress=progress, blocks=args.blocks, shard=parse_shard(args.shard), drain=args.drain,
                       http_client=resolve_http_client(args.http_client),
                       max_body=int(args.max_body_mb * 1024 * 1024), start_at=start_at)
