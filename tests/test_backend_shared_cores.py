"""fusednn.shared_cores: every CPU kernel runs on at most the cores other programs leave free
(at least one), on the set count alone, with fd.get_num_threads() unchanged throughout. The
/proc/stat file, this process's CPU time and the clock are stand-ins written by each test, so
nothing depends on the machine's load."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn as fd
from fusednn import ops, shared_cores
from fusednn.shared_cores import Monitor

TICKS = 100  # clock ticks per second in the stand-in /proc/stat


def no_quota():
    """No control group limits the stand-in machine (whatever limits the one running this)."""
    return None


class Machine:
    """A stand-in /proc/stat for `cpus` CPUs, this process's CPU seconds and a clock; advance()
    lets a second pass with the given CPU seconds used by this process and by others."""

    def __init__(self, path, cpus):
        self.path = path
        self.now = 0.0
        self.own = 0.0
        self.columns = {cpu: [0] * 10 for cpu in range(cpus)}  # user nice system idle ...
        self.write()

    def write(self):
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        lines += [f"cpu{cpu} " + " ".join(map(str, values))
                  for cpu, values in self.columns.items()]
        self.path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 99"]) + "\n")

    def advance(self, own_seconds, others_seconds, seconds=1.0):
        """`seconds` pass, in which this process uses own_seconds of CPU time and other
        programs others_seconds, counted as user time spread over the CPUs."""
        total = own_seconds + others_seconds
        for values in self.columns.values():
            values[0] += round(TICKS * total / len(self.columns))
        self.own += own_seconds
        self.now += seconds
        self.write()

    def clock(self):
        return self.now

    def own_cpu_seconds(self):
        return self.own


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A 2-CPU stand-in machine whose monitor the process's kernels consult."""
    stand_in = Machine(tmp_path / "stat", 2)
    monitor = Monitor(str(stand_in.path), cpus={0, 1}, clock=stand_in.clock,
                      own_cpu_seconds=stand_in.own_cpu_seconds, cores_allowed=no_quota)
    monitor._ticks_per_second = TICKS
    monkeypatch.setattr(shared_cores, "MONITOR", monitor)
    return stand_in


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


def test_alone_the_kernels_keep_the_set_count(machine, two_threads):
    assert threads_inside_a_kernel() == 2  # the first reading: nothing known yet
    machine.advance(own_seconds=2.0, others_seconds=0.0)
    assert threads_inside_a_kernel() == 2


def test_a_core_taken_by_another_program_leaves_one_thread_and_the_count_is_restored(
        machine, two_threads):
    threads_inside_a_kernel()
    machine.advance(own_seconds=1.0, others_seconds=1.0)
    assert threads_inside_a_kernel() == 1
    assert fd.get_num_threads() == 2
    machine.advance(own_seconds=2.0, others_seconds=0.0)  # the other program ended
    assert threads_inside_a_kernel() == 2


@pytest.mark.parametrize("others, expected", [(0.4, 2), (0.6, 1), (1.9, 1), (7.0, 1)])
def test_free_cores_are_rounded_and_at_least_one_thread_runs(machine, two_threads, others,
                                                             expected):
    threads_inside_a_kernel()
    machine.advance(own_seconds=0.5, others_seconds=others)
    assert threads_inside_a_kernel() == expected


def test_more_cores_give_as_many_threads_as_are_free(tmp_path):
    """8 CPUs, 3 of them busy with other programs: 5 threads of 8, and never more than asked."""
    stand_in = Machine(tmp_path / "stat", 8)
    monitor = Monitor(str(stand_in.path), cpus=range(8), clock=stand_in.clock,
                      own_cpu_seconds=stand_in.own_cpu_seconds, cores_allowed=no_quota)
    monitor._ticks_per_second = TICKS
    assert monitor.threads(8) == 8
    stand_in.advance(own_seconds=5.0, others_seconds=3.0)
    assert monitor.threads(8) == 5
    assert monitor.threads(4) == 4


