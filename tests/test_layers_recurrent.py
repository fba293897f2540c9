"""Recurrent layers (SimpleRNN, LSTM, GRU), wrappers (Bidirectional, TimeDistributed,
RepeatVector), Embedding, Masking and the PyTorch weight converter.

References: a step-by-step NumPy loop written from the contract's equations (below),
central finite differences in float64 for every gradient (inputs, initial states and
weights; through masks, go_backwards, return_state, dropout masks), PyTorch's
nn.LSTM / nn.GRU / nn.RNN as oracle in float32, and Keras's parameter counts."""
import numpy as np
import pytest

import fusednn.models as models
from fusednn import convert, layers, losses
from gradcheck import as_list, check_layer_gradients

F64 = {"dtype": "float64"}


# ----- NumPy step references (the contract's equations, Keras gate orders) -------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _run_steps(cell, x, states, mask=None, recurrent_mask=None):
    """Runs `cell` over x (N, T, F). Masked steps carry the states over and repeat the
    previous output (zeros before the first valid step). Returns (y (N, T, U), states)."""
    states = [np.array(s, dtype=np.float64) for s in states]
    previous = np.zeros_like(states[0])
    ys = []
    for t in range(x.shape[1]):
        h_in = states[0] if recurrent_mask is None else states[0] * recurrent_mask
        new = cell(x[:, t], h_in, states)
        if mask is not None:
            keep = mask[:, t, None]
            new = [np.where(keep, n, s) for n, s in zip(new, states)]
            previous = np.where(keep, new[0], previous)
        else:
            previous = new[0]
        states = new
        ys.append(previous)
    return np.stack(ys, axis=1), states


def _simple_rnn_cell(kernel, recurrent, bias, activation):
    act = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0.0))
    return lambda x, h_in, states: [act(x @ kernel + h_in @ recurrent + bias)]


def _lstm_cell(kernel, recurrent, bias):
    u = recurrent.shape[0]

    def cell(x, h_in, states):
        z = x @ kernel + h_in @ recurrent + bias
        i, f = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u])
        g, o = np.tanh(z[:, 2 * u:3 * u]), _sigmoid(z[:, 3 * u:])
        c = f * states[1] + i * g
        return [o * np.tanh(c), c]
    return cell


def _gru_cell(kernel, recurrent, bias, reset_after):
    u = recurrent.shape[0]

    def cell(x, h_in, states):
        h = states[0]
        if reset_after:
            xw = x @ kernel + bias[0]
            hu = h_in @ recurrent + bias[1]
            z = _sigmoid(xw[:, :u] + hu[:, :u])
            r = _sigmoid(xw[:, u:2 * u] + hu[:, u:2 * u])
            hh = np.tanh(xw[:, 2 * u:] + r * hu[:, 2 * u:])
        else:
            xw = x @ kernel + bias
            z = _sigmoid(xw[:, :u] + h_in @ recurrent[:, :u])
            r = _sigmoid(xw[:, u:2 * u] + h_in @ recurrent[:, u:2 * u])
            hh = np.tanh(xw[:, 2 * u:] + (r * h_in) @ recurrent[:, 2 * u:])
        return [z * h + (1.0 - z) * hh]  # Keras: z keeps the old state
    return cell


def _cell_of(layer):
    weights = [w.astype(np.float64) for w in layer.get_weights()]
    if not layer.use_bias:
        shape = {"GRU": (2, 3 * layer.units) if getattr(layer, "reset_after", False)
                 else (3 * layer.units,), "LSTM": (4 * layer.units,)}.get(
            type(layer).__name__, (layer.units,))
        weights.append(np.zeros(shape))
    if isinstance(layer, layers.LSTM):
        return _lstm_cell(*weights), 2
    if isinstance(layer, layers.GRU):
        return _gru_cell(*weights, layer.reset_after), 1
    return _simple_rnn_cell(*weights, layer.activation.name), 1


def _reference(layer, x, mask=None, initial_state=None, input_mask=None, recurrent_mask=None):
    """What `layer.forward` should return, from the NumPy loop."""
    cell, n_states = _cell_of(layer)
    n = x.shape[0]
    states = initial_state or [np.zeros((n, layer.units))] * n_states
    if input_mask is not None:
        x = x * input_mask[:, None, :]
    if layer.go_backwards:
        x = x[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    y, final = _run_steps(cell, x, states, mask, recurrent_mask)
    output = y if layer.return_sequences else final[0]
    return [output] + final if layer.return_state else output


# ----- helpers -------------------------------------------------------------------------------
KINDS = {
    "simple_rnn_tanh": lambda units, **kw: layers.SimpleRNN(units, **kw),
    "simple_rnn_relu": lambda units, **kw: layers.SimpleRNN(units, activation="relu", **kw),
    "lstm": lambda units, **kw: layers.LSTM(units, **kw),
    "gru": lambda units, **kw: layers.GRU(units, **kw),
    "gru_reset_before": lambda units, **kw: layers.GRU(units, reset_after=False, **kw),
}
STATE_COUNT = {"lstm": 2}


def _make(kind, units=3, features=4, seed=0, scale=0.6, **kwargs):
    """A built layer with random weights of a size that exercises the nonlinearities."""
    layer = KINDS[kind](units, **kwargs)
    layer.build_for((None, None, features))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.0, scale, w.shape) for w in layer.get_weights()])
    return layer


