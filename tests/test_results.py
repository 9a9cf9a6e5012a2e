"""The results document: what a run records, how shards and processes merge, what a merge refuses."""

import ast
import copy
import json
import os

import pytest

import moodle_load
from helpers import DATA, ROOT, read, run_load, write_config
from moodleload.exits import EXIT_USAGE, UsageError
from moodleload.results.histogram import Histogram
from moodleload.results.model import Results, load_document

TWO_URLS = [{"path": "/my/", "name": "dashboard"}, {"path": "/course/view.php?id={courseid}", "name": "course"}]


def test_two_runs_with_the_same_seed_send_the_identical_request_sequence(sim_factory, tmp_path):
    logs = []
    for seed in ("5", "5", "6"):
        server = sim_factory()
        config = write_config(tmp_path / "c.json", server.url, users=3)
        assert run_load(config, "--concurrency", "1", "--seed", seed, rpm=1200, duration=2) == 0
        logs.append(list(server.site.stats.log))
    assert len(logs[0]) == 3 + 40  # each login lands on /my/ once, then 40 scheduled requests
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]


def test_the_default_seed_is_fixed_and_printed(sim_factory, tmp_path, capsys):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), output=tmp_path / "r.json") == 0
    assert ", seed 1" in capsys.readouterr().out
    assert read(tmp_path / "r.json")["metadata"]["seed"] == 1


def test_warmup_load_runs_but_is_not_counted(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url)
    assert run_load(config, "--warmup", "1", rpm=600, duration=2, output=tmp_path / "r.json") == 0
    result = read(tmp_path / "r.json")
    assert result["summary"]["requests"] == 20
    assert len(server.site.stats.log) == 5 + 30  # 5 logins landing on /my/, 10 warm-up requests, 20 measured
    assert result["metadata"]["warmup_s"] == 1


def test_the_results_document_carries_what_a_later_comparison_needs(sim_factory, tmp_path):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "c.json", server.url), "--blocks", "4", output=tmp_path / "r.json") == 0
    result = read(tmp_path / "r.json")
    meta = result["metadata"]
    for key in ("version", "argv", "seed", "config_sha256", "started_at", "duration_s", "target", "rpm"):
        assert meta[key] is not None, key
    dashboard = result["urls"]["dashboard"]
    assert len(dashboard["blocks_service_ms"]) == 4
    assert sum(block["count"] for block in dashboard["blocks_service_ms"]) == dashboard["success"]
    assert Histogram.from_dict(dashboard["service_ms"]).count == dashboard["success"]


def test_shards_merged_give_the_same_requests_per_url_as_one_run(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    assert run_load(config, rpm=1200, duration=2, output=tmp_path / "whole.json") == 0
    for k in (1, 2):
        assert run_load(config, "--shard", f"{k}/2", rpm=1200, duration=2, output=tmp_path / f"s{k}.json") == 0
        assert read(tmp_path / f"s{k}.json")["logins"]["ok"] == 3
    assert moodle_load.main(["--merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"),
                    "--output", str(tmp_path / "merged.json")]) == 0
    whole, merged = read(tmp_path / "whole.json"), read(tmp_path / "merged.json")
    assert {n: u["requests"] for n, u in merged["urls"].items()} == {n: u["requests"] for n, u in whole["urls"].items()}
    assert merged["metadata"]["rpm"] == 1200 and merged["summary"]["requests"] == 40
    response = Histogram.from_dict(merged["urls"]["course"]["response_ms"])
    assert response.count == merged["urls"]["course"]["success"]
    # Percentiles come from the added histograms, not from averaging: the merged median lies
    # between the shards' medians, and the summary has the same shape as a single run's.
    shard_medians = [read(tmp_path / f"s{k}.json")["summary"]["urls"]["course"]["service_ms_p50"] for k in (1, 2)]
    assert min(shard_medians) <= merged["summary"]["urls"]["course"]["service_ms_p50"] <= max(shard_medians)
    assert merged["summary"].keys() == whole["summary"].keys()
    assert merged["summary"]["urls"]["course"].keys() == whole["summary"]["urls"]["course"].keys()


