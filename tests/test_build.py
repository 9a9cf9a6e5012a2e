"""The one-file build: each zipapp runs as its script does, with nothing beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import ROOT, write_config
from moodleload import __version__
from moodleload.build import main as build_main
from moodleload.exits import EXIT_USAGE


def build_into(tmp_path) -> str:
    folder = str(tmp_path / "dist")
    assert build_main([folder]) == 0
    return folder


def run_alone(pyz: str, *args: str, cwd) -> subprocess.CompletedProcess:
    # Run from an empty folder, so nothing of the repository can be imported by accident.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([sys.executable, pyz, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_load_zipapp_runs_a_load_against_the_simulated_site(sim_factory, tmp_path):
    folder = build_into(tmp_path)
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=3)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = run_alone(os.path.join(folder, "moodle_load.pyz"), "--config", config, "--rpm", "600",
                       "--duration", "1", "--progress", "0", "--output", str(tmp_path / "r.json"), cwd=empty)
    assert result.returncode == 0, result.stderr
    assert "[VERDICT] good (exit 0)" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["requests"] == 10


def test_the_zipapps_say_their_version_and_keep_the_usage_exit(tmp_path):
    folder = build_into(tmp_path)
    load = run_alone(os.path.join(folder, "moodle_load.pyz"), "--version", cwd=tmp_path)
    assert load.stdout.strip() == f"moodle_load.py {__version__}"
    assert run_alone(os.path.join(folder, "moodle_load.pyz"), "--rpm", "x", cwd=tmp_path).returncode == EXIT_USAGE
    passwords = run_alone(os.path.join(folder, "set_moodle_passwords.pyz"), "--version", cwd=tmp_path)
    assert passwords.stdout.strip() == f"set_moodle_passwords.py {__version__}"


def test_the_zipapp_can_spread_the_load_over_processes(sim_factory, tmp_path):
    folder = build_into(tmp_path)
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=4)
    result = run_alone(os.path.join(folder, "moodle_load.pyz"), "--config", config, "--rpm", "600",
                       "--duration", "1", "--progress", "0", "--processes", "2",
                       "--output", str(tmp_path / "r.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert sorted(document["metadata"]["shards"]) == ["1/2", "2/2"]
    assert document["summary"]["requests"] == 10
    assert ROOT not in result.stderr
