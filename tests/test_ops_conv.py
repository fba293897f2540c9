"""Convolution ops (fusednn.ops.conv) against independent references.

- NumPy: conv2d written here as a sum over kernel taps of einsum over the
  explicitly padded input (Keras's padding recomputed here), in float64.
- PyTorch (oracle, NCHW with permutes): F.conv2d / conv1d / conv_transpose2d
  in float64 for the forward and all three gradients; Keras's asymmetric
  'same' padding is reproduced with F.pad.
- Finite differences in float64, adjoint identities, NaN-poisoned outputs
  (every output element must be written), the lecture's worked examples.
- The CUDA kernels: CPU parity on a GPU (marked cuda), and a simulation of the
  float32 kernel's blocks, thread by thread, compiled by nvcc as host code
  (runs without a GPU).

Tolerances: float32 results are compared to float64 references with
rtol = atol = 2e-4 relative to the largest reference value: each output sums
at most a few hundred products, whose float32 rounding stays below ~1e-5 of
the sum of their magnitudes. float64 results are held to 1e-10.
"""
from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

import fusednn as fd
from fusednn import _C
from fusednn.ops import conv as ops
from gradcheck import numeric_directional_derivative

torch = pytest.importorskip("torch")
F = torch.nn.functional


# ----- independent references ---------------------------------------------------
def keras_axis(n, k, s, d, padding):
    """(out, pad_before, pad_after) of Keras/TensorFlow along one axis."""
    kd = (k - 1) * d + 1
    if padding == "valid":
        return (n - kd) // s + 1, 0, 0
    out = math.ceil(n / s)
    total = max((out - 1) * s + kd - n, 0)
    return out, total // 2, total - total // 2


def numpy_conv2d(x, w, b=None, strides=(1, 1), padding="valid", dilation=(1, 1)):
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    N, H, W, C = x.shape
    KH, KW, _, Fo = w.shape
    OH, top, bottom = keras_axis(H, KH, strides[0], dilation[0], padding)
    OW, left, right = keras_axis(W, KW, strides[1], dilation[1], padding)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    y = np.zeros((N, OH, OW, Fo))
    for kh in range(KH):
        for kw in range(KW):
            h0, w0 = kh * dilation[0], kw * dilation[1]
            patch = xp[:, h0:h0 + (OH - 1) * strides[0] + 1:strides[0],
                       w0:w0 + (OW - 1) * strides[1] + 1:strides[1], :]
            y += np.einsum("nhwc,cf->nhwf", patch, w[kh, kw])
    return y if b is None else y + b


def torch_conv2d(x, w, b, strides, padding, dilation):
    """Keras conv2d through torch (float64 tensors with grad), NHWC in and out."""
    _, H, W, _ = x.shape
    KH, KW = w.shape[:2]
    _, top, bottom = keras_axis(H, KH, strides[0], dilation[0], padding)
    _, left, right = keras_axis(W, KW, strides[1], dilation[1], padding)
    xt = F.pad(x.permute(0, 3, 1, 2), (left, right, top, bottom))
    y = F.conv2d(xt, w.permute(3, 2, 0, 1), b, stride=strides, dilation=dilation)
    return y.permute(0, 2, 3, 1)


def leaf(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def close(actual, expected, dtype=np.float32):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
    tol = 2e-4 if np.dtype(dtype) == np.float32 else 1e-10
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol,
                               atol=tol * scale)


