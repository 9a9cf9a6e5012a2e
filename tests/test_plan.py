"""The plan: which URL and which filled-in path at each position, seeded and shardable."""

import re

import pytest

from helpers import valid_config
from moodleload.config import validate_config
from moodleload.exits import UsageError
from moodleload.load.plan import plan_requests
from moodleload.shards import parse_start_at, start_at_text
from moodleload.steps.kinds import STEP_KINDS


def test_the_plan_draws_every_value_of_a_range_about_equally_often():
    config = validate_config(valid_config(urls=[{"path": "/course/view.php?id={courseid}"}]), STEP_KINDS)
    paths = [p.path for p in plan_requests(config, seed=3, count=8000)]
    counts = [paths.count(f"/course/view.php?id={n}") for n in range(2, 6)]
    assert min(counts) > 1850 and max(counts) < 2150


def test_the_same_seed_plans_the_same_sequence_and_another_seed_does_not():
    config = validate_config(valid_config(), STEP_KINDS)
    first = list(plan_requests(config, seed=7, count=300))
    assert first == list(plan_requests(config, seed=7, count=300))
    assert first != list(plan_requests(config, seed=8, count=300))


def test_shards_of_a_plan_add_up_to_the_whole_plan():
    config = validate_config(valid_config(), STEP_KINDS)
    whole = list(plan_requests(config, seed=1, count=100))
    shards = [list(plan_requests(config, seed=1, count=100, start=k, step=3)) for k in range(3)]
    assert sorted((p for shard in shards for p in shard), key=lambda p: p.index) == whole


def test_urls_are_chosen_by_weight():
    config = validate_config(valid_config(urls=[{"path": "/a", "weight": 3}, {"path": "/b"}]), STEP_KINDS)
    picks = [p.url_index for p in plan_requests(config, seed=1, count=4000)]
    assert 0.72 < picks.count(0) / len(picks) < 0.78


# ---- --start-at: one moment every shard of a run opens its schedule at

NOW = 1_796_461_200.0  # 2026-12-05T09:00:00Z


def test_start_at_in_seconds_from_now_is_that_far_ahead():
    assert parse_start_at("+30", NOW) == NOW + 30


def test_start_at_as_a_utc_time_reads_the_same_on_every_machine():
    assert parse_start_at("2026-12-05T09:00:30Z", NOW) == NOW + 30
    assert parse_start_at("2026-12-05T10:00:30+01:00", NOW) == NOW + 30
    assert parse_start_at(start_at_text(NOW + 30.25), NOW) == NOW + 30.25


@pytest.mark.parametrize("text, says", [
    ("2026-12-05T09:00:30", "has no zone"),  # each machine would read its own local time
    ("2026-12-05T08:59:00Z", "is 60.0 s past"),
    ("+0", "give +S with S seconds from now above 0"),
    ("+nan", "give +S"),
    ("tomorrow", "is not a time"),
    ("2026-12-07T09:00:00Z", "hours ahead"),
])
def test_a_start_at_that_shards_could_not_meet_at_is_refused_in_one_line(text, says):
    with pytest.raises(UsageError, match=re.escape(says)):
        parse_start_at(text, NOW)
