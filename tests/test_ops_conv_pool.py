"""conv2d + bias + relu/linear + max pooling (fusednn.ops.conv_pool) and its use
inside Sequential (fusednn.fusion), against independent references.

- NumPy: the conv as a sum over the kernel taps of sliding windows of the
  explicitly padded input (Keras's padding recomputed here), and the max
  pooling as plain loops over windows with pooling.h's argmax rule, in float64.
- PyTorch (oracle, float64): conv2d -> relu -> max_pool2d for the gradients;
  finite differences in float64.
- The fused CUDA kernel: its block phases and pooling epilogue compiled by nvcc
  as host code and replayed thread by thread on the CPU (no GPU needed), and
  CPU parity on a GPU (marked cuda).

Tolerances: float32 against float64 references, rtol = atol = 2e-4 of the
largest reference value (each conv output sums at most a few hundred float32
products; max pooling only selects). TF32 keeps 10 mantissa bits of each
input: 5e-3. float64 results are held to 1e-10.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

import fusednn as fd
from fusednn import _C, fusion, layers
from fusednn.ops import conv_pool as ops
from fusednn.ops import conv as conv_ops
from gradcheck import numeric_directional_derivative

torch = pytest.importorskip("torch")
F = torch.nn.functional


# ----- independent references ---------------------------------------------------
# test_ops_conv's float64 tap-by-tap conv2d and Keras's per-axis output/padding arithmetic.
from test_ops_conv import keras_axis, numpy_conv2d  # noqa: E402


def numpy_conv(x, w, b, strides, padding, dilation, activation):
    """act(conv(x, w) + b) in float64."""
    z = numpy_conv2d(x, w, b, strides, padding, dilation)
    return np.maximum(z, 0) if activation == "relu" else z


def numpy_max_pool(z, pool):
    """(y, argmax) of windows pool = strides, 'valid', by loops: first maximum, NaN wins."""
    N, OH, OW, Fo = z.shape
    PH, PW = pool
    y = np.empty((N, OH // PH, OW // PW, Fo))
    argmax = np.empty(y.shape, np.int64)
    for n in range(N):
        for i in range(OH // PH):
            for j in range(OW // PW):
                for f in range(Fo):
                    best, at = None, None
                    for oh in range(i * PH, i * PH + PH):
                        for ow in range(j * PW, j * PW + PW):
                            v = z[n, oh, ow, f]
                            if best is None or v > best or (np.isnan(v) and not np.isnan(best)):
                                best, at = v, oh * OW + ow
                    y[n, i, j, f], argmax[n, i, j, f] = best, at
    return y, argmax


def reference(x, w, b, strides, padding, dilation, activation, pool):
    z = numpy_conv(x, w, b, strides, padding, dilation, activation)
    return (z, *numpy_max_pool(z, pool))


def close(actual, expected, tol):
    expected = np.asarray(expected, np.float64)
    scale = max(float(np.abs(expected).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol,
                               atol=tol * scale)


def tolerance(dtype):
    return 2e-4 if np.dtype(dtype) == np.float32 else 1e-10


def random(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def at_argmax(z, argmax):
    """z (N, OH, OW, F) read at argmax (N, POH, POW, F) positions."""
    N, OH, OW, Fo = z.shape
    flat = z.reshape(N, OH * OW, Fo)
    a = argmax.reshape(N, -1, Fo).astype(np.int64)
    return np.take_along_axis(flat, a, axis=1).reshape(argmax.shape)


# (N, H, W, C, F, KH, KW, strides, padding, dilation, pool): odd conv outputs whose
# last row/column no window covers, batch 1, stride-2 conv, 'same' and 'valid',
# dilation, 3x3 and non-square windows, a 1x1 window, the lecture CNN's first pair.
CASES = [
    (2, 9, 9, 3, 5, 3, 3, (1, 1), "valid", (1, 1), (2, 2)),
    (1, 11, 13, 2, 4, 3, 3, (2, 2), "same", (1, 1), (2, 2)),
    (2, 10, 11, 3, 6, 3, 3, (1, 1), "same", (1, 1), (3, 3)),
    (3, 12, 9, 4, 3, 2, 3, (1, 1), "valid", (1, 1), (2, 3)),
    (1, 13, 12, 2, 5, 3, 3, (1, 1), "valid", (2, 2), (2, 2)),
    (2, 7, 8, 3, 4, 3, 2, (2, 1), "same", (1, 1), (1, 2)),
    (2, 6, 6, 2, 3, 3, 3, (1, 1), "same", (1, 1), (1, 1)),
    (2, 28, 28, 1, 32, 3, 3, (1, 1), "valid", (1, 1), (2, 2)),
]


def case_id(case):
    N, H, W, C, Fo, KH, KW, s, p, d, pool = case
    return f"{N}x{H}x{W}x{C}-k{KH}x{KW}-f{Fo}-s{s[0]}{s[1]}-{p}-d{d[0]}{d[1]}-p{pool[0]}{pool[1]}"


def conv_args(case):
    return case[7], case[8], case[9]


# ----- the NumPy path against the references --------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_matches_numpy(case, activation, dtype, rng):
    N, H, W, C, Fo, KH, KW, strides, padding, dilation, pool = case
    x, w, b = random(rng, (N, H, W, C), dtype), random(rng, (KH, KW, C, Fo), dtype), \
        random(rng, (Fo,), dtype)
    z, expected, expected_argmax = reference(x, w, b, strides, padding, dilation, activation,
                                             pool)
    y, argmax = ops.conv2d_max_pool2d(x, w, b, strides, padding, dilation, activation, pool,
                                      training=True)
    assert y.dtype == dtype and y.shape == expected.shape and argmax.shape == y.shape
    close(y, expected, tolerance(dtype))
    # The maximum sits where argmax says (float32 rounding may reorder near-ties).
    close(at_argmax(z, argmax), expected, tolerance(dtype))
    if dtype == np.float64:
        np.testing.assert_array_equal(argmax, expected_argmax)
    y_inference, no_argmax = ops.conv2d_max_pool2d(x, w, b, strides, padding, dilation,
                                                   activation, pool)
    assert no_argmax is None
    np.testing.assert_array_equal(y_inference, y)


def test_nan_wins_its_window_and_ties_go_to_the_first(rng):
    x = np.zeros((1, 4, 4, 1), np.float64)
    w = np.ones((1, 1, 1, 1))
    x[0, 2, 3, 0] = np.nan
    y, argmax = ops.conv2d_max_pool2d(x, w, None, activation="relu", pool_size=2,
                                      training=True)
    assert np.isnan(y[0, 1, 1, 0]) and argmax[0, 1, 1, 0] == 2 * 4 + 3
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 0], [0, np.nan]])
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[0, 2], [8, 11]])  # all-zero windows


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", CASES[:7], ids=case_id)
def test_gradients_match_torch(case, activation, rng):
    N, H, W, C, Fo, KH, KW, strides, padding, dilation, pool = case
    x, w, b = random(rng, (N, H, W, C)), random(rng, (KH, KW, C, Fo)), random(rng, (Fo,))
    xt, wt, bt = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b))
    _, top, bottom = keras_axis(H, KH, strides[0], dilation[0], padding)
    _, left, right = keras_axis(W, KW, strides[1], dilation[1], padding)
    zt = F.conv2d(F.pad(xt.permute(0, 3, 1, 2), (left, right, top, bottom)),
                  wt.permute(3, 2, 0, 1), bt, stride=strides, dilation=dilation)
    if activation == "relu":
        zt = torch.relu(zt)
    yt = F.max_pool2d(zt, pool, pool).permute(0, 2, 3, 1)
    dy = random(rng, tuple(yt.shape))
    yt.backward(torch.from_numpy(dy.astype(np.float64)))

    y, argmax = ops.conv2d_max_pool2d(x, w, b, strides, padding, dilation, activation, pool,
                                      training=True)
    close(y, yt.detach().numpy(), 2e-4)
    grads = ops.conv2d_max_pool2d_backward(dy, x, w, y, argmax, strides, padding, dilation,
                                           activation, pool)
    for grad, expected in zip(grads, (xt.grad, wt.grad, bt.grad)):
        close(grad, expected.numpy(), 2e-4)


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[4]], ids=case_id)
def test_gradients_match_finite_differences(case, rng):
    N, H, W, C, Fo, KH, KW, strides, padding, dilation, pool = case
    x, w, b = (rng.standard_normal(s) for s in ((N, H, W, C), (KH, KW, C, Fo), (Fo,)))
    args = (strides, padding, dilation, "relu", pool)
    y, argmax = ops.conv2d_max_pool2d(x, w, b, *args, training=True)
    dy = rng.standard_normal(y.shape)

    def loss(x_, w_, b_):
        return float(np.sum(ops.conv2d_max_pool2d(x_, w_, b_, *args)[0] * dy))

    grads = ops.conv2d_max_pool2d_backward(dy, x, w, y, argmax, *args)
    for grad, array in zip(grads, (x, w, b)):
        direction = rng.standard_normal(grad.shape)
        numeric = numeric_directional_derivative(lambda: loss(x, w, b), array, direction)
        # A relu kink or a change of maximum inside [-eps, eps] would break this;
        # with random data it does not.
        assert numeric == pytest.approx(float(np.sum(grad * direction)), rel=1e-6, abs=1e-8)


def test_backward_computes_only_what_is_asked(rng):
    x, w, b = random(rng, (2, 7, 7, 3)), random(rng, (3, 3, 3, 4)), random(rng, (4,))
    y, argmax = ops.conv2d_max_pool2d(x, w, b, activation="relu", training=True)
    dy = random(rng, y.shape)
    full = ops.conv2d_max_pool2d_backward(dy, x, w, y, argmax, activation="relu")
    dx, dw, db = ops.conv2d_max_pool2d_backward(dy, x, w, y, argmax, activation="relu",
                                                kernel_grad=False, bias_grad=False)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, full[0])


# ----- bad input ---------------------------------------------------------------------
def test_bad_input_is_rejected_before_the_kernel(rng):
    x, w = random(rng, (2, 5, 5, 3)), random(rng, (3, 3, 3, 4))
    with pytest.raises(ValueError, match="conv2d_max_pool2d: the pooling window \\(4, 4\\) is "
                                         "larger than the conv output \\(2, 3, 3, 4\\)"):
        ops.conv2d_max_pool2d(x, w, pool_size=4)
    with pytest.raises(ValueError, match="conv2d_max_pool2d: expected pool_size to be a "
                                         "positive int"):
        ops.conv2d_max_pool2d(x, w, pool_size=(2, 0))
    with pytest.raises(ValueError, match="conv2d_max_pool2d: expected x of rank 4"):
        ops.conv2d_max_pool2d(x[0], w)
    with pytest.raises(ValueError, match="expected bias of shape \\(4,\\)"):
        ops.conv2d_max_pool2d(x, w, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="share one dtype"):
        ops.conv2d_max_pool2d(x, w.astype(np.float64))
    with pytest.raises(ValueError, match="fused activation must be 'linear' or 'relu'"):
        ops.conv2d_max_pool2d(x, w, activation="sigmoid")
    with pytest.raises(TypeError, match="training must be a bool"):
        ops.conv2d_max_pool2d(x, w, training="yes")
    y, argmax = ops.conv2d_max_pool2d(x, w, activation="relu", pool_size=1, training=True)
    dy = np.ones_like(y)
    with pytest.raises(ValueError, match="conv2d_max_pool2d_backward: expected dy of shape "
                                         "\\(2, 3, 3, 4\\)"):
        ops.conv2d_max_pool2d_backward(dy[:, :2], x, w, y, argmax, activation="relu",
                                       pool_size=1)
    with pytest.raises(ValueError, match="activation 'relu' needs the forward output y"):
        ops.conv2d_max_pool2d_backward(dy, x, w, None, argmax, activation="relu", pool_size=1)
    with pytest.raises(TypeError, match="expected argmax as returned by conv2d_max_pool2d"):
        ops.conv2d_max_pool2d_backward(dy, x, w, y, argmax.astype(np.float32),
                                       activation="relu", pool_size=1)
    with pytest.raises(TypeError, match="expected argmax as returned by conv2d_max_pool2d"):
        ops.conv2d_max_pool2d_backward(dy, x, w, y, None, pool_size=1)


def test_binding_checks_shapes_against_the_geometry(rng):
    if not _C.build_info()["cuda_compiled"]:
        pytest.skip("the CUDA entry point exists but only raises without CUDA kernels")
    # CPU arrays are refused by the CUDA entry point's device constraint before anything else.
    x, w = random(rng, (1, 4, 4, 1)), random(rng, (1, 1, 1, 1))
    with pytest.raises(TypeError):
        _C.conv2d_max_pool2d_forward_cuda(x, w, None, np.empty((1, 2, 2, 1), np.float32), None,
                                          (1, 4, 4, 1, 4, 4, 1, 1, 1, 1, 1, 1, 1, 0, 0), (2, 2),
                                          "linear", False, 0)


# ----- Sequential: pairing and the fused step -----------------------------------------
def lecture_cnn(seed=7, first_activation="relu", pool_kwargs=None):
    fd.utils.set_random_seed(seed)
    return fd.Sequential([
        layers.Conv2D(8, (3, 3), activation=first_activation, input_shape=(13, 12, 2)),
        layers.MaxPooling2D(**(pool_kwargs or {})),
        layers.Conv2D(6, (3, 3), activation="linear", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(5, activation="softmax"),
    ])


def test_pairs_that_fuse():
    model = lecture_cnn()
    steps = fusion.plan(model.layers, "cuda")
    assert [type(s).__name__ for s in steps] == ["ConvPool", "ConvPool", "Flatten", "Dense"]
    assert fusion.plan(model.layers, "cpu") == model.layers
    assert model.fused_layers == []  # the model is on the CPU
    for kwargs in (dict(strides=1), dict(padding="same"), dict(pool_size=2, strides=(2, 1))):
        steps = fusion.plan(lecture_cnn(pool_kwargs=kwargs).layers, "cuda")
        assert type(steps[0]).__name__ == "Conv2D", kwargs
    steps = fusion.plan(lecture_cnn(first_activation="tanh").layers, "cuda")
    assert type(steps[0]).__name__ == "Conv2D"
    relu_conv = layers.Conv2D(4, 3, activation="relu")
    assert fusion.fusable(relu_conv, layers.MaxPooling2D((8, 16)))  # 128 rows: one block tile
    assert not fusion.fusable(relu_conv, layers.MaxPooling2D((11, 12)))
    assert not fusion.fusable(relu_conv, layers.AveragePooling2D())
    assert not fusion.fusable(layers.Conv1D(4, 3), layers.MaxPooling1D())
    assert not fusion.fusable(layers.Conv2D(4, 3, activation="relu", dtype="float64"),
                              layers.MaxPooling2D())


@pytest.fixture
def fused_on_cpu(monkeypatch):
    """Sequential plans as on the GPU: the fused steps run the ops' NumPy composition."""
    plan = fusion.plan
    monkeypatch.setattr(fusion, "plan", lambda model_layers, device: plan(model_layers, "cuda"))


