"""Does walking journeys (forms parsed, session keys read, web-service calls, values taken
from pages) make the generator dearer per request than plain page views?

    .venv/bin/python bench/journeys.py [--seconds 30] [--repeat 3]

One simulated Moodle site (python -m sim, page times scaled down, pinned to CPU 0) serves
both loads; moodle_load.py runs pinned to CPU 1, at the same step rate, three times each,
alternating:
  - GET: the pages of Moodle HQ's plan as single page views (course, page, forum,
    discussion, reply form, participants, front page), weighted as the plan visits them;
  - journeys: examples/moodle-hq-plan.json (the same pages walked in order, each with the
    browser's web-service calls, the reply form parsed and submitted, logout, login).
CPU per request = the generator's CPU seconds (wait4) / the HTTP requests the site
answered during the run.  Writes bench/results/journeys.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from generators import measured  # noqa: E402

from sim.ports import free_port  # noqa: E402

PASSWORD = "Passw0rd!"
USERS = 60
RPM = 6000  # 100 steps a second


def site_requests(url: str) -> int:
    with urllib.request.urlopen(url + "/__sim/stats") as answer:
        return json.load(answer)["requests"]


def configs(folder: str, url: str) -> dict:
    with open(os.path.join(ROOT, "examples", "moodle-hq-plan.json")) as handle:
        journey = json.load(handle)
    users = [{"username": f"tool_generator_{n:06d}", "password": PASSWORD} for n in range(1, USERS + 1)]
    journey.update(base_url=url, users=users)
    pages = {"base_url": url, "users": users,
             "parameters": {"courseid": {"values": [10, 11, 12, 13]}, "forum": {"values": [104, 168, 232, 296]},
                            "page": {"values": [107, 109, 111, 113]}, "discussion": {"values": [17, 19, 21, 23]},
                            "post": {"values": [17, 19, 21, 23]}},
             "urls": [{"path": "/", "name": "front page"},
                      {"path": "/course/view.php?id={courseid}", "name": "course view"},
                      {"path": "/mod/page/view.php?id={page}", "name": "page view"},
                      {"path": "/mod/forum/view.php?id={forum}", "name": "forum view"},
                      {"path": "/mod/forum/discuss.php?d={discussion}", "name": "discussion view"},
                      {"path": "/mod/forum/post.php?reply={post}", "name": "reply form"},
                      {"path": "/user/index.php?id={courseid}", "name": "participants"}]}
    paths = {}
    for name, config in (("GET", pages), ("journeys", journey)):
        paths[name] = os.path.join(folder, f"{name}.json")
        with open(paths[name], "w") as handle:
            json.dump(config, handle)
    return paths


def run_once(config: str, url: str, seconds: float, output: str) -> dict:
    before = site_requests(url)
    result = measured([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config, "--rpm", str(RPM),
                       "--duration", str(seconds), "--warmup", "2", "--concurrency", str(USERS), "--progress", "0",
                       "--output", output])
    requests = site_requests(url) - before
    with open(output) as handle:
        document = json.load(handle)
    steps = RPM / 60 * (seconds + 2)  # positions of the warm-up and the measured time
    return {"cpu_s": result["cpu_s"], "requests": requests, "code": result["code"],
            "cpu_per_10k": result["cpu_s"] / requests * 10000 if requests else float("nan"),
            "cpu_per_10k_steps": result["cpu_s"] / steps * 10000,
            "observed_rpm": document["summary"]["req_per_min_observed"],
            "failures": document["summary"]["failure"], "work_done": document.get("work_done", {})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    site = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "sim", "--port", str(port),
                             "--latency-scale", "0.02", "--users", str(USERS)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                site_requests(url)
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as folder:
            paths = configs(folder, url)
            runs: dict[str, list] = {"GET": [], "journeys": []}
            for number in range(args.repeat):
                for name in ("GET", "journeys"):
                    runs[name].append(run_once(paths[name], url, args.seconds, os.path.join(folder, "out.json")))
                    print(f"[bench] {name} run {number + 1}: {runs[name][-1]}", flush=True)
    finally:
        site.terminate()
        site.wait(10)
    median = {name: statistics.median(run["cpu_per_10k"] for run in rows) for name, rows in runs.items()}
    ratio = median["journeys"] / median["GET"]
    lines = ["# Journeys against page views: the generator's CPU per request", "",
             f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.node()}, Python "
             f"{platform.python_version()}, {os.cpu_count()} CPUs. `bench/journeys.py --seconds {args.seconds:g} "
             f"--repeat {args.repeat}`: the simulated site (page times x0.02) on CPU 0, moodle_load.py on CPU 1, "
             f"{RPM / 60:g} steps a second, {USERS} users, median of {args.repeat}.", "",
             "| load | CPU s per 10k requests (median) | range | CPU s per 10k steps | requests a run |"
             " observed steps/min | failures | work done |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in runs.items():
        values = [run["cpu_per_10k"] for run in rows]
        per_step = statistics.median(run["cpu_per_10k_steps"] for run in rows)
        lines.append(f"| {name} | {median[name]:.2f} | {min(values):.2f}-{max(values):.2f} | {per_step:.2f} | "
                     f"{statistics.median(run['requests'] for run in rows):.0f} | "
                     f"{statistics.median(run['observed_rpm'] for run in rows):.0f} | "
                     f"{max(run['failures'] for run in rows)} | {rows[-1]['work_done'] or '-'} |")
    step_ratio = statistics.median(r["cpu_per_10k_steps"] for r in runs["journeys"]) / \
        statistics.median(r["cpu_per_10k_steps"] for r in runs["GET"])
    lines += ["", f"Journeys cost **{ratio:.2f}x** the CPU per HTTP request of plain page views (goal: at most "
                  f"1.5x), and {step_ratio:.2f}x per step (a journey step is often several requests: the page's "
                  f"web-service calls, a submission and the page it leads to, a login). CPU includes start-up and "
                  f"the {USERS} logins."]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "journeys.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(run["code"] == 0 for rows in runs.values() for run in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