def test_processes_run_shards_and_merge_them(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, users=6)
    assert run_load(config, rpm=1200, duration=2, output=tmp_path / "whole.json") == 0
    assert run_load(config, "--processes", "2", rpm=1200, duration=2, output=tmp_path / "two.json") == 0
    whole, two = read(tmp_path / "whole.json"), read(tmp_path / "two.json")
    assert {n: u["requests"] for n, u in two["urls"].items()} == {n: u["requests"] for n, u in whole["urls"].items()}
    assert two["metadata"]["shards"] == ["1/2", "2/2"] and two["logins"]["ok"] == 6


def test_merging_results_of_different_configs_is_refused(sim_factory, tmp_path, capsys):
    server = sim_factory()
    assert run_load(write_config(tmp_path / "a.json", server.url), output=tmp_path / "a-r.json") == 0
    assert run_load(write_config(tmp_path / "b.json", server.url, urls=TWO_URLS), output=tmp_path / "b-r.json") == 0
    assert moodle_load.main(["--merge", str(tmp_path / "a-r.json"), str(tmp_path / "b-r.json"),
                    "--output", str(tmp_path / "m.json")]) == EXIT_USAGE
    assert "different configs" in capsys.readouterr().err


def recorded_run() -> dict:
    with open(f"{DATA}/recorded-run.json", encoding="utf-8") as handle:
        return json.load(handle)


def test_merging_the_same_shard_twice_is_refused():
    run = recorded_run()
    with pytest.raises(UsageError, match="shard 1/1 is given more than once"):
        Results.merge([Results.from_dict(run), Results.from_dict(copy.deepcopy(run))])


@pytest.mark.parametrize("key, value, word", [("seed", 2, "seeds"), ("duration_s", 60.0, "durations"),
                                              ("blocks", 10, "--blocks"), ("warmup_s", 0.0, "warm-ups")])
def test_merging_runs_that_ran_a_different_load_is_refused(key, value, word):
    first, second = recorded_run(), recorded_run()
    first["metadata"]["shards"], second["metadata"]["shards"] = ["1/2"], ["2/2"]
    second["metadata"][key] = value
    if key == "blocks":  # a run of 10 blocks keeps 10 per URL
        for url in second["urls"].values():
            url["blocks_service_ms"] = url["blocks_service_ms"][:value]
            url.pop("blocks_service_fine_ms", None)
    with pytest.raises(UsageError, match=f"different {word}"):
        Results.merge([Results.from_dict(first), Results.from_dict(second)])


@pytest.mark.parametrize("damage, complaint", [
    (lambda d: d["metadata"].pop("seed"), "metadata.seed"),
    (lambda d: d["metadata"].update(rpm=float("inf")) or d, "metadata.rpm"),
    (lambda d: d["urls"]["dashboard"].update(success="12"), "success is not a count"),
    (lambda d: d["urls"]["dashboard"]["blocks_service_ms"].pop(), "blocks_service_ms"),
    (lambda d: d["urls"]["dashboard"]["response_ms"].update(base=1.1), "base is 1.1"),
    (lambda d: d["generator"].pop("tokens_unsent"), "generator.tokens_unsent"),
    (lambda d: d["urls"]["dashboard"]["footer"]["db_reads"].update(many=3), "not a number"),
    (lambda d: d["urls"]["dashboard"]["response_ms"]["buckets"].update({"\u00b2": 0}), "bad entry"),
    (lambda d: d["urls"]["dashboard"]["footer"]["db_reads"].update({"-5": 3}), "not a number from 0"),
    (lambda d: d["urls"]["dashboard"]["footer"]["db_reads"].update({"1e308": 3}), "not a number from 0"),
    (lambda d: d["generator"].update(cpu_seconds=1e308), "generator.cpu_seconds"),
    (lambda d: d["generator"].update(due_in_window=-1), "generator.due_in_window"),
    (lambda d: d.update(comparison={"verdict": "maybe", "alpha_per_url": 0.05, "max_regression_pct": 5, "urls": {}}),
     "its comparison is damaged (verdict is 'maybe')"),
    (lambda d: d.update(comparison={"verdict": "same", "urls": {}}),
     "its comparison is damaged (alpha_per_url is missing)"),
    (lambda d: d.update(comparison=[]), "its comparison is damaged"),
])
def test_a_damaged_results_file_is_one_line_naming_what_is_wrong(tmp_path, damage, complaint):
    document = recorded_run()
    damage(document)
    (tmp_path / "r.json").write_text(json.dumps(document))
    with pytest.raises(UsageError, match="is damaged") as raised:
        load_document(str(tmp_path / "r.json"))
    assert complaint in str(raised.value)


