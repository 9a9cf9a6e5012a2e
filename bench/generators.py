"""moodle_load.py against its peers, side by side, in one run.

Target: nginx on loopback pinned to CPU 0, serving a Moodle-shaped login flow (a login
page with a logintoken and a session cookie, the POST answered 303 with a new cookie,
testsession -> /my/) and ~100 KB static pages with Moodle's performance footer for the
four URL kinds.  Generators pinned to CPU 1, one process each:

- wrk (max rate only: the reference for what the target can take) and hey;
- Locust (FastHttpUser, a locustfile doing the same login and URLs);
- moodle_load.py with its default HTTP client (httptools), and with `--http-client aiohttp`.

For each: maximum requests/s, and at fixed rates (100, 500, 1000, 2000 req/s) the achieved
rate, CPU seconds per 10,000 requests, peak RSS, and the p50/p99 the tool reports.  Then
moodle_load.py alone: rate accuracy over 60 s, schedule lateness, peak RSS with 2,000 users,
RSS over a long run, and the scaling from 1 to 2 processes.  Writes
bench/results/generators.md.

    bench/run.sh              # installs what it needs, then runs this
    bench/.venv/bin/python bench/generators.py [--quick] [--seconds 15] [--long-minutes 10]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from target import TARGET_CPU, Target  # noqa: E402

GENERATOR_CPU = "1"
AIOHTTP = ("--http-client", "aiohttp")  # moodle_load.py's other client: a peer in the same run
PAGES = {"my": "/my/", "course": "/course/view.php?id={courseid}", "forum": "/mod/forum/view.php?id={cmid}",
         "profile": "/user/profile.php?id={userid}"}


# ---------------------------------------------------------------- measuring one generator process

def measured(command: list, *, cpu: str | None = GENERATOR_CPU, rss_at: tuple = (), timeout: float = 3600,
             env: dict | None = None) -> dict:
    """Run a command; its CPU seconds and peak RSS (from wait4), output, and RSS samples."""
    if cpu is not None:
        command = ["taskset", "-c", cpu, *command]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, start_new_session=True)
    samples = {}
    output_file = tempfile.TemporaryFile(mode="w+")

    import threading

    def pump():
        for line in process.stdout or ():
            output_file.write(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    for moment in rss_at:
        while time.monotonic() - started < moment and process.poll() is None:
            time.sleep(0.2)
        samples[moment] = rss_mb(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    thread.join(5)
    output_file.seek(0)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024.0,
            "wall_s": time.monotonic() - started, "output": output_file.read(), "rss_samples": samples,
            "code": process.returncode}


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# ---------------------------------------------------------------- the generators

def write_config(tmp: str, url: str, users: int) -> str:
    config = {"base_url": url, "users": [{"username": f"user{n}", "password": "pw"} for n in range(users)],
              "parameters": {"courseid": {"values": [10, 11, 12, 13]}, "cmid": {"values": [104, 168, 232, 296]},
                             "userid": {"min": 3, "max": 102}},
              "urls": [{"path": path, "name": name} for name, path in PAGES.items()]}
    path = os.path.join(tmp, f"config-{users}.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    return path


def moodle_load(tmp: str, url: str, rate: float | None, seconds: float, users: int = 100,
                concurrency: int = 100, extra: tuple = (), rss_at: tuple = (), cpu: str | None = GENERATOR_CPU):
    output = os.path.join(tmp, f"ml-{time.monotonic_ns()}.json")
    rpm = (rate or 100_000) * 60  # no rate: far more than one process can send, i.e. its maximum
    command = [sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", write_config(tmp, url, users),
               "--rpm", str(rpm), "--duration", str(seconds), "--concurrency", str(concurrency),
               "--progress", "0", "--output", output, "--drain", "0" if rate is None else "5", *extra]
    result = measured(command, rss_at=rss_at, cpu=cpu)
    with open(output) as handle:
        document = json.load(handle)
    summary = document["summary"]
    requests = summary["requests"]
    lateness = document["generator"]["lateness_ms"]
    from moodleload.results.histogram import Histogram

    late = Histogram.from_dict(lateness)
    # Reported: response time from the intended start; at "maximum" every request is late by
    # design, so there the service time (send to last byte) is the comparable number.
    kind = "service_ms" if rate is None else "latency_ms"
    return {**result, "achieved": summary["req_per_min_observed"] / 60.0, "requests": requests,
            "p50": summary[f"{kind}_p50"], "p99": summary[f"{kind}_p99"],
            "lateness_p99": late.percentile(99), "document": document}


LOCUSTFILE = '''
import random
import re

from locust import FastHttpUser, constant, constant_throughput, task

PER_USER = {per_user}
TOKEN = re.compile(r'name="logintoken" value="([^"]+)"')


class Student(FastHttpUser):
    wait_time = constant_throughput(PER_USER) if PER_USER else constant(0)

    def on_start(self):
        page = self.client.get("/login/index.php", name="login").text
        token = TOKEN.search(page).group(1)
        self.client.post("/login/index.php", data={{"username": "u", "password": "pw", "logintoken": token}},
                         name="login")

    @task
    def pages(self):
        kind = random.choice(["my", "course", "forum", "profile"])
        if kind == "my":
            self.client.get("/my/", name="my")
        elif kind == "course":
            self.client.get(f"/course/view.php?id={{random.choice([10, 11, 12, 13])}}", name="course")
        elif kind == "forum":
            self.client.get(f"/mod/forum/view.php?id={{random.choice([104, 168, 232, 296])}}", name="forum")
        else:
            self.client.get(f"/user/profile.php?id={{random.randint(3, 102)}}", name="profile")
'''


def locust(tmp: str, url: str, rate: float | None, seconds: float, users: int = 100) -> dict:
    path = os.path.join(tmp, "locustfile.py")
    with open(path, "w") as handle:
        handle.write(LOCUSTFILE.format(per_user=(rate / users) if rate else 0))
    prefix = os.path.join(tmp, f"locust-{time.monotonic_ns()}")
    locust_bin = os.path.join(os.path.dirname(sys.executable), "locust")
    command = [locust_bin, "-f", path, "--headless", "-u", str(users), "-r", str(users), "-t", f"{int(seconds)}s",
               "-H", url, "--csv", prefix, "--only-summary", "--stop-timeout", "2", "--loglevel", "WARNING"]
    result = measured(command)
    rows = list(csv.DictReader(open(prefix + "_stats.csv")))
    pages = [row for row in rows if row["Name"] in PAGES]
    aggregated = next(row for row in rows if row["Name"] == "Aggregated")
    requests = sum(int(row["Request Count"]) for row in pages)
    return {**result, "achieved": requests / seconds, "requests": requests,
            "p50": float(aggregated["50%"]), "p99": float(aggregated["99%"]), "lateness_p99": None}


def found(pattern: str, output: str) -> re.Match:
    """``pattern`` in a tool's output; a tool whose output changed is named, never read as 0."""
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in the tool's output: {output[-300:]!r}")
    return match