def gradients_of(model, x, y_true):
    loss = fd.losses.get("sparse_categorical_crossentropy")
    model.zero_grad()
    y = model.forward(x, training=True)
    _, dy = loss.value_and_grad(y_true, y)
    dx = model.backward(dy)
    return y, dx, [fd.backend.to_numpy(g) for g in model.get_gradients()]


def test_fused_sequential_matches_unfused(fused_on_cpu, rng):
    x = random(rng, (4, 13, 12, 2))
    y_true = rng.integers(0, 5, 4)
    unfused = lecture_cnn()
    reference = gradients_of(unfused, x, y_true)
    fused = lecture_cnn()
    assert fused.fused_layers == [(fused.layers[0].name, fused.layers[1].name),
                                  (fused.layers[2].name, fused.layers[3].name)]
    monkeypatched = gradients_of(fused, x, y_true)
    np.testing.assert_allclose(monkeypatched[0], reference[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(monkeypatched[1], reference[1], rtol=1e-4, atol=1e-6)
    for g, r in zip(monkeypatched[2], reference[2]):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
    # The layers alone have no valid cache after a fused step.
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        fused.layers[1].backward(np.zeros((4, 5, 5, 8), np.float32))


def test_fused_training_step_and_frozen_conv(fused_on_cpu, rng):
    x, y_true = random(rng, (6, 13, 12, 2)), rng.integers(0, 5, 6)
    model = lecture_cnn()
    model.layers[0].trainable = False
    kernel_before = model.layers[0].kernel.value.copy()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.train_on_batch(x, y_true)
    np.testing.assert_array_equal(model.layers[0].kernel.value, kernel_before)
    assert not np.array_equal(model.layers[2].kernel.value, lecture_cnn().layers[2].kernel.value)


def test_numerics_checks_name_the_conv_of_a_fused_step(fused_on_cpu, rng):
    x, y_true = random(rng, (2, 13, 12, 2)), rng.integers(0, 5, 2)
    model = lecture_cnn()
    with fd.utils.check_numerics():
        gradients_of(model, x, y_true)  # finite: no complaint
        model.layers[2].kernel.value[0, 0, 0, 0] = np.inf
        with pytest.raises(FloatingPointError, match=f"Conv2D '{model.layers[2].name}' "
                                                     "produced non-finite values"):
            model.forward(x)


# ----- the fused CUDA kernel replayed on the CPU (no GPU needed) -----------------------
# Runs implicit_gemm_kernel's phases for PooledForwardProblem from
# csrc/cuda/conv_pool.cu for every block and thread, in the kernel's order, with
# shared memory poisoned at each block's start, then the staged epilogue that both
# math paths end in (the float32 path stages its accumulators; the tensor-core path
# stores its fragments there). Outputs are poisoned before.
_REPLAY = r"""
#include "conv_pool.cu"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
using namespace fusednn;
using namespace fusednn::cuda::conv_detail;

template <typename T>
static std::vector<T> read(const std::string& path, size_t n) {
  std::vector<T> v(n);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f || std::fread(v.data(), sizeof(T), n, f) != n) { std::perror(path.c_str()); std::exit(2); }
  std::fclose(f);
  return v;
}
template <typename T>
static void write(const std::string& path, const std::vector<T>& v) {
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(v.data(), sizeof(T), v.size(), f);
  std::fclose(f);
}

template <class P>
void replay(const P& p) {
  alignas(128) static float tile_memory[kSharedFloats];
  static typename P::Row rows[kBM];
  static typename P::Col cols[2 * kBK];
  const Shared<P> s{tile_memory, tile_memory + kBK * kLdA, tile_memory, rows, cols};
  std::vector<Registers> regs(kThreads);
  std::vector<Accumulators> acc(kThreads);
  for (Index bx = 0; bx < ceil_div(p.M, kBM); ++bx)
  for (Index by = 0; by < ceil_div(p.N, kBN); ++by) {
    for (float& v : tile_memory) v = NAN;
    std::memset((void*)rows, 0xA5, sizeof(rows));
    std::memset((void*)cols, 0xA5, sizeof(cols));
    const Index m0 = bx * kBM, n0 = by * kBN;
    const Index tiles = ceil_div(p.K, kBK);
    for (int t = 0; t < kThreads; ++t) {
      set_up_rows(p, s, t, m0);
      set_up_cols(p, s, t, 0, p.K, 0);
    }
    for (int t = 0; t < kThreads; ++t) {
      load_tile(p, s, t, m0, n0, 0, p.K, 0, regs[t]);
      acc[t] = Accumulators{};
    }
    for (Index i = 0; i < tiles; ++i) {
      const Index k_next = (i + 1) * kBK;
      const int next = int((i + 1) & 1);
      for (int t = 0; t < kThreads; ++t) {
        store_tile(s, t, regs[t]);
        if (i + 1 < tiles) set_up_cols(p, s, t, k_next, p.K, next);
      }
      for (int t = 0; t < kThreads; ++t) {
        if (i + 1 < tiles) load_tile(p, s, t, m0, n0, k_next, p.K, next, regs[t]);
        fma_tile(s.a, s.b, t, acc[t]);
      }
    }
    for (int t = 0; t < kThreads; ++t) stage_accumulators(s.stage, t, acc[t]);
    for (int t = 0; t < kThreads; ++t) store_staged(p, s.stage, t, m0, n0);
  }
}

int main(int argc, char** argv) {
  // argv: dir, relu, with bias, with argmax, geometry (15 numbers), PH, PW
  const std::string dir = std::string(argv[1]) + "/";
  const bool relu = std::atoi(argv[2]) != 0, with_bias = std::atoi(argv[3]) != 0;
  const bool with_argmax = std::atoi(argv[4]) != 0;
  Index v[17];
  for (int i = 0; i < 17; ++i) v[i] = std::atoll(argv[5 + i]);
  const Conv2dShape sh{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                       v[8], v[9], v[10], v[11], v[12], v[13], v[14]};
  const Index PH = v[15], PW = v[16];
  const size_t nx = sh.N * sh.H * sh.W * sh.C, nw = sh.KH * sh.KW * sh.C * sh.F;
  const size_t ny = sh.N * (sh.OH / PH) * (sh.OW / PW) * sh.F;
  std::vector<float> x = read<float>(dir + "x", nx), w = read<float>(dir + "w", nw);
  std::vector<float> b = read<float>(dir + "b", sh.F);
  std::vector<float> y(ny, NAN);
  std::vector<std::int32_t> argmax(ny, -1);
  const float* bias = with_bias ? b.data() : nullptr;
  std::int32_t* arg = with_argmax ? argmax.data() : nullptr;
  if (relu) {
    replay(pooled_forward_problem<Epilogue::kRelu>(sh, PH, PW, x.data(), w.data(), bias,
                                                   y.data(), arg));
  } else {
    replay(pooled_forward_problem<Epilogue::kLinear>(sh, PH, PW, x.data(), w.data(), bias,
                                                     y.data(), arg));
  }
  write(dir + "y", y);
  write(dir + "argmax", argmax);
  return 0;
}
"""


@pytest.fixture(scope="module")
def replayer(compile_cuda_for_host):
    return compile_cuda_for_host(_REPLAY, needs="conv_pool.cu", name="conv_pool_replay")


# Tiles cut at every edge: windows of 4, 6 and 9 rows (9 leaves padding rows at the
# end of each 128-row block), several row blocks, F past one 64-column block, K not a
# multiple of 16 and several k tiles, conv rows and columns that no window covers.
REPLAYED = [
    (2, 13, 12, 3, 70, 3, 3, (1, 1), "valid", (1, 1), (2, 2)),
    (2, 16, 14, 5, 9, 3, 3, (1, 1), "same", (1, 1), (3, 3)),
    (3, 11, 13, 20, 5, 3, 2, (2, 2), "same", (1, 1), (2, 3)),
    (1, 15, 15, 2, 3, 3, 3, (1, 1), "valid", (2, 2), (1, 1)),
]


@pytest.mark.parametrize("case", REPLAYED, ids=case_id)
def test_cuda_kernel_replayed_on_the_cpu(case, replayer, tmp_path, rng):
    N, H, W, C, Fo, KH, KW, strides, padding, dilation, pool = case
    x, w, b = random(rng, (N, H, W, C)), random(rng, (KH, KW, C, Fo)), random(rng, (Fo,))
    for name, array in dict(x=x, w=w, b=b).items():
        array.tofile(tmp_path / name)
    geometry = conv_ops._conv2d_geometry("test", x.shape, w.shape, strides, padding, dilation)
    for activation in ("linear", "relu"):
        for with_bias in (True, False):
            z, expected, expected_argmax = reference(x, w, b if with_bias else None, strides,
                                                     padding, dilation, activation, pool)
            for with_argmax in (True, False):
                subprocess.run([str(replayer), str(tmp_path), str(int(activation == "relu")),
                                str(int(with_bias)), str(int(with_argmax)), *map(str, geometry),
                                *map(str, pool)], check=True)
                y = np.fromfile(tmp_path / "y", np.float32).reshape(expected.shape)
                argmax = np.fromfile(tmp_path / "argmax", np.int32).reshape(expected.shape)
                assert np.isfinite(y).all()
                close(y, expected, 2e-4)
                if with_argmax:
                    # Exact: relu's zeros tie (the first wins) and this data has no near-ties
                    # within float32 rounding (the replay's summation order is fixed).
                    np.testing.assert_array_equal(argmax, expected_argmax)
                else:
                    assert (argmax == -1).all()


# ----- CUDA: parity with the CPU path (needs a GPU) ------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("tf32", [False, True])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_cuda_matches_cpu(case, activation, tf32, rng):
    cp = pytest.importorskip("cupy")
    N, H, W, C, Fo, KH, KW, strides, padding, dilation, pool = case
    x, w, b = random(rng, (N, H, W, C)), random(rng, (KH, KW, C, Fo)), random(rng, (Fo,))
    args = (strides, padding, dilation, activation, pool)
    z = numpy_conv(x, w, b, strides, padding, dilation, activation)
    y, argmax = ops.conv2d_max_pool2d(x, w, b, *args, training=True)
    dy = random(rng, y.shape)
    grads = ops.conv2d_max_pool2d_backward(dy, x, w, y, argmax, *args)
    gx, gw, gb = cp.asarray(x), cp.asarray(w), cp.asarray(b)
    y_gpu, argmax_gpu = ops.conv2d_max_pool2d(gx, gw, gb, *args, training=True, tf32=tf32)
    y_inference, _ = ops.conv2d_max_pool2d(gx, gw, gb, *args, tf32=tf32)
    grads_gpu = ops.conv2d_max_pool2d_backward(cp.asarray(dy), gx, gw, y_gpu, argmax_gpu, *args,
                                               tf32=tf32)
    tol = 5e-3 if tf32 else 2e-4
    close(cp.asnumpy(y_gpu), y, tol)
    np.testing.assert_array_equal(cp.asnumpy(y_inference), cp.asnumpy(y_gpu))
    close(at_argmax(z, cp.asnumpy(argmax_gpu)), y, tol)
    if not tf32:
        # Where the GPU chose another maximum than the CPU (a near-tie), the gradient goes
        # elsewhere; with random data there are none at this tolerance.
        for gpu, cpu in zip(grads_gpu, grads):
            close(cp.asnumpy(gpu), cpu, tol)


@pytest.mark.cuda
def test_cuda_kernel_writes_every_output(rng):
    cp = pytest.importorskip("cupy")
    for case in (CASES[2], CASES[4], CASES[7]):
        N, H, W, C, Fo, KH, KW, strides, padding, dilation, pool = case
        x, w = cp.asarray(random(rng, (N, H, W, C))), cp.asarray(random(rng, (KH, KW, C, Fo)))
        geometry = conv_ops._conv2d_geometry("test", x.shape, w.shape, strides, padding,
                                             dilation)
        shape = (N, geometry[4] // pool[0], geometry[5] // pool[1], Fo)
        for tf32 in (False, True):
            y = cp.full(shape, cp.nan, cp.float32)
            argmax = cp.full(shape, -1, cp.int32)
            _C.conv2d_max_pool2d_forward_cuda(x, w, None, y, argmax, geometry, pool, "relu",
                                              tf32, fd.backend.current_stream_ptr())
            assert bool(cp.isfinite(y).all()) and bool((argmax >= 0).all())


@pytest.mark.cuda
def test_cuda_sequential_fuses_and_matches_the_cpu(rng):
    cp = pytest.importorskip("cupy")
    x, y_true = random(rng, (4, 13, 12, 2)), rng.integers(0, 5, 4)
    cpu_model = lecture_cnn()
    reference = gradients_of(cpu_model, x, y_true)
    gpu_model = lecture_cnn().to("cuda")
    assert len(gpu_model.fused_layers) == 2
    y, dx, grads = gradients_of(gpu_model, cp.asarray(x), cp.asarray(y_true))
    close(cp.asnumpy(y), reference[0], 2e-4)
    close(cp.asnumpy(dx), reference[1], 2e-4)
    for g, r in zip(grads, reference[2]):
        close(g, r, 2e-4)
