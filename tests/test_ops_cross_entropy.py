"""Fused softmax cross-entropy (fusednn.ops): losses and dlogits against a NumPy
reference (computed in float64), central finite differences in float64,
PyTorch's F.cross_entropy as an oracle, NaN-poisoned outputs, edge shapes,
numerical extremes, the casting rules and bad input; CPU vs CUDA parity where a
GPU exists."""
import numpy as np
import pytest

import fusednn._C as _C
from fusednn import backend, ops
from gradcheck import numeric_gradient

# Tolerances. float64: the kernels and the reference differ only by rounding
# (a few ulp of values of order log C), so 1e-12 relative is tight yet safe.
# float32: exp is a 1-ulp polynomial and the row sums accumulate ~log2(C) ulp,
# so 1e-5 relative on losses (order log C) and 1e-6 * grad_scale absolute on
# dlogits (entries bounded by grad_scale) leave a margin of ~10x.
TOL = {
    np.float64: dict(loss_rtol=1e-12, loss_atol=1e-13, grad_atol=1e-14),
    np.float32: dict(loss_rtol=1e-5, loss_atol=1e-6, grad_atol=1e-6),
}

SHAPES = [(0, 5), (1, 1), (1, 7), (13, 1), (17, 31), (64, 10), (5, 1031), (3, 4099)]


def reference_dense(logits, targets, grad_scale):
    """losses (N,), dlogits (N, C) of -sum_c t log softmax(x), in float64 with a max shift."""
    x = logits.astype(np.float64)
    t = targets.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    shifted = x - m
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_softmax = shifted - log_sum
    # A zero target contributes nothing, also where log_softmax is -inf.
    losses = -(t * np.where(t == 0, 0.0, log_softmax)).sum(axis=1)
    dlogits = (np.exp(log_softmax) * t.sum(axis=1, keepdims=True) - t) * grad_scale
    return losses, dlogits


def reference_sparse(logits, labels, grad_scale):
    onehot = np.zeros(logits.shape)
    onehot[np.arange(len(labels)), labels] = 1.0
    return reference_dense(logits, onehot, grad_scale)


def assert_close(got, want, dtype, grad_scale):
    (losses, dlogits), (ref_losses, ref_dlogits) = got, want
    tol = TOL[dtype]
    assert losses.dtype == dtype and dlogits.dtype == dtype
    np.testing.assert_allclose(losses, ref_losses, rtol=tol["loss_rtol"], atol=tol["loss_atol"])
    np.testing.assert_allclose(dlogits, ref_dlogits, rtol=0, atol=tol["grad_atol"] * grad_scale)


def make_problem(rng, shape, dtype, spread=4.0):
    N, C = shape
    logits = (rng.standard_normal(shape) * spread).astype(dtype)
    labels = rng.integers(0, C, size=N)
    targets = rng.dirichlet(np.ones(C), size=N).astype(dtype) if N else np.zeros(shape, dtype)
    return logits, labels, targets


