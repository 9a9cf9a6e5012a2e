"""Messages: a live status line on terminals, plain progress lines in logs."""

import os
import re
import subprocess
import sys

from helpers import ROOT, write_config


def on_a_terminal(config: str, *extra) -> str:
    """What a person at a terminal sees of a run (a pseudo-terminal, read to the end)."""
    import pty

    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                                "--rpm", "600", "--duration", "3", *extra], stdout=child, stderr=child)
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=30)
    return output.decode()


def test_on_a_terminal_a_live_status_line_rewrites_itself_instead_of_json_lines(sim_factory, tmp_path):
    config = write_config(tmp_path / "c.json", sim_factory().url)
    text = on_a_terminal(config)
    assert re.search(r"\r\x1b\[K\[measuring\] 0:0\d / 0:03 \(0:0\d left\) \| \d+ of 600 RPM \| sent \d+, ok \d+, "
                     r"failed 0 \| p95 \d+ ms", text), text
    assert "[PROGRESS] {" not in text


def test_on_a_terminal_progress_asked_for_gives_the_json_lines_too(sim_factory, tmp_path):
    config = write_config(tmp_path / "c.json", sim_factory().url)
    text = on_a_terminal(config, "--progress", "2")
    assert "\r\x1b[K[measuring]" in text and "[PROGRESS] {" in text


def test_in_logs_there_is_no_live_line_only_progress(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                             "--rpm", "600", "--duration", "2.5", "--progress", "1"], capture_output=True, text=True)
    assert "\x1b[K" not in result.stdout and result.stdout.count("[PROGRESS] {") == 2