def random(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# (N, H, W, C, F, KH, KW, strides, padding, dilation): stride 2, dilation 2,
# 'same' with odd and even kernels, batch 1, odd and prime sizes, stride >
# kernel, 1x1 kernels (the direct GEMM path and the strided gather), and a
# case large enough for the CPU kernel to split the batch across threads, and
# channel counts past one SIMD register tile. The CPU forward reads x in place
# (no im2col copy) in runs of a kernel row (KW*C values, 'valid' along W and no
# W dilation) or of one tap (C values), when those are 3 or more values long:
# the cases cover both with padding, stride, dilation, and output rows and
# filters that do not fill the last register tile, and the im2col path below.
# Stride-1 input gradients run as a forward convolution where that computes at
# most 1.25x the output's pixels ('same', and 'valid' of large images), else by
# col2im: both appear.
CASES = [
    (2, 7, 9, 3, 5, 3, 3, (1, 1), "valid", (1, 1)),
    (1, 11, 13, 2, 4, 3, 3, (2, 2), "same", (1, 1)),
    (3, 8, 8, 4, 6, 4, 2, (1, 1), "same", (1, 1)),
    (2, 9, 7, 3, 5, 3, 3, (1, 1), "same", (2, 2)),
    (2, 13, 11, 5, 7, 3, 2, (1, 1), "valid", (2, 3)),
    (1, 17, 19, 1, 3, 2, 2, (3, 3), "valid", (1, 1)),
    (2, 10, 9, 3, 4, 2, 3, (3, 2), "same", (1, 1)),
    (2, 5, 6, 7, 3, 1, 1, (1, 1), "valid", (1, 1)),
    (2, 7, 5, 4, 3, 1, 1, (2, 2), "same", (1, 1)),
    (1, 3, 3, 2, 2, 3, 3, (1, 1), "valid", (1, 1)),
    (4, 18, 18, 16, 32, 3, 3, (1, 1), "same", (1, 1)),
    (2, 9, 8, 32, 8, 4, 3, (1, 1), "same", (1, 1)),
    (2, 10, 9, 33, 5, 3, 2, (1, 1), "valid", (2, 1)),
    (3, 9, 11, 24, 20, 3, 3, (2, 2), "same", (1, 1)),
    (2, 11, 12, 1, 9, 3, 3, (2, 3), "valid", (1, 1)),
    # 'valid' with 1.1x the output's pixels: its input gradient goes through the forward
    # (conv.cpp's transposes_by_forward), as 'same' stride-1 cases above do.
    (2, 20, 21, 3, 4, 2, 2, (1, 1), "valid", (1, 1)),
]


def case_id(case):
    N, H, W, C, Fo, KH, KW, s, p, d = case
    return f"{N}x{H}x{W}x{C}-k{KH}x{KW}-f{Fo}-s{s[0]}{s[1]}-{p}-d{d[0]}{d[1]}"


# ----- forward against NumPy ----------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_forward_matches_numpy(case, dtype, rng):
    N, H, W, C, Fo, KH, KW, strides, padding, dilation = case
    x, w, b = random(rng, (N, H, W, C), dtype), random(rng, (KH, KW, C, Fo), dtype), \
        random(rng, (Fo,), dtype)
    expected = numpy_conv2d(x, w, b, strides, padding, dilation)
    y = ops.conv2d(x, w, b, strides, padding, dilation)
    assert y.dtype == dtype and y.shape == expected.shape
    close(y, expected, dtype)
    close(ops.conv2d(x, w, b, strides, padding, dilation, activation="relu"),
          np.maximum(expected, 0), dtype)
    close(ops.conv2d(x, w, None, strides, padding, dilation), expected - b, dtype)


# ----- forward and gradients against torch --------------------------------------
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_gradients_match_torch(case, activation, rng):
    N, H, W, C, Fo, KH, KW, strides, padding, dilation = case
    x, w, b = random(rng, (N, H, W, C)), random(rng, (KH, KW, C, Fo)), random(rng, (Fo,))
    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    yt = torch_conv2d(xt, wt, bt, strides, padding, dilation)
    if activation == "relu":
        yt = torch.relu(yt)
    dy = random(rng, tuple(yt.shape))
    yt.backward(torch.from_numpy(dy.astype(np.float64)))

    y = ops.conv2d(x, w, b, strides, padding, dilation, activation)
    close(y, yt.detach().numpy())
    dx, dw, db = ops.conv2d_backward(dy, x, w, y, strides, padding, dilation, activation)
    close(dx, xt.grad.numpy())
    close(dw, wt.grad.numpy())
    close(db, bt.grad.numpy())


# The large case splits over two threads, each summing its own copy of dw/db: with
# only dx asked for (a frozen convolution inside a trainable model), x is not passed
# and no copy may be made or read (it read x from a null pointer once: a crash).
@pytest.mark.parametrize("N,H,C,F", [(2, 6, 3, 4), (64, 16, 8, 16)])
def test_conv2d_backward_computes_only_what_is_asked(rng, N, H, C, F):
    x, w = random(rng, (N, H, H, C)), random(rng, (3, 3, C, F))
    dy = random(rng, (N, H - 2, H - 2, F))
    threads = fd.get_num_threads()
    fd.set_num_threads(2)
    try:
        full = ops.conv2d_backward(dy, x, w)
        for flags in [(True, False, False), (False, True, False), (False, False, True)]:
            parts = ops.conv2d_backward(dy, x, w, input_grad=flags[0], kernel_grad=flags[1],
                                        bias_grad=flags[2])
            for wanted, part, reference in zip(flags, parts, full):
                if wanted:
                    np.testing.assert_array_equal(part, reference)
                else:
                    assert part is None
    finally:
        fd.set_num_threads(threads)


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2), (3, 1)])
def test_conv1d_matches_torch(padding, stride, dilation, rng):
    N, T, C, Fo, K = 2, 13, 3, 5, 3
    x, w, b = random(rng, (N, T, C)), random(rng, (K, C, Fo)), random(rng, (Fo,))
    kd = (K - 1) * dilation + 1
    if padding == "causal":
        left, right = kd - 1, 0
    else:
        _, left, right = keras_axis(T, K, stride, dilation, padding)
    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    yt = F.conv1d(F.pad(xt.permute(0, 2, 1), (left, right)), wt.permute(2, 1, 0), bt,
                  stride=stride, dilation=dilation).permute(0, 2, 1)
    dy = random(rng, tuple(yt.shape))
    yt.backward(torch.from_numpy(dy.astype(np.float64)))

    y = ops.conv1d(x, w, b, stride, padding, dilation)
    close(y, yt.detach().numpy())
    dx, dw, db = ops.conv1d_backward(dy, x, w, y, stride, padding, dilation)
    close(dx, xt.grad.numpy())
    close(dw, wt.grad.numpy())
    close(db, bt.grad.numpy())


