"""Numerical faults: NaN or Inf in gives NaN or Inf out (never a finite-looking wrong
answer, never a hang or a crash), TerminateOnNaN stops within one batch, and
fd.utils.check_numerics names the first layer that produced a non-finite value in
forward or backward.

The op and layer cases run in one child process (this file as a script) with
faulthandler on and a time limit, so a kernel that crashes or loops on NaN fails
its own case instead of killing or stalling pytest. Each case poisons one sample
(or one tensor) and returns the outputs split into the part that depends on the
poison, which must be non-finite, and the part that does not, which must stay
finite (a kernel whose rows or samples interact, or that lets NaN leak, fails).
A new op or layer is one line in CASES.
"""
from __future__ import annotations

import faulthandler
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import fusednn as fd
import fusednn.models as models
from fusednn import callbacks, layers, ops
from fusednn.ops import gemm

f32 = np.float32
NAN, INF = np.nan, np.inf


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(f32)


def _poison_sample(x, value, sample=1, index=None):
    """x with one entry of sample `sample` set to `value` (NaN, +Inf or -Inf)."""
    x = x.copy()
    position = (sample,) + (index if index is not None else (0,) * (x.ndim - 1))
    x[position] = value
    return x


def _split(arrays, sample=1):
    """(poisoned, clean): the given sample's rows, and all the other samples."""
    poisoned = [a[sample] for a in arrays]
    clean = [np.delete(a, sample, axis=0) for a in arrays]
    return poisoned, clean


# ----- ops ---------------------------------------------------------------------------------

def _cross_entropy_split(value, losses, dlogits):
    """A NaN or +Inf logit makes its row's loss and gradient NaN; a -Inf logit of a class
    with target mass makes the loss +Inf while the gradient (softmax 0 minus target)
    stays finite, as the formula says."""
    (loss_row, grad_row), clean = _split([losses, dlogits])
    return ([loss_row] if value == -INF else [loss_row, grad_row]), clean


def sparse_ce(value):
    logits = _poison_sample(_rand(4, 5), value, index=(2,))
    labels = np.array([0, 2, 1, 4])   # sample 1's label is the poisoned class
    return _cross_entropy_split(value, *ops.sparse_softmax_cross_entropy(logits, labels))


def dense_ce(value):
    logits = _poison_sample(_rand(4, 5), value, index=(3,))
    return _cross_entropy_split(
        value, *ops.softmax_cross_entropy(logits, np.full((4, 5), 0.2, f32)))


def adam(value):
    params = [_rand(3, 4), _rand(5)]
    grads = [_poison_sample(_rand(3, 4, seed=1), value), _rand(5, seed=2)]
    ms, vs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    ops.adam_update(params, grads, ms, vs, learning_rate=0.1, beta_1=0.9, beta_2=0.999,
                    epsilon=1e-7, step=1)
    # Only element (1, 0) of the first tensor saw the poison.
    return [params[0][1, 0], ms[0][1, 0], vs[0][1, 0]], \
        [np.delete(params[0].ravel(), 4), params[1], np.delete(ms[0].ravel(), 4)]


def sgd_momentum(value):
    params, moments = [_rand(3, 4)], [np.zeros((3, 4), f32)]
    ops.sgd_update(params, [_poison_sample(_rand(3, 4, seed=1), value)], moments,
                   learning_rate=0.1, momentum=0.9)
    return [params[0][1, 0], moments[0][1, 0]], [np.delete(params[0].ravel(), 4)]


def matmul_poisoned_a(value):
    # A zero row in b must not hide the poison: 0 * NaN and 0 * Inf are NaN (IEEE);
    # a kernel that skips zeros would return a finite number here.
    a = _poison_sample(_rand(4, 6), value, index=(2,))
    b = _rand(6, 5)
    b[2] = 0.0
    return _split([gemm.matmul(a, b)])


def matmul_poisoned_b(value):
    a, b = _rand(4, 6), _rand(6, 5)
    a[:, 3] = 0.0
    b[3, 1] = value
    out = gemm.matmul(a, b)
    return [out[:, 1]], [np.delete(out, 1, axis=1)]


def max_pool(value):
    x = _poison_sample(_rand(3, 4, 4, 2), value, index=(0, 0, 0))
    y, argmax = ops.max_pool2d(x, 2)
    dx = ops.max_pool2d_backward(np.ones_like(y), argmax, x.shape, 2)
    # Max pooling of +Inf gives +Inf; of -Inf, a finite max of the other window entries.
    if value == -INF:
        return [], [y, dx]
    return [y[1, 0, 0, 0]], [np.delete(y, 1, axis=0), dx]


