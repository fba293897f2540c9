"""The GEMM with a packed right operand (_C.gemm_packed: PackedMatrix + gemm_packed,
the recurrent layers' per-step product) against NumPy.

Tolerance as in test_ops_gemm.py: each element of C is a K-term dot product, whose
rounding error in precision eps is at most about K * eps/2 * sum_k |a_ik b_kj|;
the reference is float64 np.matmul of the same inputs, so the allowed difference is
(K + 2) * eps * (|a| @ |op(b)| + |beta| * |c|). A wrong index, a lost K block or a
missed edge column is off by O(1), far above it. Outputs start as NaN so that
every element the kernel fails to write (or reads with beta == 0) shows.
"""
import numpy as np
import pytest

from fusednn import _C

DTYPES = [np.float32, np.float64]

# Rows 1..9 cover every remainder of the AVX2 and vec128 (6-row), AVX-512 (8-row) and
# portable (4-row) tiles, including one row (a batch of one); columns one off the
# 8/16/32-wide slivers; K 1, odd, one past the 256-deep K block, and several K blocks.
# The wide shapes split the columns between threads, and from 2^16 packed elements on
# (the last five) the packing too, one of them with a partial last sliver.
SHAPES = [
    (1, 1, 1), (1, 17, 64), (2, 33, 7), (3, 16, 31), (4, 31, 257), (5, 8, 3), (6, 48, 129),
    (7, 15, 300), (8, 64, 64), (9, 40, 513), (13, 257, 100), (70, 33, 19), (16, 1024, 256),
    (64, 2048, 512), (1, 2048, 512), (3, 4000, 65), (5, 1001, 130),
]


def expected_and_tolerance(a, b_op, beta, c0):
    A = a.astype(np.float64)
    B = b_op.astype(np.float64)
    expected = A @ B
    magnitude = np.abs(A) @ np.abs(B)
    if beta != 0.0:
        expected += beta * c0.astype(np.float64)
        magnitude += abs(beta) * np.abs(c0.astype(np.float64))
    eps = np.finfo(a.dtype).eps
    return expected, (A.shape[1] + 2) * eps * magnitude + np.finfo(a.dtype).tiny


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_gemm_packed_matches_numpy(M, N, K, trans_b, dtype):
    rng = np.random.default_rng(M * 10007 + N * 101 + K)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = np.ascontiguousarray(rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype))
    c = np.full((M, N), np.nan, dtype)
    _C.gemm_packed(a, b, c, trans_b=trans_b)
    expected, tolerance = expected_and_tolerance(a, b.T if trans_b else b, 0.0, None)
    error = np.abs(c.astype(np.float64) - expected)
    assert np.all(error <= tolerance), f"worst error {error.max()} at {np.argmax(error)}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K", [(1, 37, 300), (7, 19, 5), (64, 130, 257)])
def test_gemm_packed_accumulates_with_beta(M, N, K, dtype):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    c = c0.copy()
    _C.gemm_packed(a, b, c, beta=0.5)
    expected, tolerance = expected_and_tolerance(a, b, 0.5, c0)
    assert np.all(np.abs(c.astype(np.float64) - expected) <= tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_packed_empty_k_scales_c(dtype):
    a = np.zeros((3, 0), dtype)
    b = np.zeros((0, 5), dtype)
    c = np.full((3, 5), np.nan, dtype)
    _C.gemm_packed(a, b, c)
    assert np.array_equal(c, np.zeros((3, 5), dtype))  # beta == 0 never reads c
    c = np.full((3, 5), 2.0, dtype)
    _C.gemm_packed(a, b, c, beta=3.0)
    assert np.array_equal(c, np.full((3, 5), 6.0, dtype))


def test_gemm_packed_rejects_mismatched_shapes():
    a = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"gemm_packed: shapes disagree.*op\(b\) \(5, 6\)"):
        _C.gemm_packed(a, np.zeros((5, 6), np.float32), np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match="gemm_packed: shapes disagree"):
        _C.gemm_packed(a, np.zeros((4, 6), np.float32), np.zeros((3, 7), np.float32))
    with pytest.raises(TypeError):  # mixed dtypes are not converted
        _C.gemm_packed(a, np.zeros((4, 6), np.float64), np.zeros((3, 6), np.float32))