# ----- conv2d_transpose -----------------------------------------------------------
def torch_conv2d_transpose(x, w, b, strides, padding, dilation, out_hw, pads):
    """Keras Conv2DTranspose through torch: the full transposed convolution, then
    rows/columns [pad, pad + out) of it (zeros past its end), plus the bias."""
    full = F.conv_transpose2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), None,
                              stride=strides, dilation=dilation)
    OH, OW = out_hw
    grow_h = max(pads[0] + OH - full.shape[2], 0)
    grow_w = max(pads[1] + OW - full.shape[3], 0)
    full = F.pad(full, (0, grow_w, 0, grow_h))
    y = full[:, :, pads[0]:pads[0] + OH, pads[1]:pads[1] + OW] + b[None, :, None, None]
    return y.permute(0, 2, 3, 1)


def keras_transpose_axis(n, k, s, d, padding, output_padding):
    """Keras's output length, and where it starts in torch's full transposed output:
    TensorFlow's 'same' padding of the conv2d that maps the output back (without
    output_padding), the JAX backend's left padding (with one)."""
    kd = (k - 1) * d + 1
    if padding == "valid":
        extra = max(kd, s) - kd if output_padding is None else output_padding
        return (n - 1) * s + kd + extra, 0
    if output_padding is None:
        return n * s, max(kd - s, 0) // 2
    total = kd + kd % 2 - 2 + output_padding
    return (n - 1) * s + kd % 2 + output_padding, kd - 1 - min(-(-total // 2), kd - 1)


TRANSPOSE_CASES = [
    # (N, H, W, Cin, Cout, KH, KW, strides, padding, output_padding, dilation)
    (2, 5, 4, 3, 6, 3, 3, (1, 1), "valid", None, (1, 1)),
    (2, 5, 4, 3, 6, 3, 3, (2, 2), "same", None, (1, 1)),
    (1, 4, 7, 2, 3, 4, 4, (2, 2), "same", None, (1, 1)),
    (2, 3, 5, 2, 4, 2, 3, (3, 2), "valid", None, (1, 1)),
    (1, 6, 5, 3, 2, 3, 2, (1, 1), "same", None, (2, 2)),
    (2, 4, 4, 3, 2, 3, 3, (2, 2), "valid", (1, 0), (1, 1)),
    (2, 4, 5, 2, 3, 3, 4, (3, 2), "same", (2, 1), (1, 1)),
    (2, 5, 5, 3, 4, 1, 1, (1, 1), "same", None, (1, 1)),
    (2, 5, 6, 3, 34, 3, 2, (1, 1), "same", None, (1, 1)),
    (1, 4, 5, 2, 40, 2, 3, (1, 1), "valid", None, (2, 1)),
]


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_conv2d_transpose_matches_torch(case, activation, rng):
    N, H, W, Cin, Cout, KH, KW, strides, padding, output_padding, dilation = case
    x, w, b = random(rng, (N, H, W, Cin)), random(rng, (KH, KW, Cout, Cin)), \
        random(rng, (Cout,))
    op_h, op_w = (None, None) if output_padding is None else output_padding
    OH, top = keras_transpose_axis(H, KH, strides[0], dilation[0], padding, op_h)
    OW, left = keras_transpose_axis(W, KW, strides[1], dilation[1], padding, op_w)
    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    yt = torch_conv2d_transpose(xt, wt, bt, strides, padding, dilation, (OH, OW), (top, left))
    if activation == "relu":
        yt = torch.relu(yt)
    dy = random(rng, tuple(yt.shape))
    yt.backward(torch.from_numpy(dy.astype(np.float64)))

    y = ops.conv2d_transpose(x, w, b, strides, padding, output_padding, dilation, activation)
    assert y.shape == (N, OH, OW, Cout)
    close(y, yt.detach().numpy())
    dx, dw, db = ops.conv2d_transpose_backward(dy, x, w, y, strides, padding, output_padding,
                                               dilation, activation)
    close(dx, xt.grad.numpy())
    close(dw, wt.grad.numpy())
    close(db, bt.grad.numpy())


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_conv2d_transpose_is_the_adjoint_of_conv2d(case, rng):
    """<conv2d(u), v> = <u, conv2d_transpose(v)> for the conv2d mapping y's shape to x's."""
    N, H, W, Cin, Cout, KH, KW, strides, padding, output_padding, dilation = case
    w = rng.standard_normal((KH, KW, Cout, Cin))
    v = rng.standard_normal((N, H, W, Cin))
    tv = ops.conv2d_transpose(v, w, None, strides, padding, output_padding, dilation)
    u = rng.standard_normal(tv.shape)
    geometry = ops._transpose_geometry("test", v.shape, w.shape, strides, padding,
                                       output_padding, dilation)
    cu = np.empty_like(v)
    _C.conv2d_forward_cpu(u, w, None, cu, geometry, "linear")
    assert abs(np.sum(cu * v) - np.sum(u * tv)) <= 1e-10 * np.sum(np.abs(u)) * np.abs(w).sum()


# ----- finite differences in float64 ---------------------------------------------
@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6]], ids=case_id)
def test_conv2d_gradients_match_finite_differences(case, rng):
    N, H, W, C, Fo, KH, KW, strides, padding, dilation = case
    x, w, b = (rng.standard_normal(s) for s in ((N, H, W, C), (KH, KW, C, Fo), (Fo,)))
    y = ops.conv2d(x, w, b, strides, padding, dilation, "relu")
    dy = rng.standard_normal(y.shape)

    def loss(x_, w_, b_):
        return float(np.sum(ops.conv2d(x_, w_, b_, strides, padding, dilation, "relu") * dy))

    dx, dw, db = ops.conv2d_backward(dy, x, w, y, strides, padding, dilation, "relu")
    for grad, array in ((dx, x), (dw, w), (db, b)):
        direction = rng.standard_normal(grad.shape)
        numeric = numeric_directional_derivative(lambda: loss(x, w, b), array, direction)
        # A kink of relu inside [-eps, eps] would break this; with random data it does not.
        assert numeric == pytest.approx(float(np.sum(grad * direction)), rel=1e-6, abs=1e-8)