def avg_pool(value):
    x = _poison_sample(_rand(3, 4, 4, 2), value, index=(0, 0, 0))
    return [ops.avg_pool2d(x, 2)[1, 0, 0, 0]], [np.delete(ops.avg_pool2d(x, 2), 1, axis=0)]


def avg_pool_backward(value):
    dy = _poison_sample(_rand(3, 2, 2, 2), value, index=(0, 0, 0))
    return _split([ops.avg_pool2d_backward(dy, (3, 4, 4, 2), 2)])


def upsample(value):
    return _split([ops.upsample_nearest2d(_poison_sample(_rand(3, 2, 2, 2), value))])


def conv2d_case(activation):
    def case(value):
        # Kernel of ones: the poisoned pixel reaches every filter of the windows holding it.
        x = _poison_sample(_rand(3, 4, 4, 2), value, index=(0, 0, 1))
        kernel = np.ones((3, 3, 2, 3), f32)
        y = ops.conv2d(x, kernel, np.zeros(3, f32), activation=activation)
        dx, dkernel, _ = ops.conv2d_backward(np.ones_like(y), x, kernel, y,
                                             activation=activation)
        # Only the window at (0, 0) holds pixel (0, 0); the kernel gradient sums x over
        # the batch, so it is poisoned as a whole, dx is not (the kernel is finite).
        return [y[1, 0, 0], dkernel[0, 0, 1]], [np.delete(y, 1, axis=0), y[1, 1:], dx]
    return case


def _recurrent_inputs(gates, value, U=3, F=4):
    x = _poison_sample(_rand(3, 5, F), value, index=(2, 1))   # sample 1, step 2
    return x, np.zeros((3, U), f32), _rand(F, gates * U, seed=1) * 0.5, \
        _rand(U, gates * U, seed=2) * 0.5


def lstm(value):
    x, h0, kernel, recurrent = _recurrent_inputs(4, value)
    y, h, c, cache = ops.lstm_forward(x, h0, h0, kernel, recurrent, np.zeros(12, f32),
                                      training=True)
    dx = ops.lstm_backward(np.ones_like(y), None, None, cache)[0]
    # From the poisoned step on, sample 1's outputs are non-finite; saturating gates may
    # map +-Inf to finite values, so only NaN is required to reach the outputs.
    poisoned = [y[1, 2:], h[1], dx[1]] if np.isnan(value) else []
    return poisoned, [np.delete(a, 1, axis=0) for a in (y, h, c, dx)] + [y[1, :2]]


def gru(value):
    x, h0, kernel, recurrent = _recurrent_inputs(3, value)
    y, h, cache = ops.gru_forward(x, h0, kernel, recurrent, np.zeros((2, 9), f32),
                                  training=True)
    dx = ops.gru_backward(np.ones_like(y), None, cache)[0]
    poisoned = [y[1, 2:], h[1], dx[1]] if np.isnan(value) else []
    return poisoned, [np.delete(a, 1, axis=0) for a in (y, h, dx)] + [y[1, :2]]


def simple_rnn_relu(value):
    x, h0, kernel, recurrent = _recurrent_inputs(1, value)
    kernel[1] = 1.0   # the poisoned feature reaches every unit with weight 1 ...
    if value == -INF:
        kernel[1] = -1.0   # ... and with -Inf through -1, so relu sees +Inf
    y, h, cache = ops.simple_rnn_forward(x, h0, kernel, recurrent, np.zeros(3, f32),
                                         activation="relu", training=True)
    return [y[1, 2:], h[1]], [np.delete(y, 1, axis=0), y[1, :2]]


# ----- layers (forward of a batch with one poisoned sample) ------------------------------------

def layer_case(make, shape):
    def case(value):
        fd.utils.set_random_seed(0)
        layer = make()
        x = _poison_sample(_rand(*shape), value)
        return _split([layer(x)])
    return case


def _dense_with_positive_weights():
    # Positive weights carry a +-Inf input to +-Inf logits (mixed signs could cancel
    # to a NaN, fine too, but the test wants a definite expectation).
    layer = layers.Dense(3, kernel_initializer="ones")
    return layer


