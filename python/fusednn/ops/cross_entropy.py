"""Fused softmax cross-entropy: the loss and its gradient for every row in one
kernel pass (max-subtracted; the softmax itself is never materialised).

Shapes: logits (N, C) with N rows and C >= 1 classes; labels (N,); targets
(N, C); returned losses (N,) and dlogits (N, C), on the device of the inputs
and in the dtype of the logits.

Casting rules at this boundary:
- logits must be float32 or float64 (NumPy) or float32 (CuPy); any other dtype
  is a TypeError rather than a silent change of precision.
- labels: any integer dtype, or a float dtype holding whole numbers (Keras's
  integer labels often arrive as floats); they are range-checked, then cast to
  int64.
- targets: any real numeric dtype, cast to the dtype of the logits.
- non-contiguous inputs are copied to C-contiguous arrays; Python lists
  become NumPy arrays.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _C, backend, shared_cores
from . import cuda_launch


def sparse_softmax_cross_entropy(logits, labels, grad_scale=None):
    """Softmax cross-entropy against integer class labels, forward and backward.

    logits (N, C), labels (N,) with values in [0, C).
    Returns (losses, dlogits): losses (N,) = -log softmax(logits)[n, labels[n]],
    dlogits (N, C) = (softmax(logits) - onehot(labels)) * grad_scale, where
    grad_scale defaults to 1/N (the gradient of the mean loss).
    A label outside [0, C) raises IndexError before any kernel runs.
    """
    op = "sparse_softmax_cross_entropy"
    xp = _array_module(op, logits=logits, labels=labels)
    logits = _checked_logits(op, xp, logits)
    N, C = logits.shape
    labels = _checked_labels(op, xp, labels, N, C)
    scale = _checked_grad_scale(op, grad_scale, N)
    losses = backend.empty(xp, (N,), logits.dtype)
    dlogits = backend.empty(xp, (N, C), logits.dtype)
    if xp is np:
        shared_cores.run(_C.sparse_softmax_cross_entropy_cpu, logits, labels, losses, dlogits,
                         scale)
    else:
        cuda_launch.launch(_C.sparse_softmax_cross_entropy_cuda, logits, logits, labels, losses,
                           dlogits, scale)
    return losses, dlogits


def softmax_cross_entropy(logits, targets, grad_scale=None):
    """Softmax cross-entropy against target weights per class, forward and backward.

    logits (N, C), targets (N, C) (probabilities; rows need not sum to 1).
    Returns (losses, dlogits): losses (N,) = -sum_c targets * log softmax(logits),
    dlogits (N, C) = (softmax(logits) * sum_c targets - targets) * grad_scale,
    grad_scale defaulting to 1/N.
    """
    op = "softmax_cross_entropy"
    xp = _array_module(op, logits=logits, targets=targets)
    logits = _checked_logits(op, xp, logits)
    N, C = logits.shape
    targets = _as_array(xp, targets)
    if targets.shape != logits.shape:
        raise ValueError(f"{op}: targets must have the shape of logits (N, C) = {(N, C)}, "
                         f"got {tuple(targets.shape)}")
    if targets.dtype.kind not in "biuf":
        raise TypeError(f"{op}: targets must be a real numeric array, got dtype {targets.dtype}")
    targets = xp.ascontiguousarray(targets, dtype=logits.dtype)
    scale = _checked_grad_scale(op, grad_scale, N)
    losses = backend.empty(xp, (N,), logits.dtype)
    dlogits = backend.empty(xp, (N, C), logits.dtype)
    if xp is np:
        shared_cores.run(_C.softmax_cross_entropy_cpu, logits, targets, losses, dlogits, scale)
    else:
        cuda_launch.launch(_C.softmax_cross_entropy_cuda, logits, logits, targets, losses,
                           dlogits, scale)
    return losses, dlogits


def _array_module(op, **arrays):
    try:
        xp = backend.get_array_module(*arrays.values())
    except TypeError as e:
        raise TypeError(f"{op}: {e}") from None
    backend.check_cuda_kernels(op, xp)
    if xp is not np:
        devices = {name: a.device.id for name, a in arrays.items()}
        if len(set(devices.values())) > 1:
            raise TypeError(f"{op}: inputs are on different GPUs: {devices}")
    return xp


def _as_array(xp, x):
    return x if xp is not np or isinstance(x, np.ndarray) else np.asarray(x)


def _checked_logits(op, xp, logits):
    logits = _as_array(xp, logits)
    if logits.ndim != 2:
        raise ValueError(f"{op}: logits must be 2-D (N, C), got shape {tuple(logits.shape)}")
    if logits.shape[1] == 0:
        raise ValueError(f"{op}: logits need at least one class (C >= 1), "
                         f"got shape {tuple(logits.shape)}")
    allowed = ("float32", "float64") if xp is np else ("float32",)
    if logits.dtype.name not in allowed:
        where = "NumPy" if xp is np else "CuPy"
        raise TypeError(f"{op}: {where} logits must be {' or '.join(allowed)}, "
                        f"got dtype {logits.dtype}")
    return xp.ascontiguousarray(logits)


def _checked_labels(op, xp, labels, N, C):
    labels = _as_array(xp, labels)
    if labels.shape != (N,):
        raise ValueError(f"{op}: labels must have shape (N,) = ({N},) to match logits "
                         f"(N, C) = {(N, C)}, got {tuple(labels.shape)}")
    kind = labels.dtype.kind
    if kind == "f":
        whole = xp.isfinite(labels) & (labels == xp.floor(labels))
        if N and not bool(whole.all()):
            bad = labels[~whole][0]
            raise ValueError(f"{op}: float labels must hold whole class indices, got {float(bad)}")
    elif kind not in "iu":
        raise TypeError(f"{op}: labels must be an integer array, got dtype {labels.dtype}")
    if N:
        # One device round trip for both ends of the range (a CuPy reduction on the GPU).
        low, high = (int(v) for v in backend.to_numpy(xp.stack([labels.min(), labels.max()])))
        if low < 0 or high >= C:
            bad = low if low < 0 else high
            raise IndexError(f"{op}: labels must be in [0, {C}) for logits with C = {C} "
                             f"classes, got {bad}")
    return xp.ascontiguousarray(labels, dtype=xp.int64)


def _checked_grad_scale(op, grad_scale, N):
    if grad_scale is None:
        return 1.0 / N if N else 1.0
    if isinstance(grad_scale, bool) or not isinstance(grad_scale, numbers.Real):
        raise TypeError(f"{op}: grad_scale must be a real number or None, got {grad_scale!r}")
    if not math.isfinite(grad_scale):
        raise ValueError(f"{op}: grad_scale must be finite, got {grad_scale!r}")
    return float(grad_scale)