def test_a_results_file_of_another_format_or_not_utf8_is_refused(tmp_path):
    document = recorded_run()
    document["format"] = 99
    (tmp_path / "r.json").write_text(json.dumps(document))
    with pytest.raises(UsageError, match="format 99"):
        load_document(str(tmp_path / "r.json"))
    (tmp_path / "latin1.json").write_bytes(b'{"format": 1, "caf\xe9": 1}')
    with pytest.raises(UsageError, match="not UTF-8"):
        load_document(str(tmp_path / "latin1.json"))


def test_merged_sums_that_no_reader_would_take_back_are_never_written():
    first, second = recorded_run(), recorded_run()
    first["metadata"]["shards"], second["metadata"]["shards"] = ["1/2"], ["2/2"]
    first["generator"]["cpu_seconds"] = second["generator"]["cpu_seconds"] = 0.9e15
    with pytest.raises(UsageError, match="merged results would be damaged"):
        Results.merge([Results.from_dict(first), Results.from_dict(second)])


def test_a_results_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    with open(tmp_path / "r.json", "wb") as handle:  # 300 MB of nothing (sparse: no disk used)
        handle.truncate(300 * 1024 * 1024)
    with pytest.raises(UsageError, match="r.json is 300 MB, over the 64 MB a results file can be"):
        load_document(str(tmp_path / "r.json"))


def test_the_recorded_run_is_valid():
    assert load_document(f"{DATA}/recorded-run.json").to_dict()["format"] == 1


def test_a_saved_run_read_back_saves_exactly_what_it_read(sim_factory, tmp_path):
    """The typed model is the whole truth: nothing of a saved run is kept beside it, so
    reading and saving again must give the file back, every section, key and number."""
    server = sim_factory()
    saved = tmp_path / "run.json"
    assert run_load(write_config(tmp_path / "c.json", server.url, urls=TWO_URLS), output=saved) == 0
    document = read(saved)
    assert Results.from_dict(document).to_dict() == document


def leaves(tree, path: str = "") -> dict:
    """Every value of a saved document by its path ("generator/tokens_dropped", "urls/course/...")."""
    if isinstance(tree, dict):
        return {where: value for key, branch in tree.items()
                for where, value in leaves(branch, f"{path}/{key}").items()}
    if isinstance(tree, list):
        return {where: value for index, branch in enumerate(tree)
                for where, value in leaves(branch, f"{path}[{index}]").items()}
    return {path: tree}


# What an older version saved that this one derives or no longer keeps (RESULTS_FORMAT's history).
DROPPED = {"/metadata/moodle_release", "/generator/worst_wait_ms", "/summary"}


def test_an_older_run_read_back_keeps_every_measurement_it_had():
    recorded = recorded_run()  # saved by 0.3
    resaved = Results.from_dict(recorded).to_dict()
    kept = leaves(resaved)
    lost = {path: value for path, value in leaves(recorded).items()
            if not path.startswith(tuple(DROPPED)) and kept.get(path, "missing") != value}
    assert lost == {}
    assert Results.from_dict(resaved).to_dict() == resaved