# (id, function of the poison value, values to try). Every function returns
# (outputs that must be non-finite, outputs that must stay finite).
ALL = (NAN, INF, -INF)
CASES = [
    ("op-sparse-softmax-cross-entropy", sparse_ce, ALL),
    ("op-softmax-cross-entropy", dense_ce, ALL),
    ("op-adam-update", adam, ALL),
    ("op-sgd-update-momentum", sgd_momentum, ALL),
    ("op-matmul-poisoned-a", matmul_poisoned_a, ALL),
    ("op-matmul-poisoned-b", matmul_poisoned_b, ALL),
    ("op-max-pool2d", max_pool, ALL),
    ("op-avg-pool2d", avg_pool, ALL),
    ("op-avg-pool2d-backward", avg_pool_backward, ALL),
    ("op-upsample-nearest2d", upsample, ALL),
    ("op-conv2d", conv2d_case("linear"), ALL),
    ("op-conv2d-relu", conv2d_case("relu"), (NAN, INF)),
    ("op-lstm", lstm, ALL),
    ("op-gru", gru, ALL),
    ("op-simple-rnn-relu", simple_rnn_relu, ALL),
    ("layer-dense", layer_case(_dense_with_positive_weights, (3, 4)), ALL),
    ("layer-dense-relu", layer_case(lambda: layers.Dense(3, activation="relu",
                                                         kernel_initializer="ones"), (3, 4)),
     (NAN, INF)),
    ("layer-relu", layer_case(lambda: layers.ReLU(), (3, 4)), (NAN, INF)),
    ("layer-leaky-relu", layer_case(lambda: layers.LeakyReLU(), (3, 4)), ALL),
    ("layer-elu", layer_case(lambda: layers.ELU(), (3, 4)), (NAN, INF)),
    ("layer-prelu", layer_case(lambda: layers.PReLU(alpha_initializer="ones"), (3, 4)), ALL),
    ("layer-activation-tanh", layer_case(lambda: layers.Activation("tanh"), (3, 4)), (NAN,)),
    ("layer-activation-sigmoid", layer_case(lambda: layers.Activation("sigmoid"), (3, 4)),
     (NAN,)),
    ("layer-activation-gelu", layer_case(lambda: layers.Activation("gelu"), (3, 4)), (NAN, INF)),
    ("layer-activation-swish", layer_case(lambda: layers.Activation("swish"), (3, 4)),
     (NAN, INF)),
    ("layer-softmax", layer_case(lambda: layers.Softmax(), (3, 4)), (NAN, INF)),
    ("layer-flatten", layer_case(lambda: layers.Flatten(), (3, 2, 2)), ALL),
    ("layer-max-pooling2d", layer_case(lambda: layers.MaxPooling2D(2), (3, 4, 4, 1)),
     (NAN, INF)),
    ("layer-average-pooling1d", layer_case(lambda: layers.AveragePooling1D(2), (3, 4, 2)), ALL),
    ("layer-global-max-pooling2d", layer_case(lambda: layers.GlobalMaxPooling2D(),
                                              (3, 3, 3, 2)), (NAN, INF)),
    ("layer-global-average-pooling1d", layer_case(lambda: layers.GlobalAveragePooling1D(),
                                                  (3, 4, 2)), ALL),
    ("layer-upsampling2d", layer_case(lambda: layers.UpSampling2D(2), (3, 2, 2, 1)), ALL),
    ("layer-batch-normalization-inference",
     layer_case(lambda: layers.BatchNormalization(), (3, 4)), ALL),
    ("layer-conv2d", layer_case(lambda: layers.Conv2D(2, 3, padding="same",
                                                      kernel_initializer="ones"), (3, 4, 4, 1)),
     ALL),
    ("layer-conv1d-relu", layer_case(lambda: layers.Conv1D(2, 2, activation="relu",
                                                           kernel_initializer="ones"), (3, 5, 2)),
     (NAN, INF)),
    ("layer-conv2d-transpose", layer_case(lambda: layers.Conv2DTranspose(
        2, 3, strides=2, kernel_initializer="ones"), (3, 3, 3, 1)), ALL),
    ("layer-lstm", layer_case(lambda: layers.LSTM(3), (3, 4, 2)), (NAN,)),
    ("layer-gru", layer_case(lambda: layers.GRU(3), (3, 4, 2)), (NAN,)),
    ("layer-simple-rnn", layer_case(lambda: layers.SimpleRNN(3), (3, 4, 2)), (NAN,)),
    ("model-sequential-of-dense-layers", layer_case(
        lambda: models.Sequential([layers.Dense(3, kernel_initializer="ones"),
                                   layers.Dense(2, kernel_initializer="ones")]), (3, 4)),
     (NAN, INF)),
]