# ----- every output element is written --------------------------------------------
def poisoned(shape, dtype=np.float32):
    return np.full(shape, np.nan, dtype=dtype)


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", [CASES[5], CASES[7], CASES[8], CASES[10], CASES[13], CASES[14]],
                         ids=case_id)
def test_kernels_write_every_output(case, activation, rng):
    """Stride > kernel leaves input pixels that no output reads: their dx must be 0."""
    N, H, W, C, Fo, KH, KW, strides, padding, dilation = case
    x, w, b = random(rng, (N, H, W, C)), random(rng, (KH, KW, C, Fo)), random(rng, (Fo,))
    geometry = ops._conv2d_geometry("test", x.shape, w.shape, strides, padding, dilation)
    y = poisoned(ops._output_shape(geometry))
    _C.conv2d_forward_cpu(x, w, b, y, geometry, activation)
    assert np.isfinite(y).all()
    dy = random(rng, y.shape)
    dx, dw, db = poisoned(x.shape), poisoned(w.shape), poisoned(b.shape)
    _C.conv2d_backward_cpu(x, y, dy, w, dx, dw, db, geometry, activation)
    assert np.isfinite(dx).all() and np.isfinite(dw).all() and np.isfinite(db).all()
    out = poisoned(x.shape)
    _C.conv2d_backward_data_cpu(dy, w, None, out, geometry, activation)
    assert np.isfinite(out).all()
    if activation == "linear":
        np.testing.assert_array_equal(out, dx)


@pytest.mark.parametrize("channels", [2, 16])
def test_nan_in_the_input_propagates(channels, rng):
    x, w = random(rng, (1, 5, 5, channels)), random(rng, (3, 3, channels, 3))
    x[0, 2, 2, 1] = np.nan
    for activation in ("linear", "relu"):
        y = ops.conv2d(x, w, None, activation=activation)
        assert np.isnan(y).all()  # every 3x3 window of the 5x5 image covers (2, 2)
        # 'same': only the windows that cover (2, 2) see the NaN, the zero padding none.
        y = ops.conv2d(x, w, None, padding="same", activation=activation)
        covers = np.zeros((5, 5), bool)
        covers[1:4, 1:4] = True
        assert np.isnan(y[0][covers]).all() and np.isfinite(y[0][~covers]).all()


# ----- edge shapes and layouts -----------------------------------------------------
def test_empty_batch(rng):
    x, w, b = np.zeros((0, 6, 6, 3), np.float32), random(rng, (3, 3, 3, 4)), random(rng, (4,))
    y = ops.conv2d(x, w, b)
    assert y.shape == (0, 4, 4, 4)
    dx, dw, db = ops.conv2d_backward(np.zeros(y.shape, np.float32), x, w)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    assert ops.conv2d_transpose(np.zeros((0, 2, 2, 4), np.float32), w, None).shape == \
        (0, 4, 4, 3)


def test_non_contiguous_inputs(rng):
    base = random(rng, (2, 9, 8, 6))
    x = base[:, ::2, :, ::2]  # strided view
    w = np.asfortranarray(random(rng, (3, 3, 3, 4)))
    close(ops.conv2d(x, w), numpy_conv2d(x, w))


