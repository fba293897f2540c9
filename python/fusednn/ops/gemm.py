"""Matrix multiply: out = alpha * op(a) @ op(b) + beta * out, op(x) = x or x.T.

NumPy arrays run on fusednn's CPU GEMM (C++, packed and cache-blocked, AVX-512 /
AVX2 micro-kernel, OpenMP threads; see csrc/include/fusednn/gemm.h). CuPy
arrays run on cupy.matmul (cuBLAS), so callers need not care where they are.

Shapes: op(a) (M, K), op(b) (K, N), out (M, N); batched_matmul puts a batch
axis B in front of each (a 2-D operand there is shared by every product).

Rules at this boundary:
- a and b are float32 or float64 arrays of the same dtype; any other dtype is a
  TypeError (no silent change of precision). Python lists become NumPy arrays.
- Memory layout: a C-contiguous input is used as it is. For matmul, a
  Fortran-contiguous one (such as `x.T` of a C-contiguous `x`) is read through
  its transpose, without a copy. Any other strides (slices with steps, negative
  strides, non-contiguous batches) are copied to a C-contiguous array first.
- out, when given, must be a C-contiguous, writeable array of the result's shape
  and dtype that does not overlap a or b; it is never copied, only written.
- beta == 0 never reads out (NaN or garbage there is overwritten); beta != 0
  accumulates onto out, which must then be given. alpha == 0 skips the product
  (NaN in a or b does not reach out), as in BLAS.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import _C, backend, shared_cores


def matmul(a, b, out=None, trans_a=False, trans_b=False, *, alpha=1.0, beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out, with op(x) = x.T when trans_x.

    a: (M, K), or (K, M) when trans_a. b: (K, N), or (N, K) when trans_b.
    out: (M, N) to write into (allocated when None). Returns out.
    """
    name = "matmul"
    xp = backend.get_array_module(a, b, out)
    a = _as_operand(xp, name, a, "a", (2,))
    b = _as_operand(xp, name, b, "b", (2,))
    alpha, beta, trans_a, trans_b = _check_scalars(name, a, b, alpha, beta, trans_a, trans_b)
    M, K = _op_shape(a, trans_a)
    K_b, N = _op_shape(b, trans_b)
    _check_inner(name, a, b, trans_a, trans_b, (M, K), (K_b, N))
    out = _output(xp, name, out, a, b, (M, N), beta)

    if xp is not np:
        return _cupy_gemm(xp, a, b, out, trans_a, trans_b, alpha, beta)
    a, trans_a = _row_major(a, trans_a)
    b, trans_b = _row_major(b, trans_b)
    shared_cores.run(_C.gemm, a, b, out, trans_a, trans_b, alpha, beta)
    return out


def batched_matmul(a, b, out=None, trans_a=False, trans_b=False, *, alpha=1.0, beta=0.0):
    """out[i] = alpha * op(a[i]) @ op(b[i]) + beta * out[i] for every i < B.

    a: (B, M, K), or (B, K, M) when trans_a; b: (B, K, N), or (B, N, K) when
    trans_b. Either may instead be 2-D, one matrix shared by all B products
    (the same weights for every sample); at least one must be 3-D.
    out: (B, M, N) to write into (allocated when None). Returns out.
    Small products run side by side on the CPU threads, large ones one after another.
    """
    name = "batched_matmul"
    xp = backend.get_array_module(a, b, out)
    a = _as_operand(xp, name, a, "a", (2, 3))
    b = _as_operand(xp, name, b, "b", (2, 3))
    if a.ndim == 2 and b.ndim == 2:
        raise ValueError(f"{name}: a or b must be 3-D (B, rows, cols), got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}; for two matrices use matmul")
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"{name}: a and b hold different numbers of matrices: "
                         f"{a.shape[0]} and {b.shape[0]}")
    batch = a.shape[0] if a.ndim == 3 else b.shape[0]
    alpha, beta, trans_a, trans_b = _check_scalars(name, a, b, alpha, beta, trans_a, trans_b)
    M, K = _op_shape(a, trans_a)
    K_b, N = _op_shape(b, trans_b)
    _check_inner(name, a, b, trans_a, trans_b, (M, K), (K_b, N))
    out = _output(xp, name, out, a, b, (batch, M, N), beta)

    if xp is not np:
        return _cupy_gemm(xp, a, b, out, trans_a, trans_b, alpha, beta)
    # A shared matrix becomes a batch of one, which the kernel reuses (stride 0).
    a = np.ascontiguousarray(a if a.ndim == 3 else a[None])
    b = np.ascontiguousarray(b if b.ndim == 3 else b[None])
    shared_cores.run(_C.gemm_batched, a, b, out, trans_a, trans_b, alpha, beta)
    return out


def _as_operand(xp, name, x, what, ndims):
    if xp is np and not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim not in ndims:
        expected = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name}: {what} must be {expected}, got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: {what} must be float32 or float64, got dtype {x.dtype}")
    return x


def _check_scalars(name, a, b, alpha, beta, trans_a, trans_b):
    if a.dtype != b.dtype:
        raise TypeError(f"{name}: a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    scalars = []
    for what, value in (("alpha", alpha), ("beta", beta)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: {what} must be a real number, got {value!r}")
        scalars.append(float(value))
    return scalars[0], scalars[1], bool(trans_a), bool(trans_b)


def _op_shape(x, trans):
    """(rows, cols) of op(x) for the last two axes."""
    rows, cols = x.shape[-2:]
    return (cols, rows) if trans else (rows, cols)


def _check_inner(name, a, b, trans_a, trans_b, op_a, op_b):
    if op_b[0] != op_a[1]:
        raise ValueError(
            f"{name}: inner dimensions differ: op(a) is (M, K) = {op_a}, so op(b) must have "
            f"K = {op_a[1]} rows, but op(b) is {op_b} "
            f"(a {tuple(a.shape)} trans_a={trans_a}, b {tuple(b.shape)} trans_b={trans_b})")


def _output(xp, name, out, a, b, shape, beta):
    if out is None:
        if beta != 0.0:
            raise ValueError(f"{name}: beta = {beta} accumulates onto out, so out must be given")
        return backend.empty(xp, shape, a.dtype)
    if not isinstance(out, xp.ndarray):
        raise TypeError(f"{name}: out must be a {xp.__name__}.ndarray, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"{name}: out must have shape {shape}, got {tuple(out.shape)}")
    if out.dtype != a.dtype:
        raise TypeError(f"{name}: out must have the dtype of a and b ({a.dtype}), got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: out must be C-contiguous (it is written in place, never "
                         f"copied), got strides {out.strides}")
    if xp is np and not out.flags.writeable:
        raise ValueError(f"{name}: out must be writeable, got a read-only array")
    for what, x in (("a", a), ("b", b)):
        if xp.may_share_memory(out, x):
            raise ValueError(f"{name}: out overlaps {what} in memory; pass a separate output array")
    return out


def _cupy_gemm(xp, a, b, out, trans_a, trans_b, alpha, beta):
    product = xp.matmul(xp.swapaxes(a, -1, -2) if trans_a else a,
                        xp.swapaxes(b, -1, -2) if trans_b else b)
    if beta == 0.0:
        xp.multiply(product, alpha, out=out)
    else:
        out *= beta
        out += alpha * product
    return out


def _row_major(x, trans):
    """(C-contiguous matrix, trans flag) with op(x) unchanged, copying only when needed."""
    if x.flags.c_contiguous:
        return x, trans
    if x.flags.f_contiguous:
        return x.T, not trans
    return np.ascontiguousarray(x), trans