def _mask(n, t, seed=0):
    """Random time-step masks with post- and pre-padding and one sequence fully masked."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n, t)) > 0.3
    mask[0, -2:] = False          # post-padding
    mask[1, :2] = False           # pre-padding
    if n > 2:
        mask[2] = False           # nothing valid at all
    return mask


# ----- shapes and parameter counts -----------------------------------------------------------
@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.LSTM, layers.GRU])
def test_lecture_shapes(cls):
    # The lecture: X [2, 9, 1] through a 3-unit recurrent layer -> [2, 9, 3] or [2, 3].
    x = np.random.default_rng(0).normal(size=(2, 9, 1))
    assert cls(3, return_sequences=True)(x).shape == (2, 9, 3)
    assert cls(3)(x).shape == (2, 3)
    layer = cls(3, return_state=True)
    outputs = layer(x)
    assert [o.shape for o in outputs] == [(2, 3)] * (3 if cls is layers.LSTM else 2)
    assert layer.compute_output_shape((None, 9, 1))[0] == (None, 3)


def test_lecture_lstm_model_parameter_counts():
    model = models.Sequential([
        layers.LSTM(256, return_sequences=True, input_shape=(60, 1)),
        layers.Dropout(0.4),
        layers.LSTM(256),
        layers.Dropout(0.4),
        layers.Dense(64, activation="relu"),
        layers.Dense(1),
    ])
    # Keras's summary of this model (lecture 004).
    assert [layer.count_params() for layer in model.layers] == [264192, 0, 525312, 0, 16448, 65]
    assert model.count_params() == 806017
    assert [layer.output_shape for layer in model.layers] == [
        (None, 60, 256), (None, 60, 256), (None, 256), (None, 256), (None, 64), (None, 1)]
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 806,017" in lines


@pytest.mark.parametrize("layer, shapes", [
    (layers.SimpleRNN(7), [(5, 7), (7, 7), (7,)]),
    (layers.LSTM(7), [(5, 28), (7, 28), (28,)]),
    (layers.GRU(7), [(5, 21), (7, 21), (2, 21)]),
    (layers.GRU(7, reset_after=False), [(5, 21), (7, 21), (21,)]),
    (layers.LSTM(7, use_bias=False), [(5, 28), (7, 28)]),
    (layers.Bidirectional(layers.GRU(7)), [(5, 21), (7, 21), (2, 21)] * 2),
])
def test_weight_shapes_and_counts_follow_keras(layer, shapes):
    layer.build_for((None, 11, 5))
    assert [w.shape for w in layer.get_weights()] == shapes
    assert layer.count_params() == sum(int(np.prod(s)) for s in shapes)


def test_default_initializers_follow_keras():
    layer = layers.LSTM(8)
    layer.build_for((None, 3, 8))
    kernel, recurrent, bias = layer.get_weights()
    # orthogonal recurrent kernel (U, 4U): orthonormal rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(8), atol=1e-5)
    # glorot_uniform kernel: limit sqrt(6 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= np.sqrt(6 / (8 + 32)) + 1e-7
    # unit_forget_bias: forget-gate quarter (i, f, c, o) is one, the rest zeros
    np.testing.assert_array_equal(bias, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])
    plain = layers.LSTM(8, unit_forget_bias=False, bias_initializer="ones")
    plain.build_for((None, 3, 8))
    np.testing.assert_array_equal(plain.get_weights()[2], np.ones(32))
    gru = layers.GRU(4)
    gru.build_for((None, 2, 3))
    np.testing.assert_array_equal(gru.get_weights()[2], np.zeros((2, 12)))
    # Orthogonal gives a transposed view for wide shapes; weights must still be C-contiguous
    # because optimizers update them in place.
    assert all(v.value.flags.c_contiguous and v.grad.flags.c_contiguous
               for v in layer.variables + gru.variables)


# ----- forward against the NumPy reference ---------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_forward_matches_reference(kind, return_sequences, go_backwards):
    layer = _make(kind, units=5, features=3, return_sequences=return_sequences,
                  go_backwards=go_backwards, return_state=True, **F64)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6, 3))
    # plain call: zero initial state, no mask
    for got, want in zip(layer(x), _reference(layer, x)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    mask = _mask(4, 6)
    states = [rng.normal(size=(4, 5)) for _ in range(STATE_COUNT.get(kind, 1))]
    got = layer(x, mask=mask, initial_state=states)
    want = _reference(layer, x, mask=mask, initial_state=states)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    # the fully masked sequence keeps its initial state and outputs zeros
    for g, s in zip(got[1:], states):
        np.testing.assert_array_equal(g[2], s[2])
    if return_sequences:
        np.testing.assert_array_equal(got[0][2], 0.0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn_tanh"])
def test_float32_forward_and_odd_sizes(kind):
    # Prime sizes, sequence length 1 and batch 1; float32 kernels vs the float64 reference:
    # 24-bit mantissa through a few dozen fused multiply-adds per gate -> 1e-5.
    for n, t, f, u in [(1, 1, 1, 1), (3, 7, 5, 13), (2, 11, 17, 31)]:
        layer = _make(kind, units=u, features=f, scale=0.3, return_sequences=True)
        x = np.random.default_rng(n + t).normal(size=(n, t, f)).astype(np.float32)
        y = layer(x)
        assert y.dtype == np.float32 and y.shape == (n, t, u)
        np.testing.assert_allclose(y, _reference(layer, x.astype(np.float64)), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru_reset_before", "simple_rnn_tanh"])
def test_use_bias_false_matches_reference(kind):
    layer = _make(kind, use_bias=False, return_sequences=True, **F64)
    x = np.random.default_rng(4).normal(size=(2, 4, 4))
    np.testing.assert_allclose(layer(x), _reference(layer, x), rtol=1e-12, atol=1e-13)
    check_layer_gradients(layer, x, seed=1, atol=1e-8)


def test_non_contiguous_input():
    layer = _make("lstm", return_sequences=True, **F64)
    base = np.random.default_rng(5).normal(size=(2, 8, 8))
    x = base[:, ::2, ::2]  # strided view
    assert not x.flags.c_contiguous
    np.testing.assert_allclose(layer(x), _reference(layer, np.ascontiguousarray(x)),
                               rtol=1e-12, atol=1e-13)


# ----- gradients against finite differences --------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_sequences(kind):
    layer = _make(kind, return_sequences=True, **F64)
    x = np.random.default_rng(6).normal(size=(2, 5, 4))
    check_layer_gradients(layer, x, seed=1, atol=1e-8)


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_mask_go_backwards_return_state_initial_state(kind):
    layer = _make(kind, go_backwards=True, return_state=True, **F64)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 5, 4))
    states = [rng.normal(size=(3, 3)) for _ in range(STATE_COUNT.get(kind, 1))]
    check_layer_gradients(layer, x, seed=1, atol=1e-8, mask=_mask(3, 5), initial_state=states)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn_tanh"])
def test_gradients_masked_sequences_with_initial_state(kind):
    layer = _make(kind, return_sequences=True, return_state=True, **F64)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 4, 4))
    states = [rng.normal(size=(3, 3)) for _ in range(STATE_COUNT.get(kind, 1))]
    check_layer_gradients(layer, x, seed=1, atol=1e-8, mask=_mask(3, 4, seed=2),
                          initial_state=states)


def test_backward_accepts_none_for_unused_outputs():
    layer = _make("lstm", return_state=True, return_sequences=True, **F64)
    x = np.random.default_rng(9).normal(size=(2, 4, 4))
    y, h, c = layer.forward(x, training=True)
    dh = np.ones_like(h)
    layer.zero_grad()
    dx_none = layer.backward([None, dh, None])
    grads_none = layer.get_gradients()
    layer.zero_grad()
    dx_zeros = layer.backward([np.zeros_like(y), dh, np.zeros_like(c)])
    np.testing.assert_array_equal(dx_none, dx_zeros)
    for a, b in zip(grads_none, layer.get_gradients()):
        np.testing.assert_array_equal(a, b)


def test_backward_adds_into_gradients_and_frozen_layer_passes_dx():
    layer = _make("gru", **F64)
    x = np.random.default_rng(10).normal(size=(2, 3, 4))
    y = layer.forward(x, training=True)
    layer.zero_grad()
    dx = layer.backward(np.ones_like(y))
    once = layer.get_gradients()
    layer.backward(np.ones_like(y))
    for a, b in zip(once, layer.get_gradients()):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-14)
    layer.trainable = False
    layer.zero_grad()
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.backward(np.ones_like(y)), dx, rtol=1e-14)
    assert all(not g.any() for g in layer.get_gradients())


# ----- dropout -------------------------------------------------------------------------------
def _fixed_masks(layer, masks):
    """Makes the layer's dropout draw the given masks, keyed by shape."""
    layer._dropout_mask = lambda xp, shape, rate: masks[tuple(shape)]


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before", "simple_rnn_tanh"])
def test_dropout_masks_applied_as_keras(kind):
    # One input mask (N, F) for all steps, one recurrent mask (N, U) before the recurrent
    # matmul; forward and finite-difference gradients with those masks held fixed.
    layer = _make(kind, dropout=0.3, recurrent_dropout=0.4, return_sequences=True, **F64)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 5, 4))
    input_mask = (rng.random((3, 4)) > 0.3) / 0.7
    recurrent_mask = (rng.random((3, 3)) > 0.4) / 0.6
    _fixed_masks(layer, {(3, 4): input_mask, (3, 3): recurrent_mask})
    np.testing.assert_allclose(layer.forward(x, training=True),
                               _reference(layer, x, input_mask=input_mask,
                                          recurrent_mask=recurrent_mask),
                               rtol=1e-12, atol=1e-13)
    # inference ignores dropout
    np.testing.assert_allclose(layer(x), _reference(layer, x), rtol=1e-12, atol=1e-13)
    check_layer_gradients(layer, x, seed=1, atol=1e-8, training=True, mask=_mask(3, 5))


