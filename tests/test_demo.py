"""`make demo` is one of the README's two commands: the whole workflow, end to end."""

import json
import os
import subprocess

from helpers import ROOT


def test_the_demo_sets_the_passwords_loads_the_site_and_writes_results_and_report(tmp_path):
    # Exactly the README's command: make demo (the venv and packages are make test's, already there in CI).
    result = subprocess.run(["make", "--no-print-directory", "demo"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "DEMO_OUTPUT": str(tmp_path)}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / "config.json") as handle:
        config = json.load(handle)
    with open(tmp_path / "results.json") as handle:
        results = json.load(handle)
    assert config["base_url"].startswith("http://127.0.0.1:") and len(config["users"]) == 12
    assert results["logins"]["ok"] == 12 and results["metadata"]["target"] == config["base_url"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert "[VERDICT] good (exit 0)" in result.stdout