# ----- the lecture's worked examples ----------------------------------------------
def test_lecture_example_5x5_image_3x3_filter():
    image = np.array([[1, 1, 1, 0, 0],
                      [0, 1, 1, 1, 0],
                      [0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 0],
                      [0, 1, 1, 0, 0]], np.float32)
    kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
    y = ops.conv2d(image[None, :, :, None], kernel[:, :, None, None])
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_lecture_edge_detectors():
    image = np.zeros((6, 6), np.float32)
    image[:, :3] = 10  # bright left half, dark right half
    vertical = np.array([[1, 0, -1]] * 3, np.float32)
    y = ops.conv2d(image[None, :, :, None], vertical[:, :, None, None])[0, :, :, 0]
    np.testing.assert_array_equal(y, [[0, 30, 30, 0]] * 4)
    # The horizontal counterpart on the transposed image finds the horizontal edge.
    horizontal = vertical.T
    y = ops.conv2d(image.T[None, :, :, None], horizontal[:, :, None, None])[0, :, :, 0]
    np.testing.assert_array_equal(y, np.array([[0, 30, 30, 0]] * 4).T)
    # ...and sees no edge in the original (vertical stripes only).
    y = ops.conv2d(image[None, :, :, None], horizontal[:, :, None, None])[0, :, :, 0]
    np.testing.assert_array_equal(y, np.zeros((4, 4)))


@pytest.mark.parametrize("n,f,s", [(6, 3, 1), (7, 3, 2), (28, 5, 1), (13, 4, 3), (9, 1, 2)])
def test_output_size_formulas(n, f, s):
    """'valid' gives floor((n + 2p - f) / s) + 1 with p = 0; 'same' keeps ceil(n / s)."""
    x = np.zeros((1, n, n, 1), np.float32)
    w = np.zeros((f, f, 1, 1), np.float32)
    assert ops.conv2d(x, w, None, s, "valid").shape[1:3] == ((n - f) // s + 1,) * 2
    assert ops.conv2d(x, w, None, s, "same").shape[1:3] == (math.ceil(n / s),) * 2
    # With symmetric padding p (an odd kernel, stride 1) 'same' is p = (f - 1) / 2.
    if f % 2 and s == 1:
        p = (f - 1) // 2
        assert (n + 2 * p - f) // s + 1 == n


# ----- bad input -------------------------------------------------------------------
def test_bad_input_is_rejected_before_the_kernel(rng):
    x, w = random(rng, (2, 5, 5, 3)), random(rng, (3, 3, 3, 4))
    with pytest.raises(ValueError, match="conv2d: expected x of rank 4"):
        ops.conv2d(x[0], w)
    with pytest.raises(ValueError, match="expects C = kernel.shape\\[2\\] = 2 input channels"):
        ops.conv2d(x, w[:, :, :2])
    with pytest.raises(TypeError, match="share one dtype"):
        ops.conv2d(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="must be float32 or float64, got dtype int64"):
        ops.conv2d(x.astype(np.int64), w)
    with pytest.raises(ValueError, match="larger than the input"):
        ops.conv2d(x, random(rng, (7, 3, 3, 4)))
    with pytest.raises(ValueError, match="strides > 1 together with dilation_rate > 1"):
        ops.conv2d(x, w, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="expected strides to be a positive int"):
        ops.conv2d(x, w, strides=0)
    with pytest.raises(ValueError, match="expected dilation_rate to be a positive int"):
        ops.conv2d(x, w, dilation_rate=(1, -1))
    with pytest.raises(ValueError, match="strides .* below 2\\^31, got 9223372036854775808"):
        ops.conv2d(x, w, strides=2**63, padding="same")
    with pytest.raises(ValueError, match="expected padding"):
        ops.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="expected padding"):
        ops.conv2d(x, w, padding="causal")  # conv1d only
    with pytest.raises(ValueError, match="fused activation must be 'linear' or 'relu'"):
        ops.conv2d(x, w, activation="tanh")
    with pytest.raises(ValueError, match="expected bias of shape \\(4,\\)"):
        ops.conv2d(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="expected dy of shape \\(2, 3, 3, 4\\)"):
        ops.conv2d_backward(np.zeros((2, 4, 4, 4), np.float32), x, w)
    with pytest.raises(ValueError, match="needs the forward output y"):
        ops.conv2d_backward(np.zeros((2, 3, 3, 4), np.float32), x, w, activation="relu")
    with pytest.raises(ValueError, match="must be greater than output_padding"):
        ops.conv2d_transpose(x, random(rng, (3, 3, 4, 3)), strides=2, output_padding=2)
    with pytest.raises(ValueError, match="Cin = kernel.shape\\[3\\]"):
        ops.conv2d_transpose(x, w)


