"""What the load machine was doing beside a run, and where a large spread came from."""

from moodleload.load.machine import contended, cpu_counters, noise_notes, summarise
from moodleload.results.sections import Machine


def document(other_busy_cores: float, steal: float = 0.0) -> Machine:
    """A run's machine: a 2-core machine that other processes kept this busy."""
    return Machine(busy_cores=other_busy_cores + 0.1, other_busy_cores=other_busy_cores, cpus=2.0,
                   steal_share=steal, load_average=1.0)


def test_the_cpu_counters_of_this_machine_are_read_from_proc():
    before = cpu_counters()
    assert before is not None and before[2] >= before[0] >= 0


def test_other_processes_cpu_is_the_machine_busy_time_less_the_generator():
    summary = summarise((100.0, 0.0, 400.0), (160.0, 1.0, 520.0), wall_seconds=60.0, own_cpu_seconds=12.0)
    assert summary is not None and summary.busy_cores == 1.0 and summary.other_busy_cores == 0.8
    assert summary.steal_share == round(1 / 120, 4)


def test_the_run_that_ran_beside_the_most_other_work_is_named():
    notes = noise_notes([document(0.4), document(1.8), document(0.5)], [document(0.45)])
    assert notes == ["the load machine was 90% busy with other processes during baseline run 2 (the other runs "
                     "20%-25%): the likeliest source of the spread"]


def test_ordinary_scatter_of_a_shared_box_names_nothing():
    assert noise_notes([document(0.4), document(0.6)], [document(0.5)]) == []


def test_steal_time_is_named():
    assert "hypervisor" in noise_notes([document(0.4, steal=0.2), document(0.4)], [document(0.4)])[0]


def test_a_run_beside_too_much_other_work_is_not_comparable_when_asked():
    assert contended([document(0.2)], [document(1.9)], 0.5) == [
        "run 1 of this commit ran beside other processes using 95% of the machine (--max-other-cpu 50%)"]
    assert contended([document(0.2)], [document(1.9)], None) == []


def test_a_shift_of_the_neighbours_within_a_quarter_of_the_cores_is_ordinary_scatter():
    from moodleload.load.machine import neighbours_shift

    assert neighbours_shift([0.1, 0.2], [0.6], cpus=2.0) is None
    assert neighbours_shift([0.1, 0.2], [0.8], cpus=2.0).direction == "busier"
    assert neighbours_shift([1.8, 1.9], [1.0], cpus=2.0).direction == "quieter"
    assert neighbours_shift([0.1, None], [None], cpus=2.0) is None  # not recorded: nothing to say
