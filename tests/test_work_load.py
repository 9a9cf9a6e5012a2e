"""--judge work end to end: real runs of moodle_load.py against a simulated site whose pages
do real CPU work (a separate process, as php-fpm is), beside busy loops that hold every
core, as on a shared CI runner.  What is asserted is what the product promises on such a
machine: a right verdict or an honest 125, never a wrong one."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from helpers import ROOT, busy_loops, free_port, run_load, write_config

# Per page: CPU work and the time it waits besides (ms).
PAGES = {"my": (40, 10), "course": (50, 10), "forum": (40, 10), "profile": (30, 10)}


def start_site(tmp_path, port: int, course_factor: float, rounds_per_ms: float):
    pages = {kind: {"cpu_ms": cpu * (course_factor if kind == "course" else 1.0), "latency_ms": wait,
                    "jitter": 0.05, "cpu_jitter": 0.1} for kind, (cpu, wait) in PAGES.items()}
    settings = tmp_path / f"site-{course_factor}.json"
    settings.write_text(json.dumps({"pages": pages, "cpu_rounds_per_ms": rounds_per_ms}))
    process = subprocess.Popen([sys.executable, "-m", "sim", "--port", str(port), "--site-config", str(settings),
                                "--users", "12"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the simulated site did not start")


def measure(tmp_path, name: str, course_factor: float, rounds_per_ms: float, *extra) -> tuple:
    """One prepared run (a fresh site at the same address, as a bisect step prepares one):
    its exit status and results file."""
    port_file = tmp_path / "port"
    if not port_file.exists():
        port_file.write_text(str(free_port()))
    port = int(port_file.read_text())
    process = start_site(tmp_path, port, course_factor, rounds_per_ms)
    try:
        config = write_config(tmp_path / "config.json", f"http://127.0.0.1:{port}", users=12)
        output = tmp_path / f"{name}.json"
        code = run_load(config, "--warmup", "2", "--concurrency", "12", "--max-regression", "10", *extra,
                        rpm=480, duration=20, output=output)
        return code, output
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def rounds_per_ms():
    from sim.cpuwork import calibrate
    return calibrate()


def test_beside_busy_loops_the_work_calls_a_cpu_slowdown_bad_and_never_identical_code(tmp_path, capsys,
                                                                                    rounds_per_ms):
    with busy_loops(os.cpu_count() or 2):
        bases = []
        for number in range(3):
            code, output = measure(tmp_path, f"base-{number}", 1.0, rounds_per_ms)
            assert code == 0
            bases.append(str(output))
        capsys.readouterr()
        same, _ = measure(tmp_path, "same", 1.0, rounds_per_ms, "--judge", "work", "--baseline", *bases)
        same_output = capsys.readouterr().out
        slow, _ = measure(tmp_path, "slow", 1.3, rounds_per_ms, "--judge", "work", "--baseline", *bases)
        slow_output = capsys.readouterr().out
    assert same in (0, 125), same_output
    assert "Work: Moodle's own CPU time per answer" in same_output
    if slow == 125:  # the contention changed since the baseline (other jobs came or went): said, never guessed
        assert "CPU time not judged: the load machine was" in slow_output, slow_output
        return
    assert slow == 1, slow_output
    assert "course: CPU time per answer" in slow_output
    verdict = slow_output[slow_output.index("[VERDICT] bad"):]
    assert "dashboard" not in verdict and "forum" not in verdict and "profile" not in verdict
