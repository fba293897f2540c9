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


def _is_target_structure(y) -> bool:
    """A dict of targets, or a list/tuple of arrays (one per output), as Keras reads y."""
    return isinstance(y, dict) or (isinstance(y, (list, tuple)) and len(y) > 0 and all(
        isinstance(t, np.ndarray) or backend.is_cuda_array(t) for t in y))


def map_targets(y, fn):
    """fn applied to each array of y: one array, a list of arrays or a dict of arrays."""
    if isinstance(y, dict):
        return {name: fn(target) for name, target in y.items()}
    if isinstance(y, list):
        return [fn(target) for target in y]
    return fn(y)


def _check_data(what: str, x, y):
    """x as an array; y as an array, or (several outputs) a list or dict of arrays; all
    with the same number of samples."""
    x = _as_batch_array(what, "x", x)
    if y is None:
        raise ValueError(f"{what}: y (the targets) is required")
    if _is_target_structure(y):
        labels = list(y) if isinstance(y, dict) else range(len(y))
        y = {name: _as_batch_array(what, f"y[{name!r}]", y[name]) for name in labels} \
            if isinstance(y, dict) else [_as_batch_array(what, f"y[{i}]", t) for i, t in enumerate(y)]
        targets = [(f"y[{name!r}]", y[name]) for name in labels]
    else:
        y = _as_batch_array(what, "y", y)
        targets = [("y", y)]
    if len(x) == 0:
        raise ValueError(f"{what}: x is empty (0 samples)")
    for name, target in targets:
        if len(x) != len(target):
            raise ValueError(f"{what}: x and {name} must have the same number of samples, got "
                             f"{len(x)} (x shape {tuple(x.shape)}) and {len(target)} ({name} "
                             f"shape {tuple(target.shape)})")
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

