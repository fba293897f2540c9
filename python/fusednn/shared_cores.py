"""One OpenMP thread for the recurrent kernels while other programs keep the cores busy,
where their own calls run faster that way.

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
2026-12-06). That suite times its contenders interleaved in one process, where one
contender's thread count changes the next one's (a worker left asleep must be woken
under contention). Timed each in its own process over 200-300 steps beside two loops
(2026-12-07) the picture differs: the CNN step took 15.5-16.0 ms (median) and 20-26
ms (mean) on two threads, 15.6-16.8 and 18.5-19.2 with every kernel on one; the LSTM
step 53 / 129 ms on two threads throughout, 62 / 63 with every kernel on one, and 84
/ 95 with this module's choice (which runs its recurrent kernels mostly on one thread
and the rest on two). Beside one busy loop, likewise in separate processes: the LSTM
step 186 / 330 ms on two threads, 33.5 / 33.8 with every kernel on one (it gets the
free core), 44 / 60 with this module's choice; the CNN 24.6 / 47.9 against 12.0 /
12.4. So a thread count for every kernel sized by the cores other programs leave free
is the better rule; it is not what this module does yet.

Signal: Linux's CPU pressure (/proc/pressure/cpu, "some": the share of the time in
which a runnable task waited for a core) over the half second or more since its
previous reading, from the growth of its total (its 10-second average lags: a phase
alone right after one beside a competitor ran on one thread for ~10 s, and a
competitor went unseen for the first ~7 s). Above CROWDED percent the recurrent
kernels may run on one thread; once it falls below FREE percent, on the set count
again (the gap keeps the state from flipping back at the first quiet second).
fd.get_num_threads() keeps reporting the set count: the single thread applies only
while a kernel runs. Without the pressure file (other systems, kernels without PSI)
nothing changes; set_enabled(False) turns the adaptation off (for timing runs, say).

Choice: the pressure cannot tell which thread count is faster; it is near 100% in
both of these cases (lecture LSTM model's training step at batch 16, 2-core Xeon,
2026-12-07): beside 2 busy-loop processes two threads took 48-56 ms and one 69-74
ms (medians of 32-40 steps, 7 runs), beside 12 two threads took 5,816 ms and one 263.
So while crowded, each kernel call shape (the kernel, its arrays' shapes and
dtypes, the thread count) runs on one thread only where the mean of its last
SAMPLES calls on one thread is below ONE_THREAD_BY times that on the set count. It
starts on one thread (the safe side at a heavy load), tries the set count on the
next call, and times the slower count again once the calls on the faster one since
it last ran add up to 1 / RECHECK_SHARE times what it lost then: re-checks cost at
most RECHECK_SHARE of the time, while a load that changes gets re-measured. Means,
not medians: beside a competitor a two-thread call is now and then 10-50x slower (a
partner thread descheduled at a barrier), and those calls are part of its cost.
ONE_THREAD_BY is 0.5, not 1: the means of 4 noisy calls are rough, and near-equal
times should keep the set count, which is right again as soon as the load drops.
What it gave beside 2 loops, against 48-56 ms with two threads throughout: 60 and
66 ms at 0.75, 64, 64 and 74 ms at 0.5 (runs of 32-40 steps), within their noise;
beside 12 loops 1,260 ms a step (4 steps, the first of them trying two threads)
against 4,972 with two threads (fusednn bench --suite shared_cores).
"""
from __future__ import annotations

import collections
import statistics
import time

import numpy as np

from . import _C

CROWDED = 50.0
FREE = 10.0
SAMPLES = 4
RECHECK_SHARE = 0.05
ONE_THREAD_BY = 0.5
_MAX_SHAPES = 256  # call shapes timed at once; past it the timings start over
_CHECK_INTERVAL_S = 0.5
_PRESSURE_FILE = "/proc/pressure/cpu"


