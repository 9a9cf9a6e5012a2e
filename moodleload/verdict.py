"""The verdict: gates and the comparison become one value, with the exit status git bisect reads."""

from __future__ import annotations

from dataclasses import dataclass

from .exits import EXIT_BAD, EXIT_CANNOT_JUDGE, EXIT_GOOD


@dataclass(frozen=True)
class Verdict:
    """What a run says about the commit: the exit status, its word, and why."""

    status: int
    word: str  # "good", "bad", "cannot judge", "interrupted"
    reasons: tuple = ()

    @classmethod
    def good(cls) -> Verdict:
        return cls(EXIT_GOOD, "good")

    @classmethod
    def bad(cls, reasons) -> Verdict:
        return cls(EXIT_BAD, "bad", tuple(reasons))

    @classmethod
    def cannot_judge(cls, reasons) -> Verdict:
        return cls(EXIT_CANNOT_JUDGE, "cannot judge", tuple(reasons))

    def lines(self) -> list:
        """How it is printed: the word and status, then one line per reason."""
        return [f"[VERDICT] {self.word} (exit {self.status})"] + [f"[VERDICT]   {reason}" for reason in self.reasons]


@dataclass
class Gates:
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    max_error_rate: float | None = None
    min_rpm_ratio: float | None = None
    cannot_judge_error_rate: float = 0.5


def check_gates(summary: dict, gates: Gates) -> list:
    """The absolute limits this run breached, each as a line with the breaching number."""
    breaches = []
    if gates.max_p95_ms is not None and (summary["latency_ms_p95"] or 0) > gates.max_p95_ms:
        breaches.append(f"latency p95 {summary['latency_ms_p95']} ms > --max-p95-ms {gates.max_p95_ms:g}")
    if gates.max_p99_ms is not None and (summary["latency_ms_p99"] or 0) > gates.max_p99_ms:
        breaches.append(f"latency p99 {summary['latency_ms_p99']} ms > --max-p99-ms {gates.max_p99_ms:g}")
    if gates.max_error_rate is not None and (summary["error_rate"] or 0) > gates.max_error_rate:
        breaches.append(f"error rate {summary['error_rate']:.4f} > --max-error-rate {gates.max_error_rate:g}")
    if gates.min_rpm_ratio is not None and summary["req_per_min_target"]:
        ratio = summary["req_per_min_observed"] / summary["req_per_min_target"]
        if ratio < gates.min_rpm_ratio:
            breaches.append(f"observed/target RPM {ratio:.3f} < --min-rpm-ratio {gates.min_rpm_ratio:g}")
    return breaches


def decide(summary: dict, gates: Gates, comparison: dict | None) -> Verdict:
    """The verdict of one run from its summary, the gates and the comparison with a baseline."""
    if not summary["requests"]:
        return Verdict.cannot_judge(["no request was measured"])
    if summary["error_rate"] is not None and summary["error_rate"] >= gates.cannot_judge_error_rate:
        return Verdict.cannot_judge([
            f"error rate {summary['error_rate']:.2%} >= {gates.cannot_judge_error_rate:.0%}: "
            f"the numbers mean nothing ({summary['failures']})"])
    reasons = check_gates(summary, gates)
    if comparison is not None and comparison["verdict"] == "regression":
        reasons += [f"{name}: {'; '.join(row['reasons'])}" for name, row in comparison["urls"].items()
                    if row["verdict"] == "regression"]
    if reasons:
        return Verdict.bad(reasons)
    if comparison is not None and comparison["verdict"] == "unsure":
        return Verdict.cannot_judge([f"{name}: {'; '.join(row['reasons'])}" for name, row in comparison["urls"].items()
                                     if row["verdict"] == "unsure"])
    return Verdict.good()
