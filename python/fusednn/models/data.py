"""The checks and batching of the data given to fit/evaluate/predict (x, y, batch_size,
verbose), and the Keras shape of their results."""
from __future__ import annotations

import numpy as np

from .. import backend


def _as_batch_array(what: str, name: str, value):
    """NumPy or CuPy array with a batch axis; lists become NumPy."""
    if value is None:
        raise ValueError(f"{what}: {name} is required")
    if not backend.is_cuda_array(value):
        try:
            value = np.asarray(value)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f"{what}: {name} must be a rectangular array, got {e}") from None
    if value.ndim == 0:
        raise ValueError(f"{what}: {name} must be an array with a batch axis first, got a scalar")
    return value


def _check_data(what: str, x, y):
    x = _as_batch_array(what, "x", x)
    if y is None:
        raise ValueError(f"{what}: y (the targets) is required")
    y = _as_batch_array(what, "y", y)
    if len(x) == 0:
        raise ValueError(f"{what}: x is empty (0 samples)")
    if len(x) != len(y):
        raise ValueError(f"{what}: x and y must have the same number of samples, got {len(x)} "
                         f"(x shape {tuple(x.shape)}) and {len(y)} (y shape {tuple(y.shape)})")
    return x, y


def _check_batch_size(what: str, batch_size) -> int:
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size <= 0:
        raise ValueError(f"{what}: batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _check_verbose(what: str, verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose in (0, 1, 2) and not isinstance(verbose, str):
        return int(verbose)
    raise ValueError(f"{what}: verbose must be 0, 1, 2 or 'auto', got {verbose!r}")


def _take_batch(arrays, order, start: int, size: int):
    """Samples start..start+size of each array (None stays None), in `order` (a
    permutation) when given."""
    if order is None:
        return tuple(None if a is None else a[start:start + size] for a in arrays)
    index = order[start:start + size]
    return tuple(None if a is None
                 else a[backend.to_device(index, "cuda")] if backend.is_cuda_array(a)
                 else a[index] for a in arrays)


def _format_results(logs: dict, return_dict: bool):
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values