class Monitor:
    """Whether the cores are crowded, from a PSI file read at most every _CHECK_INTERVAL_S
    seconds: the pressure since the previous reading (the growth of "some total"), so a
    competitor is seen within a second of starting or stopping, where avg10 lags ~10 s."""

    def __init__(self, path: str = _PRESSURE_FILE, clock=time.monotonic):
        self.path = path
        self.enabled = True
        self._clock = clock
        self._crowded = False
        self._next_check = float("-inf")
        self._last = None  # (time, "some total" in microseconds) of the previous reading
        self.timings = {}  # while crowded: (kernel, thread count, call shape) -> Timings

    def crowded(self) -> bool:
        if not self.enabled:
            return False
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + _CHECK_INTERVAL_S
            pressure = self._pressure_since_last_reading(now)
            was_crowded = self._crowded
            if pressure is None:
                self._crowded = False
            else:
                self._crowded = pressure >= FREE if self._crowded else pressure > CROWDED
            if was_crowded and not self._crowded:
                self.timings.clear()  # a later crowding is another load: measured afresh
        return self._crowded

    def _pressure_since_last_reading(self, now):
        """Percent of the time since the previous reading in which a runnable task waited for a
        core; avg10 at the first reading; None without a readable file."""
        reading = read_pressure(self.path)
        last, self._last = self._last, None if reading is None else (now, reading[1])
        if reading is None:
            return None
        if last is None or now <= last[0]:
            return reading[0]
        return min(100.0, (reading[1] - last[1]) / (now - last[0]) / 1e4)  # us per s -> %


def read_pressure(path: str = _PRESSURE_FILE):
    """(avg10 in percent, total in microseconds) of a PSI file's "some" line, or None when it
    cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("some "):
                    fields = dict(item.split("=", 1) for item in line.split()[1:])
                    return float(fields["avg10"]), int(fields["total"])
    except (OSError, ValueError, KeyError):
        pass
    return None


def cpu_pressure(path: str = _PRESSURE_FILE):
    """The "some avg10" percentage of a PSI file, or None when it cannot be read."""
    reading = read_pressure(path)
    return None if reading is None else reading[0]


MONITOR = Monitor()


class Timings:
    """The last SAMPLES times (seconds) of one kernel call shape on one thread and on the set
    count, and which of the two its next call runs on (see Choice above)."""

    def __init__(self):
        self.seconds = {True: collections.deque(maxlen=SAMPLES),
                        False: collections.deque(maxlen=SAMPLES)}  # keyed by "on one thread"
        self.since_recheck = 0.0  # seconds on the faster count since the slower one last ran

    def one_thread_next(self) -> bool:
        faster = self._one_thread_faster()
        if faster is None:
            return not self.seconds[True]  # one thread first (safe at a heavy load), then the set
        lost = abs(statistics.fmean(self.seconds[True]) - statistics.fmean(self.seconds[False]))
        return faster != (self.since_recheck * RECHECK_SHARE >= lost)

    def record(self, one_thread: bool, seconds: float) -> None:
        on_faster = self._one_thread_faster() == one_thread
        self.since_recheck = self.since_recheck + seconds if on_faster else 0.0
        self.seconds[one_thread].append(seconds)

    def _one_thread_faster(self):
        """None until both counts have been timed."""
        one, many = self.seconds[True], self.seconds[False]
        if not one or not many:
            return None
        return statistics.fmean(one) < ONE_THREAD_BY * statistics.fmean(many)


def _shape_key(arg):
    if isinstance(arg, np.ndarray):
        return arg.shape, arg.dtype.char
    if arg is None or isinstance(arg, (bool, int, float, str)):
        return arg
    return type(arg).__name__


def _timings(kernel, args, threads) -> Timings:
    key = (kernel, threads, tuple(_shape_key(arg) for arg in args))
    timings = MONITOR.timings.get(key)
    if timings is None:
        if len(MONITOR.timings) >= _MAX_SHAPES:
            MONITOR.timings.clear()
        timings = MONITOR.timings[key] = Timings()
    return timings


_timer = time.perf_counter  # a module attribute, so that tests can stand in a clock


def run(kernel, *args):
    """kernel(*args); while the cores are crowded, on one thread or the set count, whichever
    ran this call shape faster (the recurrent kernels)."""
    threads = _C.get_num_threads()
    if threads == 1 or not MONITOR.crowded():
        return kernel(*args)
    timings = _timings(kernel, args, threads)
    one_thread = timings.one_thread_next()
    if one_thread:
        _C.set_num_threads(1)
    start = _timer()
    try:
        result = kernel(*args)
    finally:
        if one_thread:
            _C.set_num_threads(threads)
    timings.record(one_thread, _timer() - start)
    return result


def set_enabled(enabled: bool) -> None:
    """Whether the recurrent kernels may drop to one thread while the cores are crowded
    (default True)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_enabled: expected True or False, got {enabled!r}")
    MONITOR.enabled = enabled


__all__ = ["CROWDED", "FREE", "MONITOR", "RECHECK_SHARE", "SAMPLES", "Monitor", "Timings",
           "cpu_pressure", "read_pressure", "run", "set_enabled"]