def test_dropout_draws_one_mask_per_sequence():
    layer = _make("lstm", units=6, features=40, dropout=0.5, recurrent_dropout=0.5,
                  return_sequences=True, **F64)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(16, 5, 40))
    h0, c0 = rng.normal(size=(16, 6)), rng.normal(size=(16, 6))
    y = layer.forward(x, training=True, initial_state=[h0, c0])
    dx, dh0, _ = layer.backward(np.ones_like(y))
    # The input gradient is zero at every step or at none, per (sample, feature).
    dropped = dx == 0
    assert np.all(dropped.all(axis=1) == dropped.any(axis=1))
    rate = dropped[:, 0].mean()
    assert 0.35 < rate < 0.65  # 640 Bernoulli(0.5) draws: 4.7 standard deviations
    # h0 only enters through the recurrent matmul, so dh0 is zero exactly where dropped.
    input_mask = (~dropped[:, 0]) / 0.5
    recurrent_mask = (dh0 != 0) / 0.5
    assert 0.25 < (dh0 == 0).mean() < 0.75
    np.testing.assert_allclose(y, _reference(layer, x, initial_state=[h0, c0],
                                             input_mask=input_mask,
                                             recurrent_mask=recurrent_mask),
                               rtol=1e-12, atol=1e-13)
    # a new forward draws new masks
    layer.forward(x, training=True, initial_state=[h0, c0])
    assert not np.array_equal(layer.backward(np.ones_like(y))[0] == 0, dropped)


