"""fd.distribute without a launcher: single-process behaviour, sharding, buckets, and the
collectives over a model run against stand-in communicators (the real 2-rank jobs are in
test_distribute_mpi.py); the NCCL communicator against stand-ins for cupy.cuda.nccl and
CuPy, since no GPU is here (it has not yet run on one)."""
from __future__ import annotations

import ctypes
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import given, strategies as st

import fusednn as fd
from fusednn.distribute import buckets as buckets_module
from fusednn.distribute import environment
from fusednn.distribute.communicators import NCCLCommunicator, SingleProcess


class StandIn(SingleProcess):
    """Rank `rank` of `size`, where every other rank holds `others[i]` (the same list of
    arrays for allreduce_sum, objects for allgather_object); broadcast gives root's."""

    def __init__(self, rank, size, other_arrays=None, other_objects=None, root_objects=None):
        self.rank, self.size, self.local_rank = rank, size, rank
        self.other_arrays = other_arrays   # flat arrays the other ranks contribute, in turn
        self.other_objects = other_objects
        self.root_objects = root_objects or []
        self.reduced = []
        self.started = []   # the sizes given to start_allreduce_sum, in order

    def allreduce_sum(self, array):
        self.reduced.append(array.size)
        contribution = self.other_arrays[:array.size]
        self.other_arrays = self.other_arrays[array.size:]
        array += contribution * (self.size - 1)

    def start_allreduce_sum(self, array):
        self.started.append(array.size)
        self.allreduce_sum(array)
        return types.SimpleNamespace(test=lambda: True, wait=lambda: None)

    def broadcast(self, array, root=0):
        array[...] = self.root_objects.pop(0)

    def allgather_object(self, obj):
        return [obj] + [self.other_objects] * (self.size - 1)

    def broadcast_object(self, obj, root=0):
        return obj if self.rank == root else self.root_objects.pop(0)


@pytest.fixture
def communicator(monkeypatch):
    def install(comm):
        monkeypatch.setitem(environment._state, "communicator", comm)
        return comm
    return install


