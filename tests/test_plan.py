"""The plan: which URL and which filled-in path at each position, seeded and shardable."""



from helpers import valid_config
from moodleload.config import validate_config
from moodleload.plan import plan_requests


def test_the_plan_draws_every_value_of_a_range_about_equally_often():
    config = validate_config(valid_config(urls=[{"path": "/course/view.php?id={courseid}"}]))
    paths = [p.path for p in plan_requests(config, seed=3, count=8000)]
    counts = [paths.count(f"/course/view.php?id={n}") for n in range(2, 6)]
    assert min(counts) > 1850 and max(counts) < 2150


def test_the_same_seed_plans_the_same_sequence_and_another_seed_does_not():
    config = validate_config(valid_config())
    first = list(plan_requests(config, seed=7, count=300))
    assert first == list(plan_requests(config, seed=7, count=300))
    assert first != list(plan_requests(config, seed=8, count=300))


def test_shards_of_a_plan_add_up_to_the_whole_plan():
    config = validate_config(valid_config())
    whole = list(plan_requests(config, seed=1, count=100))
    shards = [list(plan_requests(config, seed=1, count=100, start=k, step=3)) for k in range(3)]
    assert sorted((p for shard in shards for p in shard), key=lambda p: p.index) == whole


def test_urls_are_chosen_by_weight():
    config = validate_config(valid_config(urls=[{"path": "/a", "weight": 3}, {"path": "/b"}]))
    picks = [p.url_index for p in plan_requests(config, seed=1, count=4000)]
    assert 0.72 < picks.count(0) / len(picks) < 0.78
