"""Pooling and upsampling kernels (fusednn.ops.pooling) and the pooling layers.

Forward and backward against NumPy references written here with explicit
padding and loops over the windows (independent of the kernels' clipped-window
and gathering formulation), central finite differences in float64, PyTorch's
pooling as an oracle where its padding agrees with Keras's ("valid"), outputs
poisoned with NaN before the kernel runs, edge shapes (batch 1, odd and prime
sizes, stride > pool, stride < pool), the lecture's worked example, the
output-size formula, configs and bad input; CPU vs CUDA parity where a GPU
exists.
"""
import math

import numpy as np
import pytest

import fusednn._C as _C
from fusednn import backend, layers, ops
from gradcheck import numeric_gradient

# Max pooling selects elements: results are exact. Average pooling sums at most
# KH * KW values, so float32 results stay within a few ulp of the float64
# reference (1e-6 relative, plus 1e-6 absolute for values near 0); float64
# agrees to rounding (1e-12).
AVG_TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


# ----- NumPy references ----------------------------------------------------------------

def ref_out_and_pads(n, k, s, padding):
    """Output length and (before, after) padding, Keras's rule written out."""
    if padding == "valid":
        return len(range(0, n - k + 1, s)), (0, 0)
    out = len(range(0, n, s))
    total = max((out - 1) * s + k - n, 0)
    return out, (total // 2, total - total // 2)


def ref_pool(x, pool, strides, padding, mode):
    """y (and for max the argmax h * W + w) by padding explicitly and looping over windows."""
    N, H, W, C = x.shape
    (kh, kw), (sh, sw) = pool, strides
    OH, (pt, pb) = ref_out_and_pads(H, kh, sh, padding)
    OW, (pl, pr) = ref_out_and_pads(W, kw, sw, padding)
    padded = np.full((N, H + pt + pb, W + pl + pr, C), np.nan)
    padded[:, pt:pt + H, pl:pl + W] = x
    inside = np.zeros(padded.shape[1:3], bool)
    inside[pt:pt + H, pl:pl + W] = True
    y = np.empty((N, OH, OW, C))
    argmax = np.empty((N, OH, OW, C), np.int64)
    for oh in range(OH):
        for ow in range(OW):
            rows = slice(oh * sh, oh * sh + kh)
            cols = slice(ow * sw, ow * sw + kw)
            window = padded[:, rows, cols].reshape(N, -1, C)
            valid = inside[rows, cols].reshape(-1)
            if mode == "avg":
                y[:, oh, ow] = window[:, valid].sum(axis=1) / valid.sum()
                continue
            values = np.where(valid[None, :, None], window, -np.inf)
            local = values.argmax(axis=1)  # the first maximum
            y[:, oh, ow] = np.take_along_axis(values, local[:, None], axis=1)[:, 0]
            i, j = np.divmod(local, kw)
            argmax[:, oh, ow] = (oh * sh + i - pt) * W + (ow * sw + j - pl)
    return y, argmax


def ref_pool_backward(dy, x_shape, pool, strides, padding, mode, argmax=None):
    """dx by scattering each output gradient onto its window (loops over outputs)."""
    N, H, W, C = x_shape
    (kh, kw), (sh, sw) = pool, strides
    _, (pt, _) = ref_out_and_pads(H, kh, sh, padding)
    _, (pl, _) = ref_out_and_pads(W, kw, sw, padding)
    dx = np.zeros(x_shape)
    n_idx, c_idx = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for oh in range(dy.shape[1]):
        for ow in range(dy.shape[2]):
            if mode == "max":
                h, w = np.divmod(argmax[:, oh, ow], W)
                np.add.at(dx, (n_idx, h, w, c_idx), dy[:, oh, ow])
                continue
            h0, w0 = oh * sh - pt, ow * sw - pl
            h_lo, h_hi = max(h0, 0), min(h0 + kh, H)
            w_lo, w_hi = max(w0, 0), min(w0 + kw, W)
            count = (h_hi - h_lo) * (w_hi - w_lo)
            dx[:, h_lo:h_hi, w_lo:w_hi] += dy[:, oh, ow][:, None, None] / count
    return dx


def distinct_values(rng, shape, dtype=np.float64):
    """Values without ties, at least 0.1 apart (so finite-difference steps never flip an argmax)."""
    return (rng.permutation(math.prod(shape)).reshape(shape) * 0.1
            - 0.05 * math.prod(shape)).astype(dtype)


# (x shape, pool, strides, padding): batch 1, odd and prime sizes, stride == pool,
# stride > pool (skipped inputs), stride < pool (overlapping windows), windows that
# cover the whole axis, 1-wide windows, "same" with odd and even padding totals.
CASES = [
    ((1, 4, 4, 1), (2, 2), (2, 2), "valid"),
    ((2, 7, 5, 3), (2, 2), (2, 2), "valid"),
    ((2, 7, 5, 3), (2, 2), (2, 2), "same"),
    ((3, 11, 13, 5), (3, 3), (2, 2), "valid"),
    ((3, 11, 13, 5), (3, 3), (2, 2), "same"),
    ((1, 13, 7, 17), (2, 3), (3, 4), "valid"),
    ((1, 13, 7, 17), (2, 3), (3, 4), "same"),
    ((2, 9, 9, 2), (4, 4), (1, 1), "same"),
    ((2, 9, 9, 2), (3, 5), (1, 2), "valid"),
    ((2, 5, 6, 7), (5, 6), (5, 6), "valid"),
    ((2, 5, 6, 7), (1, 1), (1, 1), "valid"),
    ((1, 3, 2, 4), (5, 4), (2, 3), "same"),
    ((4, 1, 19, 3), (1, 4), (1, 3), "same"),
    # Whole channel blocks (32 float, 16 double: the kernels' register blocks) and a partial
    # one after them.
    ((2, 6, 8, 32), (2, 2), (2, 2), "valid"),
    ((1, 7, 6, 70), (3, 3), (2, 2), "same"),
]


def poisoned_forward(mode, x, pool, strides, padding, index_dtype=np.int32):
    """Calls the CPU kernel directly on NaN-filled outputs (an unwritten element stays NaN)."""
    N, H, W, C = x.shape
    OH, (pt, _) = ref_out_and_pads(H, pool[0], strides[0], padding)
    OW, (pl, _) = ref_out_and_pads(W, pool[1], strides[1], padding)
    y = np.full((N, OH, OW, C), np.nan, x.dtype)
    if mode == "avg":
        _C.avg_pool2d_forward_cpu(x, y, pool, strides, (pt, pl))
        return y, None
    argmax = np.full((N, OH, OW, C), -1, index_dtype)
    _C.max_pool2d_forward_cpu(x, y, argmax, pool, strides, (pt, pl))
    return y, argmax


# ----- the lecture's example and the output size ------------------------------------------

LECTURE_INPUT = np.array([[12, 20, 30, 0],
                          [8, 12, 2, 0],
                          [34, 70, 37, 4],
                          [112, 100, 25, 12]], np.float32)


def test_lecture_max_pool_example():
    x = LECTURE_INPUT.reshape(1, 4, 4, 1)
    y, argmax = ops.max_pool2d(x, (2, 2))
    np.testing.assert_array_equal(y[0, :, :, 0], [[20, 30], [112, 37]])
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[1, 2], [12, 10]])
    layer = layers.MaxPooling2D((2, 2))
    np.testing.assert_array_equal(layer(x)[0, :, :, 0], [[20, 30], [112, 37]])
    # The gradient goes to the four maxima only.
    layer.forward(x, training=True)
    dx = layer.backward(np.ones((1, 2, 2, 1), np.float32))[0, :, :, 0]
    np.testing.assert_array_equal(dx, (LECTURE_INPUT[None] == np.array(
        [20, 30, 112, 37])[:, None, None]).any(axis=0).astype(np.float32))