def wrk(url: str, seconds: float) -> dict:
    result = measured(["wrk", "-t1", "-c100", f"-d{int(seconds)}s", "--latency", url + "/course/view.php?id=10"])
    text = result["output"]
    rate = float(found(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(found(r"(\d+) requests in", text).group(1))

    def latency(label):
        match = found(rf"{label}%\s+([\d.]+)(us|ms|s)\b", text)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {**result, "achieved": rate, "requests": requests, "p50": latency("50"), "p99": latency("99"),
            "lateness_p99": None}


def hey(url: str, seconds: float) -> dict:
    result = measured(["hey", "-z", f"{int(seconds)}s", "-c", "100", url + "/course/view.php?id=10"])
    text = result["output"]
    rate = float(found(r"Requests/sec:\s+([\d.]+)", text).group(1))

    def latency(label):
        return float(found(rf"{label}% in ([\d.]+) secs", text).group(1)) * 1000

    return {**result, "achieved": rate, "requests": int(rate * seconds), "p50": latency("50"), "p99": latency("99"),
            "lateness_p99": None}


# ---------------------------------------------------------------- the report

def cpu_per_10k(row: dict) -> str:
    return f"{row['cpu_s'] / row['requests'] * 10_000:.2f}" if row["requests"] else "-"


def fmt(value, pattern=".1f") -> str:
    return "-" if value is None else format(value, pattern)


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for command, label in ((["nginx", "-v"], "nginx"), (["wrk", "-v"], "wrk")):
        try:
            text = subprocess.run(command, capture_output=True, text=True).stderr + \
                   subprocess.run(command, capture_output=True, text=True).stdout
            match = re.search(r"(\d+\.\d+\.\d+)", text)
            parts.append(f"{label} {match.group(1) if match else '?'}")
        except OSError:
            pass
    try:
        import locust as locust_module

        parts.append(f"Locust {locust_module.__version__}")
    except ImportError:
        pass
    import aiohttp
    import httptools

    parts.append(f"aiohttp {aiohttp.__version__}, httptools {httptools.__version__}")
    try:
        import uvloop

        parts.append(f"uvloop {uvloop.__version__}")
    except ImportError:
        parts.append("no uvloop")
    return ", ".join(parts)


def median_run(repeat: int, measure) -> dict:
    """The run with the median achieved rate of ``repeat`` runs (shared machines are noisy)."""
    runs = sorted((measure() for _ in range(repeat)), key=lambda row: row["achieved"])
    chosen = dict(runs[len(runs) // 2])
    chosen["spread"] = (runs[0]["achieved"], runs[-1]["achieved"])
    return chosen


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15, help="length of each measurement")
    parser.add_argument("--rates", default="100,500,1000,2000")
    parser.add_argument("--long-minutes", type=float, default=10, help="the memory-over-duration run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--quick", action="store_true", help="skip the long memory run and the 60 s accuracy run")
    return parser.parse_args()


def header(args) -> list:
    return [f"# Load generators side by side ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
            f"Machine: {platform.node()}, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
            f"{platform.system()} {platform.release()}. {versions()}.",
            f"Target: nginx, 1 worker, pinned to CPU {TARGET_CPU}; each generator one process pinned to CPU "
            f"{GENERATOR_CPU}, 100 users/connections, {args.seconds:g} s per measurement; ~100 KB pages.", ""]


def measure_side_by_side(args, tmp: str, url: str, rates: list) -> dict:
    """Each generator's maximum rate, then Locust and moodle_load.py at each fixed rate."""
    results = {}
    print("[bench] maximum rates", flush=True)
    rep = args.repeat
    results["max"] = {"wrk": median_run(rep, lambda: wrk(url, args.seconds)),
                      "hey": median_run(rep, lambda: hey(url, args.seconds)),
                      "locust": median_run(rep, lambda: locust(tmp, url, None, args.seconds)),
                      "moodle_load": median_run(rep, lambda: moodle_load(tmp, url, None, args.seconds)),
                      "moodle_load (aiohttp)": median_run(rep, lambda: moodle_load(
                          tmp, url, None, args.seconds, extra=AIOHTTP))}
    for rate in rates:
        print(f"[bench] {rate:g} req/s", flush=True)
        results[rate] = {
            "locust": median_run(rep, lambda rate=rate: locust(tmp, url, rate, args.seconds)),
            "moodle_load": median_run(rep, lambda rate=rate: moodle_load(tmp, url, rate, args.seconds)),
            "moodle_load (aiohttp)": median_run(rep, lambda rate=rate: moodle_load(
                tmp, url, rate, args.seconds, extra=AIOHTTP))}
    return results


def maximum_section(results: dict) -> list:
    lines = ["## One process, maximum rate", "",
             "| generator | req/s (median) | range of runs | CPU s per 10k req | peak RSS MB | p50 ms "
             "| p99 ms |",
             "|---|---|---|---|---|---|---|"]
    for name, row in results["max"].items():
        low, high = row["spread"]
        lines.append(f"| {name} | {row['achieved']:.0f} | {low:.0f}-{high:.0f} | {cpu_per_10k(row)} | "
                     f"{row['peak_rss_mb']:.0f} | {fmt(row['p50'])} | {fmt(row['p99'])} |")
    ml_max, locust_max = results["max"]["moodle_load"]["achieved"], results["max"]["locust"]["achieved"]
    aiohttp_max = results["max"]["moodle_load (aiohttp)"]["achieved"]
    lines += ["", f"moodle_load.py / Locust FastHttpUser maximum: **{ml_max / locust_max:.2f}x**; "
              f"with `--http-client aiohttp` {aiohttp_max / locust_max:.2f}x; "
              f"moodle_load.py / wrk: {ml_max / results['max']['wrk']['achieved']:.2f}x. "
              f"moodle_load.py's p50/p99 here are service times (send to last byte): at an "
              f"unreachable target rate every request is late by design.", ""]
    return lines


def rates_section(results: dict, rates: list) -> list:
    lines = ["## Fixed rates", "",
             "| target req/s | generator | achieved req/s | CPU s per 10k req | peak RSS MB | p50 ms | p99 ms "
             "| schedule lateness p99 ms |", "|---|---|---|---|---|---|---|---|"]
    for rate in rates:
        for name, row in results[rate].items():
            lines.append(f"| {rate:g} | {name} | {row['achieved']:.1f} | {cpu_per_10k(row)} | "
                         f"{row['peak_rss_mb']:.0f} | {fmt(row['p50'])} | {fmt(row['p99'])} | "
                         f"{fmt(row['lateness_p99'], '.2f')} |")
        locust_row = results[rate]["locust"]
        for name in ("moodle_load", "moodle_load (aiohttp)"):
            row = results[rate][name]
            if row["requests"] and locust_row["requests"]:
                ratio = (row["cpu_s"] / row["requests"]) / (locust_row["cpu_s"] / locust_row["requests"])
                lines.append(f"| {rate:g} | *CPU per request, {name} / Locust* | | **{ratio:.0%}** "
                             f"| | | | |")
    lines.append("")
    return lines


def alone_section(args, tmp: str, url: str) -> list:
    """moodle_load.py on its own: rate accuracy, many users, memory over a long run, --processes."""
    print("[bench] moodle_load.py alone", flush=True)
    lines = ["## moodle_load.py alone", ""]
    if not args.quick:
        accuracy = moodle_load(tmp, url, 1000, 60)
        error = (accuracy["achieved"] - 1000) / 1000
        lines.append(f"- Rate accuracy over 60 s at 1,000 req/s: achieved {accuracy['achieved']:.1f} req/s "
                     f"({error:+.2%}); schedule lateness p99 {accuracy['lateness_p99']:.2f} ms.")
    many = moodle_load(tmp, url, 100, 10, users=2000, concurrency=100)
    lines.append(f"- 2,000 logged-in users (100 workers, 100 req/s): peak RSS {many['peak_rss_mb']:.0f} MB, "
                 f"{many['document']['logins']['ok']} logins ok.")
    if not args.quick:
        minutes = args.long_minutes
        long_run = moodle_load(tmp, url, 1000, minutes * 60, rss_at=(60, minutes * 60 - 5))
        first, last = long_run["rss_samples"][60], long_run["rss_samples"][minutes * 60 - 5]
        lines.append(f"- Memory over duration at 1,000 req/s: RSS {first:.0f} MB after 1 minute, "
                     f"{last:.0f} MB after {minutes:g} minutes; {long_run['achieved']:.1f} req/s achieved. "
                     f"(What may grow is the report's timeline: at most 600 points, whatever the "
                     f"duration.)")
    one = moodle_load(tmp, url, None, args.seconds, cpu=None)
    two = moodle_load(tmp, url, None, args.seconds, extra=("--processes", "2"), cpu=None)
    lines.append(f"- Scaling, unpinned (nginx shares the 2 cores): 1 process {one['achieved']:.0f} req/s, "
                 f"`--processes 2` {two['achieved']:.0f} req/s ({two['achieved'] / one['achieved']:.2f}x).")
    lines.append("")
    return lines


def main() -> int:
    args = parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    lines = header(args)
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        target = Target(tmp).start()
        try:
            results = measure_side_by_side(args, tmp, target.url, rates)
            lines += maximum_section(results) + rates_section(results, rates)
            lines += alone_section(args, tmp, target.url)
        finally:
            target.stop()
    text = "\n".join(lines)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "generators.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sys.exit(main())
