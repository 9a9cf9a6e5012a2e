"""Shards of one run on several machines: opened together at one --start-at, merged as
histograms, refused when they did not run as one (a late shard, another T0, a missing one)."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import moodle_load
from helpers import ROOT, fast_settings, read, run_load, write_config
from moodleload.exits import EXIT_CANNOT_JUDGE, EXIT_USAGE
from moodleload.results.histogram import Histogram
from moodleload.shards import MAX_START_SKEW_S, start_at_text

LOAD = ("--rpm", "1200", "--duration", "2", "--progress", "0")


def shard_process(config: str, shard: str, start_at: str, output) -> subprocess.Popen:
    """One shard as on its own machine: a process of its own, told only its shard and T0."""
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "moodle_load.py"), "--config", config, *LOAD,
                             "--shard", shard, "--start-at", start_at, "--output", str(output)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pages_served(server) -> Counter:
    return Counter(path for _, path in server.site.stats.log)


def test_shards_given_one_start_at_send_the_one_process_schedule_and_merge_into_its_histograms(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    assert run_load(config, rpm=1200, duration=2, output=tmp_path / "whole.json") == 0
    one_process = pages_served(server)
    server.site.stats.log.clear()
    start_at = start_at_text(time.time() + 8)
    shards = [shard_process(config, f"{k}/2", start_at, tmp_path / f"s{k}.json") for k in (1, 2)]
    outputs = [shard.communicate(timeout=120) for shard in shards]
    assert [shard.returncode for shard in shards] == [0, 0], outputs
    assert pages_served(server) == one_process  # every slot of the schedule once: none twice, none missing
    assert moodle_load.main(["--merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                             "--output", str(tmp_path / "merged.json")]) == 0
    whole, merged = read(tmp_path / "whole.json"), read(tmp_path / "merged.json")
    assert merged["metadata"]["start_at"] == start_at
    offsets = merged["metadata"]["start_offsets_s"]
    assert sorted(offsets) == ["1/2", "2/2"] and all(abs(offset) <= MAX_START_SKEW_S for offset in offsets.values())
    for name, page in whole["urls"].items():  # the same requests, counted in the same histograms
        assert Histogram.from_dict(merged["urls"][name]["service_ms"]).count == page["requests"] \
            == merged["urls"][name]["requests"]


def test_a_shard_that_opened_its_schedule_late_is_refused_at_merge(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    start = time.time() + 8
    shards = [shard_process(config, f"{k}/2", start_at_text(start), tmp_path / f"s{k}.json") for k in (1, 2)]
    late = shards[1]
    assert any(late.stdout.readline().startswith("[INFO] waiting") for _ in range(10))  # logged in, waiting
    late.send_signal(signal.SIGSTOP)  # a machine that was busy, or suspended, at T0
    time.sleep(max(0.0, start + 2.5 - time.time()))
    late.send_signal(signal.SIGCONT)
    for shard in shards:
        shard.communicate(timeout=120)
    assert read(tmp_path / "s2.json")["metadata"]["start_offsets_s"]["2/2"] > 2.0
    assert moodle_load.main(["--merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                             "--output", str(tmp_path / "merged.json")]) == EXIT_USAGE
    error = capsys.readouterr().err
    # (a stopped process may oversleep its timer as well: Linux restarts its wait in full)
    assert error.startswith("[ERROR] merge: shard 2/2 opened its schedule +") and error.count("\n") == 1
    assert "shards more than 1 s apart did not send one run's load" in error
    assert not (tmp_path / "merged.json").exists()


def test_shards_of_two_start_times_are_not_one_run(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    for k, ahead in ((1, 3), (2, 4)):
        assert run_load(config, "--shard", f"{k}/2", "--start-at", f"+{ahead}", rpm=1200, duration=1,
                        output=tmp_path / f"s{k}.json") == 0
    assert moodle_load.main(["--merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                             "--output", str(tmp_path / "merged.json")]) == EXIT_USAGE
    assert "merge: the results have different --start-at times" in capsys.readouterr().err


def test_a_merge_without_every_shard_of_the_run_cannot_judge(sim_factory, tmp_path, capsys):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    for k in (1, 2):
        assert run_load(config, "--shard", f"{k}/3", rpm=1200, duration=1, output=tmp_path / f"s{k}.json") == 0
    capsys.readouterr()
    status = moodle_load.main(["--merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                               "--output", str(tmp_path / "merged.json")])
    assert status == EXIT_CANNOT_JUDGE
    assert "shard 3/3 of the run missing: these results hold 2 of its 3 shards" in capsys.readouterr().out
    # and so does every later use of that file: as a baseline, a run to compare, a report
    assert moodle_load.main(["--compare", str(tmp_path / "merged.json"), str(tmp_path / "merged.json"),
                             "--output", str(tmp_path / "again.json")]) in (EXIT_USAGE, EXIT_CANNOT_JUDGE)
    status = moodle_load.main(["--merge", str(tmp_path / "s1.json"), "--output", str(tmp_path / "one.json")])
    assert status == EXIT_CANNOT_JUDGE and "shard 2/3, 3/3 of the run missing" in capsys.readouterr().out


def test_processes_open_their_schedules_at_one_start_at(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    assert run_load(config, "--processes", "2", "--start-at", "+6", rpm=1200, duration=2,
                    output=tmp_path / "two.json") == 0
    meta = read(tmp_path / "two.json")["metadata"]
    assert sorted(meta["start_offsets_s"]) == ["1/2", "2/2"]
    assert all(abs(offset) <= MAX_START_SKEW_S for offset in meta["start_offsets_s"].values())


def test_logins_that_end_after_the_start_at_stop_the_run_before_it_sends(sim_factory, tmp_path, capsys):
    settings = fast_settings()
    settings.pages["login_post"].latency_ms = 2500.0
    server = sim_factory(settings=settings)
    config = write_config(tmp_path / "c.json", server.url, users=2)
    assert run_load(config, "--start-at", "+1", rpm=1200, duration=1, output=tmp_path / "r.json") == EXIT_USAGE
    error = capsys.readouterr().err
    assert "the logins ended" in error and "give the logins more time (a later --start-at)" in error
    assert pages_served(server) == Counter({"/my/": 2})  # where the two logins landed: nothing of the load
    assert not (tmp_path / "r.json").exists()