@pytest.mark.parametrize("n, f, s", [(4, 2, 2), (28, 3, 1), (26, 2, 2), (11, 2, 2), (13, 3, 2),
                                     (7, 7, 1), (10, 3, 4), (17, 5, 3)])
def test_output_size_is_floor_n_plus_2p_minus_f_over_s_plus_1(n, f, s):
    # "valid": p = 0.
    expected = (n + 2 * 0 - f) // s + 1
    y = ops.avg_pool2d(np.zeros((1, n, n, 1), np.float32), f, s)
    assert y.shape == (1, expected, expected, 1)
    assert layers.MaxPooling2D(f, s).compute_output_shape((None, n, n, 1)) == \
        (None, expected, expected, 1)
    # "same" with stride 1 and an odd window pads p = (f - 1) / 2 per side: the size is kept.
    if f % 2 == 1:
        p = (f - 1) // 2
        y, _ = ops.max_pool2d(np.zeros((1, n, n, 1), np.float32), f, 1, "same")
        assert y.shape[1] == (n + 2 * p - f) // 1 + 1 == n


# ----- forward ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, pool, strides, padding", CASES)
def test_max_pool_forward_matches_reference(rng, shape, pool, strides, padding, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    want_y, want_argmax = ref_pool(x.astype(np.float64), pool, strides, padding, "max")
    y, argmax = ops.max_pool2d(x, pool, strides, padding)
    assert y.dtype == dtype and argmax.dtype == np.int32
    np.testing.assert_array_equal(y, want_y.astype(dtype))
    np.testing.assert_array_equal(argmax, want_argmax)
    for index_dtype in (np.int32, np.int64):
        y, argmax = poisoned_forward("max", x, pool, strides, padding, index_dtype)
        np.testing.assert_array_equal(y, want_y.astype(dtype))
        np.testing.assert_array_equal(argmax, want_argmax)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [16, 32, 45, 96])