_PARAMS = [(case_id, value) for case_id, _, values in CASES for value in values]


def _key(case_id, value):
    return f"{case_id}[{value}]"


# ----- the child process ----------------------------------------------------------------------

def _child_main(keys) -> None:
    faulthandler.enable()
    functions = {case_id: function for case_id, function, _ in CASES}
    for key in keys:
        case_id, value = key[:-1].split("[")
        print(json.dumps({"start": key}), flush=True)
        with np.errstate(all="ignore"):   # NaN/Inf arithmetic is the point here
            poisoned, clean = functions[case_id](float(value))
        report = {
            "key": key,
            "poisoned_finite": [bool(np.all(np.isfinite(np.asarray(a)))) for a in poisoned],
            "clean_finite": [bool(np.all(np.isfinite(np.asarray(a)))) for a in clean],
        }
        print(json.dumps(report), flush=True)


@pytest.fixture(scope="module")
def results():
    """Results by key; a case that crashes or hangs its child is recorded as such and
    the remaining cases run in a fresh child."""
    out = {}
    pending = [_key(case_id, value) for case_id, value in _PARAMS]
    while pending:
        try:
            proc = subprocess.run([sys.executable, __file__, *pending], capture_output=True,
                                  text=True, timeout=120)
            stdout, stderr, status = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            stderr, status = "timed out after 120 s (a kernel hung?)", "timeout"
        started = None
        for line in stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                out[record["key"]] = record
        if started is not None and started not in out:
            out[started] = {"crash": status, "stderr": stderr[-4000:]}
        elif status != 0:
            out[pending[0]] = {"crash": status, "stderr": stderr[-4000:]}
        pending = [key for key in pending if key not in out]
    return out


# Known defects, reported (strict: the test fails once they are fixed, to be removed then).
_KNOWN_DEFECTS: dict = {}  # case id -> reason, for a defect reported but not yet fixed


def _param(case_id, value):
    marks = ([pytest.mark.xfail(reason=_KNOWN_DEFECTS[case_id], strict=True)]
             if case_id in _KNOWN_DEFECTS else [])
    return pytest.param(case_id, value, id=_key(case_id, value), marks=marks)


@pytest.mark.parametrize("case_id, value", [_param(*p) for p in _PARAMS])
def test_non_finite_in_gives_non_finite_out_and_nothing_else(case_id, value, results):
    result = results[_key(case_id, value)]
    assert "crash" not in result, f"crashed or hung ({result.get('crash')}): {result['stderr']}"
    assert not any(result["poisoned_finite"]), \
        f"an output that depends on the {value} input is finite: {result['poisoned_finite']}"
    assert all(result["clean_finite"]), \
        f"the {value} leaked into outputs that do not depend on it: {result['clean_finite']}"


# ----- training: TerminateOnNaN ---------------------------------------------------------------

class BatchLog(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


def _softmax_classifier():
    fd.utils.set_random_seed(0)
    model = models.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                               layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("poison", [NAN, INF])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_terminate_on_nan_stops_at_the_batch_whose_input_is_non_finite(poison, capsys):
    """The fused softmax cross-entropy path: a non-finite input sample in batch 2 makes
    that batch's loss non-finite, and no batch after it runs."""
    x, y = _rand(24, 4), np.arange(24) % 3
    x[9, 1] = poison   # batch 2 of size 4 holds samples 8..11 (no shuffling)
    log = BatchLog()
    model = _softmax_classifier()
    history = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN(), log])
    assert len(log.losses) == 3
    assert all(math.isfinite(v) for v in log.losses[:2]) and not math.isfinite(log.losses[2])
    assert history.epoch == [0]
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out


def test_terminate_on_nan_stops_a_diverging_run_at_its_first_non_finite_batch():
    fd.utils.set_random_seed(0)
    model = models.Sequential([layers.Dense(16, activation="relu", input_shape=(4,)),
                               layers.Dense(1)])
    model.compile(fd.optimizers.SGD(learning_rate=1e3), "mse")   # diverges within a few steps
    x = _rand(64, 4)
    log = BatchLog()
    with np.errstate(all="ignore"):
        model.fit(x, x.sum(axis=1, keepdims=True) * 100, batch_size=4, epochs=5, verbose=0,
                  callbacks=[callbacks.TerminateOnNaN(), log])
    first_bad = next(i for i, v in enumerate(log.losses) if not math.isfinite(v))
    assert len(log.losses) == first_bad + 1   # nothing ran after the first non-finite batch