def test_dropout_seed_repeats():
    x = np.random.default_rng(13).normal(size=(4, 3, 5))
    outputs = []
    for _ in range(2):
        layer = layers.GRU(3, dropout=0.5, recurrent_dropout=0.5, seed=3)
        layer.build_for((None, 3, 5))
        layer.set_weights([np.full(w.shape, 0.3) for w in layer.get_weights()])
        outputs.append(layer.forward(x, training=True))
    assert not np.array_equal(outputs[0], layer(x))  # the masks did change the output
    np.testing.assert_array_equal(*outputs)


# ----- masking through Sequential ------------------------------------------------------------
def _padded_batch(lengths, features, total, seed=14, pad=0.0):
    rng = np.random.default_rng(seed)
    x = np.full((len(lengths), total, features), pad)
    for i, n in enumerate(lengths):
        x[i, :n] = rng.normal(size=(n, features))
    return x


@pytest.mark.parametrize("make", [
    lambda: layers.LSTM(4, **F64),
    lambda: layers.GRU(4, go_backwards=True, **F64),
    lambda: layers.SimpleRNN(4, **F64),
    lambda: layers.Bidirectional(layers.LSTM(4, **F64), **F64),
    lambda: layers.Bidirectional(layers.GRU(4, return_sequences=True, **F64), merge_mode="sum",
                                 **F64),
])
def test_post_padding_is_ignored_with_masking(make):
    lengths = [5, 2, 4]
    x = _padded_batch(lengths, 3, 7)
    model = models.Sequential([layers.Masking(0.0, input_shape=(7, 3), **F64), make()])
    y = model(x)
    assert model.layers[0].output_mask.tolist() == [[t < n for t in range(7)] for n in lengths]
    rnn = model.layers[1]
    for i, n in enumerate(lengths):
        alone = rnn(x[i:i + 1, :n])
        got = y[i:i + 1, :n] if alone.ndim == 3 else y[i:i + 1]
        np.testing.assert_allclose(got, alone, rtol=1e-12, atol=1e-13)


def test_mask_passes_through_dropout_to_stacked_layers_and_backward():
    lengths = [6, 3]
    x = _padded_batch(lengths, 2, 6, seed=15)
    model = models.Sequential([
        layers.Masking(input_shape=(6, 2), **F64),
        layers.LSTM(3, return_sequences=True, **F64),
        layers.Dropout(0.5, seed=1),
        layers.Dense(3, **F64),
        layers.GRU(2, **F64),
    ])
    y = model(x)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(y[i:i + 1], model(x[i:i + 1, :n]), rtol=1e-12, atol=1e-13)
    # padded steps get no gradient; real ones do (some entries may be dropped)
    out = model.forward(x, training=True)
    dx = model.backward(np.ones_like(out))
    assert np.all(dx[1, 3:] == 0) and np.abs(dx[1, :3]).sum() > 0 and np.abs(dx[0]).sum() > 0


def test_embedding_mask_zero_feeds_recurrent_layer():
    ids = np.array([[3, 5, 2, 0, 0], [7, 1, 0, 0, 0], [4, 4, 4, 4, 9]])
    model = models.Sequential([
        layers.Embedding(10, 4, mask_zero=True, input_shape=(5,), **F64),
        layers.LSTM(3, return_sequences=True, **F64),
        layers.LSTM(2, **F64),
    ])
    y = model(ids)
    np.testing.assert_array_equal(model.layers[0].output_mask, ids != 0)
    assert model.layers[2].output_mask is None  # return_sequences=False ends the mask
    for i in range(3):
        n = int((ids[i] != 0).sum())
        np.testing.assert_allclose(y[i:i + 1], model(ids[i:i + 1, :n]), rtol=1e-12,
                                   atol=1e-13)


def test_masking_layer_values_and_gradient():
    layer = layers.Masking(mask_value=-1.0, **F64)
    x = np.random.default_rng(16).normal(size=(2, 4, 3))
    x[0, 1] = -1.0
    x[1, 3] = -1.0
    x[1, 2, 0] = -1.0  # one feature equal to mask_value does not mask the step
    y = layer.forward(x, training=True)
    keep = np.array([[1, 0, 1, 1], [1, 1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(layer.output_mask, keep)
    np.testing.assert_array_equal(y, x * keep[..., None])
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)),
                                  np.broadcast_to(keep[..., None], y.shape))