@pytest.mark.parametrize("pool, strides, padding", [((2, 2), (2, 2), "valid"),
                                                     ((3, 3), (2, 2), "same")])
def test_max_pool_forward_channel_blocks_with_ties_and_nan(rng, channels, pool, strides,
                                                           padding, dtype):
    # The CPU forward takes channels in register blocks (32 float / 16 double) plus a
    # partial block: channel counts below, at and between block multiples, with many
    # ties (values on a coarse grid) and NaNs scattered over blocks and tails.
    x = rng.integers(-3, 4, size=(2, 7, 6, channels)).astype(dtype)
    x[rng.random(x.shape) < 0.02] = np.nan
    want_y, want_argmax = ref_pool(x.astype(np.float64), pool, strides, padding, "max")
    for index_dtype in (np.int32, np.int64):
        y, argmax = poisoned_forward("max", x, pool, strides, padding, index_dtype)
        np.testing.assert_array_equal(y, want_y.astype(dtype))  # NaN where the reference has NaN
        np.testing.assert_array_equal(argmax, want_argmax)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, pool, strides, padding", CASES)
def test_avg_pool_forward_matches_reference(rng, shape, pool, strides, padding, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    want, _ = ref_pool(x.astype(np.float64), pool, strides, padding, "avg")
    y = ops.avg_pool2d(x, pool, strides, padding)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, **AVG_TOL[dtype])
    np.testing.assert_allclose(poisoned_forward("avg", x, pool, strides, padding)[0], want,
                               **AVG_TOL[dtype])


def test_same_average_divides_by_the_valid_elements_only():
    # 3x3 of ones, 2x2 windows, stride 2, "same": 2x2 output, windows at the bottom/right
    # hold 2 or 1 input elements; every mean of ones is 1 (dividing by 4 would give 0.5, 0.25).
    y = ops.avg_pool2d(np.ones((1, 3, 3, 1), np.float32), 2, 2, "same")
    np.testing.assert_array_equal(y, np.ones((1, 2, 2, 1)))
    # Keras's asymmetric padding: 4 -> 2 with window 3 stride 2 pads 1 row only at the bottom.
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    y = ops.avg_pool2d(x, 3, 2, "same")
    assert y[0, 0, 0, 0] == x[0, 0:3, 0:3, 0].mean()
    assert y[0, 1, 1, 0] == x[0, 2:4, 2:4, 0].mean()