def test_only_this_process_s_cpus_and_busy_columns_count(tmp_path):
    """CPUs outside the affinity set are ignored; idle and iowait are not busy, steal is (a
    hypervisor running other machines takes the core as surely as a process)."""
    stand_in = Machine(tmp_path / "stat", 4)
    monitor = Monitor(str(stand_in.path), cpus={0, 1}, clock=stand_in.clock,
                      own_cpu_seconds=stand_in.own_cpu_seconds, cores_allowed=no_quota)
    monitor._ticks_per_second = TICKS
    assert monitor.threads(2) == 2
    stand_in.columns[3][0] += 10 * TICKS  # CPU 3, not ours, fully busy
    stand_in.advance(own_seconds=0.0, others_seconds=0.0)
    assert monitor.threads(2) == 2
    for column, expected in ((3, 2), (4, 2), (7, 1)):
        stand_in.columns[0][column] += TICKS  # a whole second of CPU 0 in that column
        stand_in.advance(own_seconds=0.0, others_seconds=0.0)
        assert monitor.threads(2) == expected, column


def test_the_file_is_read_at_most_once_per_interval(machine, two_threads):
    threads_inside_a_kernel()
    machine.advance(own_seconds=1.0, others_seconds=1.0)
    assert threads_inside_a_kernel() == 1
    machine.advance(own_seconds=1.0, others_seconds=0.0, seconds=0.1)
    assert threads_inside_a_kernel() == 1  # 0.1 s later: not read again
    machine.advance(own_seconds=2.0, others_seconds=0.0)
    assert threads_inside_a_kernel() == 2


@pytest.mark.parametrize("content", [None, "", "cpu0 1 2 oops\n", "cpu7 1 1 1 1 1 1 1 1\n"])
def test_no_readable_stat_changes_nothing(tmp_path, monkeypatch, two_threads, content):
    path = tmp_path / "stat"
    if content is not None:
        path.write_text(content)
    assert shared_cores.busy_cpu_seconds(str(path), {0, 1}, TICKS) is None
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(shared_cores, "MONITOR",
                        Monitor(str(path), cpus={0, 1}, clock=lambda: next(clock),
                                own_cpu_seconds=lambda: 0.0, cores_allowed=no_quota))
    assert threads_inside_a_kernel() == 2
    assert threads_inside_a_kernel() == 2


def test_disabled_adaptation_keeps_the_set_count(machine, two_threads):
    threads_inside_a_kernel()
    machine.advance(own_seconds=0.0, others_seconds=2.0)
    shared_cores.set_enabled(False)
    try:
        assert threads_inside_a_kernel() == 2
    finally:
        shared_cores.set_enabled(True)
    assert threads_inside_a_kernel() == 1
    with pytest.raises(TypeError, match="expected True or False"):
        shared_cores.set_enabled("no")


def test_the_count_is_restored_when_a_kernel_raises(machine, two_threads):
    def failing_kernel():
        assert fd.get_num_threads() == 1
        raise RuntimeError("kernel failed")

    threads_inside_a_kernel()
    machine.advance(own_seconds=0.0, others_seconds=2.0)
    with pytest.raises(RuntimeError, match="kernel failed"):
        shared_cores.run(failing_kernel)
    assert fd.get_num_threads() == 2


def test_recurrent_op_on_one_thread_matches_two(machine, two_threads, rng):
    """The same LSTM sequence with a core taken (one thread) and free (two): each unit's
    arithmetic does not depend on how the threads split the step, so the results agree
    to the last bit."""
    N, T, F, U = 16, 7, 12, 96
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    h0 = rng.standard_normal((N, U)).astype(np.float32)
    c0 = rng.standard_normal((N, U)).astype(np.float32)
    kernel = (rng.standard_normal((F, 4 * U)) * 0.2).astype(np.float32)
    recurrent = (rng.standard_normal((U, 4 * U)) * 0.1).astype(np.float32)
    bias = rng.standard_normal(4 * U).astype(np.float32)
    threads_inside_a_kernel()
    results = []
    for others in (2.0, 0.0):
        machine.advance(own_seconds=2.0 - others, others_seconds=others)
        results.append(ops.lstm_forward(x, h0, c0, kernel, recurrent, bias)[:3])
    for crowded, free in zip(*results):
        np.testing.assert_array_equal(crowded, free)


