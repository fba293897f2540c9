"""CPU GEMM (fusednn.ops.gemm.matmul over _C.gemm) against NumPy.

Tolerances: every element of C is a K-term dot product. Summed in any order in
precision eps, its rounding error is at most about K * eps/2 * sum_k |a_ik b_kj|
(the standard dot-product bound). The reference is float64 np.matmul of the same
(possibly float32) inputs, so the allowed difference per element is
(K + 2) * eps * (|alpha| * (|op(a)| @ |op(b)|) + |beta| * |c|): the kernel's
bound with a factor 2 to spare, plus the alpha / beta / K-block roundings.
A wrong index, a missed edge tile or a lost K block is off by O(1), far above it.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from fusednn import _C
from fusednn.ops import gemm

DTYPES = [np.float32, np.float64]

# Tiles of the AVX-512 build: MR=8 and float NR=32, double NR=16 (AVX2: 6 x 16
# and 6 x 8). KC, MC and NC follow the CPU's caches (gemm_kernels.h): KC is
# 256..512, MC at most L2/4 / (KC * 4 bytes), NC at most 4096. The shapes
# cover single elements, primes, exact tiles, one past a tile, several K, M and N
# blocks, and both ways of splitting C between two threads (over M and over N).
SHAPES = [
    (1, 1, 1), (3, 7, 17), (17, 31, 3), (31, 67, 129), (67, 129, 31), (129, 17, 67),
    (8, 32, 256), (9, 33, 257), (7, 31, 255), (6, 16, 8), (7, 17, 9), (14, 32, 384),
    (29, 65, 769), (1, 257, 5), (257, 1, 5), (337, 96, 50), (20, 700, 64),
]

LARGE_SHAPES = [(800, 100, 400), (8, 6200, 40), (600, 2100, 300)]


def operand(rng, rows, cols, dtype, trans):
    """A random matrix whose op() is (rows, cols): stored transposed when trans."""
    x = rng.standard_normal((cols, rows) if trans else (rows, cols))
    return np.ascontiguousarray(x.astype(dtype))


def op(x, trans):
    return x.T if trans else x


def assert_gemm_close(got, a, b, trans_a, trans_b, alpha=1.0, beta=0.0, c0=None):
    """got vs alpha * op(a) @ op(b) + beta * c0 computed in float64."""
    A = op(a, trans_a).astype(np.float64)
    B = op(b, trans_b).astype(np.float64)
    expected = alpha * (A @ B)
    magnitude = abs(alpha) * (np.abs(A) @ np.abs(B))
    if beta != 0.0:
        expected += beta * c0.astype(np.float64)
        magnitude += abs(beta) * np.abs(c0.astype(np.float64))
    K = A.shape[1]
    eps = np.finfo(got.dtype).eps
    tolerance = (K + 2) * eps * magnitude + np.finfo(got.dtype).tiny
    error = np.abs(got.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(error - tolerance), error.shape) if error.size else None
    assert np.all(error <= tolerance), (
        f"max error {error.max():.3g} at {worst}, tolerance there {tolerance[worst]:.3g}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_matches_numpy(rng, M, N, K, trans_a, trans_b, dtype):
    a = operand(rng, M, K, dtype, trans_a)
    b = operand(rng, K, N, dtype, trans_b)
    out = np.full((M, N), np.nan, dtype=dtype)  # beta = 0 must overwrite, never read
    result = gemm.matmul(a, b, out=out, trans_a=trans_a, trans_b=trans_b)
    assert result is out
    assert_gemm_close(out, a, b, trans_a, trans_b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K", LARGE_SHAPES)
def test_several_blocks_in_every_dimension(rng, M, N, K, dtype):
    a = operand(rng, M, K, dtype, False)
    b = operand(rng, K, N, dtype, True)
    assert_gemm_close(gemm.matmul(a, b, trans_b=True), a, b, False, True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-2.0, 0.5), (0.25, -3.0)])
def test_alpha_beta_accumulate(rng, alpha, beta, trans_a, trans_b, dtype):
    M, N, K = 37, 70, 600  # K > 512 >= KC: later K blocks accumulate onto the first
    a = operand(rng, M, K, dtype, trans_a)
    b = operand(rng, K, N, dtype, trans_b)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    out = c0.copy()
    gemm.matmul(a, b, out=out, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    assert_gemm_close(out, a, b, trans_a, trans_b, alpha, beta, c0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_alpha_zero_scales_c_without_reading_a_or_b(rng, dtype):
    # BLAS semantics: alpha == 0 skips the product, so NaN in a or b does not reach C.
    a = np.full((5, 6), np.nan, dtype=dtype)
    b = rng.standard_normal((6, 7)).astype(dtype)
    c0 = rng.standard_normal((5, 7)).astype(dtype)
    out = c0.copy()
    gemm.matmul(a, b, out=out, alpha=0.0, beta=2.0)
    np.testing.assert_array_equal(out, 2 * c0)
    out[:] = np.nan
    gemm.matmul(a, b, out=out, alpha=0.0, beta=0.0)
    np.testing.assert_array_equal(out, np.zeros((5, 7), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K", [(0, 5, 3), (5, 0, 3), (0, 0, 0), (5, 3, 0), (1, 1, 0)])
def test_empty_dimensions(rng, M, N, K, dtype):
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    out = np.full((M, N), np.nan, dtype=dtype)
    gemm.matmul(a, b, out=out)
    np.testing.assert_array_equal(out, np.zeros((M, N), dtype))  # an empty sum is 0
    c0 = rng.standard_normal((M, N)).astype(dtype)
    out = c0.copy()
    gemm.matmul(a, b, out=out, beta=3.0)
    np.testing.assert_allclose(out, 3 * c0, rtol=np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(rng, dtype):
    base_a = rng.standard_normal((40, 66)).astype(dtype)
    base_b = rng.standard_normal((33, 90)).astype(dtype)
    cases = [
        (base_a[:, ::2], base_b[:, ::3]),             # strided: copied
        (base_a[::-1, :33], base_b[::-1]),            # negative strides: copied
        (np.asfortranarray(base_a[:, :33]), base_b),  # Fortran order: read as a transpose
        (base_a[:, :33].copy(), base_b.T.copy().T),   # b is a transposed view
    ]
    for a, b in cases:
        for trans in (False, True):
            x = a.T if trans else a  # op(x) = a either way
            got = gemm.matmul(x, b, trans_a=trans)
            assert got.flags.c_contiguous
            assert_gemm_close(got, a, b, False, False)


def test_float32_and_float64_results_keep_their_dtype(rng):
    for dtype in DTYPES:
        a = rng.standard_normal((4, 5)).astype(dtype)
        assert gemm.matmul(a, a, trans_b=True).dtype == dtype


def test_accepts_lists():
    got = gemm.matmul([[1.0, 2.0], [3.0, 4.0]], [[5.0], [6.0]])
    np.testing.assert_array_equal(got, [[17.0], [39.0]])


@pytest.mark.parametrize("a_shape,b_shape,kwargs,error,match", [
    ((3,), (3, 4), {}, ValueError, r"matmul: a must be 2-D, got shape \(3,\)"),
    ((2, 3), (2, 3, 4), {}, ValueError, r"matmul: b must be 2-D, got shape \(2, 3, 4\)"),
    ((2, 3), (4, 5), {}, ValueError,
     r"matmul: inner dimensions differ: op\(a\) is \(M, K\) = \(2, 3\).*op\(b\) is \(4, 5\)"),
    ((2, 3), (2, 5), {"trans_a": False}, ValueError, r"K = 3 rows"),
    ((3, 2), (3, 5), {"trans_a": True, "beta": 1.0}, ValueError, r"beta = 1.0 .* out must be given"),
])
def test_bad_shapes_raise(a_shape, b_shape, kwargs, error, match):
    a = np.ones(a_shape, np.float32)
    b = np.ones(b_shape, np.float32)
    with pytest.raises(error, match=match):
        gemm.matmul(a, b, **kwargs)


def test_bad_dtypes_raise():
    f32 = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match=r"matmul: a must be float32 or float64, got dtype int64"):
        gemm.matmul(np.ones((2, 2), np.int64), f32)
    with pytest.raises(TypeError, match=r"matmul: b must be float32 or float64, got dtype float16"):
        gemm.matmul(f32, np.ones((2, 2), np.float16))
    with pytest.raises(TypeError, match=r"same dtype, got float32 and float64"):
        gemm.matmul(f32, np.ones((2, 2), np.float64))
    with pytest.raises(TypeError, match=r"alpha must be a real number"):
        gemm.matmul(f32, f32, alpha="2")


def test_bad_out_raises():
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"out must have shape \(3, 5\), got \(5, 3\)"):
        gemm.matmul(a, b, out=np.empty((5, 3), np.float32))
    with pytest.raises(TypeError, match=r"out must have the dtype of a and b \(float32\), got float64"):
        gemm.matmul(a, b, out=np.empty((3, 5), np.float64))
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        gemm.matmul(a, b, out=np.empty((5, 3), np.float32).T)
    readonly = np.empty((3, 5), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=r"out must be writeable"):
        gemm.matmul(a, b, out=readonly)
    square = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"out overlaps a"):
        gemm.matmul(square, square.copy(), out=square)
    with pytest.raises(TypeError, match=r"out must be a numpy.ndarray, got list"):
        gemm.matmul(a, b, out=[[0.0] * 5] * 3)


def test_binding_rechecks_shapes():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"gemm: shapes disagree"):
        _C.gemm(a, np.ones((5, 2), np.float32), np.empty((3, 2), np.float32), False, False, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"gemm: shapes disagree"):
        _C.gemm(a, np.ones((4, 2), np.float32), np.empty((3, 3), np.float32), False, False, 1.0, 0.0)
    with pytest.raises(TypeError):  # mixed dtypes match neither overload
        _C.gemm(a, np.ones((4, 2), np.float64), np.empty((3, 2), np.float32), False, False, 1.0, 0.0)


def batched_reference(a, b, trans_a, trans_b):
    """float64 np.matmul over the batch; a 2-D operand is shared by every product."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return np.matmul(np.swapaxes(a, -1, -2) if trans_a else a,
                     np.swapaxes(b, -1, -2) if trans_b else b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("batch,M,N,K,shared", [
    (5, 7, 9, 11, None), (3, 33, 40, 65, "a"), (4, 17, 31, 200, "b"), (1, 5, 6, 7, None),
    (0, 4, 5, 6, None), (6, 64, 96, 100, "b"),
])  # with 2 threads, batches 3 and 4 run products side by side, batch 6 each on both threads
def test_batched_matches_numpy(rng, batch, M, N, K, shared, trans_a, trans_b, dtype):
    a_shape = (K, M) if trans_a else (M, K)
    b_shape = (N, K) if trans_b else (K, N)
    a = rng.standard_normal(a_shape if shared == "a" else (batch, *a_shape)).astype(dtype)
    b = rng.standard_normal(b_shape if shared == "b" else (batch, *b_shape)).astype(dtype)
    out = np.full((batch, M, N), np.nan, dtype)
    assert gemm.batched_matmul(a, b, out=out, trans_a=trans_a, trans_b=trans_b) is out
    expected = batched_reference(a, b, trans_a, trans_b)
    tolerance = (K + 2) * np.finfo(dtype).eps * batched_reference(np.abs(a), np.abs(b), trans_a, trans_b)
    assert np.all(np.abs(out - expected) <= tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_accumulates_and_copies_strided_input(rng, dtype):
    a = rng.standard_normal((4, 12, 30)).astype(dtype)[:, :, ::2]  # (4, 12, 15), strided
    b = rng.standard_normal((4, 15, 8)).astype(dtype)
    c0 = rng.standard_normal((4, 12, 8)).astype(dtype)
    out = c0.copy()
    gemm.batched_matmul(a, b, out=out, alpha=-1.5, beta=0.5)
    expected = -1.5 * batched_reference(a, b, False, False) + 0.5 * c0
    magnitude = 1.5 * batched_reference(np.abs(a), np.abs(b), False, False) + 0.5 * np.abs(c0)
    assert np.all(np.abs(out - expected) <= 17 * np.finfo(dtype).eps * magnitude)


def test_batched_bad_input_raises():
    f32 = np.ones((3, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"batched_matmul: a or b must be 3-D .* use matmul"):
        gemm.batched_matmul(np.ones((4, 5), np.float32), np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"different numbers of matrices: 3 and 2"):
        gemm.batched_matmul(f32, np.ones((2, 5, 6), np.float32))
    with pytest.raises(ValueError, match=r"batched_matmul: b must be 2-D or 3-D, got shape \(5,\)"):
        gemm.batched_matmul(f32, np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"inner dimensions differ"):
        gemm.batched_matmul(f32, np.ones((3, 4, 6), np.float32))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 4, 6\), got \(4, 6\)"):
        gemm.batched_matmul(f32, np.ones((5, 6), np.float32), out=np.empty((4, 6), np.float32))
    with pytest.raises(ValueError, match=r"gemm_batched: shapes disagree"):
        _C.gemm_batched(f32, np.ones((2, 5, 6), np.float32), np.empty((3, 4, 6), np.float32),
                        False, False, 1.0, 0.0)


def test_simd_path_is_named():
    assert _C.gemm_simd_path() in ("avx512", "avx2", "vec128", "portable")
    assert _C.build_info()["simd"] == _C.gemm_simd_path()  # fd.info reports the kernel's path


_THREADED_SCRIPT = """
import numpy as np
from fusednn.ops import gemm
rng = np.random.default_rng(7)
# Shapes that give 3 or 4 threads grids of 3x1, 1x3, 2x2 and 4x1 with an idle row block.
for M, N, K in [(28, 96, 200), (28, 256, 100), (40, 256, 100), (100, 200, 100), (300, 70, 90)]:
    for dtype, tol in ((np.float32, 1e-3), (np.float64, 1e-11)):
        a = rng.standard_normal((M, K)).astype(dtype)
        b = rng.standard_normal((N, K)).astype(dtype)
        got = gemm.matmul(a, b, out=np.full((M, N), np.nan, dtype), trans_b=True)
        want = a.astype(np.float64) @ b.astype(np.float64).T
        err = np.abs(got - want).max()
        assert err < tol * K, (M, N, K, dtype, err)
print("ok")
"""


@pytest.mark.parametrize("threads", [3, 4])
def test_more_threads_than_this_machine_has(threads):
    # The thread grid (how C is split over M and N) changes with the thread count;
    # the count is fixed at process start, so each runs in its own interpreter.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", _THREADED_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.cuda
def test_cupy_arrays_use_cupy_matmul(rng):
    cp = pytest.importorskip("cupy")
    a = rng.standard_normal((33, 20)).astype(np.float32)
    b = rng.standard_normal((17, 20)).astype(np.float32)
    c0 = rng.standard_normal((33, 17)).astype(np.float32)
    out = cp.asarray(c0)
    gemm.matmul(cp.asarray(a), cp.asarray(b), out=out, trans_b=True, alpha=2.0, beta=0.5)
    assert_gemm_close(cp.asnumpy(out), a, b, False, True, 2.0, 0.5, c0)