def test_max_pool_ties_go_to_the_first_maximum_and_nan_propagates():
    x = np.zeros((1, 2, 4, 1), np.float32)
    x[0, :, 2:, 0] = [[5, 7], [7, 7]]
    x_nan = x.copy()
    x_nan[0, 1, 0, 0] = np.nan
    y, argmax = ops.max_pool2d(x_nan, 2)
    np.testing.assert_array_equal(argmax[0, 0, :, 0], [4, 3])  # NaN wins; first of the 7s
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 1, 0] == 7
    dx = ops.max_pool2d_backward(np.ones_like(y), argmax, x.shape, 2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 1], [1, 0, 0, 0]])
    # A window of -inf still points at one of its own elements.
    y, argmax = ops.max_pool2d(np.full((1, 2, 2, 3), -np.inf), 2)
    assert np.all(y == -np.inf) and np.all(argmax == 0)


# ----- backward -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, pool, strides, padding", CASES)
def test_backward_matches_reference(rng, shape, pool, strides, padding, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    y, argmax = ops.max_pool2d(x, pool, strides, padding)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for mode in ("max", "avg"):
        want = ref_pool_backward(dy.astype(np.float64), shape, pool, strides, padding, mode,
                                 argmax)
        if mode == "max":
            got = ops.max_pool2d_backward(dy, argmax, shape, pool, strides, padding)
            poisoned = np.full(shape, np.nan, dtype)
            _C.max_pool2d_backward_cpu(dy, argmax, poisoned, pool, strides,
                                       _pads(shape, pool, strides, padding))
        else:
            got = ops.avg_pool2d_backward(dy, shape, pool, strides, padding)
            poisoned = np.full(shape, np.nan, dtype)
            _C.avg_pool2d_backward_cpu(dy, poisoned, pool, strides,
                                       _pads(shape, pool, strides, padding))
        assert got.dtype == dtype
        # Overlapping windows add a handful of terms per element: a few ulp.
        np.testing.assert_allclose(got, want, **AVG_TOL[dtype])
        np.testing.assert_allclose(poisoned, want, **AVG_TOL[dtype])


def _pads(shape, pool, strides, padding):
    return (ref_out_and_pads(shape[1], pool[0], strides[0], padding)[1][0],
            ref_out_and_pads(shape[2], pool[1], strides[1], padding)[1][0])


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape, pool, strides, padding", [
    ((2, 5, 5, 2), (3, 3), (2, 2), "same"),     # overlapping windows, asymmetric padding
    ((1, 6, 7, 3), (2, 3), (1, 2), "valid"),    # stride < pool on the height
    ((2, 7, 5, 1), (2, 2), (3, 3), "valid"),    # stride > pool: some inputs get no gradient
])
def test_backward_matches_finite_differences(rng, mode, shape, pool, strides, padding):
    x = distinct_values(rng, shape)
    weights = rng.standard_normal(ops.avg_pool2d(x, pool, strides, padding).shape)

    def loss(v):
        if mode == "max":
            return float((ops.max_pool2d(v, pool, strides, padding)[0] * weights).sum())
        return float((ops.avg_pool2d(v, pool, strides, padding) * weights).sum())

    if mode == "max":
        _, argmax = ops.max_pool2d(x, pool, strides, padding)
        got = ops.max_pool2d_backward(weights, argmax, shape, pool, strides, padding)
    else:
        got = ops.avg_pool2d_backward(weights, shape, pool, strides, padding)
    # Both losses are piecewise linear in x, so central differences are exact up to
    # rounding of the sums (|loss| ~ 10, eps 1e-6: ~1e-10 / 1e-6).
    np.testing.assert_allclose(got, numeric_gradient(lambda: loss(x), x), rtol=0,
                               atol=1e-7)


def test_overlapping_windows_accumulate_the_gradient():
    # 1x3 input, window 2, stride 1: the middle element is the max of both windows.
    x = np.array([0.0, 5.0, 1.0]).reshape(1, 1, 3, 1)
    y, argmax = ops.max_pool2d(x, (1, 2), (1, 1))
    dx = ops.max_pool2d_backward(np.array([2.0, 3.0]).reshape(1, 1, 2, 1), argmax, x.shape,
                                 (1, 2), (1, 1))
    np.testing.assert_array_equal(dx.ravel(), [0, 5, 0])
    dx = ops.avg_pool2d_backward(np.array([2.0, 3.0]).reshape(1, 1, 2, 1), x.shape, (1, 2), (1, 1))
    np.testing.assert_array_equal(dx.ravel(), [1, 2.5, 1.5])


