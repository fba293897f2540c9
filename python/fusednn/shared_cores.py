"""The CPU kernels' thread count while other programs use some of the cores: at most
the cores they leave free, and at least one.

Why: the kernels' threads meet at barriers (a recurrent sequence at every step, a few
to a few hundred microseconds apart; GEMM, convolution and the rest at the end of
each parallel region), and libgomp's default wait spins about 3 ms before it sleeps.
A thread that another program has descheduled turns each barrier into a wait for the
scheduler while its partners spin on the cores it needs. On the 2-core Xeon
(2026-12-07, each policy timed in its own process over 200-300 steps): beside one
busy-loop process the lecture LSTM model's training step (batch 16) took 186 ms
(median) / 330 ms (mean) on two threads and 33.5 / 33.8 ms on one (19 ms alone), the
lecture CNN's step (batch 64) 24.6 / 47.9 ms against 12.0 / 12.4 (7.3 alone); beside
two, the LSTM 53 / 129 against 62 / 63 and the CNN 15.5-16.0 / 20-26 against
15.6-16.8 / 18.5-19.2; at load ~14 (2026-12-06) the LSTM step took 2,976 ms on two
threads and 152 on one. libgomp reads its wait policy once, when it loads (often
before fusednn, as a dependency of torch), so the thread count is what fusednn can
still change.

Signal: the cores the other programs use, over the half second or more since the
previous reading: the growth of the busy time of the CPUs this process may run on
(/proc/stat; steal time counts as busy) minus that of this process's own CPU time
(os.times, all its threads). Every CPU kernel (ops through run) then uses
min(set count, round(cores - others)) threads, at least one; alone that is the set
count. An earlier rule read the CPU pressure (PSI), which is near 100% both beside
one busy loop and at load 14 and cannot size the count for a machine with more
cores; one that chose per recurrent call shape between one thread and the set count
by timing both mixed thread counts within a step (the other kernels kept theirs) and
measured 84 / 95 ms beside two loops. This rule, in the same runs: beside one loop the
LSTM step 37.1-38.5 / 39.8-41.1 ms and the CNN 12.7 / 12.8, beside two 61.5 / 63.0 and
14.7 / 20.1, alone unchanged. fd.get_num_threads() keeps reporting the set
count: the smaller one applies only while a kernel runs.

Quota: in a control group with a CPU quota (a container run with --cpus, a Kubernetes
CPU limit; fusednn.cpu_quota) the count is also at most the quota rounded up, read once
at import: OpenMP's count is the host's CPUs there.

Without /proc/stat (other systems) nothing changes; set_enabled(False) turns the
adaptation off (for timing runs, say).
"""
from __future__ import annotations

import math
import os
import time

from . import _C, cpu_quota

_CHECK_INTERVAL_S = 0.5
_STAT_FILE = "/proc/stat"
# /proc/stat's columns after the CPU's name: user nice system idle iowait irq softirq steal;
# all but idle and iowait are busy (guest time is inside user).
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def _allowed_cpus():
    """The CPUs this process may run on (all of them where the system cannot say: macOS,
    Windows)."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return range(os.cpu_count() or 1)


def _ticks_per_second() -> int:
    """/proc/stat's clock ticks per second (100 where sysconf is missing; without /proc/stat
    it is never used)."""
    try:
        return os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class Monitor:
    """How many cores the other programs leave free, from /proc/stat read at most every
    _CHECK_INTERVAL_S seconds."""

    def __init__(self, stat_path: str = _STAT_FILE, cpus=None, clock=time.monotonic,
                 own_cpu_seconds=_own_cpu_seconds, cores_allowed=cpu_quota.cores_allowed):
        self.stat_path = stat_path
        self.enabled = True
        self._cpus = sorted(_allowed_cpus() if cpus is None else cpus)
        # A control group's CPU quota, in cores (None: none), read once: the kernels never
        # run on more threads than it rounded up.
        self.quota = cores_allowed()
        self.quota_threads = None if self.quota is None else max(1, math.ceil(self.quota))
        self._clock = clock
        self._own_cpu_seconds = own_cpu_seconds
        self._ticks_per_second = _ticks_per_second()
        self._next_check = float("-inf")
        self._last = None  # (time, busy seconds of our CPUs, own CPU seconds)
        self._free = float(len(self._cpus))

    def threads(self, wanted: int) -> int:
        """The thread count for a kernel asked to run on `wanted` threads."""
        if not self.enabled:
            return wanted
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + _CHECK_INTERVAL_S
            self._free = self._free_since_last_reading(now)
        if self.quota_threads is not None:
            wanted = min(wanted, self.quota_threads)
        return max(1, min(wanted, int(self._free + 0.5)))

    def _free_since_last_reading(self, now) -> float:
        """Cores not used by other programs since the previous reading (all of ours at the
        first reading, or without a readable /proc/stat)."""
        busy = busy_cpu_seconds(self.stat_path, self._cpus, self._ticks_per_second)
        reading = None if busy is None else (now, busy, self._own_cpu_seconds())
        last, self._last = self._last, reading
        if reading is None or last is None or now <= last[0]:
            return float(len(self._cpus))
        others = (reading[1] - last[1]) - (reading[2] - last[2])
        return len(self._cpus) - max(0.0, others / (now - last[0]))


def busy_cpu_seconds(path: str, cpus, ticks_per_second: int):
    """Seconds the CPUs `cpus` have been busy since boot, from a /proc/stat file, or None when
    it cannot be read (or lists none of them)."""
    wanted = {f"cpu{cpu}" for cpu in cpus}
    ticks, found = 0, 0
    try:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] in wanted:
                    values = [int(v) for v in fields[1:9]]
                    ticks += sum(values[column] for column in _BUSY_COLUMNS if column < len(values))
                    found += 1
    except (OSError, ValueError):
        return None
    return ticks / ticks_per_second if found else None


MONITOR = Monitor()


def run(kernel, *args):
    """kernel(*args) on the set thread count, or on fewer while other programs use the
    cores (every CPU kernel of the ops)."""
    threads = _C.get_num_threads()
    use = threads if threads == 1 else MONITOR.threads(threads)
    if use == threads:
        return kernel(*args)
    _C.set_num_threads(use)
    try:
        return kernel(*args)
    finally:
        _C.set_num_threads(threads)


def set_enabled(enabled: bool) -> None:
    """Whether the kernels run on fewer threads while other programs use the cores (default
    True)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_enabled: expected True or False, got {enabled!r}")
    MONITOR.enabled = enabled


__all__ = ["MONITOR", "Monitor", "busy_cpu_seconds", "run", "set_enabled"]
