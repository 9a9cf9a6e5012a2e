"""The Moodle under test, read from its tree in either layout (--moodle-dir)."""

import subprocess

import pytest

from helpers import read, run_load, write_config
from moodleload.exits import EXIT_GOOD, EXIT_USAGE, UsageError
from moodleload.results.model import load_document
from moodleload.site.moodletree import describe, parse_version_php

VERSION_50 = "<?php\ndefined('MOODLE_INTERNAL') || die();\n$version  = 2025041400.06;  // YYYYMMDD\n" \
             "$release  = '5.0.6+ (Build: 20260403)';\n$branch   = '500';\n$maturity = MATURITY_STABLE;\n"
VERSION_51 = "<?php\n$version  = 2025100600.00;\n$release  = '5.1 (Build: 20251006)';\n$branch   = '501';\n"


def git(path, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=path, check=True,
                   capture_output=True)


def tree(path, layout: str, text: str):
    root = path / "public" if layout == "public" else path
    root.mkdir(parents=True, exist_ok=True)
    (root / "version.php").write_text(text)
    (path / "config.php").write_text("<?php\n")
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "moodle")


def test_version_php_literals_are_read_without_running_it():
    assert parse_version_php(VERSION_50) == {"version": "2025041400.06", "release": "5.0.6+ (Build: 20260403)",
                                             "branch": "500"}


@pytest.mark.parametrize("layout, text, release, named", [(".", VERSION_50, "5.0.6+ (Build: 20260403)", "up to 5.0"),
                                                          ("public", VERSION_51, "5.1 (Build: 20251006)", "5.1+")])
def test_both_layouts_name_their_release_and_commit(tmp_path, layout, text, release, named):
    tree(tmp_path, layout, text)
    moodle = describe(str(tmp_path))
    assert moodle.release == release and moodle.layout is not None and moodle.layout.startswith(named)
    assert moodle.commit is not None and len(moodle.commit) == 40 and moodle.uncommitted_changes is False
    (tmp_path / "config.php").write_text("<?php // changed\n")
    recorded = describe(str(tmp_path))
    assert recorded.uncommitted_changes is True and recorded.label.endswith("with uncommitted changes")


def test_a_folder_that_is_no_moodle_tree_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="neither public/version.php"):
        describe(str(tmp_path))


def test_a_run_records_the_moodle_under_test_and_the_reports_name_it(sim_factory, tmp_path, capsys):
    tree(tmp_path / "moodle", "public", VERSION_51)
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    assert run_load(config, "--moodle-dir", str(tmp_path / "moodle"), "--report", str(tmp_path / "r.html"),
                    output=tmp_path / "r.json") == EXIT_GOOD
    recorded = load_document(str(tmp_path / "r.json")).metadata.moodle
    assert recorded is not None and recorded.release == "5.1 (Build: 20251006)" and recorded.layout.startswith("5.1+")
    assert "Moodle under test: 5.1 (Build: 20251006), version 2025100600.00, commit" in capsys.readouterr().out
    html = (tmp_path / "r.html").read_text()
    assert "5.1 (Build: 20251006)" in html and "not shown" not in html


def test_no_report_shows_a_placeholder_for_what_was_not_recorded(sim_factory, tmp_path):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), "--report", str(tmp_path / "r.html")) == EXIT_GOOD
    html = (tmp_path / "r.html").read_text()
    assert "not shown" not in html and "Moodle under test" not in html


def test_a_wrong_moodle_dir_is_refused_before_the_first_request(sim_factory, tmp_path, capsys):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), "--moodle-dir", str(tmp_path)) == EXIT_USAGE
    assert server.site.stats.requests == 0
    assert "--moodle-dir" in capsys.readouterr().err


def test_a_run_in_several_processes_records_the_moodle_under_test_too(sim_factory, tmp_path, capsys):
    tree(tmp_path / "moodle", "public", VERSION_51)
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    assert run_load(config, "--moodle-dir", str(tmp_path / "moodle"), "--processes", "2",
                    output=tmp_path / "r.json") == EXIT_GOOD
    assert read(tmp_path / "r.json")["metadata"]["moodle"]["release"] == "5.1 (Build: 20251006)"
    assert "Moodle under test: 5.1 (Build: 20251006)" in capsys.readouterr().out
