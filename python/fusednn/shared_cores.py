"""One OpenMP thread for the recurrent kernels while other programs keep the cores busy.

Why: a recurrent sequence's threads meet at a barrier at every step (a few to
a few hundred microseconds apart), and libgomp's default wait spins 300,000
pauses (about 3 ms on this project's Xeon) before it sleeps. When a competing
process has descheduled the partner thread, every barrier turns into a wait for
the scheduler while the spinning thread burns the core the partner needs. On 2
cores at load average ~14 (2026-12-06), the lecture LSTM model's training step
at batch 16 took 2,976 ms on 2 threads and 152 ms on 1 (35 ms alone). libgomp
reads its wait policy once, when it loads (often before fusednn, as a dependency
of torch), so the thread count is what fusednn can still change.

Only the recurrent kernels drop to one thread (ops/recurrent.py calls run). GEMM,
convolution, pooling and the pointwise kernels meet once per call, at the join
of a parallel region that lasts milliseconds, and one thread would give up half
of the share of the cores they get: beside two busy-loop processes on the 2-core
Xeon, the lecture CNN's training step slowed 3.88x with every kernel dropping to
one thread and 2.79x on two (torch: 2.95x; fusednn bench --suite shared_cores,
2026-12-06).

Signal: Linux's CPU pressure (/proc/pressure/cpu, "some avg10": the share of
the last 10 s in which a runnable task waited for a core), read at most twice a
second. Above CROWDED percent the recurrent kernels run on one thread; once it falls
below FREE percent, on the set count again (the gap keeps one thread from
flipping back at the first quiet second). fd.get_num_threads() keeps reporting
the set count: the single thread applies only while a kernel runs. Without the
pressure file (other systems, kernels without PSI) nothing changes;
set_enabled(False) turns the adaptation off (for timing runs, say).
"""
from __future__ import annotations

import time

from . import _C

CROWDED = 50.0
FREE = 10.0
_CHECK_INTERVAL_S = 0.5
_PRESSURE_FILE = "/proc/pressure/cpu"


class Monitor:
    """Whether the cores are crowded, from a PSI file read at most every
    _CHECK_INTERVAL_S seconds."""

    def __init__(self, path: str = _PRESSURE_FILE, clock=time.monotonic):
        self.path = path
        self.enabled = True
        self._clock = clock
        self._crowded = False
        self._next_check = float("-inf")

    def crowded(self) -> bool:
        if not self.enabled:
            return False
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + _CHECK_INTERVAL_S
            pressure = cpu_pressure(self.path)
            if pressure is None:
                self._crowded = False
            else:
                self._crowded = pressure >= FREE if self._crowded else pressure > CROWDED
        return self._crowded


def cpu_pressure(path: str = _PRESSURE_FILE):
    """The "some avg10" percentage of a PSI file, or None when it cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("some "):
                    fields = dict(item.split("=", 1) for item in line.split()[1:])
                    return float(fields["avg10"])
    except (OSError, ValueError, KeyError):
        pass
    return None


MONITOR = Monitor()


def run(kernel, *args):
    """kernel(*args), on one thread while the cores are crowded (the recurrent kernels)."""
    if not MONITOR.crowded():
        return kernel(*args)
    threads = _C.get_num_threads()
    if threads == 1:
        return kernel(*args)
    _C.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        _C.set_num_threads(threads)


def set_enabled(enabled: bool) -> None:
    """Whether the recurrent kernels drop to one thread while the cores are crowded (default True)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_enabled: expected True or False, got {enabled!r}")
    MONITOR.enabled = enabled


__all__ = ["CROWDED", "FREE", "MONITOR", "Monitor", "cpu_pressure", "run", "set_enabled"]