# ----- check_numerics ------------------------------------------------------------------------
# (NumPy warns about the overflows and invalid products these tests provoke on purpose.)

def _chain(d1_kernel=-1.0, d2_kernel_fill=0.5):
    """x (4, 3) of ones -> d1 (linear, kernel filled with d1_kernel) -> d2 (relu) -> out
    (softmax): a setup whose faults are placed exactly."""
    model = models.Sequential([
        layers.Dense(4, input_shape=(3,), name="d1", kernel_initializer="ones"),
        layers.Dense(4, activation="relu", name="d2", kernel_initializer="ones"),
        layers.Dense(2, activation="softmax", name="out", kernel_initializer="ones"),
    ])
    model.layers[0].kernel.value[...] = d1_kernel
    model.layers[1].kernel.value[...] = d2_kernel_fill
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model, np.ones((4, 3), f32), np.array([0, 1, 0, 1])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_check_numerics_names_the_first_layer_producing_inf_in_forward():
    model, x, y = _chain(d1_kernel=1.0, d2_kernel_fill=1e38)   # d1: 3, d2: 4 * 3e38 = Inf
    with fd.utils.check_numerics():
        with pytest.raises(FloatingPointError, match=r"Dense 'd2' produced non-finite values "
                                                     r"in its forward output from a finite "
                                                     r"input: 0 NaN and 16 Inf"):
            model.train_on_batch(x, y)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_check_numerics_names_the_first_layer_producing_nan_in_backward():
    """d2's forward is finite (relu(-Inf) = 0) but its input gradient has 0 * Inf = NaN."""
    model, x, y = _chain()
    model.layers[1].kernel.value[0, 0] = INF
    with fd.utils.check_numerics():
        assert np.all(np.isfinite(model.predict(x)))
        with pytest.raises(FloatingPointError, match=r"Dense 'd2' produced non-finite values "
                                                     r"in its backward gradient w\.r\.t\. its "
                                                     r"input"):
            model.train_on_batch(x, y)


def test_check_numerics_names_the_model_input_and_the_targets():
    model, x, y = _chain()
    x[2, 1] = NAN
    with fd.utils.check_numerics(), pytest.raises(
            FloatingPointError, match=r"the input of Dense 'd1' already holds non-finite "
                                      r"values: 1 NaN and 0 Inf among the 12 values"):
        model.predict(x)
    model, x, _ = _chain()
    model.compile("sgd", "mse")
    with fd.utils.check_numerics(), pytest.raises(
            FloatingPointError, match=r"the targets \(y\) given to Sequential .* 0 NaN and 1 Inf"):
        model.train_on_batch(x, np.array([[0, 1], [1, 0], [0, INF], [1, 0]], f32))


def test_check_numerics_covers_recurrent_layers_and_standalone_layers():
    fd.utils.set_random_seed(0)
    model = models.Sequential([layers.LSTM(3, input_shape=(5, 2), name="lstm"),
                               layers.Dense(1, name="head")])
    model.layers[0].kernel.value[0, 0] = NAN
    with fd.utils.check_numerics(), pytest.raises(
            FloatingPointError, match=r"LSTM 'lstm' produced non-finite values in its forward"):
        model.predict(_rand(2, 5, 2))
    dense = layers.Dense(2, name="alone")
    dense(_rand(2, 3))
    dense.kernel.value[1, 1] = INF
    with fd.utils.check_numerics(), pytest.raises(
            FloatingPointError, match=r"Dense 'alone' produced non-finite values in its forward"):
        dense(_rand(2, 3))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_check_numerics_is_off_by_default_and_restored_after_the_block():
    model, x, y = _chain()
    model.layers[1].kernel.value[0, 0] = INF
    assert not fd.utils.numerics_checked()
    with np.errstate(all="ignore"):
        model.train_on_batch(x, y)          # no check: the NaN simply flows on
    assert not np.all(np.isfinite(model.layers[0].kernel.value))
    with pytest.raises(FloatingPointError):
        with fd.utils.check_numerics():
            assert fd.utils.numerics_checked()
            model.predict(x)
    assert not fd.utils.numerics_checked()
    fd.utils.enable_check_numerics()
    try:
        assert fd.utils.numerics_checked()
    finally:
        fd.utils.disable_check_numerics()
    assert not fd.utils.numerics_checked()


if __name__ == "__main__":
    _child_main(sys.argv[1:])