# ----- PyTorch as an oracle ("valid" only: torch pads symmetrically) --------------------------

@pytest.mark.parametrize("shape, pool, strides", [
    ((2, 7, 5, 3), (2, 2), (2, 2)), ((3, 11, 13, 5), (3, 3), (2, 2)),
    ((1, 13, 7, 17), (2, 3), (3, 4)), ((2, 9, 9, 2), (3, 5), (1, 2)),
    ((64, 26, 26, 32), (2, 2), (2, 2)),
])
def test_matches_torch(rng, shape, pool, strides):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(np.float32)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    for mode in ("max", "avg"):
        pool_fn = (torch.nn.functional.max_pool2d if mode == "max"
                   else torch.nn.functional.avg_pool2d)
        ty = pool_fn(tx, pool, strides)
        want_y = ty.detach().numpy().transpose(0, 2, 3, 1)
        dy = rng.standard_normal(want_y.shape).astype(np.float32)
        (want_dx,) = torch.autograd.grad(ty, tx, torch.tensor(dy.transpose(0, 3, 1, 2)))
        want_dx = want_dx.numpy().transpose(0, 2, 3, 1)
        if mode == "max":
            y, argmax = ops.max_pool2d(x, pool, strides)
            dx = ops.max_pool2d_backward(dy, argmax, shape, pool, strides)
            np.testing.assert_array_equal(y, want_y)
        else:
            y = ops.avg_pool2d(x, pool, strides)
            dx = ops.avg_pool2d_backward(dy, shape, pool, strides)
            np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-6, atol=1e-6)


def test_pooling_1d_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 17, 4)).astype(np.float32)
    tx = torch.tensor(x.transpose(0, 2, 1), requires_grad=True)
    for layer, fn in [(layers.MaxPooling1D(3, 2), torch.nn.functional.max_pool1d),
                      (layers.AveragePooling1D(4), torch.nn.functional.avg_pool1d)]:
        ty = fn(tx, layer.pool_size[0], layer.strides[0])
        y = layer.forward(x, training=True)
        np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 1), rtol=1e-6,
                                   atol=1e-6)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        (want,) = torch.autograd.grad(ty, tx, torch.tensor(dy.transpose(0, 2, 1)))
        np.testing.assert_allclose(layer.backward(dy), want.numpy().transpose(0, 2, 1),
                                   rtol=1e-6, atol=1e-6)


# ----- layers ---------------------------------------------------------------------------

@pytest.mark.parametrize("padding", ["valid", "same"])
def test_1d_layers_match_the_reference_on_sequences(rng, padding):
    x = rng.standard_normal((2, 13, 3))
    for cls, mode in [(layers.MaxPooling1D, "max"), (layers.AveragePooling1D, "avg")]:
        layer = cls(pool_size=4, strides=3, padding=padding, dtype="float64")
        want, _ = ref_pool(x[:, None], (1, 4), (1, 3), padding, mode)
        y = layer.forward(x, training=True)
        assert y.shape[1:] == layer.compute_output_shape((None, 13, 3))[1:] == want.shape[2:]
        np.testing.assert_allclose(y, want[:, 0], rtol=1e-12)
        dy = rng.standard_normal(y.shape)
        argmax = ref_pool(x[:, None], (1, 4), (1, 3), padding, "max")[1]
        want_dx = ref_pool_backward(dy[:, None], (2, 1, 13, 3), (1, 4), (1, 3), padding, mode,
                                    argmax)
        np.testing.assert_allclose(layer.backward(dy), want_dx[:, 0], rtol=1e-12)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_layers(rng, keepdims):
    x = distinct_values(rng, (3, 5, 7, 4))
    seq = x[:, 0]
    for cls, data, reduce in [
            (layers.GlobalMaxPooling2D, x, lambda v: v.max(axis=(1, 2), keepdims=keepdims)),
            (layers.GlobalAveragePooling2D, x, lambda v: v.mean(axis=(1, 2), keepdims=keepdims)),
            (layers.GlobalMaxPooling1D, seq, lambda v: v.max(axis=1, keepdims=keepdims)),
            (layers.GlobalAveragePooling1D, seq, lambda v: v.mean(axis=1, keepdims=keepdims))]:
        layer = cls(keepdims=keepdims, dtype="float64")
        y = layer.forward(data, training=True)
        np.testing.assert_allclose(y, reduce(data), rtol=1e-12)
        assert y.shape[1:] == layer.compute_output_shape((None,) + data.shape[1:])[1:]
        weights = rng.standard_normal(y.shape)
        got = layer.backward(weights)
        perturbed = data.copy()
        want = numeric_gradient(lambda: float((reduce(perturbed) * weights).sum()), perturbed)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


