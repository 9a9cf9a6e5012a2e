"""Messages: a live status line on terminals, plain progress lines in logs."""

import os
import subprocess
import sys

from helpers import ROOT, write_config


def test_on_a_terminal_a_live_status_line_rewrites_itself(sim_factory, tmp_path):
    import pty

    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    main, child = pty.openpty()
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                                "--rpm", "600", "--duration", "3", "--progress", "2"], stdout=child, stderr=child)
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
    text = output.decode()
    assert "\r\x1b[K[measuring] 0:01 / 0:03" in text
    assert "[PROGRESS] {" in text


def test_in_logs_there_is_no_live_line_only_progress(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config,
                             "--rpm", "600", "--duration", "2.5", "--progress", "1"], capture_output=True, text=True)
    assert "\x1b[K" not in result.stdout and result.stdout.count("[PROGRESS] {") == 2
