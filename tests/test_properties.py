"""Property tests over shapes and memory layouts: every op matches a NumPy reference
(written here, in float64) or raises its documented error.

Shapes are drawn with the edges the kernels must get right: a zero-size batch,
size 1, odd and prime sizes (no SIMD-width or tile multiple), and inputs that are
not C-contiguous (strided slices, negative strides, Fortran order) with the same
values, so a kernel that ignores strides fails. With a zero-size batch the
gradients of weights (sums over the batch) must be exactly zero: the ops allocate
them with `empty`, so a kernel that skips the write would leak garbage.

Examples are few (CI has 2 cores) and derandomized, so every run checks the same
cases; the whole file runs in a few seconds.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fusednn import ops
from fusednn.ops import gemm

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float32, np.float64])
BATCH = st.sampled_from([0, 1, 2, 3, 5, 7, 13])
SMALL = st.sampled_from([1, 2, 3, 5, 7])
CLASSES = st.sampled_from([1, 2, 3, 7, 17, 31, 67])
LAYOUTS = st.sampled_from(["c", "strided", "reversed", "fortran"])

# Tolerances against float64 references: float32 results carry a few ulp per
# accumulated term (sums of <= 100 terms of magnitude <= ~10 here), float64 ones
# rounding only.
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


def layout(array, kind, axis=0):
    """The same values as `array` in another memory layout (a view, never C-contiguous
    unless kind == "c" or the array is too small to tell)."""
    if kind == "strided":
        wide = np.zeros(array.shape[:axis] + (2 * array.shape[axis],) + array.shape[axis + 1:],
                        array.dtype)
        index = (slice(None),) * axis + (slice(None, None, 2),)
        wide[index] = array
        return wide[index]
    if kind == "reversed":
        index = (slice(None),) * axis + (slice(None, None, -1),)
        return np.ascontiguousarray(array[index])[index]
    if kind == "fortran":
        return np.asfortranarray(array)
    return array


def normal(rng, shape, dtype, scale=1.0):
    return (rng.normal(size=shape) * scale).astype(dtype)


# ----- cross-entropy --------------------------------------------------------------------------

def reference_softmax_ce(logits, targets, scale):
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True) if z.size else z
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    losses = -(targets * log_softmax).sum(axis=1)
    dlogits = (np.exp(log_softmax) * targets.sum(axis=1, keepdims=True) - targets) * scale
    return losses, dlogits


@SETTINGS
@given(N=BATCH, C=CLASSES, dtype=DTYPES, kind=LAYOUTS, label_dtype=st.sampled_from(
    [np.int64, np.int32, np.uint8, np.float32]), scale=st.sampled_from([None, 0.5, -2.0]),
    seed=st.integers(0, 2**16))
@example(N=0, C=1, dtype=np.float32, kind="c", label_dtype=np.int64, scale=None, seed=0)
@example(N=1, C=1, dtype=np.float64, kind="reversed", label_dtype=np.uint8, scale=None, seed=0)
def test_sparse_softmax_cross_entropy(N, C, dtype, kind, label_dtype, scale, seed):
    rng = np.random.default_rng(seed)
    logits = normal(rng, (N, C), dtype, scale=3.0)
    labels = rng.integers(0, C, size=N)
    losses, dlogits = ops.sparse_softmax_cross_entropy(layout(logits, kind),
                                                       layout(labels.astype(label_dtype), kind),
                                                       grad_scale=scale)
    want_losses, want_dlogits = reference_softmax_ce(logits, np.eye(C)[labels].reshape(N, C),
                                                     (1.0 / N if N else 1.0) if scale is None
                                                     else scale)
    assert losses.shape == (N,) and dlogits.shape == (N, C) and losses.dtype == dtype
    np.testing.assert_allclose(losses, want_losses, **TOL[dtype])
    np.testing.assert_allclose(dlogits, want_dlogits, **TOL[dtype])


@SETTINGS
@given(N=BATCH, C=CLASSES, dtype=DTYPES, kind=LAYOUTS, seed=st.integers(0, 2**16))
@example(N=0, C=3, dtype=np.float32, kind="strided", seed=0)
def test_softmax_cross_entropy(N, C, dtype, kind, seed):
    rng = np.random.default_rng(seed)
    logits = normal(rng, (N, C), dtype, scale=3.0)
    targets = rng.uniform(size=(N, C)).astype(dtype)   # rows need not sum to 1
    losses, dlogits = ops.softmax_cross_entropy(layout(logits, kind), layout(targets, kind, 1))
    want_losses, want_dlogits = reference_softmax_ce(logits, targets.astype(np.float64),
                                                     1.0 / N if N else 1.0)
    np.testing.assert_allclose(losses, want_losses, **TOL[dtype])
    np.testing.assert_allclose(dlogits, want_dlogits, **TOL[dtype])


# ----- optimizer updates ----------------------------------------------------------------------

SHAPES = st.lists(st.sampled_from([(0,), (1,), (7,), (3, 5), (13, 1), (2, 0, 3), (17, 31)]),
                  min_size=1, max_size=4)


@SETTINGS
@given(shapes=SHAPES, dtype=DTYPES, kind=LAYOUTS, step=st.sampled_from([1, 2, 1000]),
       weight_decay=st.sampled_from([0.0, 0.01]), seed=st.integers(0, 2**16))
def test_adam_update(shapes, dtype, kind, step, weight_decay, seed):
    rng = np.random.default_rng(seed)
    params = [normal(rng, s, dtype) for s in shapes]
    grads = [normal(rng, s, dtype) for s in shapes]
    ms = [normal(rng, s, dtype, 0.1) for s in shapes]
    vs = [np.abs(normal(rng, s, dtype, 0.1)) for s in shapes]
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    want = []
    for p, g, m, v in zip(params, grads, ms, vs):
        p, g, m, v = (a.astype(np.float64) for a in (p, g, m, v))
        alpha = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        m = m + (1 - b1) * (g - m)
        v = v + (1 - b2) * (g * g - v)
        p = p - lr * weight_decay * p
        want.append((p - alpha * m / (np.sqrt(v) + eps), m, v))
    # Gradients may have any layout (they are copied); state is updated in place.
    ops.adam_update(params, [layout(g, kind) for g in grads], ms, vs, learning_rate=lr,
                    beta_1=b1, beta_2=b2, epsilon=eps, step=step, weight_decay=weight_decay)
    for got, expected in zip(zip(params, ms, vs), want):
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, **TOL[dtype])


@SETTINGS
@given(shapes=SHAPES, dtype=DTYPES, kind=LAYOUTS, momentum=st.sampled_from([0.0, 0.9]),
       nesterov=st.booleans(), weight_decay=st.sampled_from([0.0, 0.01]),
       seed=st.integers(0, 2**16))
def test_sgd_update(shapes, dtype, kind, momentum, nesterov, weight_decay, seed):
    rng = np.random.default_rng(seed)
    params = [normal(rng, s, dtype) for s in shapes]
    grads = [normal(rng, s, dtype) for s in shapes]
    moments = [normal(rng, s, dtype, 0.1) for s in shapes] if momentum else None
    lr = 0.05
    want = []
    for i, (p, g) in enumerate(zip(params, grads)):
        p, g = p.astype(np.float64), g.astype(np.float64)
        p = p - lr * weight_decay * p
        if not momentum:
            want.append((p - lr * g,))
            continue
        m = momentum * moments[i].astype(np.float64) - lr * g
        want.append((p + (momentum * m - lr * g if nesterov else m), m))
    ops.sgd_update(params, [layout(g, kind) for g in grads], moments, learning_rate=lr,
                   momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for i, expected in enumerate(want):
        got = (params[i],) + ((moments[i],) if momentum else ())
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, **TOL[dtype])


# ----- matrix multiply ------------------------------------------------------------------------

DIMS = st.sampled_from([0, 1, 2, 3, 5, 7, 13, 17, 31, 37, 67])


@SETTINGS
@given(M=DIMS, N=DIMS, K=DIMS, dtype=DTYPES, trans_a=st.booleans(), trans_b=st.booleans(),
       kind_a=LAYOUTS, kind_b=LAYOUTS, alpha=st.sampled_from([1.0, -0.5]),
       beta=st.sampled_from([0.0, 1.0, 2.0]), seed=st.integers(0, 2**16))
@example(M=0, N=3, K=5, dtype=np.float32, trans_a=False, trans_b=True, kind_a="c",
         kind_b="c", alpha=1.0, beta=0.0, seed=0)
@example(M=3, N=5, K=0, dtype=np.float64, trans_a=True, trans_b=False, kind_a="c",
         kind_b="c", alpha=1.0, beta=2.0, seed=0)   # K = 0: out = beta * out
def test_matmul(M, N, K, dtype, trans_a, trans_b, kind_a, kind_b, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    a = normal(rng, (K, M) if trans_a else (M, K), dtype)
    b = normal(rng, (N, K) if trans_b else (K, N), dtype)
    out = normal(rng, (M, N), dtype)
    a64 = (a.T if trans_a else a).astype(np.float64)
    b64 = (b.T if trans_b else b).astype(np.float64)
    want = alpha * a64 @ b64 + beta * out.astype(np.float64)
    if beta == 0.0:
        out[...] = np.nan   # beta == 0 must never read out
    got = gemm.matmul(layout(a, kind_a, 1), layout(b, kind_b), out, trans_a, trans_b,
                      alpha=alpha, beta=beta)
    assert got is out
    # Error bound: a few ulp per accumulated product, relative to sum |a| |b|.
    bound = np.abs(a64) @ np.abs(b64) + np.abs(beta * out.astype(np.float64) if beta else 0)
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(got - want) <= 4 * eps * (K + 2) * bound + 1e-30)


# ----- pooling and upsampling -----------------------------------------------------------------

def reference_pool(x, pool, strides, padding, mode):
    """(y, dx for dy = ones-weighted by position) by explicit windows."""
    N, H, W, C = x.shape
    geometry = []
    for n, k, s in ((H, pool[0], strides[0]), (W, pool[1], strides[1])):
        if padding == "valid":
            geometry.append(((n - k) // s + 1, 0))
        else:
            out = -(-n // s)
            geometry.append((out, max((out - 1) * s + k - n, 0) // 2))
    (OH, top), (OW, left) = geometry
    y = np.zeros((N, OH, OW, C))
    dy = np.arange(1, N * OH * OW * C + 1, dtype=np.float64).reshape(N, OH, OW, C)
    dx = np.zeros(x.shape)
    for i in range(OH):
        for j in range(OW):
            h0, w0 = i * strides[0] - top, j * strides[1] - left
            hs = slice(max(h0, 0), min(h0 + pool[0], H))
            ws = slice(max(w0, 0), min(w0 + pool[1], W))
            size = (hs.stop - hs.start) * (ws.stop - ws.start)
            window = x[:, hs, ws].reshape(N, size, C).astype(np.float64)
            if mode == "avg":
                y[:, i, j] = window.mean(axis=1)
                dx[:, hs, ws] += (dy[:, i, j] / window.shape[1])[:, None, None, :]
            else:
                y[:, i, j] = window.max(axis=1)
                first = window.argmax(axis=1)          # ties go to the first maximum
                rows, cols = np.divmod(first, ws.stop - ws.start)
                for n in range(N):
                    for c in range(C):
                        dx[n, hs.start + rows[n, c], ws.start + cols[n, c], c] += dy[n, i, j, c]
    return y, dy, dx


@SETTINGS
@given(N=st.sampled_from([0, 1, 2, 3]), H=st.integers(1, 9), W=st.integers(1, 9), C=SMALL,
       pool=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       strides=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       padding=st.sampled_from(["valid", "same"]), mode=st.sampled_from(["max", "avg"]),
       dtype=DTYPES, kind=LAYOUTS, seed=st.integers(0, 2**16))
@example(N=0, H=3, W=3, C=2, pool=(2, 2), strides=(1, 1), padding="same", mode="max",
         dtype=np.float32, kind="c", seed=0)
@example(N=1, H=1, W=7, C=1, pool=(1, 3), strides=(1, 2), padding="valid", mode="avg",
         dtype=np.float64, kind="fortran", seed=0)
def test_pooling(N, H, W, C, pool, strides, padding, mode, dtype, kind, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (N, H, W, C), dtype)
    forward = ops.max_pool2d if mode == "max" else ops.avg_pool2d
    if padding == "valid" and (pool[0] > H or pool[1] > W):
        with pytest.raises(ValueError, match="larger than the input"):
            forward(layout(x, kind, 1), pool, strides, padding)
        return
    result = forward(layout(x, kind, 1), pool, strides, padding)
    y, argmax = result if mode == "max" else (result, None)
    want_y, dy, want_dx = reference_pool(x, pool, strides, padding, mode)
    np.testing.assert_allclose(y, want_y, **TOL[dtype])
    dy = layout(dy.astype(dtype), kind, 2)
    if mode == "max":
        dx = ops.max_pool2d_backward(dy, argmax, x.shape, pool, strides, padding)
    else:
        dx = ops.avg_pool2d_backward(dy, x.shape, pool, strides, padding)
    np.testing.assert_allclose(dx, want_dx, rtol=TOL[dtype]["rtol"] * 10,
                               atol=TOL[dtype]["atol"] * 10 * max(dy.size, 1))


@SETTINGS
@given(N=st.sampled_from([0, 1, 3]), H=SMALL, W=SMALL, C=SMALL,
       size=st.tuples(st.integers(1, 3), st.integers(1, 3)), dtype=DTYPES, kind=LAYOUTS,
       seed=st.integers(0, 2**16))
def test_upsample_nearest2d(N, H, W, C, size, dtype, kind, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (N, H, W, C), dtype)
    y = ops.upsample_nearest2d(layout(x, kind, 2), size)
    np.testing.assert_array_equal(y, x.repeat(size[0], axis=1).repeat(size[1], axis=2))
    dy = normal(rng, y.shape, dtype)
    want = dy.astype(np.float64).reshape(N, H, size[0], W, size[1], C).sum(axis=(2, 4))
    np.testing.assert_allclose(ops.upsample_nearest2d_backward(layout(dy, kind, 1), size), want,
                               **TOL[dtype])


# ----- recurrent ------------------------------------------------------------------------------

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_recurrent(cell, x, h0, c0, kernel, recurrent, bias, reset_after=True,
                        activation="tanh"):
    """(y, h_T, c_T) by stepping the Keras cell equations in float64."""
    x, h, c = x.astype(np.float64), h0.astype(np.float64), c0
    kernel, recurrent, bias = (a.astype(np.float64) for a in (kernel, recurrent, bias))
    U = h.shape[1]
    ys = []
    for t in range(x.shape[1]):
        xt = x[:, t] @ kernel
        if cell == "lstm":
            z = xt + h @ recurrent + bias
            i, f, g, o = (z[:, k * U:(k + 1) * U] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        elif cell == "gru":
            b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
            xz, xr, xh = (xt[:, k * U:(k + 1) * U] + b_in[k * U:(k + 1) * U] for k in range(3))
            if reset_after:
                hr = h @ recurrent + b_rec
                z, r = sigmoid(xz + hr[:, :U]), sigmoid(xr + hr[:, U:2 * U])
                hh = np.tanh(xh + r * hr[:, 2 * U:])
            else:
                hr = h @ recurrent[:, :2 * U]
                z, r = sigmoid(xz + hr[:, :U]), sigmoid(xr + hr[:, U:])
                hh = np.tanh(xh + (r * h) @ recurrent[:, 2 * U:])
            h = z * h + (1 - z) * hh
        else:
            z = xt + h @ recurrent + bias
            h = np.tanh(z) if activation == "tanh" else np.maximum(z, 0)
        ys.append(h)
    y = np.stack(ys, axis=1) if ys else np.zeros(x.shape[:2] + (U,))
    return y, h, c


@SETTINGS
@given(cell=st.sampled_from(["lstm", "gru", "gru-reset-before", "rnn-tanh", "rnn-relu"]),
       N=st.sampled_from([0, 1, 2, 5]), T=st.sampled_from([1, 2, 5]), F=SMALL,
       U=st.sampled_from([1, 2, 3, 5]), dtype=DTYPES, kind=LAYOUTS,
       seed=st.integers(0, 2**16))
@example(cell="lstm", N=0, T=1, F=1, U=1, dtype=np.float32, kind="c", seed=0)
@example(cell="gru", N=0, T=2, F=3, U=2, dtype=np.float64, kind="c", seed=0)
@example(cell="gru-reset-before", N=0, T=1, F=2, U=3, dtype=np.float32, kind="c", seed=0)
@example(cell="rnn-relu", N=0, T=5, F=1, U=5, dtype=np.float32, kind="c", seed=0)
@example(cell="lstm", N=1, T=1, F=7, U=5, dtype=np.float64, kind="reversed", seed=0)
def test_recurrent_forward_and_zero_batch_gradients(cell, N, T, F, U, dtype, kind, seed):
    rng = np.random.default_rng(seed)
    gates = {"lstm": 4, "rnn-tanh": 1, "rnn-relu": 1}.get(cell, 3)
    reset_after = cell == "gru"
    x = normal(rng, (N, T, F), dtype)
    h0 = normal(rng, (N, U), dtype, 0.5)
    c0 = normal(rng, (N, U), dtype, 0.5)
    kernel = normal(rng, (F, gates * U), dtype, 0.5)
    recurrent = normal(rng, (U, gates * U), dtype, 0.5)
    bias = normal(rng, (2, 3 * U) if reset_after else (gates * U,), dtype, 0.1)
    args = (layout(x, kind, 1), layout(h0, kind))
    if cell == "lstm":
        y, h, c, cache = ops.lstm_forward(args[0], args[1], layout(c0, kind), kernel, recurrent,
                                          bias, training=True)
    elif cell.startswith("gru"):
        y, h, cache = ops.gru_forward(*args, kernel, recurrent, bias, reset_after=reset_after,
                                      training=True)
    else:
        y, h, cache = ops.simple_rnn_forward(*args, kernel, recurrent, bias,
                                             activation=cell[4:], training=True)
    name = "gru" if cell.startswith("gru") else cell[:4].rstrip("-")
    want_y, want_h, want_c = reference_recurrent(name, x, h0, c0, kernel, recurrent, bias,
                                                 reset_after, cell[4:])
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, want_y, **tol)
    np.testing.assert_allclose(h, want_h, **tol)
    if cell == "lstm":
        np.testing.assert_allclose(c, want_c, **tol)
    dy = np.ones_like(y)
    if cell == "lstm":
        grads = ops.lstm_backward(dy, None, None, cache)
    elif cell.startswith("gru"):
        grads = ops.gru_backward(dy, None, cache)
    else:
        grads = ops.simple_rnn_backward(dy, None, cache)
    weight_grads = grads[-3:]
    assert [g.shape for g in weight_grads] == [kernel.shape, recurrent.shape, bias.shape]
    if N == 0:   # sums over an empty batch
        assert all(np.array_equal(g, np.zeros_like(g)) for g in weight_grads)
    assert all(np.all(np.isfinite(g)) for g in grads)


# ----- convolution ---------------------------------------------------------------------------

def conv_axis(n, k, s, d, padding):
    """(output length, padding before, padded length) of a convolution along one axis."""
    extent = (k - 1) * d + 1
    if padding == "valid":
        out, before = (n - extent) // s + 1, 0
    else:
        out = -(-n // s)
        before = max((out - 1) * s + extent - n, 0) // 2
    return out, before, max(before + n, (out - 1) * s + extent)


class ReferenceConv2d:
    """conv2d (cross-correlation) and its gradients in float64, tap by tap on a padded
    input: y[n, i, j] = sum over taps (a, b) of xpad[n, i*s + a*d, j*s + b*d] @ k[a, b]."""

    def __init__(self, x_shape, kernel_shape, strides, padding, dilation):
        N, H, W, C = x_shape
        KH, KW = kernel_shape[:2]
        (self.OH, self.top, HP), (self.OW, self.left, WP) = (
            conv_axis(H, KH, strides[0], dilation[0], padding),
            conv_axis(W, KW, strides[1], dilation[1], padding))
        self.x_shape, self.padded_shape = x_shape, (N, HP, WP, C)
        self.taps = [((a, b), (slice(None),
                               slice(a * dilation[0], a * dilation[0]
                                     + (self.OH - 1) * strides[0] + 1, strides[0]),
                               slice(b * dilation[1], b * dilation[1]
                                     + (self.OW - 1) * strides[1] + 1, strides[1])))
                     for a in range(KH) for b in range(KW)]

    def inside(self):
        N, H, W, C = self.x_shape
        return (slice(None), slice(self.top, self.top + H), slice(self.left, self.left + W))

    def forward(self, x, kernel):
        xpad = np.zeros(self.padded_shape)
        xpad[self.inside()] = x
        y = np.zeros((x.shape[0], self.OH, self.OW, kernel.shape[3]))
        for (a, b), window in self.taps:
            y += xpad[window] @ kernel[a, b].astype(np.float64)
        return y

    def input_grad(self, dz, kernel):
        dxpad = np.zeros(self.padded_shape)
        for (a, b), window in self.taps:
            dxpad[window] += dz @ kernel[a, b].astype(np.float64).T
        return dxpad[self.inside()]

    def kernel_grad(self, x, dz, kernel_shape):
        xpad = np.zeros(self.padded_shape)
        xpad[self.inside()] = x
        dkernel = np.zeros(kernel_shape)
        for (a, b), window in self.taps:
            dkernel[a, b] = np.einsum("nijc,nijf->cf", xpad[window], dz)
        return dkernel


CONV_TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


@SETTINGS
@given(N=st.sampled_from([0, 1, 2, 3]), H=st.integers(1, 8), W=st.integers(1, 8), C=SMALL,
       F=st.sampled_from([1, 2, 3, 7]), kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       strides=st.tuples(st.integers(1, 3), st.integers(1, 3)), dilated=st.booleans(),
       padding=st.sampled_from(["valid", "same"]), activation=st.sampled_from(["linear", "relu"]),
       dtype=DTYPES, kind=LAYOUTS, seed=st.integers(0, 2**16))
@example(N=0, H=3, W=3, C=2, F=3, kernel=(2, 2), strides=(1, 1), dilated=False, padding="same",
         activation="linear", dtype=np.float32, kind="c", seed=0)
@example(N=2, H=1, W=7, C=1, F=1, kernel=(1, 3), strides=(1, 1), dilated=True, padding="valid",
         activation="relu", dtype=np.float64, kind="reversed", seed=0)
def test_conv2d_forward_and_backward(N, H, W, C, F, kernel, strides, dilated, padding,
                                     activation, dtype, kind, seed):
    rng = np.random.default_rng(seed)
    dilation = (2, 2) if dilated else (1, 1)
    if dilated:
        strides = (1, 1)   # strides > 1 with dilation > 1 is documented as unsupported
    x = normal(rng, (N, H, W, C), dtype)
    k = normal(rng, kernel + (C, F), dtype)
    bias = normal(rng, (F,), dtype)
    too_big = any((kk - 1) * d + 1 > n for kk, d, n in zip(kernel, dilation, (H, W)))
    if padding == "valid" and too_big:
        with pytest.raises(ValueError, match="larger than the input"):
            ops.conv2d(x, k, bias, strides, padding, dilation)
        return
    y = ops.conv2d(layout(x, kind, 1), layout(k, kind, 2), bias, strides, padding, dilation,
                   activation)
    reference = ReferenceConv2d(x.shape, k.shape, strides, padding, dilation)
    z = reference.forward(x, k) + bias
    np.testing.assert_allclose(y, np.maximum(z, 0) if activation == "relu" else z,
                               **CONV_TOL[dtype])
    dy = normal(rng, y.shape, dtype)
    dx, dkernel, dbias = ops.conv2d_backward(layout(dy, kind, 3), x, k, y, strides, padding,
                                             dilation, activation)
    dz = dy.astype(np.float64) * (y > 0) if activation == "relu" else dy.astype(np.float64)
    np.testing.assert_allclose(dx, reference.input_grad(dz, k), **CONV_TOL[dtype])
    np.testing.assert_allclose(dkernel, reference.kernel_grad(x, dz, k.shape), **CONV_TOL[dtype])
    np.testing.assert_allclose(dbias, dz.sum(axis=(0, 1, 2)), **CONV_TOL[dtype])
    if N == 0:   # sums over an empty batch
        assert not dkernel.any() and not dbias.any()


@SETTINGS
@given(N=st.sampled_from([0, 1, 2]), H=st.integers(1, 6), W=st.integers(1, 6), C=SMALL,
       F=SMALL, kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.sampled_from(["valid", "same"]), dtype=DTYPES, kind=LAYOUTS,
       seed=st.integers(0, 2**16))
def test_conv2d_transpose_is_the_adjoint_of_conv2d(N, H, W, C, F, kernel, strides, padding,
                                                   dtype, kind, seed):
    """conv2d_transpose(x) is the data gradient of the conv2d that maps its output back to
    x's shape (Keras); kernel (KH, KW, Cout, Cin)."""
    rng = np.random.default_rng(seed)
    x = normal(rng, (N, H, W, C), dtype)
    k = normal(rng, kernel + (F, C), dtype)
    y = ops.conv2d_transpose(layout(x, kind, 1), k, None, strides, padding)
    reference = ReferenceConv2d(y.shape, k.shape, strides, padding, (1, 1))
    assert (reference.OH, reference.OW) == (H, W)
    np.testing.assert_allclose(y, reference.input_grad(x.astype(np.float64), k),
                               **CONV_TOL[dtype])


