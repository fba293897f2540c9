"""The one place that knows NumPy from CuPy.

An op runs where its inputs live: NumPy arrays on the CPU kernels, CuPy arrays
on the CUDA kernels. Mixing the two is a TypeError; nothing is copied silently.
"""
from __future__ import annotations

import math

import numpy as np

from . import _C, buffer_pool

_MAX_ARRAY_BYTES = np.iinfo(np.intp).max
_cupy = None
_cupy_checked = False


def cupy_module():
    """CuPy if it imports, else None (imported lazily: `import fusednn` never needs it)."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy
            _cupy = cupy
        except Exception:  # ImportError, or a CuPy that cannot find its CUDA libraries
            _cupy = None
    return _cupy


def cuda_compiled() -> bool:
    """Whether the CUDA kernels were compiled into this build."""
    return bool(_C.build_info()["cuda_compiled"])


def empty(xp, shape, dtype):
    """xp.empty(shape, dtype): on NumPy from fusednn's buffer pool (fusednn.buffer_pool: large
    arrays reuse resident memory instead of faulting in fresh pages); CuPy pools its own."""
    return buffer_pool.empty(shape, dtype) if xp is np else xp.empty(shape, dtype=dtype)


def check_array_bytes(what: str, shape, dtype) -> None:
    """ValueError naming `what` when an array of `shape` and `dtype` would hold 2^63 bytes or
    more, which neither NumPy nor CuPy can describe (checked before allocating it)."""
    count = math.prod(int(d) for d in shape)
    if count * np.dtype(dtype).itemsize > _MAX_ARRAY_BYTES:
        raise ValueError(f"{what}: expected fewer than 2^63 bytes, got shape {tuple(shape)} of "
                         f"{np.dtype(dtype).name} ({count} elements)")


def check_cuda_kernels(op: str, xp) -> None:
    """RuntimeError naming `op` when its inputs are CuPy arrays (xp is not NumPy) but the
    CUDA kernels were not compiled into this build."""
    if xp is not np and not cuda_compiled():
        raise RuntimeError(f"{op}: got CuPy arrays but this fusednn build has no CUDA kernels")


def has_cuda() -> bool:
    """A usable GPU: CUDA kernels compiled, a device visible and CuPy importable."""
    if not cuda_compiled() or _C.cuda_device_count() == 0:
        return False
    cp = cupy_module()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cuda_array(x) -> bool:
    cp = cupy_module()
    return cp is not None and isinstance(x, cp.ndarray)


def device_of(x) -> str:
    """'cuda' for a CuPy array, 'cpu' for anything else."""
    return "cuda" if is_cuda_array(x) else "cpu"


def get_array_module(*arrays):
    """numpy or cupy, whichever all the given arrays belong to (None entries ignored).

    Raises TypeError naming both devices when NumPy and CuPy arrays are mixed.
    """
    devices = {device_of(a) for a in arrays if a is not None}
    if len(devices) > 1:
        kinds = ", ".join(f"{type(a).__module__}.{type(a).__name__} ({device_of(a)})"
                          for a in arrays if a is not None)
        raise TypeError(f"arrays on different devices were mixed: {kinds}; "
                        "move them to one device with fusednn.backend.to_device")
    if devices == {"cuda"}:
        return cupy_module()
    return np


def xp_for_device(device: str):
    device = check_device(device)
    if device == "cuda":
        return cupy_module()
    return np


def check_device(device: str) -> str:
    """Normalises 'cpu' / 'cuda' / 'gpu' / 'cuda:0'; raises for anything else or a missing GPU."""
    if not isinstance(device, str):
        raise TypeError(f"device must be 'cpu' or 'cuda', got {device!r}")
    name = device.lower().split(":")[0]
    if name == "gpu":
        name = "cuda"
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if name == "cuda" and not has_cuda():
        reason = ("this build has no CUDA kernels" if not cuda_compiled() else
                  "no GPU is visible" if _C.cuda_device_count() == 0 else
                  "CuPy is not installed (pip install 'fusednn[cuda]')")
        raise RuntimeError(f"device 'cuda' requested but CUDA is unavailable: {reason}")
    return name


def to_device(x, device: str):
    """Copy `x` to 'cpu' (NumPy) or 'cuda' (CuPy); returns `x` itself when already there."""
    device = check_device(device)
    if device == "cuda":
        cp = cupy_module()
        return x if isinstance(x, cp.ndarray) else cp.asarray(x)
    if is_cuda_array(x):
        return x.get()
    return np.asarray(x)


def to_numpy(x) -> np.ndarray:
    return x.get() if is_cuda_array(x) else np.asarray(x)


def current_stream_ptr() -> int:
    """CuPy's current stream as an integer handle for the CUDA launchers."""
    return cupy_module().cuda.get_current_stream().ptr


_FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}


def float_dtype(dtype) -> np.dtype:
    """float32 or float64; anything else is a ValueError."""
    key = np.dtype(dtype).name if dtype is not None else "float32"
    if key not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(_FLOAT_DTYPES[key])


def as_float_array(x, dtype, what: str):
    """The casting rule at the Python boundary.

    Booleans, integers and floats are cast to `dtype` (float32 unless a layer
    says float64), on the device where `x` lives; Python lists and scalars become
    NumPy arrays. Complex, object, string and other dtypes raise TypeError.
    """
    if is_cuda_array(x):
        xp = cupy_module()
    else:
        xp = np
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as e:
                raise TypeError(f"{what}: expected an array of numbers, got {type(x).__name__} ({e})") from None
    kind = x.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{what}: expected a real numeric array (bool, int or float), "
                        f"got dtype {x.dtype}")
    # asarray, not ascontiguousarray: the latter turns a 0-d array into 1-d.
    return xp.asarray(x, dtype=dtype, order="C") if x.dtype != dtype else x
