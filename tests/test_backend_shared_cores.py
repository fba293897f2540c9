"""fusednn.shared_cores: while the PSI file says the cores are crowded, each kernel call shape
runs on one thread or the set count, whichever its own timed calls ran faster; on the set count
otherwise, with fd.get_num_threads() unchanged throughout. The pressure file is a fake written
by each test and the kernels' times come from a stand-in clock, so nothing depends on the
machine's load."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn as fd
from fusednn import ops, shared_cores
from fusednn.shared_cores import Monitor

PSI = ("some avg10={some:.2f} avg60=1.00 avg300=1.00 total={total}\n"
       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def pressure(tmp_path, monkeypatch):
    """set(percent) writes a fake PSI file, as after a second at that pressure, that the
    process's monitor reads at once."""
    path = tmp_path / "cpu"
    clock = Clock()
    monkeypatch.setattr(shared_cores, "MONITOR", Monitor(str(path), clock))
    total = [10 ** 9]

    def set_pressure(percent):
        total[0] += round(percent * 1e4)  # microseconds waited in that second
        path.write_text(PSI.format(some=percent, total=total[0]))
        clock.now += 1.0  # past the check interval

    return set_pressure


@pytest.fixture
def two_threads():
    before = fd.get_num_threads()
    fd.set_num_threads(2)
    if fd.get_num_threads() != 2:
        pytest.skip("a build without OpenMP runs one thread")
    yield
    fd.set_num_threads(before)


def threads_inside_a_kernel():
    return shared_cores.run(fd.get_num_threads)


class TimedKernel:
    """A kernel whose call lasts seconds[threads inside it] on the stand-in clock."""

    def __init__(self, clock, seconds):
        self.clock = clock
        self.seconds = seconds
        self.threads = []  # inside each call

    def __call__(self, *args):
        self.threads.append(fd.get_num_threads())
        self.clock.now += self.seconds[self.threads[-1]]


@pytest.fixture
def timer(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(shared_cores, "_timer", clock)
    monkeypatch.setattr(shared_cores, "RECHECK_SHARE", 0.25)  # exact in binary, as the times
    return clock


def test_crowded_cores_run_a_first_call_on_one_thread_and_restore_the_count(pressure,
                                                                             two_threads):
    pressure(80.0)
    assert threads_inside_a_kernel() == 1
    assert fd.get_num_threads() == 2
    pressure(3.0)
    assert threads_inside_a_kernel() == 2


def test_between_the_thresholds_the_previous_state_holds(pressure):
    pressure(30.0)
    assert not shared_cores.MONITOR.crowded()  # not crowded yet: 30 <= CROWDED
    pressure(80.0)
    assert shared_cores.MONITOR.crowded()
    pressure(30.0)
    assert shared_cores.MONITOR.crowded()  # still crowded: 30 >= FREE
    pressure(9.0)
    assert not shared_cores.MONITOR.crowded()


def test_the_file_is_read_at_most_once_per_interval(tmp_path):
    path = tmp_path / "cpu"
    path.write_text(PSI.format(some=80.0, total=0))
    clock = Clock()
    monitor = Monitor(str(path), clock)
    assert monitor.crowded()
    path.write_text(PSI.format(some=0.0, total=0))
    clock.now += 0.1
    assert monitor.crowded()
    clock.now += 1.0
    assert not monitor.crowded()


def test_the_pressure_is_the_growth_of_the_total_since_the_last_reading(tmp_path):
    """avg10 is read only at the first reading; then what counts is how much of the time
    since the previous reading tasks waited: 0.3 s of 0.5 s is 60%, whatever avg10 says
    (its 10-second tail after a competitor left, or its slow rise when one starts)."""
    path = tmp_path / "cpu"
    clock = Clock()
    monitor = Monitor(str(path), clock)
    path.write_text(PSI.format(some=5.0, total=10 ** 6))
    assert not monitor.crowded()  # avg10 5%
    clock.now += 0.5
    path.write_text(PSI.format(some=5.0, total=10 ** 6 + 300_000))
    assert monitor.crowded()  # 60% since the last reading, while avg10 still says 5
    clock.now += 0.5
    path.write_text(PSI.format(some=70.0, total=10 ** 6 + 310_000))
    assert not monitor.crowded()  # 2%, while avg10 still says 70
    assert shared_cores.read_pressure(str(path)) == (70.0, 10 ** 6 + 310_000)


def test_crowded_calls_run_on_the_faster_count_and_recheck_the_slower(pressure, two_threads,
                                                                      timer):
    """One thread first, then two; then the faster (one: 1/64 s against 3/64 s), until the
    calls on it add up to 1 / RECHECK_SHARE times what two threads lost (2/64 s / 0.25 =
    8 calls), when two threads run once more."""
    kernel = TimedKernel(timer, {1: 1 / 64, 2: 3 / 64})
    pressure(80.0)
    for _ in range(2 + 8 + 1 + 8 + 1):
        shared_cores.run(kernel)
    assert kernel.threads == [1, 2] + [1] * 8 + [2] + [1] * 8 + [2]
    assert fd.get_num_threads() == 2


def test_a_changed_load_flips_the_choice(pressure, two_threads, timer):
    """Two threads get faster: 1/256 s (the competitor left a core). The next re-check (the
    11th call) times them: the mean of their samples, (24 + 2) / 2 = 13/512 s, is no longer
    more than twice one thread's 8/512, so two threads run next. Their next two calls bring
    their mean to 7.5/512, half a 512th from one thread's: 4/512 s on them at RECHECK_SHARE
    0.25 pays for re-checking one thread. Then, against two threads' 2/512, one thread is
    6/512 s slower and is re-checked after every 6/512 / 0.25 / (2/512) = 12 calls."""
    kernel = TimedKernel(timer, {1: 1 / 64, 2: 3 / 64})
    pressure(80.0)
    for _ in range(10):
        shared_cores.run(kernel)
    kernel.seconds[2] = 1 / 256
    for _ in range(1 + 2 + 1 + 12 + 1 + 12 + 1):
        shared_cores.run(kernel)
    assert kernel.threads[10:] == [2] * 3 + [1] + [2] * 12 + [1] + [2] * 12 + [1]


def test_one_thread_is_chosen_only_when_it_takes_under_half_the_time(pressure, two_threads,
                                                                    timer):
    """Near-equal times keep the set count (mixing counts costs more than the calls show):
    one thread at 0.625x the set count's time is not chosen, at 0.4375x it is."""
    for share, expected in ((0.625, 2), (0.4375, 1)):
        kernel = TimedKernel(timer, {1: share / 64, 2: 1 / 64})
        pressure(3.0)
        pressure(80.0)  # a new crowding: measured afresh
        for _ in range(3):
            shared_cores.run(kernel)
        assert kernel.threads == [1, 2, expected]


def test_each_call_shape_is_timed_on_its_own(pressure, two_threads, timer):
    kernel = TimedKernel(timer, {1: 1 / 64, 2: 3 / 64})
    small, large = np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32)
    pressure(80.0)
    shared_cores.run(kernel, small)
    shared_cores.run(kernel, small)
    shared_cores.run(kernel, large)
    shared_cores.run(kernel, small.astype(np.float64))
    assert kernel.threads == [1, 2, 1, 1]
    assert len(shared_cores.MONITOR.timings) == 3