def test_pooling_layers_accept_non_contiguous_inputs_and_batch_one(rng):
    x = rng.standard_normal((1, 9, 10, 6)).astype(np.float32)
    view = x[:, ::-1, :, ::2]  # negative and step strides
    layer = layers.MaxPooling2D(3, 2, "same")
    want, _ = ref_pool(np.ascontiguousarray(view, np.float64), (3, 3), (2, 2), "same", "max")
    np.testing.assert_array_equal(layer(view), want.astype(np.float32))


def test_layer_configs_round_trip():
    for layer in [layers.MaxPooling2D((3, 2), strides=(1, 2), padding="same"),
                  layers.AveragePooling2D(), layers.MaxPooling1D(3), layers.AveragePooling1D(
                      pool_size=2, strides=1, padding="same"),
                  layers.GlobalMaxPooling2D(keepdims=True), layers.GlobalAveragePooling1D()]:
        config = layers.serialize(layer)
        clone = layers.deserialize(config)
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    config = layers.MaxPooling2D((3, 2), padding="SAME").get_config()
    assert config["pool_size"] == [3, 2] and config["strides"] == [3, 2]
    assert config["padding"] == "same"
    layer = layers.MaxPooling2D()
    layer.build_for((None, 4, 4, 3))
    assert layer.count_params() == 0 and layer.get_weights() == []


# ----- bad input ------------------------------------------------------------------------

def test_layer_argument_errors_name_the_layer():
    for kwargs, pattern in [
            (dict(pool_size=0), r"MaxPooling2D 'bad'.*pool_size.*positive.*got 0"),
            (dict(pool_size=(2, -1)), r"MaxPooling2D 'bad'.*pool_size.*got \(2, -1\)"),
            (dict(pool_size=(2, 2, 2)), r"pool_size.*tuple of 2.*got \(2, 2, 2\)"),
            (dict(strides=0), r"MaxPooling2D 'bad'.*strides.*got 0"),
            (dict(strides=(1, 1.5)), r"strides.*got \(1, 1.5\)"),
            (dict(padding="full"), r"MaxPooling2D 'bad'.*'valid' or 'same'.*'full'")]:
        with pytest.raises(ValueError, match=pattern):
            layers.MaxPooling2D(name="bad", **kwargs)
    with pytest.raises(ValueError, match=r"MaxPooling1D.*pool_size.*got True"):
        layers.MaxPooling1D(pool_size=True)
    with pytest.raises(TypeError, match=r"GlobalMaxPooling2D.*keepdims.*bool"):
        layers.GlobalMaxPooling2D(keepdims="yes")


def test_pool_larger_than_the_input_and_wrong_rank():
    layer = layers.MaxPooling2D(5, name="big")
    with pytest.raises(ValueError, match=r"MaxPooling2D 'big'.*\(None, 4, 6, 1\).*window \(5\) "
                                         r"is larger than the input \(4\)"):
        layer(np.zeros((2, 4, 6, 1), np.float32))
    # "same" pads, so the same window fits.
    assert layers.MaxPooling2D(5, padding="same")(np.zeros((2, 4, 6, 1))).shape == (2, 1, 2, 1)
    with pytest.raises(ValueError, match=r"AveragePooling1D.*larger than the input \(3\)"):
        layers.AveragePooling1D(4)(np.zeros((1, 3, 2)))
    with pytest.raises(ValueError,
                       match=r"MaxPooling2D 'rank'.*rank 4.*\((None|2), 8, 3\).*rank 3"):
        layers.MaxPooling2D(name="rank")(np.zeros((2, 8, 3)))
    with pytest.raises(ValueError, match=r"GlobalAveragePooling1D.*rank 3.*rank 4"):
        layers.GlobalAveragePooling1D()(np.zeros((2, 8, 3, 1)))


