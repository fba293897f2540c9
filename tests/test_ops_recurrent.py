"""Fused recurrent ops (fusednn.ops.recurrent): LSTM, GRU (both reset_after forms)
and SimpleRNN (tanh, relu) against a step-by-step NumPy reference written here,
every gradient against central finite differences in float64 and against
PyTorch's nn.LSTM / nn.GRU / nn.RNN, Keras masking semantics, recurrent masks,
edge shapes, NaN-poisoned outputs and bad input; CPU vs CUDA parity where a GPU
exists, and without a GPU a host simulation of the CUDA cells' per-element code
(compiled by nvcc as host code) against the CPU kernels."""
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import fusednn._C as _C
from fusednn.ops import recurrent as rnn
from gradcheck import numeric_gradient

# A case is a cell with its variant: (cell, reset_after or activation).
CASES = ["lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]
STATE_COUNT = {"lstm": 2, "gru": 1, "gru_reset_before": 1, "rnn_tanh": 1, "rnn_relu": 1}
GATES = {"lstm": 4, "gru": 3, "gru_reset_before": 3, "rnn_tanh": 1, "rnn_relu": 1}

# Forward tolerances. float64: kernel and reference differ by rounding only
# (activations within a few ulp, sums in another order): 1e-12 leaves a wide
# margin. float32 inputs are compared with the float64 reference on the same
# values: each step adds a few ulp (6e-8) per GEMM term and activation, and
# the states contract, so 2e-5 is ~10x the error seen at these sizes.
FORWARD_TOL = {np.float64: 1e-12, np.float32: 2e-5}


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference_forward(case, x, states, kernel, recurrent_kernel, bias, mask=None,
                      recurrent_mask=None):
    """Step by step in float64 with Keras masking: returns (y, final states list)."""
    x = x.astype(np.float64)
    W, R, b = (a.astype(np.float64) for a in (kernel, recurrent_kernel, bias))
    h = states[0].astype(np.float64)
    c = states[1].astype(np.float64) if case == "lstm" else None
    N, T, _ = x.shape
    U = h.shape[1]
    previous_output = np.zeros_like(h)
    ys = []
    for t in range(T):
        xt = x[:, t]
        hm = h if recurrent_mask is None else h * recurrent_mask
        c_new = None
        if case == "lstm":
            z = xt @ W + hm @ R + b
            i, f = sigmoid(z[:, :U]), sigmoid(z[:, U:2 * U])
            g, o = np.tanh(z[:, 2 * U:3 * U]), sigmoid(z[:, 3 * U:])
            c_new = f * c + i * g
            h_new = o * np.tanh(c_new)
        elif case == "gru":
            xz = xt @ W + b[0]
            hz = hm @ R + b[1]
            z = sigmoid(xz[:, :U] + hz[:, :U])
            r = sigmoid(xz[:, U:2 * U] + hz[:, U:2 * U])
            hh = np.tanh(xz[:, 2 * U:] + r * hz[:, 2 * U:])
            h_new = z * h + (1 - z) * hh
        elif case == "gru_reset_before":
            xz = xt @ W + b
            z = sigmoid(xz[:, :U] + hm @ R[:, :U])
            r = sigmoid(xz[:, U:2 * U] + hm @ R[:, U:2 * U])
            hh = np.tanh(xz[:, 2 * U:] + (r * hm) @ R[:, 2 * U:])
            h_new = z * h + (1 - z) * hh
        else:
            pre = xt @ W + hm @ R + b
            h_new = np.tanh(pre) if case == "rnn_tanh" else np.maximum(pre, 0)
        valid = np.ones((N, 1), bool) if mask is None else mask[:, t:t + 1].astype(bool)
        h = np.where(valid, h_new, h)
        if c is not None:
            c = np.where(valid, c_new, c)
        previous_output = np.where(valid, h_new, previous_output)
        ys.append(previous_output)
    y = np.stack(ys, axis=1) if T else np.zeros((N, 0, U))
    return y, [h] if c is None else [h, c]


def make_problem(rng, case, N, T, F, U, dtype, scale=0.5):
    G = GATES[case] * U
    x = rng.standard_normal((N, T, F)).astype(dtype)
    states = [rng.standard_normal((N, U)).astype(dtype) for _ in range(STATE_COUNT[case])]
    kernel = (rng.standard_normal((F, G)) * scale).astype(dtype)
    recurrent_kernel = (rng.standard_normal((U, G)) * scale).astype(dtype)
    bias_shape = (2, G) if case == "gru" else (G,)
    bias = (rng.standard_normal(bias_shape) * scale).astype(dtype)
    return x, states, kernel, recurrent_kernel, bias


def forward(case, x, states, kernel, recurrent_kernel, bias, training=False, **options):
    """(y, final states list, cache) from the op of `case`; options: masks, algorithm."""
    if case == "lstm":
        y, h, c, cache = rnn.lstm_forward(x, states[0], states[1], kernel, recurrent_kernel, bias,
                                          training=training, **options)
        return y, [h, c], cache
    if case in ("gru", "gru_reset_before"):
        y, h, cache = rnn.gru_forward(x, states[0], kernel, recurrent_kernel, bias,
                                      reset_after=case == "gru", training=training, **options)
    else:
        y, h, cache = rnn.simple_rnn_forward(x, states[0], kernel, recurrent_kernel, bias,
                                             activation=case[4:], training=training, **options)
    return y, [h], cache


def backward(case, dy, dstates, cache, **options):
    """(dx, dstates0 list, dkernel, drecurrent_kernel, dbias) from the op of `case`;
    options: input_grad."""
    if case == "lstm":
        dx, dh0, dc0, dW, dR, db = rnn.lstm_backward(dy, dstates[0], dstates[1], cache,
                                                     **options)
        return dx, [dh0, dc0], dW, dR, db
    fn = rnn.gru_backward if case.startswith("gru") else rnn.simple_rnn_backward
    dx, dh0, dW, dR, db = fn(dy, dstates[0], cache, **options)
    return dx, [dh0], dW, dR, db


def random_masks(rng, N, T, U, dtype):
    """A mask with a fully masked row and leading masked steps; a dropout-like recurrent mask."""
    mask = rng.random((N, T)) > 0.3
    mask[0] = False
    if N > 1:
        mask[1, : max(T // 2, 1)] = False
        mask[1, -1] = True
    recurrent_mask = ((rng.random((N, U)) > 0.25) / 0.75).astype(dtype)
    return mask, recurrent_mask


# ---------------------------------------------------------------------------
# Forward against the reference

SHAPES = [(3, 5, 4, 6), (1, 1, 1, 1), (2, 1, 3, 7), (4, 6, 1, 13), (1, 7, 5, 11), (5, 3, 2, 2)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_forward_matches_reference(rng, case, dtype, shape, masked):
    N, T, F, U = shape
    x, states, W, R, b = make_problem(rng, case, *shape, dtype)
    masks = {}
    if masked:
        masks["mask"], masks["recurrent_mask"] = random_masks(rng, N, T, U, dtype)
    want_y, want_states = reference_forward(case, x, states, W, R, b, **masks)
    for training in (False, True):
        y, final, cache = forward(case, x, states, W, R, b, training=training, **masks)
        assert y.dtype == dtype and all(s.dtype == dtype for s in final)
        tol = FORWARD_TOL[dtype]
        np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol)
        for got, want in zip(final, want_states):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        assert (cache is None) != training


@pytest.mark.parametrize("case", CASES)
def test_masking_semantics(rng, case):
    """Independent of the reference: a fully masked row keeps its initial state and
    outputs zeros; leading masked steps output zeros; later masked steps repeat
    the last valid output and leave the state alone."""
    N, T, F, U = 3, 6, 2, 5
    x, states, W, R, b = make_problem(rng, case, N, T, F, U, np.float64)
    mask = np.ones((N, T), bool)
    mask[0] = False
    mask[1, :2] = False
    mask[2, 3:] = False
    y, final, _ = forward(case, x, states, W, R, b, mask=mask)
    np.testing.assert_array_equal(y[0], 0)
    for s0, s in zip(states, final):
        np.testing.assert_array_equal(s[0], s0[0])
    np.testing.assert_array_equal(y[1, :2], 0)
    assert np.all(y[1, 2] != 0)
    for t in range(3, T):
        np.testing.assert_array_equal(y[2, t], y[2, 2])
    np.testing.assert_array_equal(final[0][2], y[2, 2])
    # Row 2 truncated after step 2 gives the same outputs as a 3-step sequence.
    y3, final3, _ = forward(case, x[2:, :3], [s[2:] for s in states], W, R, b)
    np.testing.assert_allclose(y[2, :3], y3[0], rtol=1e-14, atol=1e-14)
    for s, s3 in zip(final, final3):
        np.testing.assert_allclose(s[2], s3[0], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_zero_recurrent_mask_equals_zero_recurrent_kernel(rng, case):
    N, T, F, U = 2, 4, 3, 5
    x, states, W, R, b = make_problem(rng, case, N, T, F, U, np.float64)
    y_masked, final_masked, _ = forward(case, x, states, W, R, b,
                                        recurrent_mask=np.zeros((N, U)))
    y_zero, final_zero, _ = forward(case, x, states, W, np.zeros_like(R), b)
    np.testing.assert_allclose(y_masked, y_zero, rtol=1e-14, atol=1e-14)
    for a, z in zip(final_masked, final_zero):
        np.testing.assert_allclose(a, z, rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------------------
# Gradients

def loss_and_grads(case, problem, masks, seeds):
    """L = sum(dy * y) + sum(dstate_T * state_T) and the op's gradients of it."""
    x, states, W, R, b = problem
    dy, dstates = seeds
    y, final, cache = forward(case, x, states, W, R, b, training=True, **masks)
    loss = float((dy * y).sum() + sum((d * s).sum() for d, s in zip(dstates, final)))
    return loss, backward(case, dy, dstates, cache)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("variant", ["plain", "masked", "recurrent_mask"])
def test_gradients_match_finite_differences(rng, case, variant):
    N, T, F, U = 3, 4, 2, 3
    problem = make_problem(rng, case, N, T, F, U, np.float64)
    mask, recurrent_mask = random_masks(rng, N, T, U, np.float64)
    masks = {"plain": {}, "masked": {"mask": mask},
             "recurrent_mask": {"mask": mask, "recurrent_mask": recurrent_mask}}[variant]
    dy = rng.standard_normal((N, T, U))
    dstates = [rng.standard_normal((N, U)) for _ in range(STATE_COUNT[case])]
    _, (dx, dstates0, dW, dR, db) = loss_and_grads(case, problem, masks, (dy, dstates))
    x, states, W, R, b = problem
    analytic = [dx, *dstates0, dW, dR, db]
    arrays = [x, *states, W, R, b]
    names = ["dx"] + [f"dstate{i}" for i in range(len(states))] + ["dkernel", "drecurrent", "dbias"]

    def loss():
        y, final, _ = forward(case, x, states, W, R, b, **masks)
        return float((dy * y).sum() + sum((d * s).sum() for d, s in zip(dstates, final)))

    # Central differences with eps 1e-6: truncation ~eps^2 and rounding
    # ~1e-16 / eps = 1e-10 on a loss of order 10, so 1e-7 is safe yet tight.
    for name, array, got in zip(names, arrays, analytic):
        assert got.shape == array.shape, name
        np.testing.assert_allclose(got, numeric_gradient(loss, array), rtol=1e-6, atol=1e-7,
                                   err_msg=name)


@pytest.mark.parametrize("case", CASES)
def test_gradients_of_masked_steps(rng, case):
    """A fully masked row passes dh_T (and dc_T) straight to dh0 and gets no dx."""
    N, T, F, U = 2, 3, 2, 4
    x, states, W, R, b = make_problem(rng, case, N, T, F, U, np.float64)
    mask = np.ones((N, T), bool)
    mask[0] = False
    _, _, cache = forward(case, x, states, W, R, b, training=True, mask=mask)
    dy = rng.standard_normal((N, T, U))
    dstates = [rng.standard_normal((N, U)) for _ in states]
    dx, dstates0, _, _, _ = backward(case, dy, dstates, cache)
    np.testing.assert_array_equal(dx[0], 0)
    for d, d0 in zip(dstates, dstates0):
        np.testing.assert_array_equal(d0[0], d[0])


# ---------------------------------------------------------------------------
# PyTorch as an oracle

def torch_module(torch, case, W, R, b):
    """nn.LSTM / nn.GRU / nn.RNN holding the Keras weights (float32, batch_first)."""
    F, G = W.shape
    U = R.shape[0]
    t = lambda a: torch.tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    if case == "lstm":
        # torch's gate order (i, f, g, o) is Keras's (i, f, c, o); one bias is zero.
        m = torch.nn.LSTM(F, U, batch_first=True)
        w_ih, w_hh, b_ih, b_hh = W.T, R.T, b, np.zeros_like(b)
    elif case == "gru":
        # torch (r, z, n) from Keras (z, r, h); torch's h' = (1-z)*n + z*h is Keras's.
        order = lambda a: np.concatenate([a[U:2 * U], a[:U], a[2 * U:]])  # noqa: E731
        m = torch.nn.GRU(F, U, batch_first=True)
        w_ih, w_hh, b_ih, b_hh = order(W.T), order(R.T), order(b[0]), order(b[1])
    else:
        m = torch.nn.RNN(F, U, nonlinearity=case[4:], batch_first=True)
        w_ih, w_hh, b_ih, b_hh = W.T, R.T, b, np.zeros_like(b)
    with torch.no_grad():
        m.weight_ih_l0.copy_(t(w_ih))
        m.weight_hh_l0.copy_(t(w_hh))
        m.bias_ih_l0.copy_(t(b_ih))
        m.bias_hh_l0.copy_(t(b_hh))
    return m


def torch_grads_as_keras(case, m, U):
    g = lambda p: p.grad.numpy().astype(np.float64)  # noqa: E731
    if case == "gru":
        unorder = lambda a: np.concatenate([a[U:2 * U], a[:U], a[2 * U:]])  # noqa: E731
        return (unorder(g(m.weight_ih_l0)).T, unorder(g(m.weight_hh_l0)).T,
                np.stack([unorder(g(m.bias_ih_l0)), unorder(g(m.bias_hh_l0))]))
    # The single Keras bias receives the gradient of both torch biases (they are equal).
    return g(m.weight_ih_l0).T, g(m.weight_hh_l0).T, g(m.bias_ih_l0)


@pytest.mark.parametrize("case", [c for c in CASES if c != "gru_reset_before"])
def test_matches_torch(rng, case):
    torch = pytest.importorskip("torch")
    N, T, F, U = 4, 9, 5, 8
    x, states, W, R, b = make_problem(rng, case, N, T, F, U, np.float32)
    dy = rng.standard_normal((N, T, U)).astype(np.float32)
    dstates = [rng.standard_normal((N, U)).astype(np.float32) for _ in states]
    y, final, cache = forward(case, x, states, W, R, b, training=True)
    dx, dstates0, dW, dR, db = backward(case, dy, dstates, cache)

    m = torch_module(torch, case, W, R, b)
    tx = torch.tensor(x, requires_grad=True)
    tstates = [torch.tensor(s[None], requires_grad=True) for s in states]
    ty, tfinal = m(tx, tuple(tstates) if case == "lstm" else tstates[0])
    tfinal = list(tfinal) if case == "lstm" else [tfinal]
    loss = (ty * torch.tensor(dy)).sum() + sum(
        (f[0] * torch.tensor(d)).sum() for f, d in zip(tfinal, dstates))
    loss.backward()
    # float32 on both sides with different summation orders and activations:
    # 2e-4 relative with a small absolute floor for entries near zero.
    close = dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(y, ty.detach().numpy(), **close)
    for got, want in zip(final, tfinal):
        np.testing.assert_allclose(got, want[0].detach().numpy(), **close)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **close)
    for got, want in zip(dstates0, tstates):
        np.testing.assert_allclose(got, want.grad[0].numpy(), **close)
    want_dW, want_dR, want_db = torch_grads_as_keras(case, m, U)
    np.testing.assert_allclose(dW, want_dW, **close)
    np.testing.assert_allclose(dR, want_dR, **close)
    np.testing.assert_allclose(db, want_db, **close)


# ---------------------------------------------------------------------------
# Kernels write every output element (called directly on NaN-filled outputs)

def poisoned(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def binding_cell(case):
    """(cell, reset_after, activation) as the kernels' bindings take them."""
    if case == "lstm":
        return "lstm", True, "tanh"
    if case.startswith("gru"):
        return "gru", case == "gru", "tanh"
    return "simple_rnn", True, case[4:]


def run_forward_poisoned(case, problem, mask, recurrent_mask):
    """The training forward through _C directly, every output and the cache
    NaN-filled first. Returns (y, final states, cache buffer)."""
    x, states, W, R, b = problem
    N, T, F = x.shape
    U = R.shape[0]
    cell = binding_cell(case)
    mask8 = None if mask is None else mask.astype(np.uint8)
    y = poisoned((N, T, U), x.dtype)
    finals = [poisoned((N, U), x.dtype) for _ in states]
    cache = poisoned(_C.recurrent_cache_elements(*cell[:2], N, T, F, U, True,
                                                 recurrent_mask is not None), x.dtype)
    c0, c_T = (states[1], finals[1]) if case == "lstm" else (None, None)
    _C.recurrent_forward(*cell, x, states[0], c0, W, R, b.reshape(-1), mask8, recurrent_mask, y,
                         finals[0], c_T, cache, True, np.empty(0, x.dtype), "auto", 0)
    return y, finals, cache


def run_kernels_poisoned(case, problem, mask, recurrent_mask, dy):
    """Forward then backward through _C directly, every output, cache and
    workspace NaN-filled first. Returns (y, final states, gradients)."""
    x, states, W, R, b = problem
    N, T, F = x.shape
    U = R.shape[0]
    cell = binding_cell(case)
    y, finals, cache = run_forward_poisoned(case, problem, mask, recurrent_mask)
    grads = [poisoned(shape, x.dtype) for shape in
             [(N, T, F), *[(N, U)] * len(states), W.shape, R.shape, b.shape]]
    workspace = poisoned(_C.recurrent_workspace_elements("backward", *cell[:2], N, T, F, U,
                                                         False), x.dtype)
    mask8 = None if mask is None else mask.astype(np.uint8)
    c0, dc0 = (states[1], grads[2]) if case == "lstm" else (None, None)
    dx, dh0, *rest = grads
    dW, dR, db = rest[-3:]
    _C.recurrent_backward(*cell, x, c0, W, R, mask8, recurrent_mask, cache, dy, None, None, dx,
                          dh0, dc0, dW, dR, db.reshape(-1), workspace, 0)
    return y, finals, grads


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True])
def test_kernels_write_every_output(rng, case, dtype, masked):
    N, T, F, U = 3, 4, 2, 5
    problem = make_problem(rng, case, N, T, F, U, dtype)
    mask, recurrent_mask = random_masks(rng, N, T, U, dtype) if masked else (None, None)
    dy = rng.standard_normal((N, T, U)).astype(dtype)
    y, finals, grads = run_kernels_poisoned(case, problem, mask, recurrent_mask, dy)
    want_y, want_states = reference_forward(case, *problem, mask, recurrent_mask)
    tol = FORWARD_TOL[dtype]
    np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol)
    for got, want in zip(finals, want_states):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # The op (fresh, unpoisoned buffers) is the reference for the gradients.
    _, _, cache = forward(case, *problem, training=True, mask=mask, recurrent_mask=recurrent_mask)
    dx, dstates0, dW, dR, db = backward(case, dy, [None] * len(finals), cache)
    for got, want in zip(grads, [dx, *dstates0, dW, dR, db]):
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------
# Edge shapes and layouts

@pytest.mark.parametrize("case", CASES)
def test_empty_batch(rng, case):
    x, states, W, R, b = make_problem(rng, case, 0, 3, 2, 5, np.float64)
    y, final, cache = forward(case, x, states, W, R, b, training=True)
    assert y.shape == (0, 3, 5) and all(s.shape == (0, 5) for s in final)
    dx, dstates0, dW, dR, db = backward(case, np.zeros((0, 3, 5)), [None] * len(states), cache)
    assert dx.shape == (0, 3, 2) and all(d.shape == (0, 5) for d in dstates0)
    for g, w in zip((dW, dR, db), (W, R, b)):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, 0)


@pytest.mark.parametrize("case", CASES)
def test_non_contiguous_inputs_and_missing_state_gradients(rng, case):
    N, T, F, U = 3, 4, 3, 5
    x, states, W, R, b = make_problem(rng, case, N, T, F, U, np.float64)
    y, final, cache = forward(case, x, states, W, R, b, training=True)
    # Fortran-ordered and strided views of the same values.
    x_view = np.repeat(x, 2, axis=2)[:, :, ::2]
    y2, final2, _ = forward(case, x_view, [np.asfortranarray(s) for s in states],
                            np.asfortranarray(W), R, b)
    np.testing.assert_array_equal(y, y2)
    for a, c in zip(final, final2):
        np.testing.assert_array_equal(a, c)
    dy = rng.standard_normal((N, T, U))
    got = backward(case, dy, [None] * len(states), cache)
    zeros = backward(case, dy, [np.zeros((N, U))] * len(states), cache)
    np.testing.assert_array_equal(got[0], zeros[0])
    for a, c in zip(got[1], zeros[1]):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_input_gradient_can_be_skipped(rng, case, masked):
    """input_grad=False (a model's first layer) returns dx None and every other gradient
    bit for bit as the full backward does."""
    N, T, F, U = 3, 5, 4, 6
    x, states, W, R, b = make_problem(rng, case, N, T, F, U, np.float32)
    options = dict(zip(("mask", "recurrent_mask"), random_masks(rng, N, T, U, np.float32))) \
        if masked else {}
    _, _, cache = forward(case, x, states, W, R, b, training=True, **options)
    dy = rng.standard_normal((N, T, U)).astype(np.float32)
    dstates = [rng.standard_normal((N, U)).astype(np.float32) for _ in states]
    full = backward(case, dy, dstates, cache)
    skipped = backward(case, dy, dstates, cache, input_grad=False)
    assert full[0].shape == x.shape and skipped[0] is None
    for a, c in zip(full[1], skipped[1]):
        np.testing.assert_array_equal(a, c)
    for a, c in zip(full[2:], skipped[2:]):
        np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------------------
# Bad input

def lstm_args(rng, dtype=np.float32, N=2, T=3, F=4, U=5):
    x, (h0, c0), W, R, b = make_problem(rng, "lstm", N, T, F, U, dtype)
    return dict(x=x, h0=h0, c0=c0, kernel=W, recurrent_kernel=R, bias=b)


def call_lstm(args, **kw):
    return rnn.lstm_forward(args["x"], args["h0"], args["c0"], args["kernel"],
                            args["recurrent_kernel"], args["bias"], **kw)


@pytest.mark.parametrize("name, value, error, words", [
    ("x", np.zeros((2, 3)), ValueError, "x must be 3-D (N, T, F)"),
    ("x", np.zeros((2, 0, 4), np.float32), ValueError, "at least one time step"),
    ("x", np.zeros((2, 3, 4), np.int32), TypeError, "float32 or float64, got dtype int32"),
    ("x", np.zeros((2, 3, 4), np.float16), TypeError, "got dtype float16"),
    ("h0", np.zeros((2, 6), np.float32), ValueError, "h0 must have shape (N, U) = (2, 5)"),
    ("c0", np.zeros((3, 5), np.float32), ValueError, "c0 must have shape (N, U) = (2, 5)"),
    ("h0", np.zeros((2, 5), np.float64), TypeError, "h0 must have the dtype of x (float32)"),
    ("kernel", np.zeros((4, 16), np.float32), ValueError, "kernel must have shape (F, 4U)"),
    ("recurrent_kernel", np.zeros((5, 15), np.float32), ValueError,
     "recurrent_kernel must have shape (U, 4U)"),
    ("recurrent_kernel", np.zeros((0, 0), np.float32), ValueError, "U >= 1"),
    ("bias", np.zeros((2, 20), np.float32), ValueError, "bias must have shape (4U,) = (20,)"),
    ("bias", None, TypeError, "bias is required"),
    ("x", [[["a"]]], TypeError, "float32 or float64, got dtype <U1"),
])
def test_bad_forward_input(rng, name, value, error, words):
    args = lstm_args(rng)
    args[name] = value
    with pytest.raises(error) as info:
        call_lstm(args)
    assert "lstm_forward" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("kw, error, words", [
    (dict(mask=np.ones((2, 4), bool)), ValueError, "mask must have shape (N, T) = (2, 3)"),
    (dict(mask=np.ones((2, 3), np.float32)), TypeError, "mask must be a bool or integer"),
    (dict(recurrent_mask=np.ones((2, 4), np.float32)), ValueError,
     "recurrent_mask must have shape (N, U) = (2, 5)"),
    (dict(recurrent_mask=np.ones((2, 5), bool)), TypeError, "recurrent_mask must have the dtype"),
])
def test_bad_masks(rng, kw, error, words):
    with pytest.raises(error) as info:
        call_lstm(lstm_args(rng), **kw)
    assert "lstm_forward" in str(info.value) and words in str(info.value)


def test_bad_backward_input(rng):
    args = lstm_args(rng)
    _, _, _, cache = call_lstm(args, training=True)
    dy = np.zeros((2, 3, 5), np.float32)
    with pytest.raises(TypeError, match="lstm_backward: cache must be the dict"):
        rnn.lstm_backward(dy, None, None, None)
    with pytest.raises(ValueError, match="lstm_backward: dy must have shape"):
        rnn.lstm_backward(dy[:, :2], None, None, cache)
    with pytest.raises(TypeError, match=r"lstm_backward: dy must have the dtype of x \(float32\)"):
        rnn.lstm_backward(dy.astype(np.float64), None, None, cache)
    with pytest.raises(ValueError, match="lstm_backward: dc_T must have shape"):
        rnn.lstm_backward(dy, None, np.zeros((2, 4), np.float32), cache)
    with pytest.raises(TypeError, match="lstm_backward: expected input_grad to be True or False, "
                                        "got 0"):
        rnn.lstm_backward(dy, None, None, cache, input_grad=0)


def cache_arrays(case, problem, recurrent_mask, cache):
    """The named arrays of a training cache buffer (the layout the kernels report)."""
    x, _, _, R, _ = problem
    layout = _C.recurrent_cache_layout(*binding_cell(case)[:2], *x.shape, R.shape[0],
                                       recurrent_mask is not None)
    return {name: cache[offset:offset + int(np.prod(shape))].reshape(shape)
            for name, (offset, shape) in layout.items()}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("recurrent_masked", [False, True])
def test_cache_entries_of_masked_steps(rng, case, dtype, recurrent_masked):
    """What recurrent.h specifies on masked steps (the forward ran on a NaN-filled cache):
    h_in is the carried-over state times the recurrent mask at every step, the LSTM's
    cell the carried-over c, the GRU reset_before's recurrent_h r * h_in; all finite."""
    N, T, F, U = 4, 6, 3, 5
    problem = make_problem(rng, case, N, T, F, U, dtype)
    mask, recurrent_mask = random_masks(rng, N, T, U, dtype)
    if not recurrent_masked:
        recurrent_mask = None
    y, finals, cache = run_forward_poisoned(case, problem, mask, recurrent_mask)
    arrays = cache_arrays(case, problem, recurrent_mask, cache)
    h0 = problem[1][0]
    # The state before step t: h0 until a valid step, then the last output (a masked
    # step's output repeats it). Copies of the kernel's own values, so exact.
    seen_valid = np.cumsum(mask, axis=1) > 0
    before = np.where(seen_valid[:, :-1, None], y[:, :-1], h0[:, None])
    state_before = np.concatenate([h0[:, None], before], axis=1)
    feed = state_before if recurrent_mask is None else state_before * recurrent_mask[:, None]
    np.testing.assert_array_equal(arrays["h_in"], feed)
    if case == "lstm":
        cell, c0 = arrays["cell"], problem[1][1]
        previous = np.concatenate([c0[:, None], cell[:, :-1]], axis=1)
        masked = ~mask
        np.testing.assert_array_equal(cell[masked], previous[masked])
        np.testing.assert_array_equal(cell[:, -1], finals[1])
        assert np.isfinite(cell).all()
    if case == "gru_reset_before":
        r = arrays["gates"][:, :, U:2 * U]
        np.testing.assert_array_equal(arrays["recurrent_h"], r * arrays["h_in"])
        assert np.isfinite(arrays["recurrent_h"]).all()


def test_cache_of_another_cell_is_rejected(rng):
    args = lstm_args(rng)
    _, _, _, cache = call_lstm(args, training=True)
    with pytest.raises(ValueError, match="gru_backward: cache comes from a lstm forward"):
        rnn.gru_backward(np.zeros((2, 3, 5), np.float32), None, cache)


def test_kernel_bindings_recheck_shapes(rng):
    """A direct call with inconsistent arrays is refused before it can write out of bounds."""
    x, (h0, c0), W, R, b = make_problem(rng, "lstm", 2, 3, 4, 5, np.float32)
    y, h_T, c_T = np.empty((2, 3, 5), np.float32), np.empty_like(h0), np.empty_like(c0)
    elements = _C.recurrent_cache_elements("lstm", True, 2, 3, 4, 5, False, False)
    assert elements == 2 * 3 * 20  # inference: the gates workspace only
    no_workspace = np.empty(0, np.float32)

    def call(cell="lstm", cache=np.empty(elements, np.float32), c0=c0, y=y, bias=b):
        _C.recurrent_forward(cell, True, "tanh", x, h0, c0, W, R, bias, None, None, y, h_T, c_T,
                             cache, False, no_workspace, "auto", 0)

    with pytest.raises(ValueError, match=r"recurrent_forward: cache must be 1-D with at least "
                                         r"120 elements, got \(119,\)"):
        call(cache=np.empty(elements - 1, np.float32))
    with pytest.raises(ValueError, match=r"recurrent_forward: y must have shape \(2, 3, 5\), "
                                         r"got \(2, 3, 4\)"):
        call(y=np.empty((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="recurrent_forward: c0 is required for this cell"):
        call(c0=None)
    with pytest.raises(TypeError, match="recurrent_forward: bias must have the dtype of x"):
        call(bias=b.astype(np.float64))
    with pytest.raises(ValueError, match="recurrent_forward: cell must be 'lstm', 'gru' or"):
        call(cell="lstm2")
    with pytest.raises(ValueError, match=r"recurrent_forward: recurrent_kernel must have shape "
                                         r"\(5, 15\)"):
        call(cell="gru")  # the LSTM's (5, 20) recurrent kernel
    call()  # the same arrays, consistent, run
    # Same kernel, same arrays: the op's result to the bit.
    np.testing.assert_array_equal(y, rnn.lstm_forward(x, h0, c0, W, R, b)[0])


def gru_args(rng, reset_after=True):
    x, (h0,), W, R, b = make_problem(rng, "gru" if reset_after else "gru_reset_before",
                                     2, 3, 4, 5, np.float32)
    return x, h0, W, R, b


def test_bad_gru_and_simple_rnn_input(rng):
    x, h0, W, R, b = gru_args(rng)
    with pytest.raises(ValueError, match=r"gru_forward: bias must have shape \(2, 3U\) = \(2, 1"):
        rnn.gru_forward(x, h0, W, R, b[0])
    with pytest.raises(ValueError, match=r"gru_forward: bias must have shape \(3U,\) = \(15,\)"):
        rnn.gru_forward(x, h0, W, R, b, reset_after=False)
    with pytest.raises(TypeError, match="gru_forward: reset_after must be True or False"):
        rnn.gru_forward(x, h0, W, R, b, reset_after="yes")
    with pytest.raises(ValueError, match=r"gru_forward: recurrent_kernel must have shape \(U, 3U"):
        rnn.gru_forward(x, h0, W, np.zeros((5, 20), np.float32), b)
    rx, (rh0,), rW, rR, rb = make_problem(rng, "rnn_tanh", 2, 3, 4, 5, np.float32)
    with pytest.raises(ValueError, match="simple_rnn_forward: activation must be one of"):
        rnn.simple_rnn_forward(rx, rh0, rW, rR, rb, activation="sigmoid")
    with pytest.raises(ValueError, match=r"simple_rnn_forward: h0 must have shape \(N, U\) = \(2,"):
        rnn.simple_rnn_forward(rx, np.zeros((2, 4), np.float32), rW, rR, rb)
    with pytest.raises(ValueError, match=r"simple_rnn_forward: kernel must have shape \(F, U\)"):
        rnn.simple_rnn_forward(rx, rh0, rW[:, :4], rR, rb)


def test_algorithm_is_reported(rng):
    _, _, _, cache = call_lstm(lstm_args(rng), training=True)
    assert rnn.recurrent_algorithm(cache) == "cpu"
    with pytest.raises(ValueError, match="lstm_forward: algorithm 'persistent' is for CuPy"):
        call_lstm(lstm_args(rng), algorithm="persistent")
    with pytest.raises(ValueError, match="lstm_forward: algorithm must be one of"):
        call_lstm(lstm_args(rng), algorithm="fastest")
    with pytest.raises(TypeError, match="recurrent_algorithm: expected the cache dict"):
        rnn.recurrent_algorithm(None)


# ---------------------------------------------------------------------------
# The CUDA cells' per-element code (csrc/cuda/recurrent_common.cuh, shared by
# the per-step and persistent kernels) run on the CPU: nvcc compiles it as host
# code into a small program that replays the kernels' step loops, one element
# at a time, with plain host matrix products, in both forward configurations:
# per-step (the GEMM accumulates onto the gates, or fills the GRU's separate
# products) and persistent (every cell receives its recurrent products apart).
# Runs without a GPU wherever nvcc exists.
CUDA_SOURCES = pathlib.Path(__file__).resolve().parents[1] / "csrc"
SIMULATED_CELLS = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}
_SIMULATION = r"""
#include "recurrent_common.cuh"
#include <cstdio>
#include <cstdlib>
#include <vector>
using namespace fusednn;
using namespace fusednn::cuda::recurrent_detail;
using Vec = std::vector<float>;

static FILE* in_file;
static Vec take(Index n) {
  Vec v(static_cast<size_t>(n));
  if (n && std::fread(v.data(), sizeof(float), v.size(), in_file) != v.size()) std::exit(2);
  return v;
}
static void put(FILE* f, const Vec& v) { std::fwrite(v.data(), sizeof(float), v.size(), f); }

// C (M, N) = beta * C + op(A) (M, K) x op(B) (K, N), row-major with leading dimensions.
static void matmul(bool ta, bool tb, Index M, Index N, Index K, const float* A, Index lda,
                   const float* B, Index ldb, float beta, float* C, Index ldc) {
  for (Index i = 0; i < M; ++i)
    for (Index j = 0; j < N; ++j) {
      double sum = 0;
      for (Index k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        sum += a * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      }
      float* c = C + i * ldc + j;
      *c = float(sum) + (beta == 0.f ? 0.f : beta * *c);
    }
}

template <typename Cell, bool kMasked, bool kRecurrentMask>
void run(Index N, Index T, Index F, Index U, FILE* out) {
  constexpr Index kGates = Cell::kGates;
  const bool kSplit = !Cell::kAccumulates;
  const Index G = kGates * U;
  Vec x = take(N * T * F), h0 = take(N * U), c0 = take(N * U), W = take(F * G), R = take(U * G);
  Vec b = take(kSplit ? 2 * G : G), mask_f = take(N * T), rmask = take(N * U);
  Vec dy = take(N * T * U), dh_T = take(N * U), dc_T = take(N * U);
  std::vector<std::uint8_t> mask(mask_f.size());
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = mask_f[i] != 0.f;
  Vec results[2][3];
  Vec gates_cache, cell_cache, h_in, h_prev, rec_h;
  for (int persistent = 0; persistent < 2; ++persistent) {
    Vec gates(N * T * G), h = h0, c = c0, y(N * T * U), cell(N * T * U), hin(N * T * U);
    Vec hprev(N * T * U), rech(N * T * U), products(N * G);
    ForwardArgs a{N, T, U, b.data(), kMasked ? mask.data() : nullptr,
                  kRecurrentMask ? rmask.data() : nullptr, gates.data(), h.data(), c.data(),
                  y.data(), cell.data(), hprev.data(), rech.data()};
    matmul(false, false, N * T, G, F, x.data(), F, W.data(), G, 0.f, gates.data(), G);
    for (Index e = 0; e < N * U; ++e)
      hin[(e / U) * T * U + e % U] = kRecurrentMask ? h[e] * rmask[e] : h[e];
    for (Index t = 0; t < T; ++t) {
      const float* feed = hin.data() + t * U;
      const bool separate = persistent || kSplit;
      if (separate) {
        matmul(false, false, N, G, U, feed, T * U, R.data(), G, 0.f, products.data(), G);
      } else {
        matmul(false, false, N, G, U, feed, T * U, R.data(), G, 1.f, gates.data() + t * G, T * G);
      }
      float* next = t + 1 < T ? hin.data() + (t + 1) * U : nullptr;
      for (Index e = 0; e < N * U; ++e) {
        const Index n = e / U, j = e % U;
        float rec[kGates];
        for (Index g = 0; g < kGates; ++g) rec[g] = separate ? products[n * G + g * U + j] : 0.f;
        Cell::template forward<true, kMasked, kRecurrentMask>(a, t, n, j, rec, next, T * U);
      }
    }
    results[persistent][0] = y;
    results[persistent][1] = h;
    results[persistent][2] = c;
    if (!persistent) {
      gates_cache = gates; cell_cache = cell; h_in = hin; h_prev = hprev; rec_h = rech;
    }
  }
  // Backward, as backward_sequence runs it.
  Vec dgates(N * T * G), dgates_rec(N * T * G), carry = dh_T, from_gemm(N * U), pending(N * U);
  Vec dc = dc_T;
  BackwardArgs a{};
  a.N = N; a.T = T; a.U = U;
  a.mask = kMasked ? mask.data() : nullptr;
  a.recurrent_mask = kRecurrentMask ? rmask.data() : nullptr;
  a.gates = gates_cache.data(); a.cell = cell_cache.data(); a.c0 = c0.data();
  a.h_before = kRecurrentMask ? h_prev.data() : h_in.data();
  a.h_in = h_in.data(); a.recurrent_h = rec_h.data(); a.dy = dy.data();
  a.dgates = dgates.data(); a.dgates_recurrent = dgates_rec.data();
  a.carry = carry.data(); a.from_gemm = from_gemm.data(); a.pending = pending.data();
  a.dc = dc.data();
  const float* dg_rec = kSplit ? dgates_rec.data() : dgates.data();
  for (Index t = T - 1; t >= 0; --t) {
    for (Index e = 0; e < N * U; ++e)
      Cell::template backward<kMasked, kRecurrentMask>(a, t, e / U, e % U);
    matmul(false, true, N, U, G, dg_rec + t * G, T * G, R.data(), G, 0.f, from_gemm.data(), U);
  }
  Vec dh0(N * U), dx(N * T * F), dW(F * G), dR(U * G), db(kSplit ? 2 * G : G);
  for (Index e = 0; e < N * U; ++e) dh0[e] = state_gradient<kRecurrentMask>(a, e);
  matmul(false, true, N * T, F, G, dgates.data(), G, W.data(), G, 0.f, dx.data(), F);
  matmul(true, false, F, G, N * T, x.data(), F, dgates.data(), G, 0.f, dW.data(), G);
  matmul(true, false, U, G, N * T, h_in.data(), U, dg_rec, G, 0.f, dR.data(), G);
  for (Index r = 0; r < N * T; ++r)
    for (Index k = 0; k < G; ++k) {
      db[k] += dgates[r * G + k];
      if (kSplit) db[G + k] += dgates_rec[r * G + k];
    }
  for (int p = 0; p < 2; ++p) for (int i = 0; i < 3; ++i) put(out, results[p][i]);
  for (const Vec* v : {&dx, &dh0, &dc, &dW, &dR, &db}) put(out, *v);
}

int main(int argc, char** argv) {
  in_file = std::fopen(argv[1], "rb");
  FILE* out = std::fopen(argv[2], "wb");
  long long header[7];
  if (!in_file || !out || std::fread(header, sizeof(header), 1, in_file) != 1) return 2;
  const Index N = header[1], T = header[2], F = header[3], U = header[4];
  fusednn::recurrent_detail::with_flags(
      [&](auto masked, auto rmasked) {
        constexpr bool kM = decltype(masked)::value, kR = decltype(rmasked)::value;
        switch (header[0]) {
          case 0: run<LstmCell, kM, kR>(N, T, F, U, out); break;
          case 1: run<GruCell, kM, kR>(N, T, F, U, out); break;
          case 2: run<SimpleRnnCell<RnnActivation::kTanh>, kM, kR>(N, T, F, U, out); break;
          default: run<SimpleRnnCell<RnnActivation::kRelu>, kM, kR>(N, T, F, U, out); break;
        }
      },
      header[5] != 0, header[6] != 0);
  std::fclose(out);
  return 0;
}
"""


@pytest.fixture(scope="module")
def cuda_cell_simulator(tmp_path_factory):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the host simulation of the CUDA cells needs it")
    folder = tmp_path_factory.mktemp("recurrent_simulation")
    source = folder / "simulate.cu"
    source.write_text(_SIMULATION)
    binary = folder / "simulate"
    subprocess.run([nvcc, "-std=c++17", "-O1", "-I", str(CUDA_SOURCES / "include"), "-I",
                    str(CUDA_SOURCES / "cuda"), str(source), "-o", str(binary)],
                   check=True, capture_output=True, timeout=300)
    return binary


@pytest.mark.parametrize("case", list(SIMULATED_CELLS))
@pytest.mark.parametrize("masked", [False, True])
def test_cuda_cell_code_simulated_on_host(rng, tmp_path, cuda_cell_simulator, case, masked):
    N, T, F, U = 3, 5, 4, 6
    x, states, W, R, b = make_problem(rng, case, N, T, F, U, np.float32)
    mask, recurrent_mask = random_masks(rng, N, T, U, np.float32)
    if not masked:
        mask, recurrent_mask = None, None
    dy = rng.standard_normal((N, T, U)).astype(np.float32)
    dstates = [rng.standard_normal((N, U)).astype(np.float32) for _ in range(2)]
    h0 = states[0]
    c0 = states[1] if case == "lstm" else np.zeros_like(h0)
    header = np.array([SIMULATED_CELLS[case], N, T, F, U, masked, masked], np.int64)
    f32 = lambda a: np.ascontiguousarray(a, np.float32).ravel()  # noqa: E731
    ones = np.ones((N, T)) if mask is None else mask
    rm = np.ones((N, U)) if recurrent_mask is None else recurrent_mask
    inputs = tmp_path / "in.bin"
    inputs.write_bytes(header.tobytes() + b"".join(
        f32(a).tobytes() for a in (x, h0, c0, W, R, b, ones, rm, dy, *dstates)))
    outputs = tmp_path / "out.bin"
    subprocess.run([str(cuda_cell_simulator), str(inputs), str(outputs)], check=True,
                   timeout=60)
    flat = np.fromfile(outputs, np.float32)
    sizes = [N * T * U, N * U, N * U] * 2 + [N * T * F, N * U, N * U, W.size, R.size, b.size]
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    assert flat.size == sum(sizes)

    masks = {} if not masked else {"mask": mask, "recurrent_mask": recurrent_mask}
    y, final, cache = forward(case, x, states, W, R, b, training=True, **masks)
    dx, dstates0, dW, dR, db = backward(case, dy, dstates[:len(states)], cache)
    # float32 on both sides (the simulation sums its products in double).
    close = dict(rtol=1e-4, atol=1e-5)
    for per_step_or_persistent in (parts[0:3], parts[3:6]):
        np.testing.assert_allclose(per_step_or_persistent[0].reshape(y.shape), y, **close)
        for got, want in zip(per_step_or_persistent[1:], final):
            np.testing.assert_allclose(got.reshape(want.shape), want, **close)
    dc0 = dstates0[1] if case == "lstm" else None  # the simulation's dc is unused otherwise
    for got, want in zip(parts[6:], [dx, dstates0[0], dc0, dW, dR, db]):
        if want is not None:
            np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4)


_GEMM_SIMULATION = r"""
#include "gemm_tiles.cuh"
#include <cmath>
#include <cstdio>
#include <vector>
using namespace fusednn::cuda::gemm_detail;

// One launch of sgemm_kernel replayed on the CPU: every tile of C, each phase
// for every thread in turn (the barriers' order), shared memory poisoned with
// NaN at each tile's start so that an unstaged entry would show.
template <typename Cfg, bool kTransA, bool kTransB, bool kBetaZero>
void replay(const Problem& p) {
  static SharedSlices<Cfg> slices;
  std::vector<Accumulators<Cfg>> acc(Cfg::kThreads);
  for (Index row0 = 0; row0 < p.M; row0 += Cfg::BM)
    for (Index col0 = 0; col0 < p.N; col0 += Cfg::BN) {
      for (auto& row : slices.a) for (float& v : row) v = NAN;
      for (auto& row : slices.b) for (float& v : row) v = NAN;
      for (auto& a : acc) clear(a);
      for (Index k0 = 0; k0 < p.K; k0 += Cfg::BK) {
        for (int t = 0; t < Cfg::kThreads; ++t)
          stage_slice<Cfg, kTransA, kTransB>(p, slices, t, row0, col0, k0);
        for (int t = 0; t < Cfg::kThreads; ++t) multiply_slice(slices, t, acc[t]);
      }
      for (int t = 0; t < Cfg::kThreads; ++t)
        store_tile<Cfg, kBetaZero>(p, t, row0, col0, acc[t]);
    }
}

template <typename Cfg, bool kBetaZero>
void dispatch(const Problem& p, bool ta, bool tb) {
  if (ta) {
    tb ? replay<Cfg, true, true, kBetaZero>(p) : replay<Cfg, true, false, kBetaZero>(p);
  } else {
    tb ? replay<Cfg, false, true, kBetaZero>(p) : replay<Cfg, false, false, kBetaZero>(p);
  }
}

int main(int argc, char** argv) {
  FILE* in = std::fopen(argv[1], "rb");
  long long h[8];
  float scalars[2];
  if (!in || std::fread(h, sizeof(h), 1, in) != 1 || std::fread(scalars, 8, 1, in) != 1) return 2;
  const Index M = h[0], N = h[1], K = h[2], lda = h[5], ldb = h[6], ldc = h[7];
  const bool ta = h[3] != 0, tb = h[4] != 0;
  std::vector<float> A((ta ? K : M) * lda), B((tb ? N : K) * ldb), C(M * ldc);
  if (std::fread(A.data(), 4, A.size(), in) != A.size() ||
      std::fread(B.data(), 4, B.size(), in) != B.size() ||
      std::fread(C.data(), 4, C.size(), in) != C.size()) return 2;
  const Problem p{M, N, K, scalars[0], A.data(), lda, B.data(), ldb, scalars[1], C.data(), ldc};
  // The tile choice of gemm.cu's launch().
  const bool narrow = M <= NarrowTile::BM * 2;
  if (scalars[1] == 0.f) {
    narrow ? dispatch<NarrowTile, true>(p, ta, tb) : dispatch<LargeTile, true>(p, ta, tb);
  } else {
    narrow ? dispatch<NarrowTile, false>(p, ta, tb) : dispatch<LargeTile, false>(p, ta, tb);
  }
  FILE* out = std::fopen(argv[2], "wb");
  std::fwrite(C.data(), 4, C.size(), out);
  std::fclose(out);
  return 0;
}
"""


def test_cuda_gemm_tiles_simulated_on_host(rng, tmp_path):
    """The SGEMM kernel's phases (csrc/cuda/gemm_tiles.cuh) replayed thread by thread on
    the CPU for both tile shapes, all transposes, padded leading dimensions, ragged
    edges and both beta paths, against NumPy in float64."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the host replay of the CUDA GEMM needs it")
    source, binary = tmp_path / "gemm.cu", tmp_path / "gemm"
    source.write_text(_GEMM_SIMULATION)
    subprocess.run([nvcc, "-std=c++17", "-O1", "-I", str(CUDA_SOURCES / "cuda"), str(source),
                    "-o", str(binary)], check=True, capture_output=True, timeout=300)
    # (M, N, K): one row; a narrow-tile step; ragged large tiles; K past one slice.
    shapes = [(1, 1, 1), (3, 70, 33), (33, 65, 17), (70, 5, 40)]
    for (M, N, K), trans_a, trans_b, beta in [
            (shape, ta, tb, beta) for shape in shapes for ta in (False, True)
            for tb in (False, True) for beta in (0.0, 0.5)]:
        a = rng.standard_normal((K, M + 3) if trans_a else (M, K + 3)).astype(np.float32)
        b = rng.standard_normal((N, K + 2) if trans_b else (K, N + 2)).astype(np.float32)
        c = rng.standard_normal((M, N + 1)).astype(np.float32)
        if beta == 0.0:
            c[:] = np.nan  # never read
        op_a = (a[:, :M].T if trans_a else a[:, :K]).astype(np.float64)
        op_b = (b[:, :K].T if trans_b else b[:, :N]).astype(np.float64)
        want = 1.5 * op_a @ op_b + (beta * c[:, :N] if beta else 0.0)
        header = np.array([M, N, K, trans_a, trans_b, a.shape[1], b.shape[1], c.shape[1]],
                          np.int64)
        (tmp_path / "in.bin").write_bytes(header.tobytes() + np.array([1.5, beta], np.float32)
                                          .tobytes() + a.tobytes() + b.tobytes() + c.tobytes())
        subprocess.run([str(binary), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                       check=True, timeout=60)
        got = np.fromfile(tmp_path / "out.bin", np.float32).reshape(c.shape)
        # float32 sums of K products: a few ulp of the magnitudes per term.
        np.testing.assert_allclose(got[:, :N], want, rtol=1e-5, atol=1e-5 * K,
                                   err_msg=f"M={M} N={N} K={K} ta={trans_a} tb={trans_b}")
        if beta:  # the padding column of C is left alone
            np.testing.assert_array_equal(got[:, N:], c[:, N:])


# ---------------------------------------------------------------------------
# CPU vs CUDA (needs a GPU, CuPy and the CUDA kernels; skipped otherwise)

def cuda_problem(rng, case, shape, masked):
    N, T, F, U = shape
    problem = make_problem(rng, case, *shape, np.float32)
    masks = {}
    if masked:
        masks["mask"], masks["recurrent_mask"] = random_masks(rng, N, T, U, np.float32)
    dy = rng.standard_normal((N, T, U)).astype(np.float32)
    dstates = [rng.standard_normal((N, U)).astype(np.float32) for _ in problem[1]]
    return problem, masks, dy, dstates


def run_on_gpu(cp, case, problem, masks, dy, dstates, algorithm):
    """Forward (training) and backward on CuPy copies; results back as NumPy."""
    g = lambda a: None if a is None else cp.asarray(a)  # noqa: E731
    x, states, W, R, b = problem
    y, final, cache = forward(case, g(x), [g(s) for s in states], g(W), g(R), g(b),
                              training=True, algorithm=algorithm,
                              **{k: g(v) for k, v in masks.items()})
    grads = backward(case, g(dy), [g(d) for d in dstates], cache)
    flat = [grads[0], *grads[1], *grads[2:]]
    return (cp.asnumpy(y), [cp.asnumpy(f) for f in final], [cp.asnumpy(a) for a in flat],
            rnn.recurrent_algorithm(cache))


def assert_matches_cpu(case, problem, masks, dy, dstates, got):
    y, final, cache = forward(case, *problem, training=True, **masks)
    grads = backward(case, dy, dstates, cache)
    gy, gfinal, ggrads, _ = got
    # float32 on both sides, different summation orders and activation code.
    close = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gy, y, **close)
    for a, c in zip(gfinal, final):
        np.testing.assert_allclose(a, c, **close)
    for a, c in zip(ggrads, [grads[0], *grads[1], *grads[2:]]):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", [(3, 5, 4, 6), (1, 1, 1, 1), (0, 2, 3, 4), (7, 12, 5, 33),
                                   (16, 20, 24, 128)])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("algorithm", ["auto", "per_step"])
def test_cuda_matches_cpu(rng, case, shape, masked, algorithm):
    cp = pytest.importorskip("cupy")
    problem, masks, dy, dstates = cuda_problem(rng, case, shape, masked)
    got = run_on_gpu(cp, case, problem, masks, dy, dstates, algorithm)
    assert got[3] in (("per_step",) if algorithm == "per_step" else ("per_step", "persistent"))
    assert_matches_cpu(case, problem, masks, dy, dstates, got)


@pytest.mark.cuda
@pytest.mark.parametrize("case", [c for c in CASES if c != "gru_reset_before"])
@pytest.mark.parametrize("shape", [(4, 10, 8, 64), (1, 30, 3, 129), (33, 7, 5, 17)])
@pytest.mark.parametrize("masked", [False, True])
def test_cuda_persistent_kernel_matches_cpu(rng, case, shape, masked):
    cp = pytest.importorskip("cupy")
    problem, masks, dy, dstates = cuda_problem(rng, case, shape, masked)
    got = run_on_gpu(cp, case, problem, masks, dy, dstates, "persistent")
    assert got[3] == "persistent"
    assert_matches_cpu(case, problem, masks, dy, dstates, got)
    # Inference takes the ping-pong path of the kernel: same outputs.
    x, states, W, R, b = problem
    g = lambda a: None if a is None else cp.asarray(a)  # noqa: E731
    y, final, _ = forward(case, g(x), [g(s) for s in states], g(W), g(R), g(b),
                          algorithm="persistent", **{k: g(v) for k, v in masks.items()})
    np.testing.assert_allclose(cp.asnumpy(y), got[0], rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
def test_cuda_persistent_refusals(rng):
    cp = pytest.importorskip("cupy")
    x, (h0,), W, R, b = make_problem(rng, "gru_reset_before", 2, 3, 4, 5, np.float32)
    with pytest.raises(RuntimeError, match="reset_after=False has no persistent kernel"):
        rnn.gru_forward(*(cp.asarray(a) for a in (x, h0, W, R, b)), reset_after=False,
                        algorithm="persistent")
    # A batch far beyond the register tile cannot run persistently; auto falls back.
    x, (h0, c0), W, R, b = make_problem(rng, "lstm", 4096, 2, 3, 8, np.float32)
    args = [cp.asarray(a) for a in (x, h0, c0, W, R, b)]
    with pytest.raises(RuntimeError, match="persistent kernel cannot run this problem"):
        rnn.lstm_forward(*args, algorithm="persistent")
    _, _, _, cache = rnn.lstm_forward(*args, training=True)
    assert rnn.recurrent_algorithm(cache) == "per_step"


@pytest.mark.cuda
def test_cuda_rejects_mixed_devices(rng):
    cp = pytest.importorskip("cupy")
    args = lstm_args(rng)
    args["x"] = cp.asarray(args["x"])
    with pytest.raises(TypeError, match="lstm_forward: arrays on different devices"):
        call_lstm(args)


@pytest.mark.cuda
def test_cuda_backward_rejects_host_gradients(rng):
    cp = pytest.importorskip("cupy")
    args = {k: cp.asarray(v) for k, v in lstm_args(rng).items()}
    y, _, _, cache = call_lstm(args, training=True)
    with pytest.raises(TypeError, match="lstm_backward: arrays on different devices"):
        rnn.lstm_backward(cp.asnumpy(y), None, None, cache)


@pytest.mark.cuda
def test_cuda_rejects_float64(rng):
    cp = pytest.importorskip("cupy")
    args = {k: cp.asarray(v) for k, v in lstm_args(rng, np.float64).items()}
    with pytest.raises(TypeError, match="CuPy x must be float32"):
        call_lstm(args)
