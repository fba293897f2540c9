"""fusednn.shared_cores: CPU kernels on one thread while the PSI file says the cores are
crowded, on the set count otherwise, with fd.get_num_threads() unchanged throughout.
The pressure file is a fake written by each test, so nothing depends on the machine's load."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn as fd
from fusednn import ops, shared_cores
from fusednn.shared_cores import Monitor

PSI = ("some avg10={some:.2f} avg60=1.00 avg300=1.00 total=123\n"
       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def pressure(tmp_path, monkeypatch):
    """set(percent) writes a fake PSI file that the process's monitor reads at once."""
    path = tmp_path / "cpu"
    clock = Clock()
    monkeypatch.setattr(shared_cores, "MONITOR", Monitor(str(path), clock))

    def set_pressure(percent):
        path.write_text(PSI.format(some=percent))
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


def test_crowded_cores_run_kernels_on_one_thread_and_restore_the_count(pressure, two_threads):
    pressure(80.0)
    assert threads_inside_a_kernel() == 1
    assert fd.get_num_threads() == 2
    pressure(3.0)
    assert threads_inside_a_kernel() == 2


def test_between_the_thresholds_the_previous_state_holds(pressure, two_threads):
    pressure(30.0)
    assert threads_inside_a_kernel() == 2  # not crowded yet: 30 <= CROWDED
    pressure(80.0)
    assert threads_inside_a_kernel() == 1
    pressure(30.0)
    assert threads_inside_a_kernel() == 1  # still crowded: 30 >= FREE


def test_the_file_is_read_at_most_once_per_interval(tmp_path, monkeypatch, two_threads):
    path = tmp_path / "cpu"
    path.write_text(PSI.format(some=80.0))
    clock = Clock()
    monkeypatch.setattr(shared_cores, "MONITOR", Monitor(str(path), clock))
    assert threads_inside_a_kernel() == 1
    path.write_text(PSI.format(some=0.0))
    clock.now += 0.1
    assert threads_inside_a_kernel() == 1
    clock.now += 1.0
    assert threads_inside_a_kernel() == 2


@pytest.mark.parametrize("content", [None, "", "some avg10=oops\n", "full avg10=90.00\n"])
def test_no_readable_pressure_changes_nothing(tmp_path, monkeypatch, two_threads, content):
    path = tmp_path / "cpu"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(shared_cores, "MONITOR", Monitor(str(path), Clock()))
    assert shared_cores.cpu_pressure(str(path)) is None
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
