"""Helpers with Keras's names: set_random_seed, clear_session, to_categorical,
pad_sequences and normalize (sequence_utils.py), the image helpers (image_utils.py),
image_dataset_from_directory / text_dataset_from_directory (dataset_directory.py),
set_deterministic / is_deterministic for the GPU reductions (ops/deterministic.py), and the
numerics checks check_numerics / enable_check_numerics / disable_check_numerics; with
PyTorch's: set_num_threads / get_num_threads."""
from __future__ import annotations

import contextlib
import random

import numpy as np

from . import _C, _rng, backend, naming
# Keras's keras.utils helpers that live in their own modules.
from .image_dataset import image_dataset_from_directory  # noqa: F401
from .image_utils import array_to_img, img_to_array, load_img, save_img  # noqa: F401
from .model_plot import model_to_dot, plot_model  # noqa: F401
from .ops.deterministic import is_deterministic, set_deterministic  # noqa: F401
from .py_dataset import PyDataset  # noqa: F401
from .sequence_utils import normalize, pad_sequences  # noqa: F401
from .text_dataset import text_dataset_from_directory  # noqa: F401
from .timeseries import timeseries_dataset_from_array  # noqa: F401


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


def set_num_threads(n: int) -> None:
    """Threads for the CPU kernels (OpenMP), as torch.set_num_threads: overrides
    OMP_NUM_THREADS for the kernels run from the calling Python thread. 1 is fastest on a
    machine whose cores other programs keep busy. A build without OpenMP runs one thread
    and only validates n."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: expected a positive int, got {type(n).__name__} {n!r}")
    if not 1 <= n <= 2**31 - 1:
        raise ValueError(f"set_num_threads: expected a positive int below 2^31, got {n}")
    _C.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads the CPU kernels run from the calling Python thread use (1 without OpenMP)."""
    return _C.get_num_threads()


def clear_session() -> None:
    """Restarts automatic layer names: new layers are named dense, dense_1, ... again, and
    frees the idle blocks of fusednn's buffer pool (fusednn.buffer_pool)."""
    naming.reset_layer_names()
    backend.buffer_pool.release()


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


# ----- numerics checks ---------------------------------------------------------------
#
# Off by default (a check costs a pass over every activation and gradient). When on,
# every layer's forward input and output and, in backward, every gradient it passes on
# and every weight gradient it accumulates are checked for NaN and Inf, and the first
# layer that produces one raises FloatingPointError naming it: the layer protocol in
# layers/base.py checks standalone layers, Sequential checks each of its layers, the
# model input, the targets and the loss. It is one global switch, like
# tf.debugging.enable_check_numerics, so it also covers layers used in other threads.
_numerics_checked = False


def enable_check_numerics() -> None:
    """Turns the NaN/Inf checks on for every layer and model until disabled."""
    global _numerics_checked
    _numerics_checked = True


def disable_check_numerics() -> None:
    """Turns the NaN/Inf checks off (the default)."""
    global _numerics_checked
    _numerics_checked = False


def numerics_checked() -> bool:
    """Whether the NaN/Inf checks are on."""
    return _numerics_checked


@contextlib.contextmanager
def check_numerics():
    """Turns the NaN/Inf checks on inside a `with` block (restoring the previous mode after):

        with fd.utils.check_numerics():
            model.fit(x, y)   # FloatingPointError names the first layer making a NaN/Inf
    """
    global _numerics_checked
    previous = _numerics_checked
    _numerics_checked = True
    try:
        yield
    finally:
        _numerics_checked = previous


def _non_finite_counts(array):
    """(number of NaN, number of +-Inf) in a float array (NumPy or CuPy); (0, 0) otherwise."""
    dtype = getattr(array, "dtype", None)
    if dtype is None or dtype.kind not in "fc":
        return 0, 0
    xp = backend.get_array_module(array)
    if bool(xp.isfinite(array).all()):
        return 0, 0
    return int(xp.isnan(array).sum()), int(xp.isinf(array).sum())


def check_finite(array, where: str) -> None:
    """Raises FloatingPointError "check_numerics: <where> ..." if `array` (or any array in a
    list of arrays) holds NaN or Inf; used by the layers and models when checks are on."""
    arrays = array if isinstance(array, (list, tuple)) else [array]
    for item in arrays:
        if item is None:
            continue
        nans, infs = _non_finite_counts(item)
        if nans or infs:
            raise FloatingPointError(
                f"check_numerics: {where}: {nans} NaN and {infs} Inf among the "
                f"{int(item.size)} values of shape {tuple(item.shape)}")