def run_poisoned(kind, logits, y, grad_scale):
    """Calls the CPU kernel directly with NaN-filled outputs: an unwritten element stays NaN."""
    N, C = logits.shape
    losses = np.full((N,), np.nan, dtype=logits.dtype)
    dlogits = np.full((N, C), np.nan, dtype=logits.dtype)
    if kind == "sparse":
        _C.sparse_softmax_cross_entropy_cpu(logits, y.astype(np.int64), losses, dlogits, grad_scale)
    else:
        _C.softmax_cross_entropy_cpu(logits, y.astype(logits.dtype), losses, dlogits, grad_scale)
    return losses, dlogits


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_sparse_matches_reference(rng, shape, dtype):
    logits, labels, _ = make_problem(rng, shape, dtype)
    scale = 1.0 / max(shape[0], 1)
    want = reference_sparse(logits, labels, scale)
    assert_close(ops.sparse_softmax_cross_entropy(logits, labels), want, dtype, scale)
    assert_close(run_poisoned("sparse", logits, labels, scale), want, dtype, scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_dense_matches_reference(rng, shape, dtype):
    logits, _, targets = make_problem(rng, shape, dtype)
    scale = 1.0 / max(shape[0], 1)
    want = reference_dense(logits, targets, scale)
    assert_close(ops.softmax_cross_entropy(logits, targets), want, dtype, scale)
    assert_close(run_poisoned("dense", logits, targets, scale), want, dtype, scale)


def test_dense_targets_need_not_sum_to_one(rng):
    logits, _, _ = make_problem(rng, (9, 6), np.float64)
    targets = rng.random((9, 6)) * 3.0  # row sums anywhere in (0, 18)
    assert_close(ops.softmax_cross_entropy(logits, targets, grad_scale=0.5),
                 reference_dense(logits, targets, 0.5), np.float64, 0.5)


def test_many_rows_use_all_threads(rng):
    # Large enough (N * C >= 2^15) for the OpenMP row loop to run in parallel.
    logits, labels, targets = make_problem(rng, (2003, 67), np.float32)
    assert_close(ops.sparse_softmax_cross_entropy(logits, labels),
                 reference_sparse(logits, labels, 1 / 2003), np.float32, 1 / 2003)
    assert_close(ops.softmax_cross_entropy(logits, targets),
                 reference_dense(logits, targets, 1 / 2003), np.float32, 1 / 2003)


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_gradient_matches_finite_differences(rng, kind):
    logits, labels, targets = make_problem(rng, (4, 7), np.float64, spread=2.0)
    scale = 0.37
    fn = ops.sparse_softmax_cross_entropy if kind == "sparse" else ops.softmax_cross_entropy
    y = labels if kind == "sparse" else targets

    def objective(x):  # grad_scale * sum of losses, whose gradient dlogits is
        return scale * fn(x, y)[0].sum()

    _, dlogits = fn(logits, y, grad_scale=scale)
    numeric = numeric_gradient(lambda: objective(logits), logits)
    # Central differences: truncation O(h^2) ~ 1e-12, rounding ~ 1e-16 / h ~ 1e-10.
    np.testing.assert_allclose(dlogits, numeric, rtol=0, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits, labels, targets = make_problem(rng, (23, 11), dtype)
    tol = TOL[dtype]
    for y, torch_y, fn in [(labels, torch.from_numpy(labels), ops.sparse_softmax_cross_entropy),
                           (targets, torch.from_numpy(targets), ops.softmax_cross_entropy)]:
        x = torch.tensor(logits, requires_grad=True)
        mean_loss = F.cross_entropy(x, torch_y)  # mean over the batch, like grad_scale = 1/N
        mean_loss.backward()
        losses, dlogits = fn(logits, y)
        np.testing.assert_allclose(losses.mean(), mean_loss.item(), rtol=tol["loss_rtol"])
        np.testing.assert_allclose(dlogits, x.grad.numpy(), rtol=0, atol=tol["grad_atol"] / 23)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_are_stable(rng, dtype):
    # exp(1e4) overflows in any precision: only the max shift keeps this finite.
    logits, labels, targets = make_problem(rng, (6, 9), dtype)
    shifted = (logits + dtype(1e4)).astype(dtype)
    for fn, y in [(ops.sparse_softmax_cross_entropy, labels), (ops.softmax_cross_entropy, targets)]:
        losses, dlogits = fn(shifted, y)
        assert np.isfinite(losses).all() and np.isfinite(dlogits).all()
        want_losses, want_dlogits = fn(logits, y)  # softmax is shift-invariant
        # float32 logits near 1e4 are quantised to 1e4 * 2^-24 ~ 6e-4 per entry.
        atol = 4e-3 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(losses, want_losses, rtol=0, atol=atol)
        np.testing.assert_allclose(dlogits, want_dlogits, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_logits(rng, dtype):
    # -inf logits (masked classes) get zero probability and a zero gradient entry;
    # zero targets on them contribute nothing (not 0 * -inf = NaN).
    logits, _, _ = make_problem(rng, (5, 8), dtype)
    logits[:, [1, 6]] = -np.inf
    labels = np.array([0, 2, 3, 7, 5])
    targets = rng.dirichlet(np.ones(8), size=5).astype(dtype)
    targets[:, [1, 6]] = 0
    for fn, y, ref in [(ops.sparse_softmax_cross_entropy, labels, reference_sparse(logits, labels, 0.2)),
                       (ops.softmax_cross_entropy, targets, reference_dense(logits, targets, 0.2))]:
        losses, dlogits = fn(logits, y)
        assert np.isfinite(losses).all() and np.isfinite(dlogits).all()
        assert (dlogits[:, [1, 6]] == 0).all()
        assert_close((losses, dlogits), ref, dtype, 0.2)


@pytest.mark.parametrize("dtype, lowest", [(np.float64, -708.0), (np.float32, -87.0)])
def test_softmax_is_accurate_over_the_whole_exp_range(dtype, lowest):
    # Logits spread from the row max down to where exp leaves the normal range:
    # every gradient entry (a softmax value) keeps its relative accuracy.
    logits = np.linspace(lowest, 0.0, 997).astype(dtype)[None, :]
    logits[0, 0] = 0.0
    losses, dlogits = ops.sparse_softmax_cross_entropy(logits, [0], grad_scale=1.0)
    _, want = reference_sparse(logits, np.array([0]), 1.0)
    # float64: polynomial and reduction errors of a few ulp; float32: x - max is
    # rounded to 2^-24 relative, i.e. up to 87 * 6e-8 = 5e-6 in the exponent.
    rtol = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dlogits[0, 1:], want[0, 1:], rtol=rtol, atol=0)


def test_label_on_masked_logit_is_infinite_loss():
    logits = np.array([[0.0, -np.inf, 1.0]])
    losses, _ = ops.sparse_softmax_cross_entropy(logits, [1])
    assert losses[0] == np.inf


def test_nan_logit_makes_its_row_nan():
    logits = np.array([[0.0, np.nan, 1.0], [0.5, 0.25, 1.0]])
    losses, dlogits = ops.sparse_softmax_cross_entropy(logits, [0, 2])
    assert np.isnan(losses[0]) and np.isnan(dlogits[0]).all()
    np.testing.assert_allclose(losses[1], reference_sparse(logits[1:], np.array([2]), 0.5)[0][0])


def test_single_class_has_zero_loss_and_gradient():
    logits = np.array([[3.0], [-2.0], [0.0]], dtype=np.float32)
    losses, dlogits = ops.sparse_softmax_cross_entropy(logits, [0, 0, 0])
    assert (losses == 0).all() and (dlogits == 0).all()


def test_empty_batch():
    losses, dlogits = ops.sparse_softmax_cross_entropy(np.zeros((0, 4), np.float32),
                                                       np.zeros((0,), np.int64))
    assert losses.shape == (0,) and dlogits.shape == (0, 4) and losses.dtype == np.float32
    losses, dlogits = ops.softmax_cross_entropy(np.zeros((0, 4)), np.zeros((0, 4)))
    assert losses.shape == (0,) and dlogits.shape == (0, 4)


def test_grad_scale_scales_only_the_gradient(rng):
    logits, labels, _ = make_problem(rng, (7, 5), np.float64)
    losses_1, dlogits_1 = ops.sparse_softmax_cross_entropy(logits, labels, grad_scale=1.0)
    losses_3, dlogits_3 = ops.sparse_softmax_cross_entropy(logits, labels, grad_scale=3.0)
    _, dlogits_default = ops.sparse_softmax_cross_entropy(logits, labels)
    np.testing.assert_array_equal(losses_1, losses_3)
    np.testing.assert_allclose(dlogits_3, 3.0 * dlogits_1, rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(dlogits_default, dlogits_1 / 7, rtol=1e-15, atol=1e-16)


def test_non_contiguous_inputs_match_contiguous(rng):
    big_logits, big_labels, big_targets = make_problem(rng, (20, 18), np.float64)
    logits = big_logits[::2, ::3]          # strided view, (10, 6)
    labels = (big_labels[::2] % 6)
    targets = np.asfortranarray(big_targets[::2, ::3])
    assert not logits.flags.c_contiguous and not targets.flags.c_contiguous
    want_sparse = ops.sparse_softmax_cross_entropy(np.ascontiguousarray(logits),
                                                   np.ascontiguousarray(labels))
    got_sparse = ops.sparse_softmax_cross_entropy(logits, labels)
    want_dense = ops.softmax_cross_entropy(np.ascontiguousarray(logits),
                                           np.ascontiguousarray(targets))
    got_dense = ops.softmax_cross_entropy(logits, targets)
    for got, want in [(got_sparse, want_sparse), (got_dense, want_dense)]:
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("label_dtype", [np.int32, np.uint8, np.int16, np.float32, np.float64])
def test_label_dtypes(rng, label_dtype):
    logits, labels, _ = make_problem(rng, (8, 5), np.float32)
    want = ops.sparse_softmax_cross_entropy(logits, labels)
    got = ops.sparse_softmax_cross_entropy(logits, labels.astype(label_dtype))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_targets_are_cast_to_the_logits_dtype(rng):
    logits, _, targets = make_problem(rng, (4, 3), np.float32)
    losses, dlogits = ops.softmax_cross_entropy(logits, targets.astype(np.float64))
    assert losses.dtype == np.float32 and dlogits.dtype == np.float32
    onehot = np.eye(3, dtype=np.int64)[[0, 2, 1, 1]]
    got = ops.softmax_cross_entropy(logits, onehot)
    want = ops.sparse_softmax_cross_entropy(logits, [0, 2, 1, 1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1], atol=1e-7)


@pytest.mark.parametrize("bad", [-1, 5, 1000])
def test_out_of_range_labels_raise_index_error(bad):
    labels = np.array([0, 1, bad, 2])
    with pytest.raises(IndexError, match=rf"sparse_softmax_cross_entropy.*\[0, 5\).*got {bad}"):
        ops.sparse_softmax_cross_entropy(np.zeros((4, 5), np.float32), labels)


def test_huge_unsigned_label_is_reported_before_casting():
    labels = np.array([0, 2**63 + 5], dtype=np.uint64)
    with pytest.raises(IndexError, match=str(2**63 + 5)):
        ops.sparse_softmax_cross_entropy(np.zeros((2, 5)), labels)


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((4,), np.float32), [0] * 4),
     ValueError, r"sparse_softmax_cross_entropy: logits must be 2-D \(N, C\), got shape \(4,\)"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((4, 0), np.float32), [0] * 4),
     ValueError, r"at least one class"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((4, 3), np.int32), [0] * 4),
     TypeError, r"logits must be float32 or float64, got dtype int32"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((4, 3), np.float16), [0] * 4),
     TypeError, r"got dtype float16"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((4, 3)), [0] * 3),
     ValueError, r"labels must have shape \(N,\) = \(4,\).*got \(3,\)"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((4, 3)), np.zeros((4, 1), np.int64)),
     ValueError, r"labels must have shape"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((2, 3)), np.array([0.5, 1.0])),
     ValueError, r"whole class indices, got 0.5"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((2, 3)), np.array([np.nan, 1.0])),
     ValueError, r"whole class indices, got nan"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((2, 3)), np.array([True, False])),
     TypeError, r"labels must be an integer array, got dtype bool"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((2, 3)), [0, 1], grad_scale=np.inf),
     ValueError, r"grad_scale must be finite"),
    (lambda: ops.sparse_softmax_cross_entropy(np.zeros((2, 3)), [0, 1], grad_scale="1"),
     TypeError, r"grad_scale must be a real number"),
    (lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.zeros((2, 4))),
     ValueError, r"softmax_cross_entropy: targets must have the shape of logits \(N, C\) = \(2, 3\), got \(2, 4\)"),
    (lambda: ops.softmax_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3), complex)),
     TypeError, r"targets must be a real numeric array"),
])
def test_bad_input_is_rejected(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_binding_checks_what_a_direct_call_could_break():
    logits = np.zeros((3, 4), np.float32)
    losses, dlogits = np.empty(3, np.float32), np.empty((3, 4), np.float32)
    with pytest.raises(IndexError, match=r"\[0, 4\), got 4 at row 1"):
        _C.sparse_softmax_cross_entropy_cpu(logits, np.array([0, 4, 1]), losses, dlogits, 1.0)
    with pytest.raises(ValueError, match="shapes disagree"):
        _C.sparse_softmax_cross_entropy_cpu(logits, np.array([0, 1, 1]), losses,
                                            np.empty((3, 5), np.float32), 1.0)
    with pytest.raises(TypeError):  # non-contiguous output: never silently converted
        _C.sparse_softmax_cross_entropy_cpu(logits, np.array([0, 1, 1]), losses,
                                            np.empty((3, 8), np.float32)[:, ::2], 1.0)
    with pytest.raises(TypeError):  # mixed precision
        _C.softmax_cross_entropy_cpu(logits, np.zeros((3, 4)), losses, dlogits, 1.0)
    with pytest.raises(TypeError):  # host arrays are not CUDA arrays
        _C.sparse_softmax_cross_entropy_cuda(logits, np.array([0, 1, 1]), losses, dlogits, 1.0, 0)


# ---------------------------------------------------------------- CUDA parity

def _cupy():
    return backend.cupy_module()


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(1, 1), (37, 10), (1000, 1024), (257, 1025), (9, 50257)])
def test_cuda_matches_cpu(rng, shape):
    cp = _cupy()
    logits, labels, targets = make_problem(rng, shape, np.float32)
    scale = 1.0 / shape[0]
    for kind, cuda_fn, y in [("sparse", _C.sparse_softmax_cross_entropy_cuda, labels),
                             ("dense", _C.softmax_cross_entropy_cuda, targets)]:
        want = reference_sparse(logits, labels, scale) if kind == "sparse" else \
            reference_dense(logits, targets, scale)
        # Poisoned outputs on the device, then the op itself.
        losses = cp.full(shape[0], cp.nan, dtype=cp.float32)
        dlogits = cp.full(shape, cp.nan, dtype=cp.float32)
        y_dev = cp.asarray(y.astype(np.int64) if kind == "sparse" else y)
        cuda_fn(cp.asarray(logits), y_dev, losses, dlogits, scale, backend.current_stream_ptr())
        assert_close((losses.get(), dlogits.get()), want, np.float32, scale)
        op = ops.sparse_softmax_cross_entropy if kind == "sparse" else ops.softmax_cross_entropy
        got = op(cp.asarray(logits), y_dev)
        cpu = op(logits, y)
        np.testing.assert_allclose(got[0].get(), cpu[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1].get(), cpu[1], rtol=0, atol=1e-6 * scale)