def test_free_cores_forget_the_timings_and_their_number_is_bounded(pressure, two_threads, timer,
                                                                  monkeypatch):
    kernel = TimedKernel(timer, {1: 1 / 64, 2: 3 / 64})
    pressure(80.0)
    shared_cores.run(kernel)
    pressure(3.0)
    shared_cores.run(kernel)
    assert shared_cores.MONITOR.timings == {}
    pressure(80.0)
    shared_cores.run(kernel)
    assert kernel.threads == [1, 2, 1]  # measured afresh: one thread first again
    monkeypatch.setattr(shared_cores, "_MAX_SHAPES", 2)
    for n in range(1, 6):
        shared_cores.run(kernel, np.zeros(n))
        assert len(shared_cores.MONITOR.timings) <= 2


@pytest.mark.parametrize("content", [None, "", "some avg10=oops\n", "some avg10=90.00\n",
                                     "full avg10=90.00 total=1\n"])
def test_no_readable_pressure_changes_nothing(tmp_path, monkeypatch, two_threads, content):
    path = tmp_path / "cpu"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(shared_cores, "MONITOR", Monitor(str(path), Clock()))
    assert shared_cores.cpu_pressure(str(path)) is None
    assert shared_cores.read_pressure(str(path)) is None
    assert threads_inside_a_kernel() == 2


def test_disabled_adaptation_keeps_the_set_count(pressure, two_threads):
    pressure(95.0)
    shared_cores.set_enabled(False)
    try:
        assert threads_inside_a_kernel() == 2
    finally:
        shared_cores.set_enabled(True)
    with pytest.raises(TypeError, match="expected True or False"):
        shared_cores.set_enabled("no")


def test_the_count_is_restored_when_a_kernel_raises(pressure, two_threads):
    def failing_kernel():
        assert fd.get_num_threads() == 1
        raise RuntimeError("kernel failed")

    pressure(80.0)
    with pytest.raises(RuntimeError, match="kernel failed"):
        shared_cores.run(failing_kernel)
    assert fd.get_num_threads() == 2


def test_recurrent_op_on_one_thread_matches_two(pressure, two_threads, rng):
    """The same LSTM sequence under crowded (one thread) and free cores (two): each unit's
    arithmetic does not depend on how the threads split the step, so the results agree
    to the last bit."""
    N, T, F, U = 16, 7, 12, 96
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    h0 = rng.standard_normal((N, U)).astype(np.float32)
    c0 = rng.standard_normal((N, U)).astype(np.float32)
    kernel = (rng.standard_normal((F, 4 * U)) * 0.2).astype(np.float32)
    recurrent = (rng.standard_normal((U, 4 * U)) * 0.1).astype(np.float32)
    bias = rng.standard_normal(4 * U).astype(np.float32)
    results = []
    for percent in (90.0, 0.0):
        pressure(percent)
        results.append(ops.lstm_forward(x, h0, c0, kernel, recurrent, bias)[:3])
    for crowded, free in zip(*results):
        np.testing.assert_array_equal(crowded, free)


def test_only_the_recurrent_kernels_drop_threads(pressure, two_threads, monkeypatch):
    """GEMM, convolution and the other kernels with few, long parallel regions keep the set
    count under crowded cores (their joins are rare; one thread would give up half the
    share of the cores they get)."""
    seen = []
    monkeypatch.setattr(fd._C, "gemm", lambda *args: seen.append(fd.get_num_threads()))
    pressure(90.0)
    ops.matmul(np.ones((4, 3), np.float32), np.ones((3, 5), np.float32))
    assert seen == [2]
