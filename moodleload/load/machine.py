"""What the machine running the load was doing beside it, from /proc: the CPU time every
process used (less the generator's own), steal time, the load average.  Run-to-run spread
often comes from there; a comparison names the run that ran beside the most other work."""

from __future__ import annotations

import os
from dataclasses import dataclass

from moodleload.exits import UsageError
from moodleload.results.sections import Machine

CpuCounters = tuple[float, float, float]  # busy, steal and all seconds of every CPU since boot


def cpu_counters(path: str = "/proc/stat") -> CpuCounters | None:
    """(busy seconds, steal seconds, all seconds) of every CPU since boot, or None off Linux."""
    try:
        with open(path, encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        return None
    ticks = [int(value) for value in fields[1:] if value.isascii() and value.isdigit()]
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    steal = ticks[7] if len(ticks) > 7 else 0
    everything = sum(ticks[:8])  # guest time is already inside user time
    return (everything - idle - steal) / tick, steal / tick, everything / tick


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def summarise(before: CpuCounters | None, after: CpuCounters | None, wall_seconds: float,
              own_cpu_seconds: float) -> Machine | None:
    """The machine beside the run: cores kept busy by other processes, steal share."""
    if before is None or after is None or wall_seconds <= 0:
        return None
    busy, steal, everything = (end - start for start, end in zip(before, after, strict=True))
    return Machine(busy_cores=round(busy / wall_seconds, 3),
                   other_busy_cores=round(max(0.0, busy - own_cpu_seconds) / wall_seconds, 3),
                   cpus=float(os.cpu_count() or 1), steal_share=round(steal / everything, 4) if everything > 0 else 0.0,
                   load_average=load_average())


BUSY_DIFFERENCE = 0.25  # of the machine's cores: less is ordinary scatter of a shared box


def noise_notes(bases: list[Machine | None], news: list[Machine | None]) -> list[str]:
    """Where a large spread likely came from, where it is measurable: the run whose machine
    was busiest with other processes, when it stands out from the rest.  ``bases`` and
    ``news``: each run's Machine (summarise's), None where it was not recorded."""
    labelled = [(f"baseline run {position}", machine) for position, machine in enumerate(bases, 1)]
    labelled += [(f"run {position} of this commit", machine) for position, machine in enumerate(news, 1)]
    measured = [(label, machine) for label, machine in labelled if machine]
    if len(measured) < 2:
        return []
    label, busiest = max(measured, key=lambda item: item[1].other_busy_cores)
    others = [machine.other_busy_cores for name, machine in measured if name != label]
    cpus = busiest.cores
    notes = []
    if busiest.other_busy_cores - max(others) > BUSY_DIFFERENCE * cpus:
        notes.append(f"the load machine was {busiest.other_busy_cores / cpus:.0%} busy with other processes "
                     f"during {label} (the other runs {min(others) / cpus:.0%}-{max(others) / cpus:.0%}): the "
                     f"likeliest source of the spread")
    stolen = [(name, machine.steal_share) for name, machine in measured if machine.steal_share > 0.05]
    if stolen:
        notes.append("the hypervisor took CPU from the load machine: " + ", ".join(
            f"{share:.0%} during {name}" for name, share in stolen))
    return notes


@dataclass(frozen=True)
class NeighboursShift:
    """The load machine's other processes during this commit's runs against the baseline's."""

    direction: str  # "busier" or "quieter"
    cores: float  # what they kept busy during this commit's runs (mean)
    low: float  # ... and the range during the baseline's runs
    high: float
    cpus: float

    def line(self, aside: str = "") -> str:
        """Why service time cannot tell this commit from the machine; ``aside``: one more fact
        for the parenthesis."""
        return (f"the load machine was {self.direction} than during the baseline (its other processes kept "
                f"{self.cores:.1f} of its {self.cpus:g} cores busy, against {self.low:.1f}-{self.high:.1f}{aside}): "
                f"service time moves with the machine, so it cannot tell this commit from the machine; measure it "
                f"when the machine is as busy as for the baseline, record the baseline again, or judge by the work "
                f"(--judge work, with the footer's CPU time)")


def neighbours_shift(bases: list[float | None], news: list[float | None], cpus: float) -> NeighboursShift | None:
    """Whether the waiting in this commit's runs cannot be told from the machine's: the cores
    the load machine's other processes kept busy (``bases``, ``news``: per run, None where not
    recorded) moved outside the baseline runs' range by more than BUSY_DIFFERENCE of the
    cores.  Service time is work plus waiting for a core, so a machine busier than during the
    baseline makes any page slower, and a quieter one hides a slowdown."""
    before = [value for value in bases if value is not None]
    after = [value for value in news if value is not None]
    if not before or not after:
        return None
    low, high = min(before), max(before)
    new = sum(after) / len(after)
    if low - BUSY_DIFFERENCE * cpus <= new <= high + BUSY_DIFFERENCE * cpus:
        return None
    return NeighboursShift("busier" if new > high else "quieter", new, low, high, cpus)


# The work a page does moves with the machine's contention too: more runnable tasks per core
# mean more preemptions, cold caches and scheduler time inside every request.  Measured with
# bench/busy.py: a load average 20-30 % above the baseline's made a 40 ms page 5-8 % dearer.
LOAD_SHIFT = 0.2  # relative change of the load average per core beyond which the work is in doubt
LOAD_SHIFT_FLOOR = 0.25  # runnable tasks per core: below it a change is the ordinary scatter of a quiet box


def load_per_core(machine: Machine | None) -> float | None:
    return None if machine is None else machine.load_per_core


def contention_shift(bases: list[Machine | None], news: list[Machine | None]) -> str | None:
    """Why the work (CPU time per answer) of these runs cannot be compared, or None: the load
    machine's load average per core during this commit's runs moved away from the baseline's
    by more than LOAD_SHIFT (and LOAD_SHIFT_FLOOR).  ``bases`` and ``news``: each run's Machine."""
    before = [value for value in map(load_per_core, bases) if value is not None]
    after = [value for value in map(load_per_core, news) if value is not None]
    if not before or not after:
        return None
    base, new = sum(before) / len(before), sum(after) / len(after)
    low, high = min(before), max(before)
    distance = max(low - new, new - high, 0.0)
    if distance <= LOAD_SHIFT_FLOOR or distance <= LOAD_SHIFT * max(base, new):
        return None
    word = "busier" if new > base else "quieter"
    return (f"the load machine was {word} than during the baseline (load average {new:.1f} per core against "
            f"{low:.1f}-{high:.1f}): the work a page does moves with contention too, so this commit's work cannot "
            f"be told from the machine's; measure it when the machine is as busy as for the baseline, or record "
            f"the baseline again")


def contended(bases: list[Machine | None], news: list[Machine | None],
              max_other_cpu: float | None) -> list[str]:
    """Runs taken beside more other work than --max-other-cpu allows: not comparable.
    ``bases`` and ``news``: each run's Machine, None where it was not recorded."""
    if max_other_cpu is None:
        return []
    reasons = []
    for position, machine in enumerate(bases + news):
        if not machine:
            continue
        share = machine.other_busy_cores / machine.cores
        if share > max_other_cpu:
            which = f"baseline run {position + 1}" if position < len(bases) else f"run {position - len(bases) + 1} " \
                                                                                  f"of this commit"
            reasons.append(f"{which} ran beside other processes using {share:.0%} of the machine "
                           f"(--max-other-cpu {max_other_cpu:.0%})")
    return reasons


SPARE_FILES = 64  # what Python, the event loop, the output files and a few late sockets take


def ensure_open_files(connections: int) -> None:
    """Make sure this process may open a socket for each connection it will hold at once:
    raise the soft open-file limit towards the hard one where needed (as locust and wrk
    users do by hand), and refuse now, before any login, where even that is too low:
    a generator out of file descriptors would read as a site that cannot be reached."""
    try:
        import resource
    except ImportError:  # not a Unix: nothing to check
        return
    needed = connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    raise UsageError(f"this process may open {soft} files (ulimit -n; at most {hard}) but --concurrency "
                     f"{connections} needs about {needed}: raise the limit (ulimit -n {needed}) or lower --concurrency")
