"""The files a run can be exported to, behind one interface (``Exporter``): each exporter
names its option, says whether a ``--processes`` child may write it, and turns a results
document (with its verdict and comparison) into text.  The command line, the output checks,
the children's command line and the end of every mode read EXPORTERS, so adding a format is
one class here and one line in EXPORTERS (hyperfine's ``export/`` is the model).

Every exporter is a view of the results document; none measures anything."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from moodleload.judging.verdict import Verdict, VerdictWord
from moodleload.reports.views import url_rows
from moodleload.results.comparison import RowVerdict

if TYPE_CHECKING:
    from moodleload.results.comparison import Comparison
    from moodleload.results.model import Results


@dataclass(frozen=True)
class Exported:
    """What an exporter is given: the run, its verdict, and the baseline side where there is one."""

    document: Results
    verdict: Verdict
    baseline: Results | None = None
    comparison: Comparison | None = None


class Exporter(Protocol):
    """One export format: its option, and how a results document becomes its text."""

    option: str  # the command-line option, e.g. "--export-csv"
    dest: str  # the option's name in the parsed options
    metavar: str
    help: str
    what: str  # what the file is called in messages ("CSV")
    # May a --processes child write it?  Each child sees one shard: a file of the whole run
    # can only come from the parent, after the merge.
    child_writes: bool = False

    def render(self, exported: Exported) -> str: ...


class HtmlExporter(Exporter):
    option, dest, metavar = "--report", "report", "HTML"
    help = "a self-contained HTML report: of this run, of a saved RESULTS file, or of a --compare"
    what = "report"

    def render(self, exported: Exported) -> str:
        from moodleload.reports.html import render_report

        return render_report(exported.document, exported.verdict, baseline=exported.baseline,
                             comparison=exported.comparison)


class CsvExporter(Exporter):
    option, dest, metavar = "--export-csv", "export_csv", "CSV"
    help = "one row per URL: counts, percentiles, CPU time, DB reads, ratios against a baseline"
    what = "CSV"
    columns = ("url", "requests", "success", "failure", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99",
               "latency_ms_max", "service_ms_p50", "service_ms_p95", "cpu_ms_mean", "db_reads_median", "baseline_ms",
               "ratio", "interval_low", "interval_high", "baseline_cpu_ms", "cpu_ratio", "cpu_interval_low",
               "cpu_interval_high", "verdict", "decided_by", "run_verdict", "exit_status")

    def render(self, exported: Exported) -> str:
        compared = exported.comparison.rows if exported.comparison is not None else {}
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in url_rows(exported.document):
            against = compared.get(row.name)
            interval = against.interval if against is not None and against.interval is not None else (None, None)
            work = against.work if against is not None else None
            cpu_interval = work.interval if work is not None and work.interval is not None else (None, None)
            writer.writerow(_cells([row.name, row.requests, row.success, row.failure, row.latency_p50,
                                    row.latency_p95, row.latency_p99, row.latency_max, row.service_p50,
                                    row.service_p95, row.cpu_ms, row.db_reads,
                                    against.base_ms if against else None, against.ratio if against else None,
                                    interval[0], interval[1], work.cpu_ms[0] if work else None,
                                    work.ratio if work else None, cpu_interval[0], cpu_interval[1],
                                    against.verdict if against else None, against.decided_by if against else None,
                                    exported.verdict.word, exported.verdict.status]))
        return buffer.getvalue()


class JunitExporter(Exporter):
    option, dest, metavar = "--export-junit", "export_junit", "XML"
    help = "a JUnit XML summary for CI: a test case per URL against the baseline, one for the verdict"
    what = "JUnit summary"

    def render(self, exported: Exported) -> str:
        verdict = exported.verdict
        suite = ElementTree.Element("testsuite", name="moodle_load")
        cases = 0
        failures = skipped = 0
        for row in exported.comparison.rows.values() if exported.comparison is not None else []:
            case = ElementTree.SubElement(suite, "testcase", classname="moodle_load.pages", name=_xml_text(row.name))
            case.set("decided_by", row.decided_by)
            if row.work is not None and row.work.cpu_ms[1] is not None:
                case.set("cpu_ms", f"{row.work.cpu_ms[1]:g}")
            cases += 1
            if row.verdict == RowVerdict.REGRESSION:
                failures += 1
                ElementTree.SubElement(case, "failure", message=_xml_text("; ".join(row.reasons) or "slower"))
            elif row.verdict == RowVerdict.UNSURE:
                skipped += 1
                ElementTree.SubElement(case, "skipped", message=_xml_text("; ".join(row.reasons) or RowVerdict.UNSURE))
        case = ElementTree.SubElement(suite, "testcase", classname="moodle_load", name="verdict")
        cases += 1
        message = _xml_text(f"{verdict.word} (exit {verdict.status})"
                            + "".join(f"; {reason}" for reason in verdict.reasons))
        if verdict.word == VerdictWord.BAD:
            failures += 1
            ElementTree.SubElement(case, "failure", message=message)
        elif verdict.status != 0:
            skipped += 1
            ElementTree.SubElement(case, "skipped", message=message)
        suite.set("tests", str(cases))
        suite.set("failures", str(failures))
        suite.set("skipped", str(skipped))
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


EXPORTERS: tuple[Exporter, ...] = (HtmlExporter(), CsvExporter(), JunitExporter())


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula


def _cells(values: list[object]) -> list[object]:
    """CSV cells: a text that a spreadsheet would take for a formula (a page named "=cmd|...")
    gets a leading apostrophe, as OWASP advises; numbers stay numbers."""
    return ["" if value is None else "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS)
            else value for value in values]


def _xml_text(text: str) -> str:
    """Text XML 1.0 can hold: its forbidden control characters become "?"."""
    return "".join(character if character in "\t\n\r" or ord(character) >= 0x20 else "?" for character in text)
