"""Threads: the kernels release the GIL, and concurrent use gives the results of serial use.

- GIL release: a child process (one OpenMP thread, so the CPU is not the limit) runs a
  long kernel in one thread while the main thread keeps stamping the time in a
  Python loop. Holding the GIL would freeze that loop for the whole kernel; released,
  the loop never pauses for more than a fraction of it.
- Several threads predicting with one model (convolution, pooling, LSTM, Dense +
  softmax) and several threads each training its own model (those kernels, softmax
  cross-entropy and Adam too) get bit-identical results to the same work done
  serially: no shared scratch buffers, no races in the kernels.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fusednn as fd
import fusednn.models as models
from fusednn import layers, ops
from fusednn.ops import gemm

# ----- the GIL is released around kernels ------------------------------------------------------


KERNELS = ["matmul", "sparse_softmax_cross_entropy", "adam_update", "max_pool2d",
           "conv2d", "lstm_forward"]


def _kernel_call(name):
    """A call of `name` lasting roughly 0.1-0.5 s on one core (constant inputs: the
    values do not matter for timing, and they are quick to make)."""
    f32 = np.float32
    if name == "control-holding-the-gil":
        return lambda: sum(range(20_000_000))   # one C call that never lets go of the GIL
    if name == "matmul":
        a = np.full((2000, 2000), 0.5, f32)
        return lambda: gemm.matmul(a, a)
    if name == "sparse_softmax_cross_entropy":
        logits = np.full((20_000, 1000), 0.25, f32)
        labels = np.arange(20_000) % 1000
        return lambda: ops.sparse_softmax_cross_entropy(logits, labels)
    if name == "adam_update":
        params = [np.ones(15_000_000, f32) for _ in range(3)]
        grads, ms, vs = ([np.full_like(p, 0.1) for p in params] for _ in range(3))
        return lambda: ops.adam_update(params, grads, ms, vs, learning_rate=0.001, beta_1=0.9,
                                       beta_2=0.999, epsilon=1e-7, step=1)
    if name == "max_pool2d":
        image = np.full((64, 128, 128, 32), 0.5, f32)
        return lambda: ops.max_pool2d(image, 3, 1, "same")
    if name == "conv2d":
        image, kernel = np.full((64, 64, 64, 32), 0.5, f32), np.full((3, 3, 32, 64), 0.1, f32)
        return lambda: ops.conv2d(image, kernel, padding="same")
    N, T, F, U = 64, 200, 64, 256
    x, h0 = np.full((N, T, F), 0.1, f32), np.zeros((N, U), f32)
    kernel, recurrent = np.full((F, 4 * U), 0.01, f32), np.full((U, 4 * U), 0.01, f32)
    return lambda: ops.lstm_forward(x, h0, h0, kernel, recurrent, np.zeros(4 * U, f32))


def _child_measure_gil(names, trials=3):
    """Prints {"name", "kernel_s", "pause_fraction"} per kernel: the kernel runs in a thread
    while this thread stamps the time in a Python loop; pause_fraction is the longest
    pause of the loop over the kernel's duration, the smallest over a few trials (a
    held GIL pauses the loop for the whole kernel in every trial; scheduling noise on a
    busy machine only in some). A short switch interval keeps the GIL handovers around
    the call (its Python part) from pausing the loop for long."""
    sys.setswitchinterval(0.0005)
    for name in names:
        call = _kernel_call(name)
        measured = []
        for _ in range(trials):
            done = threading.Event()

            def worker():
                call()
                done.set()

            stamps = [time.perf_counter()]
            thread = threading.Thread(target=worker)
            thread.start()
            while not done.is_set():
                stamps.append(time.perf_counter())
            stamps.append(time.perf_counter())
            thread.join()
            duration = stamps[-1] - stamps[0]
            measured.append((float(np.diff(stamps).max()) / duration, duration))
        fraction, duration = min(measured)
        print(json.dumps({"name": name, "kernel_s": duration, "pause_fraction": fraction}),
              flush=True)


@pytest.fixture(scope="module")
def gil_measurements():
    # One OpenMP thread, so the kernel does not take the core the stamping loop needs.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, "measure-gil", *KERNELS,
                           "control-holding-the-gil"],
                          capture_output=True, text=True, timeout=300, env=env)
    results = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    return results, proc.stderr


@pytest.mark.parametrize("name", KERNELS)
def test_kernels_release_the_gil(name, gil_measurements):
    results, stderr = gil_measurements
    assert name in results, f"the measuring child died: {stderr}"
    result = results[name]
    assert result["kernel_s"] > 0.01, f"{name} is too short to tell: {result}"
    # Holding the GIL would pause the stamping loop for the whole kernel (fraction ~1);
    # released, the loop pauses only for switch intervals (5 ms) and scheduling noise.
    assert result["pause_fraction"] < 0.3, result


def test_the_measurement_sees_a_call_that_holds_the_gil(gil_measurements):
    results, stderr = gil_measurements
    assert results["control-holding-the-gil"]["pause_fraction"] > 0.5, stderr


# ----- concurrent use gives serial results ------------------------------------------------------

def _sequence_model(seed):
    fd.utils.set_random_seed(seed)
    model = models.Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu",
                      input_shape=(8, 8, 3)),                   # convolution kernels
        layers.MaxPooling2D(2),                                 # pooling kernel
        layers.Reshape((4, 16)),
        layers.LSTM(16, return_sequences=True),                 # fused LSTM kernels
        layers.GlobalMaxPooling1D(),                            # pooling kernel
        layers.Dense(5, activation="softmax"),                  # fused cross-entropy in fit
    ])
    model.compile(fd.optimizers.Adam(0.01), "sparse_categorical_crossentropy")  # Adam kernel
    return model


def _run_in_threads(functions):
    results = [None] * len(functions)
    errors = []
    barrier = threading.Barrier(len(functions))

    def run(i):
        try:
            barrier.wait()   # start together, so the calls overlap
            results[i] = functions[i]()
        except BaseException as e:  # reported by the test, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_threads_predicting_with_one_model_get_serial_results():
    model = _sequence_model(0)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(n, 8, 8, 3)).astype(np.float32) for n in (1, 7, 32, 64, 5, 33)]
    serial = [model.predict(x, batch_size=16) for x in inputs]
    for _ in range(3):
        concurrent = _run_in_threads([lambda x=x: model.predict(x, batch_size=16)
                                      for x in inputs])
        for got, want in zip(concurrent, serial):
            np.testing.assert_array_equal(got, want)


def test_threads_training_their_own_models_get_serial_results():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(48, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 5, 48)

    def train(model):
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return history.history["loss"], model.get_weights()

    # Models are built (drawing their initial weights) before any thread starts;
    # fit without shuffling and without dropout draws nothing more.
    serial = [train(_sequence_model(seed)) for seed in range(4)]
    concurrent = _run_in_threads([lambda m=_sequence_model(seed): train(m)
                                  for seed in range(4)])
    for (got_loss, got_weights), (want_loss, want_weights) in zip(concurrent, serial):
        assert got_loss == want_loss
        for a, b in zip(got_weights, want_weights):
            np.testing.assert_array_equal(a, b)


def test_threads_calling_the_ops_concurrently_get_serial_results():
    rng = np.random.default_rng(3)
    problems = [(rng.normal(size=(n, c)).astype(np.float32), rng.integers(0, c, n))
                for n, c in ((1000, 37), (257, 1000), (3, 5), (4096, 10))]
    matrices = [rng.normal(size=(m, m)).astype(np.float32) for m in (1, 67, 256, 129)]

    def work(i):
        logits, labels = problems[i]
        return ops.sparse_softmax_cross_entropy(logits, labels) + (
            gemm.matmul(matrices[i], matrices[i]),)

    serial = [work(i) for i in range(4)]
    for _ in range(3):
        for got, want in zip(_run_in_threads([lambda i=i: work(i) for i in range(4)]), serial):
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)


if __name__ == "__main__":
    if sys.argv[1] == "measure-gil":
        _child_measure_gil(sys.argv[2:])