def test_bindings_check_shapes_against_the_geometry(rng):
    x, w = random(rng, (2, 5, 5, 3)), random(rng, (3, 3, 3, 4))
    geometry = (2, 5, 5, 3, 3, 3, 4, 3, 3, 1, 1, 1, 1, 0, 0)
    with pytest.raises(ValueError,
                       match="y must have shape \\(2, 3, 3, 4\\), got \\(2, 3, 3, 5\\)"):
        _C.conv2d_forward_cpu(x, w, None, np.empty((2, 3, 3, 5), np.float32), geometry, "linear")
    with pytest.raises(ValueError, match="invalid geometry"):
        _C.conv2d_forward_cpu(x, w, None, np.empty((2, 3, 3, 4), np.float32),
                              geometry[:9] + (0,) + geometry[10:], "linear")
    with pytest.raises(ValueError, match="dkernel needs x"):
        _C.conv2d_backward_cpu(None, None, np.zeros((2, 3, 3, 4), np.float32), w, None,
                               np.empty_like(w), None, geometry, "linear")


# ----- CUDA: parity with the CPU kernels (needs a GPU) -----------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("tf32", [False, True])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cuda_matches_cpu(case, activation, tf32, rng):
    cp = pytest.importorskip("cupy")
    N, H, W, C, Fo, KH, KW, strides, padding, dilation = case
    x, w, b = random(rng, (N, H, W, C)), random(rng, (KH, KW, C, Fo)), random(rng, (Fo,))
    y = ops.conv2d(x, w, b, strides, padding, dilation, activation)
    dy = random(rng, y.shape)
    grads = ops.conv2d_backward(dy, x, w, y, strides, padding, dilation, activation)
    gx, gw, gb, gdy = (cp.asarray(a) for a in (x, w, b, dy))
    y_gpu = ops.conv2d(gx, gw, gb, strides, padding, dilation, activation, tf32=tf32)
    grads_gpu = ops.conv2d_backward(gdy, gx, gw, cp.asarray(y), strides, padding, dilation,
                                    activation, tf32=tf32)
    # TF32 keeps 10 mantissa bits of each input: ~1e-3 relative per product.
    tol = 5e-3 if tf32 else 2e-4
    for gpu, cpu in zip((y_gpu, *grads_gpu), (y, *grads)):
        scale = max(float(np.abs(cpu).max()), 1.0)
        np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=tol, atol=tol * scale)


@pytest.mark.cuda
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_cuda_transpose_and_conv1d_match_cpu(case, rng):
    cp = pytest.importorskip("cupy")
    N, H, W, Cin, Cout, KH, KW, strides, padding, output_padding, dilation = case
    x, w, b = random(rng, (N, H, W, Cin)), random(rng, (KH, KW, Cout, Cin)), \
        random(rng, (Cout,))
    args = (strides, padding, output_padding, dilation, "relu")
    y = ops.conv2d_transpose(x, w, b, *args)
    dy = random(rng, y.shape)
    grads = ops.conv2d_transpose_backward(dy, x, w, y, *args)
    y_gpu = ops.conv2d_transpose(cp.asarray(x), cp.asarray(w), cp.asarray(b), *args)
    grads_gpu = ops.conv2d_transpose_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w),
                                              cp.asarray(y), *args)
    for gpu, cpu in zip((y_gpu, *grads_gpu), (y, *grads)):
        close(cp.asnumpy(gpu), cpu)
    x1, w1 = random(rng, (N, 2 * H + 1, Cin)), random(rng, (KW, Cin, Cout))
    close(cp.asnumpy(ops.conv1d(cp.asarray(x1), cp.asarray(w1), None, 1, "causal")),
          ops.conv1d(x1, w1, None, 1, "causal"))


@pytest.mark.cuda
def test_cuda_kernels_write_every_output(rng):
    cp = pytest.importorskip("cupy")
    for case in (CASES[5], CASES[8]):
        N, H, W, C, Fo, KH, KW, strides, padding, dilation = case
        x, w = cp.asarray(random(rng, (N, H, W, C))), cp.asarray(random(rng, (KH, KW, C, Fo)))
        geometry = ops._conv2d_geometry("test", x.shape, w.shape, strides, padding, dilation)
        stream = fd.backend.current_stream_ptr()
        y = cp.full(ops._output_shape(geometry), cp.nan, cp.float32)
        _C.conv2d_forward_cuda(x, w, None, y, geometry, "relu", False, stream)
        dx, dw, db = cp.full(x.shape, cp.nan, cp.float32), cp.full(w.shape, cp.nan, cp.float32), \
            cp.full((Fo,), cp.nan, cp.float32)
        _C.conv2d_backward_cuda(x, y, cp.ones_like(y), w, dx, dw, db, geometry, "relu", False,
                                stream)
        for out in (y, dx, dw, db):
            assert bool(cp.isfinite(out).all())


