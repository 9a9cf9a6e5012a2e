"""moodle_load.py's options: every number finite and in range before anything runs, no
abbreviations, and a --processes child's command line rebuilt from the parsed values."""

from __future__ import annotations

import argparse

import pytest

import moodle_load
from moodleload.exits import EXIT_USAGE
from moodleload.options import argv_for, build_parser, check_numbers, child_options
from moodleload.reports.exporters import EXPORTERS

LOAD = ["--config", "c.json", "--rpm", "600", "--duration", "10"]


@pytest.mark.parametrize("flag, value", [
    ("--rpm", "inf"), ("--rpm", "nan"), ("--rpm", "0"), ("--duration", "-1"), ("--warmup", "nan"),
    ("--blocks", "100000000"), ("--alpha", "0"), ("--alpha", "1"), ("--max-regression", "nan"),
    ("--cannot-judge-error-rate", "0"), ("--progress", "1e-4"), ("--concurrency", "0"),
    ("--request-timeout", "inf"), ("--max-error-rate", "2"), ("--processes", "0"),
])
def test_a_number_out_of_its_range_is_one_line_naming_the_option(flag, value, capsys):
    assert moodle_load.main([*LOAD, flag, value]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"[ERROR] {flag} ") and "\n" not in err


def test_numbers_in_range_pass():
    args = build_parser().parse_args([*LOAD, "--alpha", "0.01", "--warmup", "0", "--progress", "0"])
    check_numbers(args)


@pytest.mark.parametrize("abbreviated", [["--proc", "2"], ["--dur", "5"], ["--max-reg", "5"]])
def test_abbreviated_options_are_refused(abbreviated, capsys):
    assert moodle_load.main([*LOAD, *abbreviated]) == EXIT_USAGE
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_child_command_line_is_rebuilt_from_the_parsed_values():
    parser = build_parser()
    args = parser.parse_args([*LOAD, "--processes", "3", "--output", "o.json", "--insecure", "--max-p95-ms",
                              "800", "--seed", "7", "--report", "r.html", "--baseline", "b.json"])
    child = argv_for(parser, args, child_options())
    again = parser.parse_args(child)
    for dest in ("config", "rpm", "duration", "insecure", "max_p95_ms", "seed"):
        assert getattr(again, dest) == getattr(args, dest)
    assert again.processes == 1 and again.output is None and again.report is None and again.baseline is None


# Options only the parent of --processes acts on, and why: a new option must be put here or in
# processes.CHILD_OPTIONS, or a child would silently run without it (or with it, twice).
PARENT_KEEPS = {
    "processes": "each child is one process",
    "shard": "the parent gives each child its own --shard K/N",
    "shard_process": "the parent marks its children itself",
    "output": "each child writes its shard where the parent tells it; the parent saves the merge",
    "baseline": "the parent judges the merged run against the baseline",
    "rerun": "the parent re-runs a run that could not judge",
    "moodle_dir": "the parent records the Moodle under test once",
    "progress": "the parent prints the progress of the whole run",
    "quiet": "the children are quiet; the parent prints what was asked",
    "compare": "a mode without a load", "merge": "a mode without a load", "pairs": "a mode without a load",
    "results": "a mode without a load",
    "help": "prints and exits", "help_all": "prints and exits", "version": "prints and exits",
}


def test_every_option_is_either_given_to_the_children_or_kept_by_the_parent():
    exports = {exporter.dest for exporter in EXPORTERS}
    unplaced = [action.dest for action in build_parser()._actions
                if action.dest not in child_options() | PARENT_KEEPS.keys() | exports]
    assert unplaced == []
    assert not child_options() & PARENT_KEEPS.keys()


def test_a_child_writes_only_the_exports_its_exporter_allows():
    parser = build_parser()
    exported = [item for exporter in EXPORTERS for item in (exporter.option, f"out.{exporter.dest}")]
    child = argv_for(parser, parser.parse_args([*LOAD, "--processes", "2", *exported]), child_options())
    for exporter in EXPORTERS:
        assert (exporter.option in child) == exporter.child_writes


def test_help_leads_with_three_examples_and_fits_a_screen_and_a_half(capsys):
    import moodle_load
    with pytest.raises(SystemExit) as stopped:
        moodle_load.main(["--help"])
    text = capsys.readouterr().out
    assert stopped.value.code == 0
    assert all(example in text for example in ("a run:", "a comparison:", "a bisect step:"))
    assert text.index("a run:") < text.index("  --config FILE")  # the examples before the options
    assert len(text.splitlines()) <= 70
    for heading in ("the load:", "judging against a baseline:", "outputs, and the modes without a load:"):
        assert heading in text
    assert "--login-timeout" not in text and "--help-all" in text and "docs/configuration.md" in text


def test_help_all_lists_every_option_the_parser_takes(capsys):
    import moodle_load
    with pytest.raises(SystemExit):
        moodle_load.main(["--help-all"])
    text = capsys.readouterr().out
    options = [option for action in build_parser()._actions for option in action.option_strings
               if action.help != argparse.SUPPRESS]
    assert options and all(option in text for option in options)