def test_op_errors_before_any_kernel():
    x = np.zeros((1, 4, 4, 2), np.float32)
    with pytest.raises(TypeError, match=r"max_pool2d.*float32 or float64.*int64"):
        ops.max_pool2d(np.zeros((1, 4, 4, 2), np.int64), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d.*rank 4 \(N, H, W, C\).*\(4, 4\)"):
        ops.avg_pool2d(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: input \(1, 4, 4, 2\), height: the window"):
        ops.max_pool2d(x, (5, 1))
    with pytest.raises(ValueError, match=r"max_pool2d.*padding 'valid' or 'same'.*'causal'"):
        ops.max_pool2d(x, 2, padding="causal")
    y, argmax = ops.max_pool2d(x, 2)
    with pytest.raises(ValueError, match=r"max_pool2d_backward.*dy of shape \(1, 2, 2, 2\).*"
                                         r"got \(1, 3, 3, 2\)"):
        ops.max_pool2d_backward(np.zeros((1, 3, 3, 2), np.float32), argmax, x.shape, 2)
    with pytest.raises(TypeError, match=r"max_pool2d_backward.*argmax.*float32"):
        ops.max_pool2d_backward(y, y, x.shape, 2)
    with pytest.raises(ValueError, match=r"upsample_nearest2d_backward.*\(5, 4\).*\(2, 2\)"):
        ops.upsample_nearest2d_backward(np.zeros((1, 5, 4, 1)), 2)


def test_bindings_reject_geometry_that_would_read_out_of_bounds():
    x = np.zeros((1, 4, 4, 2), np.float32)
    y = np.zeros((1, 3, 2, 2), np.float32)  # 3 rows of 2-windows at stride 2 overrun 4 rows
    with pytest.raises(ValueError, match="some window would hold no input element"):
        _C.avg_pool2d_forward_cpu(x, y, (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="padding before the first row"):
        _C.avg_pool2d_forward_cpu(x, np.zeros((1, 2, 2, 2), np.float32), (2, 2), (2, 2), (2, 0))
    with pytest.raises(ValueError, match="agree on batch N and channels C"):
        _C.avg_pool2d_forward_cpu(x, np.zeros((1, 2, 2, 3), np.float32), (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="argmax must have the output's shape"):
        _C.max_pool2d_forward_cpu(x, np.zeros((1, 2, 2, 2), np.float32),
                                  np.zeros((1, 2, 2, 1), np.int32), (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"upsampled array must have shape \(N, H \* 2"):
        _C.upsample_nearest2d_forward_cpu(x, np.zeros((1, 8, 7, 2), np.float32), (2, 2))


# ----- upsampling kernels ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, size", [((1, 1, 1, 1), (2, 2)), ((2, 3, 5, 7), (2, 3)),
                                         ((3, 7, 2, 13), (1, 4)), ((1, 4, 4, 3), (3, 1))])
def test_upsample_matches_reference(rng, shape, size, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    N, H, W, C = shape
    want = np.empty((N, H * size[0], W * size[1], C), dtype)
    for h in range(H * size[0]):
        for w in range(W * size[1]):
            want[:, h, w] = x[:, h // size[0], w // size[1]]
    np.testing.assert_array_equal(ops.upsample_nearest2d(x, size), want)
    poisoned = np.full(want.shape, np.nan, dtype)
    _C.upsample_nearest2d_forward_cpu(x, poisoned, size)
    np.testing.assert_array_equal(poisoned, want)

    dy = rng.standard_normal(want.shape).astype(dtype)
    want_dx = np.zeros(shape)
    for h in range(H * size[0]):
        for w in range(W * size[1]):
            want_dx[:, h // size[0], w // size[1]] += dy[:, h, w]
    np.testing.assert_allclose(ops.upsample_nearest2d_backward(dy, size), want_dx,
                               **AVG_TOL[dtype])
    poisoned = np.full(shape, np.nan, dtype)
    _C.upsample_nearest2d_backward_cpu(dy, poisoned, size)
    np.testing.assert_allclose(poisoned, want_dx, **AVG_TOL[dtype])


def test_upsample_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, scale_factor=(3, 2), mode="nearest")
    y = ops.upsample_nearest2d(x, (3, 2))
    np.testing.assert_array_equal(y, ty.detach().numpy().transpose(0, 2, 3, 1))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    (want,) = torch.autograd.grad(ty, tx, torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(ops.upsample_nearest2d_backward(dy, (3, 2)),
                               want.numpy().transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)


# ----- CPU vs CUDA ----------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("shape, pool, strides, padding", CASES + [
    ((64, 26, 26, 32), (2, 2), (2, 2), "valid"), ((64, 11, 11, 64), (2, 2), (2, 2), "valid")])
def test_cuda_matches_cpu(rng, shape, pool, strides, padding):
    cp = backend.cupy_module()
    pads = _pads(shape, pool, strides, padding)
    for dtype in (np.float32, np.float64):
        x = distinct_values(rng, shape, dtype)
        y, argmax = ops.max_pool2d(x, pool, strides, padding)
        dy = rng.standard_normal(y.shape).astype(dtype)
        gx, gdy = cp.asarray(x), cp.asarray(dy)
        for index_dtype in (np.int32, np.int64):
            gy = cp.full(y.shape, cp.nan, dtype)
            gargmax = cp.full(y.shape, -1, index_dtype)
            _C.max_pool2d_forward_cuda(gx, gy, gargmax, pool, strides, pads,
                                       backend.current_stream_ptr())
            np.testing.assert_array_equal(gy.get(), y)
            np.testing.assert_array_equal(gargmax.get(), argmax)
            gdx = cp.full(shape, cp.nan, dtype)
            _C.max_pool2d_backward_cuda(gdy, gargmax, gdx, pool, strides, pads,
                                        backend.current_stream_ptr())
            np.testing.assert_allclose(
                gdx.get(), ops.max_pool2d_backward(dy, argmax, shape, pool, strides, padding),
                **AVG_TOL[dtype])
        gy = cp.full(y.shape, cp.nan, dtype)
        _C.avg_pool2d_forward_cuda(gx, gy, pool, strides, pads, backend.current_stream_ptr())
        np.testing.assert_allclose(gy.get(), ops.avg_pool2d(x, pool, strides, padding),
                                   **AVG_TOL[dtype])
        gdx = cp.full(shape, cp.nan, dtype)
        _C.avg_pool2d_backward_cuda(gdy, gdx, pool, strides, pads, backend.current_stream_ptr())
        np.testing.assert_allclose(gdx.get(),
                                   ops.avg_pool2d_backward(dy, shape, pool, strides, padding),
                                   **AVG_TOL[dtype])


@pytest.mark.cuda
def test_cuda_upsample_and_layers_match_cpu(rng):
    cp = backend.cupy_module()
    x = rng.standard_normal((3, 7, 5, 6)).astype(np.float32)
    gx = cp.asarray(x)
    gy = cp.full((3, 14, 15, 6), cp.nan, np.float32)
    _C.upsample_nearest2d_forward_cuda(gx, gy, (2, 3), backend.current_stream_ptr())
    np.testing.assert_array_equal(gy.get(), ops.upsample_nearest2d(x, (2, 3)))
    dy = rng.standard_normal((3, 14, 15, 6)).astype(np.float32)
    gdx = cp.full(x.shape, cp.nan, np.float32)
    _C.upsample_nearest2d_backward_cuda(cp.asarray(dy), gdx, (2, 3), backend.current_stream_ptr())
    np.testing.assert_allclose(gdx.get(), ops.upsample_nearest2d_backward(dy, (2, 3)), rtol=1e-6,
                               atol=1e-6)
    for layer in [layers.MaxPooling2D(3, 2, "same"), layers.AveragePooling2D(),
                  layers.GlobalMaxPooling2D(), layers.GlobalAveragePooling2D()]:
        y = layer.forward(x, training=True)
        d = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(d)
        gy = layer.forward(gx, training=True)
        assert isinstance(gy, cp.ndarray)
        np.testing.assert_allclose(gy.get(), y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(layer.backward(cp.asarray(d)).get(), dx, rtol=1e-6, atol=1e-6)
