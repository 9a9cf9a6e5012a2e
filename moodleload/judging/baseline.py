"""A run (or runs) of this commit judged against its baseline, whichever way the runs allow:
against the run-to-run spread with several runs, block by block with one a side; beside it,
the database statements that changed where both sides recorded them."""

from __future__ import annotations

from collections.abc import Callable

from moodleload.judging.compare import Thresholds, compare_documents
from moodleload.judging.runcompare import compare_runs
from moodleload.judging.statements import attribute, moved_page, statement_changes, work_regression
from moodleload.judging.work import JUDGE_BOTH, JUDGE_WORK
from moodleload.results.comparison import Comparison
from moodleload.results.model import Results


def judge_against(bases: list[Results], news: list[Results], thresholds: Thresholds,
                  say: Callable[[str], object]) -> Comparison:
    """The comparison: against the run-to-run spread where there are several runs, else
    block by block within the two runs (and it says that the spread is unknown); beside
    it, the database statements that changed where both sides recorded them."""
    if len(bases) + len(news) > 2:
        comparison = compare_runs(bases, news, thresholds)
        for line in comparison.advice:
            say(line)
    else:
        comparison = compare_documents(bases[0], news[0], thresholds)
        comparison = comparison.with_note("run-to-run noise unknown with one baseline run: record three "
                                          "(--baseline run1.json run2.json run3.json; examples/bisect-step.sh "
                                          "--baseline does)")
    changes = statement_changes(bases, news)
    if changes is not None:
        page = moved_page({row.name: row.db_reads for row in comparison.rows.values()})
        if page is not None:
            requests = sum(document.summary.requests for document in news)
            changes = attribute(changes, page, sum(document.urls[page].requests for document in news) / requests)
        regression = work_regression(changes.work, thresholds.max_regression_pct) \
            if thresholds.judge in (JUDGE_WORK, JUDGE_BOTH) else None
        comparison = comparison.with_statements(changes, regression)
    return comparison