@pytest.mark.cuda
def test_cuda_on_a_side_stream_with_masked_and_strided_inputs(rng):
    cp = _cupy()
    logits, labels, targets = make_problem(rng, (64, 40), np.float32)
    logits[:, 3] = -np.inf
    targets[:, 3] = 0
    labels[labels == 3] = 4
    with cp.cuda.Stream(non_blocking=True):
        x = cp.asarray(logits)[:, ::2]          # non-contiguous: copied by the op
        sparse = ops.sparse_softmax_cross_entropy(x, cp.asarray(labels // 2))
        dense = ops.softmax_cross_entropy(x, cp.asarray(targets)[:, ::2])
        cp.cuda.get_current_stream().synchronize()
    want_sparse = ops.sparse_softmax_cross_entropy(logits[:, ::2], labels // 2)
    want_dense = ops.softmax_cross_entropy(logits[:, ::2], targets[:, ::2])
    for got, want in [(sparse, want_sparse), (dense, want_dense)]:
        np.testing.assert_allclose(got[0].get(), want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1].get(), want[1], rtol=0, atol=1e-6 / 64)


@pytest.mark.cuda
def test_cuda_label_range_is_checked_before_the_kernel():
    cp = _cupy()
    with pytest.raises(IndexError, match=r"\[0, 3\).*got -2"):
        ops.sparse_softmax_cross_entropy(cp.zeros((3, 3), cp.float32), cp.array([0, -2, 1]))
    with pytest.raises(TypeError, match="float32"):
        ops.sparse_softmax_cross_entropy(cp.zeros((3, 3), cp.float64), cp.array([0, 1, 1]))
    with pytest.raises(TypeError, match="different devices"):
        ops.sparse_softmax_cross_entropy(cp.zeros((3, 3), cp.float32), np.array([0, 1, 1]))


# The CUDA kernel's row algorithm (per-lane online softmax states merged by a
# butterfly, then the gradient pass), compiled by nvcc as host code from the
# kernel's own source and checked against the reference: this runs without a GPU.
_ROW_SIMULATION = r"""
#include "cross_entropy.cu"
#include <cstdio>
#include <vector>
using namespace fusednn::cuda;

template <bool kDense>
void row(int lanes, const float* x, const float* t, long label, long C, float scale,
         float* loss, float* dx) {
  std::vector<RowState> s(lanes, empty_state());
  for (int l = 0; l < lanes; ++l)
    for (long c = l; c < C; c += lanes) s[l] = add_element<kDense>(s[l], x[c], kDense ? t[c] : 0.f);
  for (int offset = lanes / 2; offset > 0; offset /= 2) {  // what __shfl_xor_sync exchanges
    std::vector<RowState> next(lanes);
    for (int l = 0; l < lanes; ++l) next[l] = merge<kDense>(s[l], s[l ^ offset]);
    s = next;
  }
  const RowState r = s[0];
  const float factor = scale * (kDense ? r.target_sum : 1.f) / r.sum;
  for (long c = 0; c < C; ++c)
    dx[c] = expf(x[c] - r.max) * factor - (kDense ? t[c] * scale : (c == label ? scale : 0.f));
  *loss = kDense ? logf(r.sum) * r.target_sum - r.target_dot : logf(r.sum) - (x[label] - r.max);
}

int main() {
  int lanes, dense;
  long C, label;
  float scale;
  while (std::scanf("%d %d %ld %ld %f", &lanes, &dense, &C, &label, &scale) == 5) {
    std::vector<float> x(C), t(C), dx(C);
    float loss;
    for (auto& v : x) std::scanf("%f", &v);
    for (auto& v : t) std::scanf("%f", &v);
    (dense ? row<true> : row<false>)(lanes, x.data(), t.data(), label, C, scale, &loss, dx.data());
    std::printf("%.9g", loss);
    for (float v : dx) std::printf(" %.9g", v);
    std::printf("\n");
  }
}
"""


def test_cuda_row_algorithm_on_the_host(tmp_path, rng):
    import pathlib
    import shutil
    import subprocess

    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if pathlib.Path("/usr/local/cuda/bin/nvcc").exists() else None)
    kernel_dir = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "cuda"
    if nvcc is None or not (kernel_dir / "cross_entropy.cu").exists():
        pytest.skip("needs nvcc and the CUDA sources")
    source = tmp_path / "row_simulation.cu"
    source.write_text(_ROW_SIMULATION)
    program = tmp_path / "row_simulation"
    include = kernel_dir.parents[0] / "include"
    subprocess.run([nvcc, "-std=c++17", "--expt-relaxed-constexpr", f"-I{kernel_dir}",
                    f"-I{include}", str(source), "-o", str(program)], check=True,
                   capture_output=True)
    cases, lines = [], []
    for C in [1, 31, 33, 1031]:
        for lanes in [32, 256]:       # warp per row, block per row
            for dense in [False, True]:
                logits = (rng.standard_normal(C) * 4).astype(np.float32)
                targets = rng.dirichlet(np.ones(C)).astype(np.float32)
                label = int(rng.integers(0, C))
                if C > 5:             # masked classes, never the label
                    logits[[1, 4]], targets[[1, 4]] = -np.inf, 0
                    label = 0 if label in (1, 4) else label
                cases.append((dense, logits, targets, label))
                lines.append(f"{lanes} {int(dense)} {C} {label} 0.25 "
                             + " ".join(map(repr, logits.tolist() + targets.tolist())))
    out = subprocess.run([str(program)], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(out) == len(cases)
    for (dense, logits, targets, label), line in zip(cases, out):
        values = np.array(line.split(), dtype=np.float64)
        if dense:
            want = reference_dense(logits[None], targets[None], 0.25)
        else:
            want = reference_sparse(logits[None], np.array([label]), 0.25)
        assert_close((values[:1].astype(np.float32), values[None, 1:].astype(np.float32)),
                     want, np.float32, 0.25)