@SETTINGS
@given(N=st.sampled_from([0, 1, 3]), T=st.integers(1, 9), C=SMALL, F=SMALL,
       K=st.integers(1, 4), stride=st.integers(1, 3), dtype=DTYPES,
       padding=st.sampled_from(["valid", "same", "causal"]), seed=st.integers(0, 2**16))
def test_conv1d_is_conv2d_over_one_row(N, T, C, F, K, stride, dtype, padding, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (N, T, C), dtype)
    k = normal(rng, (K, C, F), dtype)
    if padding == "valid" and K > T:
        with pytest.raises(ValueError, match="larger than the input"):
            ops.conv1d(x, k, None, stride, padding)
        return
    y = ops.conv1d(x, k, None, stride, padding)
    if padding == "causal":   # K - 1 zeros in front, then a valid convolution
        x = np.concatenate([np.zeros((N, K - 1, C), dtype), x], axis=1)
        padding = "valid"
    reference = ReferenceConv2d((N, 1) + x.shape[1:], (1,) + k.shape, (1, stride), padding,
                                (1, 1))
    np.testing.assert_allclose(y, reference.forward(x[:, None], k[None])[:, 0],
                               **CONV_TOL[dtype])


def test_max_pool_argmax_widens_to_int64_where_int32_would_overflow():
    """argmax holds h * W + w; the op picks int64 once H * W passes 2^31 - 1 (checked on
    the shape alone: such an image needs > 8 GB)."""
    from fusednn.ops import pooling
    assert pooling._index_dtype((1, 46340, 46340, 1)) == np.int32    # 2147395600 positions
    assert pooling._index_dtype((1, 46341, 46341, 1)) == np.int64    # 2147488281 > 2^31 - 1
    assert pooling._index_dtype((1, 1, 2**31, 1)) == np.int64