@pytest.mark.parametrize("kernel, call", [
    ("gemm", lambda: ops.matmul(np.ones((4, 3), np.float32), np.ones((3, 5), np.float32))),
    ("conv2d_forward_cpu", lambda: ops.conv2d(np.ones((1, 4, 4, 2), np.float32),
                                               np.ones((3, 3, 2, 2), np.float32))),
    ("max_pool2d_forward_cpu", lambda: ops.max_pool2d(np.ones((1, 4, 4, 2), np.float32), 2)),
    ("sparse_softmax_cross_entropy_cpu", lambda: ops.sparse_softmax_cross_entropy(
        np.zeros((2, 3), np.float32), np.array([0, 2]))),
    ("dropout_cpu", lambda: ops.dropout(np.ones(8, np.float32), 0.5, 1)),
    ("adam_update_cpu", lambda: ops.adam_update(
        [np.ones(3, np.float32)], [np.ones(3, np.float32)], [np.zeros(3, np.float32)],
        [np.zeros(3, np.float32)], learning_rate=0.1, beta_1=0.9, beta_2=0.999,
        epsilon=1e-7, step=1)),
])
def test_every_cpu_kernel_runs_on_the_free_cores(machine, two_threads, monkeypatch, kernel,
                                                 call):
    """GEMM, convolution, pooling, cross-entropy, dropout and the optimizer updates too, not
    only the recurrent kernels: mixing counts within a step (a worker asleep after one-thread
    kernels, woken under contention by the next) measured slower than one thread for all."""
    seen = []
    real = getattr(fd._C, kernel)
    monkeypatch.setattr(fd._C, kernel,
                        lambda *args: (seen.append(fd.get_num_threads()), real(*args))[1])
    threads_inside_a_kernel()
    machine.advance(own_seconds=0.0, others_seconds=2.0)
    call()
    machine.advance(own_seconds=2.0, others_seconds=0.0)
    call()
    assert seen == [1, 2]


def test_systems_without_affinity_or_sysconf_still_import_and_keep_the_count(monkeypatch,
                                                                           two_threads):
    """macOS and Windows have neither os.sched_getaffinity nor /proc/stat: the monitor is
    built from os.cpu_count() and changes nothing."""
    monkeypatch.delattr(shared_cores.os, "sched_getaffinity", raising=False)
    monkeypatch.delattr(shared_cores.os, "sysconf", raising=False)
    monitor = Monitor("/nonexistent/stat", cores_allowed=no_quota)
    assert monitor.threads(2) == 2
    monkeypatch.setattr(shared_cores, "MONITOR", monitor)
    assert threads_inside_a_kernel() == 2


@pytest.mark.parametrize("quota, threads", [(1.5, 2), (1.0, 1), (0.25, 1), (6.0, 2)])
def test_a_cpu_quota_caps_the_threads_at_its_cores_rounded_up(tmp_path, quota, threads):
    """8 free CPUs but a control group's quota: never more threads than the quota's cores
    rounded up (and never more than asked)."""
    stand_in = Machine(tmp_path / "stat", 8)
    monitor = Monitor(str(stand_in.path), cpus=range(8), clock=stand_in.clock,
                      own_cpu_seconds=stand_in.own_cpu_seconds, cores_allowed=lambda: quota)
    monitor._ticks_per_second = TICKS
    assert monitor.quota == quota
    assert monitor.threads(2) == threads
    stand_in.advance(own_seconds=1.0, others_seconds=0.0)
    assert monitor.threads(8) == min(8, -int(-quota // 1))
    stand_in.advance(own_seconds=1.0, others_seconds=7.0)  # one CPU left free
    assert monitor.threads(8) == 1
    monitor.enabled = False
    assert monitor.threads(8) == 8


def test_info_names_the_quota_cap(monkeypatch):
    monitor = Monitor("/nonexistent/stat", cpus=range(64), cores_allowed=lambda: 1.5)
    monkeypatch.setattr(shared_cores, "MONITOR", monitor)
    threads = str(fd.info(print_fn=None)["threads"])
    assert threads.endswith("(kernels on at most 2: a CPU quota of 1.5 cores)"), threads
    monkeypatch.setattr(shared_cores, "MONITOR", Monitor("/nonexistent/stat",
                                                         cores_allowed=no_quota))
    assert "quota" not in str(fd.info(print_fn=None)["threads"])