def test_shards_merged_as_typed_values_add_up_section_by_section(sim_factory, tmp_path):
    server = sim_factory()
    config = write_config(tmp_path / "c.json", server.url, urls=TWO_URLS)
    for shard in (1, 2):
        assert run_load(config, "--shard", f"{shard}/2", output=tmp_path / f"s{shard}.json") == 0
    shards = [load_document(str(tmp_path / f"s{shard}.json")) for shard in (1, 2)]
    merged = Results.merge(shards)
    assert merged.metadata.shards == ("1/2", "2/2")
    assert merged.metadata.rpm == sum(shard.metadata.rpm for shard in shards)
    assert merged.logins.ok == sum(shard.logins.ok for shard in shards)
    assert merged.generator.sent_in_window == sum(shard.generator.sent_in_window for shard in shards)
    for name, record in merged.urls.items():
        parts = [shard.urls[name] for shard in shards if name in shard.urls]
        assert record.requests == sum(part.requests for part in parts)
        assert record.service_ms.count == sum(part.service_ms.count for part in parts)
        assert [block.count for block in record.blocks_service_ms] == [
            sum(counts) for counts in zip(*([block.count for block in part.blocks_service_ms] for part in parts),
                                          strict=True)]
    assert sum(point.sent for point in merged.timeline.points) == sum(
        point.sent for shard in shards for point in shard.timeline.points)
    assert Results.from_dict(merged.to_dict()).to_dict() == merged.to_dict()  # the merge saves and reads back
    assert all(shard.metadata.shards in (("1/2",), ("2/2",)) for shard in shards)  # the shards are left as they were


# The results model owns the saved form: every other module reads its typed fields.
MODEL_MODULES = {"results/model.py", "results/sections.py", "results/check.py", "results/merge.py",
                 "results/summary.py", "results/comparison.py", "results/metrics.py", "results/statements.py",
                 # they build the comparison's saved form, which comparison.Comparison then reads
                 "judging/compare.py", "judging/runcompare.py"}
SAVED_SECTIONS = {"metadata", "logins", "generator", "urls", "summary", "comparison", "timeline", "row_kinds",
                  "work_done", "machine", "blocks_service_ms", "blocks_service_fine_ms", "footer", "response_ms",
                  "service_ms", "sent_in_window", "tokens_unsent", "tokens_dropped", "due_in_window",
                  "latency_ms_p95", "req_per_min_observed", "error_rate",
                  # the optional sections: the load machine, the servers' exporters, the statements
                  "busy_cores", "other_busy_cores", "cpus", "steal_share", "load_average", "metrics", "hosts",
                  "cpu_busy", "load1", "failed_scrapes", "statements", "work_unit", "hidden_calls", "left_out"}
# config.json has urls of its own; an exporter's parsed sample has its load1
OTHER_FORMATS = {("config.py", "urls"), ("load/metrics.py", "load1")}


def keys_read(tree) -> list:
    """The string keys a module reads by subscript or .get(): ``x["urls"]``, ``x.get("urls")``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str) and isinstance(node.ctx, ast.Load):
            found.append((node.lineno, node.slice.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            found.append((node.lineno, node.args[0].value))
    return found


def test_only_the_results_model_reads_the_saved_results_by_key():
    package = os.path.join(ROOT, "moodleload")
    readers = []
    names = sorted(os.path.relpath(os.path.join(folder, file), package) for folder, _, files in os.walk(package)
                   for file in files if file.endswith(".py"))
    assert "load/scheduler.py" in names  # every wing's modules, not only the package's top
    for name in names:
        if name in MODEL_MODULES:
            continue
        with open(os.path.join(package, name), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        readers += [f"{name}:{line} reads {key!r}" for line, key in keys_read(tree)
                    if key in SAVED_SECTIONS and (name, key) not in OTHER_FORMATS]
    assert readers == []
