"""Config validation, URL filling and the pure pieces of moodle_load.py."""

import math
import random

import pytest

from moodleload.config import fill_url, validate_config
from moodleload.exits import UsageError
from moodleload.histogram import Histogram
from moodleload.moodle import find_logintoken
from moodleload.plan import plan_requests


def valid(**changes):
    config = {"base_url": "https://moodle.test", "users": [{"username": "u1", "password": "p"}],
              "parameters": {"courseid": {"min": 2, "max": 5}, "cmid": {"values": [7, 9]}},
              "urls": [{"path": "/course/view.php?id={courseid}"}, {"path": "/mod/forum/view.php?id={cmid}"}]}
    config.update(changes)
    return config


def error_of(raw) -> str:
    with pytest.raises(UsageError) as caught:
        validate_config(raw)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_valid_config_loads_with_defaults():
    config = validate_config(valid())
    assert config.login_path == "/login/index.php"
    assert [u.name for u in config.urls] == ["/course/view.php?id={courseid}", "/mod/forum/view.php?id={cmid}"]
    assert [u.weight for u in config.urls] == [1.0, 1.0]
    assert config.warnings == []


@pytest.mark.parametrize("changes, complaint", [
    ({"users": []}, "users must be a non-empty list"),
    ({"users": [{"username": "x"}]}, "users[0] needs a 'username' and a 'password'"),
    ({"urls": []}, "urls must be a non-empty list"),
    ({"urls": [{"path": "/x?id={nope}"}]}, "urls[0].path uses {nope} but parameters has no 'nope'"),
    ({"parameters": {"courseid": {"min": 9, "max": 2}}}, "parameters.courseid: min 9 is greater than max 2"),
    ({"parameters": {"courseid": {"min": 1.5, "max": 2}}}, "parameters.courseid.min must be an integer"),
    ({"parameters": {"courseid": {"min": "1", "max": 2}}}, "parameters.courseid.min must be an integer"),
    ({"parameters": {"courseid": {"values": []}}}, "parameters.courseid.values must be a non-empty list"),
    ({"base_url": "ftp://moodle.test"}, "base_url must be an http:// or https:// URL"),
    ({"base_url": "moodle.test"}, "base_url must be an http:// or https:// URL"),
    ({"urls": [{"path": "/my/", "weight": 0}]}, "urls[0].weight must be a positive number"),
    ({"urls": [{"path": "my/"}]}, "urls[0] needs a 'path' starting with '/'"),
    ({"urls": [{"path": "/a", "name": "x"}, {"path": "/b", "name": "x"}]}, "is used twice"),
], ids=lambda v: str(v)[:40])
def test_each_config_mistake_is_one_line_naming_the_key(changes, complaint):
    raw = valid(**changes)
    if "parameters" in changes and "urls" not in changes:
        raw["urls"] = [{"path": "/course/view.php?id={courseid}"}]
    assert complaint in error_of(raw)


def test_unknown_top_level_keys_only_warn():
    config = validate_config(valid(colour="blue"))
    assert config.warnings == ["config: unknown key 'colour' ignored"]


def test_placeholders_are_filled_from_ranges_and_value_lists():
    config = validate_config(valid())
    units = [0.0, 0.2499, 0.25, 0.5, 0.75, 0.9999]
    courses = [fill_url(config.urls[0], config.parameters, iter([u])) for u in units]
    assert courses == [f"/course/view.php?id={n}" for n in (2, 2, 3, 4, 5, 5)]
    forums = [fill_url(config.urls[1], config.parameters, iter([u])) for u in units]
    assert forums == [f"/mod/forum/view.php?id={n}" for n in (7, 7, 7, 9, 9, 9)]


def test_the_plan_draws_every_value_of_a_range_about_equally_often():
    config = validate_config(valid(urls=[{"path": "/course/view.php?id={courseid}"}]))
    paths = [p.path for p in plan_requests(config, seed=3, count=8000)]
    counts = [paths.count(f"/course/view.php?id={n}") for n in range(2, 6)]
    assert min(counts) > 1850 and max(counts) < 2150


def test_urls_are_chosen_by_weight():
    config = validate_config(valid(urls=[{"path": "/a", "weight": 3}, {"path": "/b"}]))
    picks = [p.url_index for p in plan_requests(config, seed=1, count=4000)]
    assert 0.72 < picks.count(0) / len(picks) < 0.78


def test_the_same_seed_plans_the_same_sequence_and_another_seed_does_not():
    config = validate_config(valid())
    first = list(plan_requests(config, seed=7, count=300))
    assert first == list(plan_requests(config, seed=7, count=300))
    assert first != list(plan_requests(config, seed=8, count=300))


def test_shards_of_a_plan_add_up_to_the_whole_plan():
    config = validate_config(valid())
    whole = list(plan_requests(config, seed=1, count=100))
    shards = [list(plan_requests(config, seed=1, count=100, start=k, step=3)) for k in range(3)]
    assert sorted((p for shard in shards for p in shard), key=lambda p: p.index) == whole


@pytest.mark.parametrize("html", [
    '<input type="hidden" name="logintoken" value="abcDEF0123456789abcDEF0123456789">',
    "<input value='abcDEF0123456789abcDEF0123456789' name='logintoken' type='hidden'/>",
    '<INPUT name=logintoken type=hidden value=abcDEF0123456789abcDEF0123456789>',
    '<input\n  type="hidden"\n  value="abcDEF0123456789abcDEF0123456789"\n  name="logintoken"\n>',
])
def test_logintoken_is_found_whatever_the_attribute_order_and_quoting(html):
    page = f'<form id="login"><input name="username" value="">{html}</form>'
    assert find_logintoken(page) == "abcDEF0123456789abcDEF0123456789"


def test_a_page_without_logintoken_gives_none():
    assert find_logintoken('<form><input name="username"></form>') is None


def test_real_moodle_login_page_token_is_found():
    with open(__file__.replace("test_load_config.py", "data/login-page.html"), encoding="utf-8") as handle:
        assert find_logintoken(handle.read()) == "lNKlqWkGszD7K8sRb1ucA29MtvMvGCtV"


def test_histogram_percentiles_are_within_one_percent():
    rng = random.Random(5)
    values = sorted(rng.lognormvariate(4.5, 0.7) for _ in range(20000))
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    for q in (50, 90, 95, 99, 99.9):
        exact = values[math.ceil(q / 100 * len(values)) - 1]  # the nearest-rank percentile
        assert abs(histogram.percentile(q) - exact) / exact <= 0.01
    assert histogram.maximum == values[-1] and histogram.count == 20000


def test_histogram_memory_does_not_grow_with_the_number_of_values():
    histogram = Histogram()
    rng = random.Random(1)
    for _ in range(100000):
        histogram.record(rng.uniform(1, 10000))
    assert len(histogram.counts) < 500


def test_merged_histograms_equal_one_histogram_of_all_values():
    rng = random.Random(2)
    a, b, whole = Histogram(), Histogram(), Histogram()
    for n in range(5000):
        value = rng.expovariate(1 / 80)
        (a if n % 2 else b).record(value)
        whole.record(value)
    merged = Histogram.from_dict(a.to_dict()).merge(Histogram.from_dict(b.to_dict()))
    assert merged.counts == whole.counts
    assert merged.percentile(99) == whole.percentile(99)
