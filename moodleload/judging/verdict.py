"""The verdict: gates and the comparison become one value, with the exit status git bisect reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from moodleload.console import printable
from moodleload.exits import EXIT_BAD, EXIT_CANNOT_JUDGE, EXIT_GOOD, EXIT_UNREACHABLE, EXIT_USAGE
from moodleload.results.comparison import RowVerdict
from moodleload.shards import parse_shard

if TYPE_CHECKING:
    from moodleload.results.comparison import Comparison
    from moodleload.results.sections import Generator, Logins, Metadata
    from moodleload.results.summary import Summary


class VerdictWord(StrEnum):
    """The word a verdict is printed with; its exit status is what git bisect reads."""

    GOOD = "good"
    BAD = "bad"
    CANNOT_JUDGE = "cannot judge"
    SITE_NOT_REACHED = "site not reached"
    NOT_RECORDED = "not recorded"
    BISECT_STOPPED = "bisect stopped"
    CONFIGURATION_MISTAKE = "configuration mistake"
    NOT_MEASURED = "not measured"
    INTERRUPTED = "interrupted"
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not confirmed"
    CANNOT_TELL = "cannot tell"


@dataclass(frozen=True)
class Verdict:
    """What a run says about the commit: the exit status, its word, and why."""

    status: int
    word: VerdictWord
    reasons: tuple[str, ...] = ()
    undecided: bool = False  # a 125 because the comparison could neither show nor rule out a regression

    @classmethod
    def good(cls) -> Verdict:
        return cls(EXIT_GOOD, VerdictWord.GOOD)

    @classmethod
    def bad(cls, reasons: Iterable[str]) -> Verdict:
        return cls(EXIT_BAD, VerdictWord.BAD, tuple(reasons))

    @classmethod
    def cannot_judge(cls, reasons: Iterable[str]) -> Verdict:
        return cls(EXIT_CANNOT_JUDGE, VerdictWord.CANNOT_JUDGE, tuple(reasons))

    @classmethod
    def unreachable(cls, reasons: Iterable[str]) -> Verdict:
        return cls(EXIT_UNREACHABLE, VerdictWord.SITE_NOT_REACHED, tuple(reasons))

    def lines(self) -> list[str]:
        """How it is printed: the word and status, then one line per reason."""
        return [f"[VERDICT] {self.word} (exit {self.status})"] + [f"[VERDICT]   {printable(reason)}"
                                                                   for reason in self.reasons]


@dataclass
class Gates:
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    max_error_rate: float | None = None
    min_rpm_ratio: float | None = None
    cannot_judge_error_rate: float = 0.5
    max_login_failures: float = 0.1  # share of users that may fail to log in before the run cannot judge


def check_gates(summary: Summary, gates: Gates) -> list[str]:
    """The absolute limits this run breached, each as a line with the breaching number."""
    breaches = []
    p95, p99, error_rate = summary.latency_ms.p95, summary.latency_ms.p99, summary.error_rate
    if gates.max_p95_ms is not None and (p95 or 0) > gates.max_p95_ms:
        breaches.append(f"latency p95 {p95} ms > --max-p95-ms {gates.max_p95_ms:g}")
    if gates.max_p99_ms is not None and (p99 or 0) > gates.max_p99_ms:
        breaches.append(f"latency p99 {p99} ms > --max-p99-ms {gates.max_p99_ms:g}")
    if gates.max_error_rate is not None and (error_rate or 0) > gates.max_error_rate:
        breaches.append(f"error rate {error_rate:.4f} > --max-error-rate {gates.max_error_rate:g}")
    if gates.min_rpm_ratio is not None and summary.req_per_min_target:
        ratio = summary.req_per_min_observed / summary.req_per_min_target
        if ratio < gates.min_rpm_ratio:
            breaches.append(f"observed/target RPM {ratio:.3f} < --min-rpm-ratio {gates.min_rpm_ratio:g}")
    return breaches


def login_reasons(logins: Logins | None) -> tuple[list[str], float]:
    """Lines naming the failed logins, and the share of users they were."""
    if logins is None:
        return [], 0.0
    failed = sum(logins.failed.values())
    if not failed:
        return [], 0.0
    users = failed + logins.ok
    kinds = ", ".join(f"{reason} {count}" for reason, count in sorted(logins.failed.items()))
    return [f"{failed} of {users} users could not log in ({kinds})"], failed / users


UNREACHABLE_LOGINS = {"site unreachable": "the site could not be reached",
                      "out of file descriptors": "the generator could not open sockets"}
UNREACHABLE_REQUESTS = {"unreachable": "the site could not be reached",
                        "out_of_files": "the generator could not open sockets"}
REMEDIES = {"the site could not be reached": "check base_url and that the web server runs",
            "the generator could not open sockets": "raise the open-file limit (ulimit -n) or lower --concurrency"}


def not_reached(summary: Summary | None, gates: Gates, logins: Logins | None) -> list[str]:
    """Why the site was never really asked (empty if it was): logins or requests that could not open a
    connection at all (refused, unknown host, no route, out of file descriptors).  A site that
    answers, even with errors, is the commit's business; one that cannot be reached is not,
    and a bisect must stop at the first such step instead of skipping every commit."""
    failed = logins.failed if logins is not None else {}
    users = sum(failed.values()) + (logins.ok if logins is not None else 0)
    for reason, meaning in UNREACHABLE_LOGINS.items():
        count = failed.get(reason, 0)
        if users and count and count / users > gates.max_login_failures:
            return [f"{meaning}: {count} of {users} logins ({REMEDIES[meaning]}); the commit was not measured"]
    requests = summary.requests if summary is not None else 0
    for kind, meaning in UNREACHABLE_REQUESTS.items():
        count = summary.failures.get(kind, 0) if summary is not None else 0
        if requests and count / requests >= gates.cannot_judge_error_rate:
            return [f"{meaning}: {count} of {requests} requests ({REMEDIES[meaning]}); the commit was not measured"]
    return []


MAX_UNREACHED_SHARE = 0.01  # of the requests; beyond it, the failures' rise is the environment's, not the commit's


def partly_unreached(summary: Summary) -> list[str]:
    """Requests that could not open a connection, too few to stop a bisect but enough to
    move the failure rate a comparison judges (a web server restarted during the run)."""
    requests = summary.requests
    lines = []
    for kind, meaning in UNREACHABLE_REQUESTS.items():
        count = summary.failures.get(kind, 0)
        if requests and count > MAX_UNREACHED_SHARE * requests:
            lines.append(f"{meaning} for {count} of {requests} requests ({REMEDIES[meaning]}): failures of the "
                         f"environment, not of the commit")
    return lines


MIN_DELIVERED = 0.95  # of the positions due in the measured window, sent in it


def incomplete_run(shards: Sequence[str]) -> str | None:
    """Why a merge of ``shards`` ("K/N") is not the whole run, or None when it is."""
    of_run = {parse_shard(shard)[1] for shard in shards}
    if len(of_run) != 1:
        return None
    count = of_run.pop()
    missing = [f"{k}/{count}" for k in range(1, count + 1) if f"{k}/{count}" not in shards]
    if not missing:
        return None
    return (f"shard {', '.join(missing)} of the run missing: these results hold {len(shards)} of its {count} "
            f"shards, so part of the load asked for was never sent; merge every shard of the run")


def delivery_problems(generator: Generator, meta: Metadata, bottleneck: Sequence[str],
                      saturated: Sequence[str] = ()) -> list[str]:
    """Why the run did not do what was asked, by its own trust signals: the generator stood
    still (a suspended machine, SIGSTOP, a blocked event loop), the generator was the
    bottleneck (``bottleneck``, from views.trust_signals), or the requests due in the
    measured window were not sent in it.  Numbers from such a run describe the generator
    (or a load other than the one asked for), so they are never a verdict on the commit."""
    problems = []
    paused, dropped = generator.paused_s, generator.tokens_dropped
    if paused > 0 or dropped:
        problems.append(f"the generator stood still for {paused:.1f} s of the measured window (a suspended "
                        f"machine or VM, SIGSTOP, an event loop blocked): {dropped} requests due then were "
                        f"never sent; run again on a machine that keeps running")
    if bottleneck:
        problems.append("the generator was the bottleneck (" + "; ".join(bottleneck) + "): raise --concurrency "
                        "if its workers were all busy, or spread the load with --processes N")
    if saturated:
        problems.append("; ".join(saturated) + ": not the generator's limit but the site's pace; lower --rpm, raise "
                        "--concurrency (with as many users) if the site can serve more at once, or, where the site "
                        "answers slower than it does alone, run on a quieter machine")
    missing = incomplete_run(meta.shards) if len(meta.shards) > 1 else None  # a lone shard is what it says
    if missing:
        problems.append(missing)
    due = generator.due_in_window
    if due is None:  # results before 0.7: what was due, from the rate and the measured time
        due = int(meta.rpm * meta.measured_seconds / 60.0)
    sent = generator.sent_in_window
    # What a stopped generator dropped is said above: this line is for the rest of the shortfall.
    if due and sent + dropped < MIN_DELIVERED * due and due - sent - dropped >= 2:
        problems.append(f"only {sent} of the {due} requests due in the measured window were sent in it "
                        f"({sent / due:.0%}, under {MIN_DELIVERED:.0%}): the load asked for was not delivered; "
                        f"raise --concurrency (one request in flight per user) or lower --rpm")
    return problems


def decide(summary: Summary, gates: Gates, comparison: Comparison | None, logins: Logins | None = None,
           undelivered: Sequence[str] = ()) -> Verdict:
    """The verdict of one run from its summary, the gates, the comparison with a baseline
    and the logins.  Anything that makes the numbers meaningless is "cannot judge" (125),
    never "good" nor "bad": no requests, a load not delivered or a stalled generator
    (``undelivered``, from delivery_problems), most requests failing, a page that never
    once succeeded, too many users unable to log in, a baseline run under another load."""
    notes, login_share = login_reasons(logins)
    unreached = not_reached(summary, gates, logins)
    if unreached:
        return Verdict.unreachable([*unreached, *notes])
    if not summary.requests:
        return Verdict.cannot_judge(["no request was measured", *notes])
    undelivered = [*undelivered, *partly_unreached(summary)]
    if undelivered:
        return Verdict.cannot_judge([*undelivered, *notes])
    if summary.error_rate is not None and summary.error_rate >= gates.cannot_judge_error_rate:
        return Verdict.cannot_judge([
            f"error rate {summary.error_rate:.2%} >= {gates.cannot_judge_error_rate:.0%}: "
            f"the numbers mean nothing ({summary.failures})", *notes])
    if login_share > gates.max_login_failures:
        return Verdict.cannot_judge([*notes, f"more than --max-login-failures {gates.max_login_failures:.0%} of "
                                             f"the users: the load was not the one asked for"])
    if comparison is not None and comparison.not_comparable:
        return Verdict.cannot_judge(["not compared with the baseline: " + "; ".join(comparison.not_comparable)])
    reasons = check_gates(summary, gates)
    if comparison is not None and comparison.verdict == RowVerdict.REGRESSION:
        reasons += [f"{row.name}: {'; '.join(row.reasons)}" for row in comparison.rows_with(RowVerdict.REGRESSION)]
        if comparison.db_work_regression:
            reasons.append(comparison.db_work_regression)
    if reasons:
        return Verdict.bad([*reasons, *notes])
    never = [f"{name}: none of its {row.requests} requests succeeded" for name, row in summary.urls.items()
             if row.requests and not row.success]
    if never:
        return Verdict.cannot_judge([*never, *notes])
    if comparison is not None and comparison.verdict == RowVerdict.UNSURE:
        headline = [comparison.undecided] if comparison.undecided else []
        if comparison.work_would_decide:
            headline.append(comparison.work_would_decide)
        return Verdict(EXIT_CANNOT_JUDGE, VerdictWord.CANNOT_JUDGE,
                       tuple(headline + [f"{row.name}: {'; '.join(row.reasons)}"
                                         for row in comparison.rows_with(RowVerdict.UNSURE)] + notes), undecided=True)
    return Verdict(EXIT_GOOD, VerdictWord.GOOD, tuple(notes))


def baseline_limit(verdict: Verdict, comparison: Comparison | None) -> Verdict:
    """Inside a bisect, a 125 that every step would repeat stops it (128) with the remedy:
    when the comparison was unsure because of the baseline (one run a side cannot see how
    whole runs move; a baseline whose spread no number of runs of a commit can overcome),
    not because of the commit, skipping would go on for hours and end in "could be any of".
    A regression shown (DB reads, a clear slowdown) is still called: only "unsure" stops."""
    if not verdict.undecided or comparison is None:
        return verdict
    needed = comparison.more_runs
    if comparison.method == "blocks":
        why = ("one baseline run cannot show how whole runs move, so every step of this bisect would answer 125 "
               "like this one")
        remedy = ("record three baseline runs of the good commit (examples/bisect-step.sh --baseline does; or "
                  "--baseline run1.json run2.json run3.json)")
    elif needed.candidate is None and needed.baseline is not None:
        why = (f"runs of a commit alone cannot decide {comparison.max_regression_pct:g} % at the baseline's spread, "
               f"so every step of this bisect would answer 125")
        remedy = f"record about {needed.baseline} more baseline runs, or raise --max-regression"
    elif needed.candidate is None and needed.each is None:
        why = (f"at this spread not even many more runs would decide {comparison.max_regression_pct:g} %, so every "
               f"step of this bisect would answer 125")
        remedy = ("lower the noise (a quieter machine, longer runs, --judge work on a busy one) or raise "
                  "--max-regression")
    else:
        return verdict
    return Verdict(EXIT_USAGE, VerdictWord.BISECT_STOPPED, (f"{why}: {remedy}", *verdict.reasons))


def refused_passwords(verdict: Verdict, logins: Logins | None, baseline_logged_in: bool | None) -> Verdict:
    """A run where nobody logged in because Moodle refused every password: with no baseline
    that logged these users in, the passwords in config.json are wrong, a mistake to fix
    (128, stops a bisect) rather than a commit to skip; where the baseline's runs logged them
    in, this commit (or the site since) broke login: it cannot be measured (125)."""
    if verdict.status != EXIT_CANNOT_JUDGE or logins is None or logins.ok or set(logins.failed) != {"invalid login"}:
        return verdict
    users = logins.failed["invalid login"]
    if baseline_logged_in:
        return Verdict.cannot_judge([f"Moodle refused the password of all {users} users, which the baseline's runs "
                                     f"logged in: this commit (or the site since the baseline) broke login"])
    return Verdict(EXIT_USAGE, VerdictWord.CONFIGURATION_MISTAKE,
                   (f"Moodle refused the password of all {users} users (invalid login): set it again with "
                    f"set_moodle_passwords.py (the same --password), or fix the passwords in config.json",))


@dataclass(frozen=True)
class RunFacts:
    """Everything a load run knows when it ends, for the one function that turns it into
    the exit status."""

    summary: Summary | None
    gates: Gates
    comparison: Comparison | None = None
    logins: Logins | None = None
    logged_in: int = 1  # users that logged in: none, and there was no load to judge
    undelivered: tuple[str, ...] = ()  # the run's and the other runs' own trust problems (delivery_problems)
    not_recorded: Verdict | None = None  # the results could not be written where asked
    dead_shards: tuple[str, ...] = ()  # --processes children that died, each named
    interrupted: int | None = None  # the exit status of the signal that stopped the run
    stopped_early: bool = False  # a saved run that records it was interrupted (--report RESULTS, --merge)
    confirmation: Verdict | None = None  # --pairs: the culprit confirmed, cleared or undecided (pairs.confirm)
    child_failed: int | None = None  # a --processes child's usage mistake (128) or fault (200): nothing measured


def judge_run(facts: RunFacts) -> Verdict:
    """The exit status of every mode and its reasons, in order of what overrides what:
    results not recorded (200: nothing to hand a bisect), a --processes child's usage
    mistake or fault (its status), a confirmation's own verdict (--pairs), no user logged in
    (the signal, a site not reached, else 125), no results at all or shards that died (125),
    a stop by a signal (its status), a saved run that was stopped early (125), then the
    run's own verdict (decide)."""
    if facts.not_recorded is not None:
        return facts.not_recorded
    if facts.child_failed is not None:
        return Verdict(facts.child_failed, VerdictWord.NOT_MEASURED,
                       (f"a generator process ended with exit {facts.child_failed} (its error is above): "
                        f"nothing was measured",))
    if facts.confirmation is not None:
        return facts.confirmation
    if not facts.logged_in:
        if facts.interrupted:
            return Verdict(facts.interrupted, VerdictWord.INTERRUPTED, ("stopped while logging in",))
        unreached = not_reached(None, facts.gates, facts.logins)
        if unreached:
            return Verdict.unreachable(unreached)
        return Verdict.cannot_judge(["no user could log in"])
    if facts.summary is None and not facts.interrupted:  # no results at all: only the shards' deaths say why
        return Verdict.cannot_judge([*facts.dead_shards, "no generator process saved any results"])
    if facts.dead_shards and not facts.interrupted:
        return Verdict.cannot_judge([*facts.dead_shards, "the surviving shards sent less than the target rate"])
    if facts.interrupted:
        return Verdict(facts.interrupted, VerdictWord.INTERRUPTED,
                       ("the run was stopped before its end: what was measured is shown",))
    # Unreachable (no summary returned above, stopped or not): it narrows the type for mypy.
    assert facts.summary is not None
    if facts.stopped_early:
        return Verdict.cannot_judge(["the run was interrupted before its end: what was measured is shown"])
    return decide(facts.summary, facts.gates, facts.comparison, facts.logins, list(facts.undelivered))