def small_model():
    fd.utils.set_random_seed(1)
    model = fd.Sequential([fd.layers.Dense(5, activation="relu", input_shape=(3,)),
                           fd.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


# ----- one process -------------------------------------------------------------------
def test_a_single_process_initializes_without_importing_mpi():
    code = ("import sys, fusednn as fd; fd.distribute.initialize(); "
            "assert (fd.distribute.rank(), fd.distribute.size()) == (0, 1); "
            "assert fd.distribute.is_initialized(); "
            "print('mpi4py' in sys.modules, fd.info(print_fn=None)['distributed'])")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in environment.LAUNCHER_SIZE_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=60).stdout
    assert out.strip() == "False single process (no MPI)"


@pytest.mark.parametrize("environ, launched", [
    ({}, False), ({"OMPI_COMM_WORLD_SIZE": "1"}, False), ({"OMPI_COMM_WORLD_SIZE": "4"}, True),
    ({"PMI_SIZE": "2"}, True), ({"SLURM_STEP_NUM_TASKS": "8"}, True), ({"PMI_SIZE": "x"}, False),
])
def test_launchers_are_recognised_from_their_environment(environ, launched):
    assert environment.launched_by_mpi(environ) is launched


def test_initialize_rejects_unknown_arguments():
    with pytest.raises(ValueError, match="backend must be 'auto', 'mpi' or 'nccl', got 'gloo'"):
        fd.distribute.initialize(backend="gloo")
    with pytest.raises(TypeError, match="shard_data must be True or False, got 1"):
        fd.distribute.initialize(shard_data=1)


def test_collectives_change_nothing_in_a_single_process():
    model = small_model()
    model.train_on_batch(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    grads, weights = model.get_gradients(), model.get_weights()
    fd.distribute.allreduce_gradients(model)
    fd.distribute.broadcast_variables(model)
    for before, after in zip(grads + weights, model.get_gradients() + model.get_weights()):
        np.testing.assert_array_equal(before, after)
    callbacks = [fd.callbacks.History()]
    assert fd.distribute.fit_callbacks(callbacks) is callbacks


# ----- sharding ----------------------------------------------------------------------
@given(samples=st.integers(1, 200), size=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_shards_cover_every_sample_with_equal_lengths(samples, size, seed):
    order = np.random.default_rng(seed).permutation(samples)
    shards = [fd.distribute.shard_indices(order, r, size) for r in range(size)]
    length = -(-samples // size)
    assert all(len(shard) == length == fd.distribute.samples_per_rank(samples, size)
               for shard in shards)
    together = np.concatenate(shards)
    assert set(together.tolist()) == set(range(samples))
    # Only the padding repeats samples: at most size - 1 extra entries.
    assert len(together) - samples == length * size - samples < size
    if samples % size == 0:
        assert len(set(together.tolist())) == len(together)


@given(count=st.integers(0, 200), size=st.integers(1, 9))
def test_rank_parts_are_contiguous_cover_every_item_once_and_differ_by_at_most_one(count,
                                                                                    size):
    parts = [fd.distribute.rank_part(count, r, size) for r in range(size)]
    items = np.concatenate([np.arange(count)[part] for part in parts])
    np.testing.assert_array_equal(items, np.arange(count))
    lengths = [part.stop - part.start for part in parts]
    assert max(lengths) - min(lengths) <= 1 and (lengths[0] > 0 or count == 0)
    assert fd.distribute.rank_part(count) == slice(0, count)   # one process: everything


def test_shards_interleave_so_that_step_b_of_all_ranks_is_the_global_batch_b():
    order = np.random.default_rng(0).permutation(64)
    shards = [fd.distribute.shard_indices(order, r, 2) for r in range(2)]
    for b in range(2):
        ranks_batch = np.concatenate([shard[16 * b:16 * (b + 1)] for shard in shards])
        assert sorted(ranks_batch) == sorted(order[32 * b:32 * (b + 1)])


def test_shard_indices_rejects_a_rank_outside_the_job():
    with pytest.raises(ValueError, match="expected 0 <= rank < size, got rank 2 and size 2"):
        fd.distribute.shard_indices(10, 2, 2)


def test_epoch_order_shards_roots_permutation(communicator):
    root_order = np.random.default_rng(7).permutation(10)
    communicator(StandIn(1, 3, root_objects=[root_order]))
    shard = fd.distribute.epoch_order(10, shuffle=True)
    expected = np.concatenate([root_order, root_order[:2]])[1::3]
    np.testing.assert_array_equal(shard, expected)
    assert fd.distribute.fit_samples(10) == 4
    # Without shuffling every rank computes its shard of 0..N-1 alone (nothing to pop).
    np.testing.assert_array_equal(fd.distribute.epoch_order(10, shuffle=False), [1, 4, 7, 0])


# ----- buckets -----------------------------------------------------------------------
def test_buckets_respect_the_size_limit_and_keep_dtypes_apart():
    arrays = [np.zeros(100, np.float32), np.zeros(100, np.float64), np.zeros(200, np.float32),
              np.zeros(1000, np.float32), np.zeros(50, np.float32)]
    assert buckets_module.buckets(arrays, bucket_bytes=1200) == [[0, 2], [3], [4], [1]]


def test_run_in_buckets_writes_each_collectives_result_back_in_place():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=s).astype(np.float32) for s in [(3, 4), (5,), (2, 2, 2)]]
    expected = [2 * a + 1 for a in arrays]
    buckets_module.run_in_buckets(arrays, lambda flat: flat.__imul__(2).__iadd__(1),
                                  bucket_bytes=64)
    for got, want in zip(arrays, expected):
        np.testing.assert_array_equal(got, want)


# ----- the collectives over a model, against a stand-in job -----------------------
def test_allreduce_gradients_averages_over_the_ranks(communicator):
    model = small_model()
    model.train_on_batch(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
    mine = model.get_gradients()
    rng = np.random.default_rng(1)
    others = [rng.normal(size=g.shape).astype(np.float32) for g in mine]
    comm = communicator(StandIn(0, 3, other_arrays=np.concatenate(
        [o.ravel() for o in others])))
    fd.distribute.allreduce_gradients(model)
    assert comm.reduced == [sum(g.size for g in mine)]   # one bucket for this small model
    for got, g, o in zip(model.get_gradients(), mine, others):
        # (g + 2 o) / 3 in float32: a sum of 3 and a division, a few ulp apart.
        np.testing.assert_allclose(got, (g + 2 * o) / 3, rtol=1e-6, atol=1e-7)


def test_distributed_optimizer_averages_before_its_own_step_and_still_saves(communicator,
                                                                            tmp_path):
    model = small_model()
    optimizer = fd.distribute.DistributedOptimizer(model.optimizer)
    assert fd.distribute.DistributedOptimizer(optimizer) is optimizer is model.optimizer
    assert fd.distribute.is_distributed(optimizer) and type(optimizer) is fd.optimizers.SGD
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    # The other rank's gradients are zero, so the average halves this rank's: the step
    # equals a plain SGD step at half the learning rate (0.01, "sgd"'s default, vs 0.005).
    reference = small_model()
    reference.compile(optimizer=fd.optimizers.SGD(0.005), loss="mse")
    reference.train_on_batch(x, y)
    communicator(StandIn(0, 2, other_arrays=np.zeros(sum(w.size for w in model.get_weights()),
                                                     np.float32)))
    model.train_on_batch(x, y)
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    model.save(tmp_path / "m.keras")
    assert type(fd.load_model(tmp_path / "m.keras").optimizer) is fd.optimizers.SGD
    with pytest.raises(TypeError, match="expects a fusednn.optimizers.Optimizer, got str"):
        fd.distribute.DistributedOptimizer("sgd")


def test_broadcast_variables_gives_every_rank_roots_weights_and_optimizer_state(communicator):
    model = small_model()
    roots = [np.full(w.shape, i, np.float32) for i, w in enumerate(model.get_weights())]
    root_state = {"iterations": 7, "learning_rate": 0.5, "slots": {}}
    communicator(StandIn(1, 2, other_objects=[(w.shape, "float32") for w in roots],
                         root_objects=[np.concatenate([r.ravel() for r in roots]), root_state]))
    fd.distribute.broadcast_variables(model)
    fd.distribute.broadcast_variables(model.optimizer)
    for got, want in zip(model.get_weights(), roots):
        np.testing.assert_array_equal(got, want)
    assert (model.optimizer.iterations, model.optimizer.learning_rate) == (7, 0.5)


def test_a_model_that_differs_on_another_rank_is_named(communicator):
    model = small_model()
    signature = [(w.shape, "float32") for w in model.get_weights()]
    communicator(StandIn(0, 2, other_objects=signature[:2]))
    with pytest.raises(ValueError, match=r"the model differs across ranks \(rank 0 has 4 "
                                         r"variables, rank 1 has 2\)"):
        fd.distribute.check_same_model(model)


def test_an_unbuilt_model_is_refused_before_any_collective(communicator):
    communicator(StandIn(0, 2))
    model = fd.Sequential([fd.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no weights yet; give its first layer "
                                         "input_shape="):
        fd.distribute.broadcast_variables(model)


def test_average_logs_is_the_mean_in_rank_order(communicator):
    communicator(StandIn(0, 3, other_objects=[0.5, 4.0]))   # sorted keys: accuracy, loss
    logs = {"loss": 1.0, "accuracy": 0.25}
    fd.distribute.average_logs(logs)
    assert logs == {"loss": (1.0 + 4.0 + 4.0) / 3, "accuracy": (0.25 + 0.5 + 0.5) / 3}


def test_other_ranks_neither_print_nor_write_checkpoints(communicator, tmp_path, capsys):
    communicator(StandIn(1, 2))
    checkpoint = fd.callbacks.ModelCheckpoint(str(tmp_path / "c.keras"))
    stop = fd.callbacks.TerminateOnNaN()
    backup = fd.callbacks.BackupAndRestore(tmp_path / "backup")
    listed = fd.distribute.fit_callbacks([fd.callbacks.ProgbarLogger(), checkpoint, stop, backup])
    kinds = [type(cb).__name__ for cb in listed]
    assert kinds == ["_AverageLogs", "_Silenced", "_RestoreOnly", "_Agree"]
    model = small_model()
    for cb in listed[1:3]:
        cb.set_model(model)
    listed[1].on_train_batch_end(0, {"loss": float("nan")})   # TerminateOnNaN prints here
    assert model.stop_training and capsys.readouterr().out == ""
    listed[2].on_epoch_end(0, {"loss": 1.0})   # root's BackupAndRestore would write here
    assert not (tmp_path / "backup").exists()


# ----- NCCL, against stand-ins for cupy.cuda.nccl and CuPy ------------------------
class DeviceArray:
    """A NumPy array that shows its address as CuPy does (`.data.ptr`)."""

    def __init__(self, array):
        self.host = np.ascontiguousarray(array)
        self.data = types.SimpleNamespace(ptr=self.host.ctypes.data)
        self.size, self.dtype, self.flags = self.host.size, self.host.dtype, self.host.flags


def nccl_stand_in(others, calls):
    """cupy.cuda.nccl for a job whose other ranks hold `others` (by dtype name)."""
    ctype = {0: ctypes.c_float, 1: ctypes.c_double}

    class Communicator:
        def __init__(self, size, unique_id, rank):
            calls.append(("init", size, unique_id, rank))

        def allReduce(self, send, receive, count, datatype, op, stream):
            calls.append(("allReduce", count, datatype, op, stream))
            buffer = (ctype[datatype] * count).from_address(receive)
            values = np.frombuffer(buffer, dtype=np.float32 if datatype == 0 else np.float64)
            assert send == receive
            values += others[:count]

        def bcast(self, pointer, count, datatype, root, stream):
            calls.append(("bcast", count, datatype, root, stream))

    return types.SimpleNamespace(NCCL_FLOAT32=0, NCCL_FLOAT64=1, NCCL_FLOAT16=2, NCCL_SUM=9,
                                 get_unique_id=lambda: "uid-of-root", get_version=lambda: 22003,
                                 NcclCommunicator=Communicator)


def cupy_stand_in(calls):
    stream = types.SimpleNamespace(ptr=1234, synchronize=lambda: calls.append(("sync",)))
    device = lambda i: types.SimpleNamespace(use=lambda: calls.append(("device", i)))  # noqa

    class Event:
        done = True

        def record(self, on):
            calls.append(("record", on.ptr))

    class Stream:
        def __init__(self, non_blocking):
            self.ptr = 5678
            calls.append(("stream", non_blocking))

        def wait_event(self, event):
            calls.append(("wait_event", self.ptr))

    stream.wait_event = lambda event: calls.append(("wait_event", stream.ptr))
    cuda = types.SimpleNamespace(Device=device, get_current_stream=lambda: stream,
                                 Stream=Stream, Event=Event,
                                 runtime=types.SimpleNamespace(getDeviceCount=lambda: 2))
    return types.SimpleNamespace(cuda=cuda, ndarray=DeviceArray, __version__="13.6")


def test_nccl_allreduce_passes_the_buffer_count_dtype_and_stream():
    calls = []
    host = StandIn(3, 4, root_objects=["uid-of-root"])
    host.local_rank, host.description = 3, "MPI (stand-in), host buffers"
    others = np.arange(6, dtype=np.float32)
    comm = NCCLCommunicator(host, nccl_stand_in(others, calls), cupy_stand_in(calls))
    assert calls[:2] == [("device", 1), ("init", 4, "uid-of-root", 3)]   # local rank 3 of 2 GPUs
    array = DeviceArray(np.ones(6, np.float32))
    comm.allreduce_sum(array)
    np.testing.assert_array_equal(array.host, 1 + others)
    assert calls[2:] == [("allReduce", 6, 0, 9, 1234), ("sync",)]
    comm.broadcast(DeviceArray(np.zeros(3, np.float64)), root=0)
    assert calls[-2:] == [("bcast", 3, 1, 0, 1234), ("sync",)]
    assert comm.description.startswith("NCCL 22003 (CuPy 13.6), device buffers")
    with pytest.raises(TypeError, match="expected a float16/32/64 array, got dtype int32"):
        comm.allreduce_sum(DeviceArray(np.zeros(2, np.int32)))
    host_array = np.ones(3, np.float32)   # a CPU model's gradients go through MPI
    host.other_arrays = np.full(3, 2.0, np.float32)
    comm.allreduce_sum(host_array)
    np.testing.assert_array_equal(host_array, np.full(3, 1 + 3 * 2.0))
    assert host.reduced == [3] and calls[-1] == ("sync",)


def test_nccl_overlapped_allreduce_runs_on_a_side_stream_ordered_by_events():
    calls = []
    host = StandIn(0, 2, root_objects=[])
    host.description = "MPI (stand-in), host buffers"
    others = np.arange(4, dtype=np.float32)
    comm = NCCLCommunicator(host, nccl_stand_in(others, calls), cupy_stand_in(calls))
    del calls[:]
    array = DeviceArray(np.ones(4, np.float32))
    request = comm.start_allreduce_sum(array)
    # The side stream waits for the current stream's work (the gradients), then reduces;
    # the host is never blocked: no ("sync",).
    assert calls == [("stream", True), ("record", 1234), ("wait_event", 5678),
                     ("allReduce", 4, 0, 9, 5678), ("record", 5678)]
    assert request.test()
    request.wait()   # the current stream waits for the side stream's event
    assert calls[-1] == ("wait_event", 1234)
    np.testing.assert_array_equal(array.host, 1 + others)
    comm.start_allreduce_sum(DeviceArray(np.ones(4, np.float32)))
    assert calls.count(("stream", True)) == 1   # one side stream, made once



# ----- overlap of the gradient averaging with backward -----------------------------
def deeper_model(kind):
    fd.utils.set_random_seed(2)
    if kind == "sequential":
        model = fd.Sequential([fd.layers.Dense(6, activation="tanh", input_shape=(3,)),
                               fd.layers.Dense(5, activation="tanh"), fd.layers.Dense(2)])
    else:
        inputs = fd.Input((3,))
        shared = fd.layers.Dense(3, activation="tanh", name="shared")   # called twice
        hidden = fd.layers.Dense(5, activation="tanh")(shared(shared(inputs)))
        model = fd.Model(inputs, fd.layers.Dense(2)(hidden))
    model.compile(optimizer=fd.optimizers.SGD(0.1), loss="mse")
    return model


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_buckets_start_during_backward_and_average_as_after_it(communicator, monkeypatch,
                                                                kind):
    x = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    y = np.zeros((4, 2), np.float32)
    reference = deeper_model(kind)
    sizes = [w.size for w in reference.get_weights()]
    others = np.random.default_rng(4).normal(size=sum(sizes)).astype(np.float32)
    # The reference: the blocking average after the whole backward.
    reference.zero_grad()
    reference.backward(reference.forward(x, training=True) - y)
    communicator(StandIn(0, 2, other_arrays=others))
    fd.distribute.allreduce_gradients(reference)
    # Small buckets (one or two variables each) so that there are several to start.
    monkeypatch.setattr(buckets_module, "BUCKET_BYTES", 4 * 25)
    model = deeper_model(kind)
    events = []
    first_layer = model.layers[1 if kind == "functional" else 0]   # after the InputLayer
    backward = first_layer.backward
    monkeypatch.setattr(first_layer, "backward",
                        lambda dy: (events.append("first layer's backward"), backward(dy))[1])
    # The other rank's contribution, in the order the buckets go: last layer's first.
    reversed_vars = list(reversed(model.trainable_variables))
    position = np.cumsum([0] + sizes)
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    pieces = [others[position[index[id(v)]]:position[index[id(v)] + 1]] for v in reversed_vars]
    comm = communicator(StandIn(0, 2, other_arrays=np.concatenate(pieces)))
    comm.start_allreduce_sum = lambda array, start=comm.start_allreduce_sum: (
        events.append(f"start {array.size}"), start(array))[1]
    from fusednn.distribute import overlap
    overlap.attach(model)
    try:
        model.zero_grad()
        model.backward(model.forward(x, training=True) - y)
        assert events[0].startswith("start ") and "first layer's backward" in events
        started_before = events[:events.index("first layer's backward")]
        assert len(started_before) >= 1, events
        fd.distribute.allreduce_gradients(model)    # waits for all, averages
    finally:
        overlap.detach(model)
    # Every element went through exactly one allreduce.
    assert sum(comm.started) == sum(sizes) and len(comm.started) >= 3
    # Same sums of two float32 numbers and the same halving as the blocking path: equal.
    for got, want in zip(model.get_gradients(), reference.get_gradients()):
        np.testing.assert_array_equal(got, want)


# ----- evaluate and predict in a job ---------------------------------------------------
def test_evaluation_splits_only_array_data_given_whole(communicator):
    from fusednn.models.data_adapters import ArrayData

    communicator(StandIn(1, 3))
    x, y = np.arange(10, dtype=np.float32)[:, None], np.arange(10)
    part = fd.distribute.evaluation_data(ArrayData(x, y, None, 2, shuffle=False))
    # Rank 1 of 3 takes samples [ceil(10/3), ceil(20/3)) = [4, 7), in 2 batches.
    np.testing.assert_array_equal(part.x[:, 0], [4, 5, 6])
    np.testing.assert_array_equal(part.y, [4, 5, 6])
    assert (part.total, part.steps) == (3, 2)
    limited = ArrayData(x, y, None, 2, shuffle=False)
    limited.steps = 3   # evaluate(steps=3): the first batches, the same on every rank
    assert fd.distribute.evaluation_data(limited) is limited


def test_sum_states_adds_every_ranks_metric_states(communicator):
    from fusednn.metrics import Mean, Precision

    loss, precision = Mean(), Precision(thresholds=[0.3, 0.7])
    loss.update_state(2.0, sample_weight=3)
    precision.update_state([1, 0, 1], [0.8, 0.5, 0.2])
    # Each of the other two ranks ran 5 samples with loss sum 4, and at threshold 0.3 had
    # 2 true and 1 false positives, at 0.7 one true positive (rank-0 has 1/1 and 1/0).
    other_loss = [np.array(4.0), np.array(5.0)]
    other_precision = [np.array([2.0, 1.0]), np.array([1.0, 0.0])]
    communicator(StandIn(0, 3, other_objects=[other_loss, other_precision]))
    fd.distribute.sum_states([loss, precision])
    assert (loss.total, loss.count) == (6.0 + 4.0 + 4.0, 13)
    # The result over all ranks' samples, not a mean of the ranks' precisions:
    # threshold 0.3: TP 1+2+2 = 5, FP 1+1+1 = 3; threshold 0.7: TP 1+1+1 = 3, FP 0.
    np.testing.assert_allclose(precision.result(), [5 / 8, 1.0])