# ----- CUDA: the float32 kernel simulated on the CPU (no GPU needed) ---------------
# Runs implicit_gemm_kernel's phases from csrc/cuda/conv.cu for every block and
# thread of the launch, in the kernel's order, with shared memory poisoned
# (NaN tiles, garbage tables) at each block's start; then the tensor-core
# epilogue's staging path on the same sums. Inputs and outputs are raw files.
_SIMULATION = r"""
#include "conv.cu"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
using namespace fusednn;
using namespace fusednn::cuda::conv_detail;

static std::vector<float> read(const char* path, size_t n) {
  std::vector<float> v(n);
  FILE* f = std::fopen(path, "rb");
  if (!f || std::fread(v.data(), sizeof(float), n, f) != n) { std::perror(path); std::exit(2); }
  std::fclose(f);
  return v;
}
static void write(const std::string& path, const std::vector<float>& v) {
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(v.data(), sizeof(float), v.size(), f);
  std::fclose(f);
}

template <class P>
void simulate(const P& p, Index k_chunk, bool staged) {
  alignas(128) static float tile_memory[kSharedFloats];
  static typename P::Row rows[kBM];
  static typename P::Col cols[2 * kBK];
  const Shared<P> s{tile_memory, tile_memory + kBK * kLdA, tile_memory, rows, cols};
  std::vector<Registers> regs(kThreads);
  std::vector<Accumulators> acc(kThreads);
  const Index splits = ceil_div(p.K, k_chunk);
  for (Index bx = 0; bx < ceil_div(p.M, kBM); ++bx)
  for (Index by = 0; by < ceil_div(p.N, kBN); ++by)
  for (Index bz = 0; bz < splits; ++bz) {
    for (float& v : tile_memory) v = NAN;
    std::memset((void*)rows, 0xA5, sizeof(rows));
    std::memset((void*)cols, 0xA5, sizeof(cols));
    const Index m0 = bx * kBM, n0 = by * kBN, k_begin = bz * k_chunk;
    const Index k_end = std::min(p.K, k_begin + k_chunk);
    const Index tiles = ceil_div(k_end - k_begin, kBK);
    for (int t = 0; t < kThreads; ++t) {
      set_up_rows(p, s, t, m0);
      set_up_cols(p, s, t, k_begin, k_end, 0);
    }
    for (int t = 0; t < kThreads; ++t) {
      load_tile(p, s, t, m0, n0, k_begin, k_end, 0, regs[t]);
      acc[t] = Accumulators{};
    }
    for (Index i = 0; i < tiles; ++i) {
      const Index k_next = k_begin + (i + 1) * kBK;
      const int next = int((i + 1) & 1);
      for (int t = 0; t < kThreads; ++t) {
        store_tile(s, t, regs[t]);
        if (i + 1 < tiles) set_up_cols(p, s, t, k_next, k_end, next);
      }
      for (int t = 0; t < kThreads; ++t) {
        if (i + 1 < tiles) load_tile(p, s, t, m0, n0, k_next, k_end, next, regs[t]);
        fma_tile(s.a, s.b, t, acc[t]);
      }
    }
    if (!staged) {
      for (int t = 0; t < kThreads; ++t) store_accumulators(p, t, m0, n0, acc[t]);
      continue;
    }
    // What the warps' store_matrix_sync leaves in the staging area: the whole C tile.
    for (int t = 0; t < kThreads; ++t) {
      const int ty = t / (kBN / kTN), tx = t % (kBN / kTN);
      for (int i = 0; i < kTM; ++i)
        for (int j = 0; j < kTN; ++j) {
          s.stage[(ty * kTM + i) * kLdC + tx * kTN + j] = acc[t].c[i][j];
        }
    }
    for (int t = 0; t < kThreads; ++t) store_staged(p, s.stage, t, m0, n0);
  }
}

int main(int argc, char** argv) {
  // argv: dir, kind (0 forward, 1 data grad, 2 kernel grad, 3 bias grad), relu, staged,
  // multiprocessors, geometry (15 numbers)
  const std::string dir = argv[1];
  const int kind = std::atoi(argv[2]);
  const bool relu = std::atoi(argv[3]) != 0, staged = std::atoi(argv[4]) != 0;
  const int sms = std::atoi(argv[5]);
  Index v[15];
  for (int i = 0; i < 15; ++i) v[i] = std::atoll(argv[6 + i]);
  const Conv2dShape sh{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                       v[8], v[9], v[10], v[11], v[12], v[13], v[14]};
  const Geometry g = geometry_of(sh);
  const size_t nx = sh.N * sh.H * sh.W * sh.C, ny = sh.N * sh.OH * sh.OW * sh.F;
  const size_t nw = sh.KH * sh.KW * sh.C * sh.F;
  auto path = [&](const char* name) { return dir + "/" + name; };
  std::vector<float> x = read(path("x").c_str(), nx), w = read(path("w").c_str(), nw);
  std::vector<float> dy = read(path("dy").c_str(), ny), y = read(path("y").c_str(), ny);
  std::vector<float> b = read(path("b").c_str(), std::max(sh.C, sh.F));
  const float* y_if_relu = relu ? y.data() : nullptr;
  std::vector<float> out;
  if (kind == 0) {
    out.assign(ny, NAN);
    const Index M = sh.N * sh.OH * sh.OW, K = sh.KH * sh.KW * sh.C;
    if (relu) {
      simulate(ForwardProblem<Epilogue::kRelu>{g, M, sh.F, K, x.data(), w.data(), b.data(),
                                               out.data()}, K, staged);
    } else {
      simulate(ForwardProblem<Epilogue::kLinear>{g, M, sh.F, K, x.data(), w.data(), b.data(),
                                                 out.data()}, K, staged);
    }
  } else if (kind == 1) {
    out.assign(nx, NAN);
    const Index M = sh.N * sh.H * sh.W, K = sh.KH * sh.KW * sh.F;
    if (relu) {
      simulate(DataGradProblem<true, Epilogue::kLinear>{g, M, sh.C, K, dy.data(), y_if_relu,
                                                        w.data(), nullptr, out.data()}, K, staged);
    } else {
      simulate(DataGradProblem<false, Epilogue::kLinear>{g, M, sh.C, K, dy.data(), y_if_relu,
                                                         w.data(), nullptr, out.data()}, K, staged);
    }
  } else if (kind == 2) {
    out.assign(nw, 0.f);
    const Index M = sh.KH * sh.KW * sh.C, K = sh.N * sh.OH * sh.OW;
    const Index chunk = filter_k_chunk(M, sh.F, K, sms);
    if (relu) {
      simulate(FilterGradProblem<true>{g, M, sh.F, K, x.data(), dy.data(), y_if_relu,
                                       out.data()}, chunk, staged);
    } else {
      simulate(FilterGradProblem<false>{g, M, sh.F, K, x.data(), dy.data(), y_if_relu,
                                        out.data()}, chunk, staged);
    }
  } else {
    // Blocks of 5 rows, kBiasRowLanes lanes each, as bias_grad_kernel splits them.
    out.assign(sh.F, 0.f);
    const Index rows = sh.N * sh.OH * sh.OW, per_block = 5;
    for (Index f = 0; f < sh.F; ++f) {
      for (Index r0 = 0; r0 < rows; r0 += per_block) {
        const Index end = std::min(rows, r0 + per_block);
        for (Index lane = 0; lane < kBiasRowLanes; ++lane) {
          out[f] += relu ? column_sum<true>(dy.data(), y.data(), sh.F, f, r0 + lane, end,
                                            kBiasRowLanes)
                         : column_sum<false>(dy.data(), y.data(), sh.F, f, r0 + lane, end,
                                             kBiasRowLanes);
        }
      }
    }
  }
  write(path("out"), out);
  return 0;
}
"""


