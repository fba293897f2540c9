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


def _is_structure(value) -> bool:
    """A dict of arrays, or a list/tuple of arrays: one per model input or output, as Keras
    reads x and y (a list of numbers stays one array)."""
    return isinstance(value, dict) or (isinstance(value, (list, tuple)) and len(value) > 0
                                       and all(isinstance(v, np.ndarray)
                                               or backend.is_cuda_array(v) for v in value))


def map_arrays(value, fn):
    """fn applied to each array of value: one array, a list of arrays or a dict of arrays."""
    if isinstance(value, dict):
        return {name: fn(array) for name, array in value.items()}
    if isinstance(value, (list, tuple)):
        return [fn(array) for array in value]
    return fn(value)


def _as_batch_arrays(what: str, name: str, value) -> tuple:
    """(value with every array checked by _as_batch_array, [(label, array)])."""
    if not _is_structure(value):
        value = _as_batch_array(what, name, value)
        return value, [(name, value)]
    labels = list(value) if isinstance(value, dict) else range(len(value))
    arrays = {label: _as_batch_array(what, f"{name}[{label!r}]", value[label])
              for label in labels}
    value = arrays if isinstance(value, dict) else list(arrays.values())
    return value, [(f"{name}[{label!r}]", array) for label, array in arrays.items()]


def first_array(value):
    """An array itself, or the first array of a list or dict of arrays."""
    if isinstance(value, dict):
        return next(iter(value.values()))
    return value[0] if isinstance(value, (list, tuple)) else value


def num_samples(value) -> int:
    """The batch size of an array or of a list or dict of arrays."""
    return len(first_array(value))


def _check_data(what: str, x, y, targets_required: bool = True):
    """x and y as arrays, or (several inputs or outputs) lists or dicts of arrays; all with
    the same number of samples. y may be None when not targets_required."""
    x, x_arrays = _as_batch_arrays(what, "x", x)
    if y is None and targets_required:
        raise ValueError(f"{what}: y (the targets) is required")
    y, y_arrays = (None, []) if y is None else _as_batch_arrays(what, "y", y)
    first_name, first = x_arrays[0]
    if len(first) == 0:
        raise ValueError(f"{what}: {first_name} is empty (0 samples)")
    for name, array in x_arrays[1:] + y_arrays:
        if len(array) != len(first):
            raise ValueError(f"{what}: {first_name} and {name} must have the same number of "
                             f"samples, got {len(first)} ({first_name} shape "
                             f"{tuple(first.shape)}) and {len(array)} ({name} shape "
                             f"{tuple(array.shape)})")
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


def _take_batch(array, order, start: int, size: int):
    """Samples start..start+size of array, in `order` (a permutation) when given."""
    if order is None:
        return array[start:start + size]
    index = order[start:start + size]
    return array[backend.to_device(index, "cuda") if backend.is_cuda_array(array) else index]


def _format_results(logs: dict, return_dict: bool):
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values

