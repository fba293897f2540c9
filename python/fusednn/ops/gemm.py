"""Matrix multiply: out = alpha * op(a) @ op(b) + beta * out, op(x) = x or x.T.

NumPy arrays run on fusednn's CPU GEMM (C++, packed and cache-blocked, AVX-512 /
AVX2 micro-kernel, OpenMP threads; see csrc/include/fusednn/gemm.h). CuPy
arrays run on cupy.matmul (cuBLAS), so callers need not care where they are.

Shapes: op(a) (M, K), op(b) (K, N), out (M, N).

Rules at this boundary:
- a and b are 2-D float32 or float64 arrays of the same dtype; any other dtype
  is a TypeError (no silent change of precision). Python lists become NumPy
  arrays first.
- Memory layout: a C-contiguous input is used as it is; a Fortran-contiguous one
  (such as `x.T` of a C-contiguous `x`) is read through its transpose, without a
  copy; any other strides (slices with steps, negative strides) are copied to a
  C-contiguous array first.
- out, when given, must be a C-contiguous, writeable (M, N) array of the same
  dtype that does not overlap a or b; it is never copied, only written.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import _C, backend

_OP = "matmul"


def matmul(a, b, out=None, trans_a=False, trans_b=False, *, alpha=1.0, beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out, with op(x) = x.T when trans_x.

    a: (M, K), or (K, M) when trans_a. b: (K, N), or (N, K) when trans_b.
    out: (M, N) to write into (allocated when None). beta != 0 accumulates onto
    out and so needs out; beta == 0 never reads out (NaN or garbage there is
    simply overwritten). Returns out.
    """
    xp = backend.get_array_module(a, b, out)
    a = _as_matrix(xp, a, "a")
    b = _as_matrix(xp, b, "b")
    if a.dtype != b.dtype:
        raise TypeError(f"{_OP}: a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    alpha = _real_scalar(alpha, "alpha")
    beta = _real_scalar(beta, "beta")
    trans_a, trans_b = bool(trans_a), bool(trans_b)

    M, K = a.shape[::-1] if trans_a else a.shape
    K_b, N = b.shape[::-1] if trans_b else b.shape
    if K_b != K:
        raise ValueError(
            f"{_OP}: inner dimensions differ: op(a) is (M, K) = {(M, K)}, so op(b) must have "
            f"K = {K} rows, but op(b) is {(K_b, N)} "
            f"(a {tuple(a.shape)} trans_a={trans_a}, b {tuple(b.shape)} trans_b={trans_b})")

    if out is None:
        if beta != 0.0:
            raise ValueError(f"{_OP}: beta = {beta} accumulates onto out, so out must be given")
        out = xp.empty((M, N), dtype=a.dtype)
    else:
        _check_out(xp, out, a, b, (M, N))

    if xp is not np:
        product = xp.matmul(a.T if trans_a else a, b.T if trans_b else b)
        if beta == 0.0:
            xp.multiply(product, alpha, out=out)
        else:
            out *= beta
            out += alpha * product
        return out

    a, trans_a = _row_major(a, trans_a)
    b, trans_b = _row_major(b, trans_b)
    _C.gemm(a, b, out, trans_a, trans_b, alpha, beta)
    return out


def _as_matrix(xp, x, name):
    if xp is np and not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{_OP}: {name} must be a 2-D matrix, got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{_OP}: {name} must be float32 or float64, got dtype {x.dtype}")
    return x


def _real_scalar(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_OP}: {name} must be a real number, got {value!r}")
    return float(value)


def _check_out(xp, out, a, b, shape):
    if not isinstance(out, xp.ndarray):
        raise TypeError(f"{_OP}: out must be a {xp.__name__}.ndarray, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"{_OP}: out must have shape (M, N) = {shape}, got {tuple(out.shape)}")
    if out.dtype != a.dtype:
        raise TypeError(f"{_OP}: out must have the dtype of a and b ({a.dtype}), got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{_OP}: out must be C-contiguous (it is written in place, never copied), "
                         f"got strides {out.strides}")
    if xp is np and not out.flags.writeable:
        raise ValueError(f"{_OP}: out must be writeable, got a read-only array")
    for name, x in (("a", a), ("b", b)):
        if xp.may_share_memory(out, x):
            raise ValueError(f"{_OP}: out overlaps {name} in memory; pass a separate output array")


def _row_major(x, trans):
    """(C-contiguous array, trans flag) with op(x) unchanged, copying only when needed."""
    if x.flags.c_contiguous:
        return x, trans
    if x.flags.f_contiguous:
        return x.T, not trans
    return np.ascontiguousarray(x), trans