@pytest.fixture(scope="module")
def simulator(compile_cuda_for_host):
    return compile_cuda_for_host(_SIMULATION, needs="conv.cu", name="conv_simulation")


# Shapes that cut tiles at every edge: M and N not multiples of 128 / 64, K not
# a multiple of 16, several k tiles, padding, strides, dilation, 1x1.
SIMULATED = [
    (2, 9, 11, 5, 70, 3, 3, (1, 1), "same", (1, 1)),
    (3, 10, 7, 20, 3, 3, 2, (2, 2), "same", (1, 1)),
    (1, 13, 13, 3, 5, 3, 3, (1, 1), "valid", (2, 2)),
    (2, 6, 6, 17, 9, 1, 1, (2, 2), "valid", (1, 1)),
]


@pytest.mark.parametrize("case", SIMULATED, ids=case_id)
def test_cuda_float32_kernel_simulated_on_the_cpu(case, simulator, tmp_path, rng):
    N, H, W, C, Fo, KH, KW, strides, padding, dilation = case
    x, w = random(rng, (N, H, W, C)), random(rng, (KH, KW, C, Fo))
    b = random(rng, (max(C, Fo),))
    geometry = ops._conv2d_geometry("test", x.shape, w.shape, strides, padding, dilation)
    y = ops.conv2d(x, w, b[:Fo], strides, padding, dilation, "relu")
    dy = random(rng, y.shape)
    for name, array in dict(x=x, w=w, dy=dy, y=y, b=b).items():
        array.tofile(tmp_path / name)
    dx, dw, db = ops.conv2d_backward(dy, x, w, y, strides, padding, dilation, "relu")
    dx_lin, dw_lin, db_lin = ops.conv2d_backward(dy, x, w, None, strides, padding, dilation)
    expected = {
        (0, 1): (y, y.shape), (0, 0): (ops.conv2d(x, w, b[:Fo], strides, padding, dilation),
                                       y.shape),
        (1, 1): (dx, x.shape), (1, 0): (dx_lin, x.shape),
        (2, 1): (dw, w.shape), (2, 0): (dw_lin, w.shape),
        (3, 1): (db, (Fo,)), (3, 0): (db_lin, (Fo,)),
    }
    for (kind, relu), (reference, shape) in expected.items():
        for staged in ((False, True) if kind < 3 else (False,)):
            for sms in ((1, 132) if kind == 2 else (132,)):
                subprocess.run([str(simulator), str(tmp_path), str(kind), str(relu),
                                str(int(staged)), str(sms), *map(str, geometry)], check=True)
                out = np.fromfile(tmp_path / "out", dtype=np.float32).reshape(shape)
                assert np.isfinite(out).all()
                close(out, reference)
