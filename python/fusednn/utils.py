"""Helpers with Keras's names: set_random_seed, clear_session, to_categorical."""
from __future__ import annotations

import random

import numpy as np

from . import _rng, backend


def set_random_seed(seed: int) -> None:
    """Seeds every generator fusednn draws from, so CPU training repeats exactly.

    fusednn's own generator (initializers, dropout, shuffling in fit), NumPy's
    legacy global generator, Python's `random`, and CuPy's when a GPU is usable.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_random_seed: expected an integer seed >= 0, got {seed!r}")
    seed = int(seed)
    _rng.seed(seed)
    np.random.seed(seed % 2**32)  # the legacy generator accepts only 32-bit seeds
    random.seed(seed)
    if backend.has_cuda():
        backend.cupy_module().random.seed(seed)


def clear_session() -> None:
    """Restarts automatic layer names: new layers are named dense, dense_1, ... again."""
    from .layers import base  # layers import this package; a late import avoids a cycle

    base.reset_layer_names()


def to_categorical(y, num_classes=None, dtype="float32") -> np.ndarray:
    """One-hot encoding of integer class labels, as Keras's to_categorical.

    y (...) -> (..., num_classes); a trailing axis of size 1 is dropped first,
    so (N, 1) -> (N, num_classes). num_classes defaults to max(y) + 1.
    """
    y = np.asarray(backend.to_numpy(y))
    if y.dtype.kind not in "biuf":
        raise TypeError(f"to_categorical: expected integer class labels, got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError("to_categorical: expected integer class labels, got non-integer values")
    labels = y.astype(np.int64)
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if num_classes is None:
        if labels.size == 0:
            raise ValueError("to_categorical: cannot infer num_classes from empty labels; pass it")
        num_classes = int(labels.max()) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes <= 0:
        raise ValueError(f"to_categorical: num_classes must be a positive int, got {num_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"to_categorical: labels must be in [0, {num_classes}), got values in "
                         f"[{labels.min()}, {labels.max()}]")
    out = np.zeros((labels.size, int(num_classes)), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out.reshape(shape + (int(num_classes),))