# ----- Bidirectional -------------------------------------------------------------------------
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_forward_and_gradients(merge_mode, return_sequences):
    layer = layers.Bidirectional(layers.GRU(3, return_sequences=return_sequences, **F64),
                                 merge_mode=merge_mode, **F64)
    layer.build_for((None, 4, 2))
    rng = np.random.default_rng(17)
    layer.set_weights([rng.normal(0, 0.6, w.shape) for w in layer.get_weights()])
    assert layer.forward_layer.name.startswith("forward_")
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards
    x = rng.normal(size=(2, 4, 2))
    forward = _reference(layer.forward_layer, x)
    backward = _reference(layer.backward_layer, x)
    if return_sequences:
        backward = backward[:, ::-1]  # back to input order
    expected = {"concat": lambda: np.concatenate([forward, backward], -1),
                "sum": lambda: forward + backward, "mul": lambda: forward * backward,
                "ave": lambda: (forward + backward) / 2,
                None: lambda: [forward, backward]}[merge_mode]()
    for got, want in zip(as_list(layer(x)), as_list(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    check_layer_gradients(layer, x, seed=1, atol=1e-8)


def test_bidirectional_states_and_initial_state_gradients():
    layer = layers.Bidirectional(layers.LSTM(3, return_state=True, **F64), **F64)
    layer.build_for((None, 4, 2))
    rng = np.random.default_rng(18)
    layer.set_weights([rng.normal(0, 0.6, w.shape) for w in layer.get_weights()])
    x = rng.normal(size=(2, 4, 2))
    states = [rng.normal(size=(2, 3)) for _ in range(4)]
    out = layer(x, initial_state=states)
    assert [o.shape for o in out] == [(2, 6)] + [(2, 3)] * 4
    forward = _reference(layer.forward_layer, x, initial_state=states[:2])
    backward = _reference(layer.backward_layer, x, initial_state=states[2:])
    np.testing.assert_allclose(out[0], np.concatenate([forward[0], backward[0]], -1),
                               rtol=1e-12)
    for got, want in zip(out[1:], forward[1:] + backward[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    check_layer_gradients(layer, x, seed=1, atol=1e-8, initial_state=states, mask=_mask(2, 4))


def test_bidirectional_with_given_backward_layer():
    forward = layers.LSTM(3, return_sequences=True, **F64)
    backward = layers.GRU(2, return_sequences=True, go_backwards=True, **F64)
    layer = layers.Bidirectional(forward, backward_layer=backward, **F64)
    x = np.random.default_rng(19).normal(size=(2, 5, 3))
    y = layer(x)
    assert y.shape == (2, 5, 5)
    np.testing.assert_allclose(y[..., 3:], _reference(backward, x)[:, ::-1], rtol=1e-12)
    assert [w.shape for w in layer.get_weights()] == [(3, 12), (3, 12), (12,), (3, 6), (2, 6),
                                                      (2, 6)]


# ----- PyTorch oracle ------------------------------------------------------------------------
def _torch_run(module, x, h0=None, seed=20):
    """Output (N, T, D*U), final states, and the gradients of sum(g * output) for a random g."""
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    out, states = module(xt) if h0 is None else module(xt, h0)
    g = torch.tensor(np.random.default_rng(seed).normal(size=tuple(out.shape)).astype(np.float32))
    (out * g).sum().backward()
    return out.detach().numpy(), states, g.numpy(), xt.grad.numpy()


# float32 both sides, different summation orders: errors ~1e-6 relative per step; 2e-4
# relative (with an absolute floor of 2e-5 for entries near zero) leaves room for T steps.
TORCH_TOL = {"rtol": 2e-4, "atol": 2e-5}


def _state_dict(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def _gru_gates(a):  # torch (r, z, n) -> Keras (z, r, h) on the first axis
    r, z, n = np.split(a, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn_tanh", "simple_rnn_relu"])
def test_matches_torch_forward_and_backward(kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    n, t, f, u = 4, 7, 5, 6
    module = {"lstm": lambda: torch.nn.LSTM(f, u, batch_first=True),
              "gru": lambda: torch.nn.GRU(f, u, batch_first=True),
              "simple_rnn_tanh": lambda: torch.nn.RNN(f, u, batch_first=True),
              "simple_rnn_relu": lambda: torch.nn.RNN(f, u, batch_first=True,
                                                      nonlinearity="relu")}[kind]()
    layer = KINDS[kind](u, return_sequences=True)
    layer.build_for((None, t, f))
    convert.set_weights_from_torch(layer, _state_dict(module))
    x = np.random.default_rng(21).normal(size=(n, t, f)).astype(np.float32)
    expected, _, g, dx_torch = _torch_run(module, x)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, expected, **TORCH_TOL)
    layer.zero_grad()
    np.testing.assert_allclose(layer.backward(g), dx_torch, **TORCH_TOL)
    dkernel, drecurrent, dbias = layer.get_gradients()
    w_ih, w_hh = module.weight_ih_l0.grad.numpy(), module.weight_hh_l0.grad.numpy()
    b_ih, b_hh = module.bias_ih_l0.grad.numpy(), module.bias_hh_l0.grad.numpy()
    if kind == "gru":
        w_ih, w_hh, b_ih, b_hh = map(_gru_gates, (w_ih, w_hh, b_ih, b_hh))
        np.testing.assert_allclose(dbias, np.stack([b_ih, b_hh]), **TORCH_TOL)
    else:
        # one Keras bias = PyTorch's two summed, so both get the same gradient
        np.testing.assert_allclose(b_ih, b_hh, rtol=1e-6)
        np.testing.assert_allclose(dbias, b_ih, **TORCH_TOL)
    np.testing.assert_allclose(dkernel, w_ih.T, **TORCH_TOL)
    np.testing.assert_allclose(drecurrent, w_hh.T, **TORCH_TOL)


def test_gru_reset_before_matches_torch_autograd():
    # PyTorch has no reset_after=False GRU module; its autograd on the equations is the oracle.
    torch = pytest.importorskip("torch")
    n, t, f, u = 3, 6, 4, 5
    layer = _make("gru_reset_before", units=u, features=f, scale=0.4, return_sequences=True)
    kernel, recurrent, bias = (torch.tensor(w, requires_grad=True) for w in layer.get_weights())
    x = np.random.default_rng(22).normal(size=(n, t, f)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    h = torch.zeros(n, u)
    outputs = []
    for step in range(t):
        xw = xt[:, step] @ kernel + bias
        z = torch.sigmoid(xw[:, :u] + h @ recurrent[:, :u])
        r = torch.sigmoid(xw[:, u:2 * u] + h @ recurrent[:, u:2 * u])
        hh = torch.tanh(xw[:, 2 * u:] + (r * h) @ recurrent[:, 2 * u:])
        h = z * h + (1 - z) * hh
        outputs.append(h)
    out = torch.stack(outputs, 1)
    g = np.random.default_rng(23).normal(size=(n, t, u)).astype(np.float32)
    (out * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(layer.forward(x, training=True), out.detach().numpy(),
                               **TORCH_TOL)
    layer.zero_grad()
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), **TORCH_TOL)
    for got, want in zip(layer.get_gradients(), (kernel.grad, recurrent.grad, bias.grad)):
        np.testing.assert_allclose(got, want.numpy(), **TORCH_TOL)


def test_bidirectional_lstm_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    n, t, f, u = 3, 6, 4, 5
    module = torch.nn.LSTM(f, u, batch_first=True, bidirectional=True)
    layer = layers.Bidirectional(layers.LSTM(u, return_sequences=True, return_state=True))
    layer.build_for((None, t, f))
    convert.set_weights_from_torch(layer, _state_dict(module))
    x = np.random.default_rng(24).normal(size=(n, t, f)).astype(np.float32)
    expected, (h_n, c_n), g, dx_torch = _torch_run(module, x)
    y, h_f, c_f, h_b, c_b = layer.forward(x, training=True)
    np.testing.assert_allclose(y, expected, **TORCH_TOL)
    for got, want in [(h_f, h_n[0]), (h_b, h_n[1]), (c_f, c_n[0]), (c_b, c_n[1])]:
        np.testing.assert_allclose(got, want.detach().numpy(), **TORCH_TOL)
    layer.zero_grad()
    np.testing.assert_allclose(layer.backward([g, None, None, None, None]), dx_torch,
                               **TORCH_TOL)
    grads = layer.get_gradients()
    for offset, suffix in [(0, "_l0"), (3, "_l0_reverse")]:
        w_ih = getattr(module, "weight_ih" + suffix).grad.numpy()
        w_hh = getattr(module, "weight_hh" + suffix).grad.numpy()
        b = getattr(module, "bias_ih" + suffix).grad.numpy()
        np.testing.assert_allclose(grads[offset], w_ih.T, **TORCH_TOL)
        np.testing.assert_allclose(grads[offset + 1], w_hh.T, **TORCH_TOL)
        np.testing.assert_allclose(grads[offset + 2], b, **TORCH_TOL)


def test_initial_state_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    module = torch.nn.LSTM(3, 4, batch_first=True)
    layer = layers.LSTM(4, return_sequences=True)
    layer.build_for((None, 5, 3))
    convert.set_weights_from_torch(layer, _state_dict(module))
    rng = np.random.default_rng(25)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    h0, c0 = (rng.normal(size=(2, 4)).astype(np.float32) for _ in range(2))
    h0t, c0t = torch.tensor(h0[None], requires_grad=True), torch.tensor(c0[None],
                                                                        requires_grad=True)
    expected, _, g, dx_torch = _torch_run(module, x, (h0t, c0t))
    y = layer.forward(x, training=True, initial_state=[h0, c0])
    np.testing.assert_allclose(y, expected, **TORCH_TOL)
    dx, dh0, dc0 = layer.backward(g)
    np.testing.assert_allclose(dx, dx_torch, **TORCH_TOL)
    np.testing.assert_allclose(dh0, h0t.grad.numpy()[0], **TORCH_TOL)
    np.testing.assert_allclose(dc0, c0t.grad.numpy()[0], **TORCH_TOL)


# ----- convert -------------------------------------------------------------------------------
def test_gru_imported_from_torch_state_dict_reproduces_output():
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    module = torch.nn.GRU(4, 6, num_layers=2, batch_first=True, bidirectional=True)
    state_dict = _state_dict(module)
    model = models.Sequential([
        layers.Bidirectional(layers.GRU(6, return_sequences=True), input_shape=(9, 4)),
        layers.Bidirectional(layers.GRU(6, return_sequences=True)),
    ])
    for index, layer in enumerate(model.layers):
        convert.set_weights_from_torch(layer, state_dict, layer_index=index)
    x = np.random.default_rng(26).normal(size=(5, 9, 4)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.tensor(x))[0].numpy()
    np.testing.assert_allclose(model.predict(x), expected, **TORCH_TOL)
    # the single-direction helper gives Keras's layout and gate order
    kernel, recurrent, bias = convert.gru_weights_from_torch(state_dict, layer=1, reverse=True)
    assert kernel.shape == (12, 18) and recurrent.shape == (6, 18) and bias.shape == (2, 18)
    w_ih = state_dict["weight_ih_l1_reverse"]
    np.testing.assert_array_equal(kernel[:, :6], w_ih[6:12].T)  # Keras z = torch's 2nd block


def test_convert_prefix_no_bias_and_errors():
    rng = np.random.default_rng(27)
    state_dict = {"enc.weight_ih_l0": rng.normal(size=(8, 3)),
                  "enc.weight_hh_l0": rng.normal(size=(8, 2))}
    kernel, recurrent = convert.lstm_weights_from_torch(state_dict, prefix="enc.")
    np.testing.assert_array_equal(kernel, state_dict["enc.weight_ih_l0"].T)
    layer = layers.LSTM(2, use_bias=False)
    layer.build_for((None, 4, 3))
    convert.set_weights_from_torch(layer, state_dict, prefix="enc.")
    np.testing.assert_array_equal(layer.get_weights()[1], recurrent.astype(np.float32))
    with pytest.raises(KeyError, match="weight_ih_l0"):
        convert.lstm_weights_from_torch(state_dict)
    with pytest.raises(ValueError, match="weight_hh"):
        convert.gru_weights_from_torch(state_dict, prefix="enc.")  # 8 rows is not 3U
    with pytest.raises(ValueError, match="reset_after"):
        gru = layers.GRU(2, reset_after=False)
        gru.build_for((None, 4, 3))
        convert.set_weights_from_torch(gru, {})
    with pytest.raises(TypeError, match="Dense"):
        convert.set_weights_from_torch(layers.Dense(2), state_dict)
    with pytest.raises(ValueError, match="not built"):
        convert.set_weights_from_torch(layers.LSTM(2), state_dict, prefix="enc.")
    with_bias = layers.LSTM(2)
    with_bias.build_for((None, 4, 3))
    with pytest.raises(ValueError, match="set_weights expected 3 arrays"):
        convert.set_weights_from_torch(with_bias, state_dict, prefix="enc.")
    with pytest.raises(ValueError, match="proj_size"):
        convert.lstm_weights_from_torch({"weight_hr_l0": np.zeros((2, 3))})


# ----- Embedding, TimeDistributed, RepeatVector ----------------------------------------------
def test_embedding_lookup_and_scatter_add_gradient():
    layer = layers.Embedding(6, 3, embeddings_initializer="random_normal", **F64)
    ids = np.array([[1, 4, 1], [0, 5, 1]])
    y = layer.forward(ids, training=True)
    table = layer.get_weights()[0]
    np.testing.assert_array_equal(y, table[ids])
    dy = np.random.default_rng(28).normal(size=y.shape)
    layer.zero_grad()
    assert layer.backward(dy) is None  # ids are not differentiable
    expected = np.zeros_like(table)
    for (i, j), token in np.ndenumerate(ids):
        expected[token] += dy[i, j]
    np.testing.assert_allclose(layer.get_gradients()[0], expected, rtol=1e-14)
    assert layer.count_params() == 18 and layer.output_mask is None
    np.testing.assert_array_equal(layer(np.array([[2.0, 3.0]])), table[[[2, 3]]])


def test_embedding_default_initializer_is_keras_uniform():
    layer = layers.Embedding(1000, 16)
    layer.build_for((None, 4))
    table = layer.get_weights()[0]
    assert table.shape == (1000, 16) and np.abs(table).max() <= 0.05
    assert abs(table.std() - 0.1 / np.sqrt(12)) < 0.002


@pytest.mark.parametrize("ids, error", [
    (np.array([[0, 6]]), IndexError), (np.array([[-1, 2]]), IndexError),
    (np.array([[6.5, 1.0]]), IndexError), (np.array([["a", "b"]]), TypeError),
])
def test_embedding_rejects_bad_ids(ids, error):
    layer = layers.Embedding(6, 2)
    with pytest.raises(error, match="Embedding 'embedding"):
        layer(ids)


def test_time_distributed_dense_and_softmax_fusion():
    inner = layers.Dense(4, activation="softmax", **F64)
    layer = layers.TimeDistributed(inner, **F64)
    rng = np.random.default_rng(29)
    x = rng.normal(size=(2, 5, 3))
    y = layer.forward(x, training=True)
    kernel, bias = inner.get_weights()
    logits = x @ kernel + bias
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert layer.compute_output_shape((None, 5, 3)) == (None, 5, 4)
    check_layer_gradients(layer, x, seed=1, atol=1e-8)
    # The fused path (loss gradient w.r.t. logits) gives the same gradients as the plain one.
    model = models.Sequential([layers.GRU(3, return_sequences=True, input_shape=(5, 3), **F64),
                               layers.TimeDistributed(layers.Dense(4, activation="softmax",
                                                                   **F64), **F64)])
    assert model.outputs_softmax
    labels = rng.integers(0, 4, size=(2, 5))
    loss = losses.get("sparse_categorical_crossentropy")
    probs = model.forward(x, training=True)
    np.testing.assert_allclose(model.logits_of_last_forward().shape, (2, 5, 4))
    model.zero_grad()
    dx_plain = model.backward(loss.value_and_grad(labels, probs)[1])
    plain = model.get_gradients()
    model.zero_grad()
    value, dlogits = loss.value_and_grad_from_logits(labels, model.logits_of_last_forward())
    np.testing.assert_allclose(model.backward_from_logits(dlogits), dx_plain, rtol=1e-9,
                               atol=1e-12)
    for a, b in zip(plain, model.get_gradients()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_repeat_vector():
    layer = layers.RepeatVector(3, **F64)
    x = np.random.default_rng(30).normal(size=(2, 4))
    y = layer.forward(x, training=True)
    assert y.shape == (2, 3, 4) and layer.compute_output_shape((None, 4)) == (None, 3, 4)
    np.testing.assert_array_equal(y, np.repeat(x[:, None], 3, axis=1))
    dy = np.random.default_rng(31).normal(size=y.shape)
    np.testing.assert_allclose(layer.backward(dy), dy.sum(axis=1), rtol=1e-14)


# ----- configs and saving --------------------------------------------------------------------
@pytest.mark.parametrize("layer", [
    layers.SimpleRNN(3, activation="relu", return_sequences=True, go_backwards=True,
                     kernel_regularizer="l2", dropout=0.1, seed=4),
    layers.LSTM(5, unit_forget_bias=False, return_state=True, recurrent_dropout=0.2,
                recurrent_initializer="glorot_normal", bias_regularizer="l1", use_bias=False),
    layers.GRU(4, reset_after=False, recurrent_regularizer="l1_l2", dtype="float64"),
    layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="ave"),
    layers.Bidirectional(layers.GRU(3), backward_layer=layers.SimpleRNN(2, go_backwards=True)),
    layers.TimeDistributed(layers.Dense(2, activation="tanh")),
    layers.RepeatVector(4), layers.Masking(-1.0),
    layers.Embedding(7, 3, mask_zero=True, input_length=5),
])
def test_config_round_trip(layer):
    config = layers.serialize(layer)
    rebuilt = layers.deserialize(config)
    assert type(rebuilt) is type(layer)
    assert layers.serialize(rebuilt) == config


def test_model_with_recurrent_layers_saves_and_loads(tmp_path):
    model = models.Sequential([
        layers.Embedding(12, 4, mask_zero=True, input_shape=(6,)),
        layers.Bidirectional(layers.LSTM(5, return_sequences=True)),
        layers.TimeDistributed(layers.Dense(3)),
        layers.GRU(4, go_backwards=True),
        layers.RepeatVector(2),
        layers.SimpleRNN(3, return_sequences=True),
    ])
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 11]])
    expected = model.predict(ids)
    path = tmp_path / "rnn.keras"
    model.save(path)
    loaded = models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    names = [l.name for l in model.layers[1].sublayers]
    assert names[0].startswith("forward_lstm") and names[1].startswith("backward_lstm")
    assert [l.name for l in loaded.layers[1].sublayers] == names
    np.testing.assert_allclose(loaded.predict(ids), expected, rtol=1e-6)


def test_regularizers_reach_the_loss():
    layer = layers.LSTM(2, kernel_regularizer="l2", recurrent_regularizer="l1")
    layer.build_for((None, 3, 2))
    kernel, recurrent, _ = layer.get_weights()
    expected = 0.01 * (kernel ** 2).sum() + 0.01 * np.abs(recurrent).sum()
    assert layer.regularization_loss() == pytest.approx(expected, rel=1e-5)


# ----- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.LSTM(0), ValueError, "units to be a positive integer"),
    (lambda: layers.GRU(2.5), ValueError, "units"),
    (lambda: layers.SimpleRNN(3, activation="sigmoid"), ValueError, "'tanh' or 'relu'"),
    (lambda: layers.LSTM(3, activation="relu"), ValueError, "activation 'tanh'"),
    (lambda: layers.GRU(3, recurrent_activation="hard_sigmoid"), ValueError, "'sigmoid'"),
    (lambda: layers.LSTM(3, dropout=1.0), ValueError, "dropout to be a number in"),
    (lambda: layers.GRU(3, recurrent_dropout=-0.1), ValueError, "recurrent_dropout"),
    (lambda: layers.LSTM(3, bogus=1), TypeError, "unknown keyword"),
    (lambda: layers.Bidirectional(layers.Dense(3)), TypeError, "recurrent layer"),
    (lambda: layers.Bidirectional(layers.LSTM(3), merge_mode="max"), ValueError, "merge_mode"),
    (lambda: layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3)), ValueError,
     "go_backwards"),
    (lambda: layers.Bidirectional(layers.LSTM(3, return_sequences=True),
                                  backward_layer=layers.LSTM(3, go_backwards=True)),
     ValueError, "return_sequences"),
    (lambda: layers.TimeDistributed("dense"), TypeError, "Layer"),
    (lambda: layers.RepeatVector(0), ValueError, "positive integer"),
    (lambda: layers.Embedding(0, 3), ValueError, "input_dim"),
    (lambda: layers.Masking("zero"), ValueError, "mask_value"),
])
def test_bad_configuration(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_calls():
    layer = layers.LSTM(3, name="enc")
    x = np.zeros((2, 4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"LSTM 'enc'.*rank 3"):
        layer(np.zeros((2, 5)))
    layer(x)
    with pytest.raises(ValueError, match=r"LSTM 'enc'.*size 5"):
        layer(np.zeros((2, 4, 6)))
    with pytest.raises(ValueError, match=r"mask of shape \(N, T\) = \(2, 4\)"):
        layer(x, mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"list of 2 array\(s\) \[h0, c0\]"):
        layer(x, initial_state=[np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"initial_state c0 of shape \(N, U\) = \(2, 3\)"):
        layer(x, initial_state=[np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="at least one time step"):
        layer(np.zeros((2, 0, 5)))
    with pytest.raises(RuntimeError, match="backward"):
        layers.GRU(2).backward(np.zeros((1, 2)))
    layer.forward(x, training=True)
    with pytest.raises(ValueError, match=r"gradient of shape \(2, 3\)"):
        layer.backward(np.zeros((2, 4, 3)))
    stateful = layers.GRU(3, return_state=True)
    stateful.forward(x, training=True)
    with pytest.raises(ValueError, match="list of 2 gradients"):
        stateful.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="list of 4 arrays"):
        layers.Bidirectional(layers.LSTM(2))(x, initial_state=[np.zeros((2, 2))] * 2)
