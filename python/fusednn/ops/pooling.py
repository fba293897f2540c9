"""Max and average pooling and nearest-neighbour upsampling on NHWC images,
forward and backward, over the kernels of csrc/include/fusednn/pooling.h.

Shapes: x (N, H, W, C); pooled y (N, OH, OW, C); upsampled y (N, H*SH, W*SW, C).
1-D pooling is 2-D pooling of (N, 1, T, C) with windows (1, K); global pooling
is one window covering the whole image (the layers do both).

Geometry (Keras / TensorFlow), per spatial axis of size n, window k, stride s:
- "valid": no padding, out = floor((n - k) / s) + 1; needs k <= n.
- "same": out = ceil(n / s); total padding max((out - 1) * s + k - n, 0), of
  which total // 2 goes before the first row/column and the rest after.
  Padding is never part of a window: max pooling ignores it and average
  pooling divides by the number of input elements inside the window.
Max pooling returns, with y, argmax (N, OH, OW, C): the spatial index h * W + w
of each maximum inside its sample (int32, or int64 when H * W needs it); ties
go to the first maximum, NaN propagates. The backward ops take it back so
nothing is recomputed.

Rules at this boundary: x and dy are float32 or float64 arrays (NumPy on the
CPU kernels, CuPy on the CUDA kernels), copied to C-contiguous when they are
not; any other dtype is a TypeError. Everything is validated before a kernel
runs; outputs are new arrays (large ones on fusednn.buffer_pool's memory).
"""
from __future__ import annotations

import numpy as np

from .. import _C, backend, shared_cores
from . import cuda_launch
# Window sizes, strides and upsampling factors in [1, 2^31), as the bindings require.
from .conv import normalize_tuple

_PADDINGS = ("valid", "same")
# Above this many positions per image the argmax no longer fits int32.
_INT32_POSITIONS = np.iinfo(np.int32).max


def pool_output_length(length, pool, stride, padding):
    """(output length, padding before) along one axis for an input of `length`.

    padding is "valid" or "same" (see the module docstring). A window larger than
    the input under "valid", or an empty input, raises ValueError.
    """
    if length < 1:
        raise ValueError(f"cannot pool an empty axis (length {length})")
    if padding == "same":
        out = -(-length // stride)
        total = max((out - 1) * stride + pool - length, 0)
        return out, total // 2
    if pool > length:
        raise ValueError(f"the window ({pool}) is larger than the input ({length}) and "
                         f"padding='valid' adds no padding; use a smaller pool or padding='same'")
    return (length - pool) // stride + 1, 0


def normalize_padding(padding, op):
    """'valid' or 'same' (case-insensitive, as in Keras); ValueError otherwise."""
    name = padding.lower() if isinstance(padding, str) else None
    if name not in _PADDINGS:
        raise ValueError(f"{op}: expected padding 'valid' or 'same', got {padding!r}")
    return name


def max_pool2d(x, pool_size, strides=None, padding="valid"):
    """Max pooling of x (N, H, W, C). Returns (y (N, OH, OW, C), argmax (N, OH, OW, C)).

    pool_size and strides: an int or (height, width); strides default to pool_size.
    """
    op = "max_pool2d"
    xp, x = _checked_image(op, x, "x")
    geometry = _geometry(op, x.shape, pool_size, strides, padding)
    out_shape = _pooled_shape(x.shape, geometry)
    y = backend.empty(xp, out_shape, x.dtype)
    argmax = backend.empty(xp, out_shape, _index_dtype(x.shape))
    _launch(xp, "max_pool2d_forward", x, y, argmax, *geometry[1:])
    return y, argmax


def max_pool2d_backward(dy, argmax, input_shape, pool_size, strides=None, padding="valid"):
    """Gradient (N, H, W, C) of max pooling w.r.t. x, from dy (N, OH, OW, C) and the
    argmax of the forward pass; input_shape is x's shape (N, H, W, C)."""
    op = "max_pool2d_backward"
    xp, dy, input_shape, geometry = _checked_backward(op, dy, input_shape, pool_size, strides,
                                                      padding)
    try:
        argmax_xp = backend.get_array_module(dy, argmax)
    except TypeError as e:
        raise TypeError(f"{op}: {e}") from None
    if argmax_xp is not xp or tuple(argmax.shape) != tuple(dy.shape) \
            or argmax.dtype not in (np.int32, np.int64):
        raise TypeError(f"{op}: expected argmax as returned by max_pool2d (an int32/int64 "
                        f"array of dy's shape {tuple(dy.shape)} on dy's device), got "
                        f"{type(argmax).__name__} of shape {tuple(getattr(argmax, 'shape', ()))} "
                        f"and dtype {getattr(argmax, 'dtype', None)}")
    dx = backend.empty(xp, input_shape, dy.dtype)
    _launch(xp, "max_pool2d_backward", dy, xp.ascontiguousarray(argmax), dx, *geometry[1:])
    return dx


def avg_pool2d(x, pool_size, strides=None, padding="valid"):
    """Average pooling of x (N, H, W, C) -> y (N, OH, OW, C) (mean over the input
    elements in each window; padding is not counted)."""
    op = "avg_pool2d"
    xp, x = _checked_image(op, x, "x")
    geometry = _geometry(op, x.shape, pool_size, strides, padding)
    y = backend.empty(xp, _pooled_shape(x.shape, geometry), x.dtype)
    _launch(xp, "avg_pool2d_forward", x, y, *geometry[1:])
    return y


def avg_pool2d_backward(dy, input_shape, pool_size, strides=None, padding="valid"):
    """Gradient (N, H, W, C) of average pooling w.r.t. x, from dy (N, OH, OW, C)."""
    op = "avg_pool2d_backward"
    xp, dy, input_shape, geometry = _checked_backward(op, dy, input_shape, pool_size, strides,
                                                      padding)
    dx = backend.empty(xp, input_shape, dy.dtype)
    _launch(xp, "avg_pool2d_backward", dy, dx, *geometry[1:])
    return dx


def upsample_nearest2d(x, size=(2, 2)):
    """Nearest-neighbour upsampling of x (N, H, W, C) by integer factors size = (SH, SW)
    (or one int for both) -> (N, H * SH, W * SW, C), each pixel repeated in a block."""
    op = "upsample_nearest2d"
    xp, x = _checked_image(op, x, "x")
    size = normalize_tuple(size, 2, "size", op)
    N, H, W, C = x.shape
    out_shape = (N, H * size[0], W * size[1], C)
    backend.check_array_bytes(f"{op}: the upsampled array of x {tuple(x.shape)} by factors "
                              f"{size}", out_shape, x.dtype)
    y = backend.empty(xp, out_shape, x.dtype)
    _launch(xp, "upsample_nearest2d_forward", x, y, size)
    return y


def upsample_nearest2d_backward(dy, size=(2, 2)):
    """Gradient (N, H, W, C) of upsample_nearest2d: dy (N, H * SH, W * SW, C) summed over
    each SH x SW block."""
    op = "upsample_nearest2d_backward"
    xp, dy = _checked_image(op, dy, "dy")
    size = normalize_tuple(size, 2, "size", op)
    N, OH, OW, C = dy.shape
    if OH % size[0] or OW % size[1]:
        raise ValueError(f"{op}: dy's spatial shape {(OH, OW)} is not a multiple of the "
                         f"upsampling factors {size}")
    dx = backend.empty(xp, (N, OH // size[0], OW // size[1], C), dy.dtype)
    _launch(xp, "upsample_nearest2d_backward", dy, dx, size)
    return dx


# ----- helpers -----------------------------------------------------------------------

def _checked_image(op, x, name):
    """(xp, x) for a 4-D float32/float64 NHWC array, made C-contiguous."""
    xp = backend.get_array_module(x)
    if xp is np and not isinstance(x, np.ndarray):
        x = np.asarray(x)
    backend.check_cuda_kernels(op, xp)
    if x.ndim != 4:
        raise ValueError(f"{op}: expected {name} of rank 4 (N, H, W, C), got shape "
                         f"{tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: expected {name} of dtype float32 or float64, got {x.dtype}")
    return xp, xp.ascontiguousarray(x)


def _geometry(op, input_shape, pool_size, strides, padding):
    """((OH, OW), kernel, strides, (pad_top, pad_left)) for an (N, H, W, C) input, validated."""
    pool_size = normalize_tuple(pool_size, 2, "pool_size", op)
    strides = pool_size if strides is None else normalize_tuple(strides, 2, "strides", op)
    padding = normalize_padding(padding, op)
    lengths = []
    for axis, name in ((1, "height"), (2, "width")):
        try:
            lengths.append(pool_output_length(input_shape[axis], pool_size[axis - 1],
                                              strides[axis - 1], padding))
        except ValueError as e:
            raise ValueError(f"{op}: input {tuple(input_shape)}, {name}: {e}") from None
    (OH, pad_top), (OW, pad_left) = lengths
    return (OH, OW), pool_size, strides, (pad_top, pad_left)


def _pooled_shape(input_shape, geometry):
    return (input_shape[0],) + geometry[0] + (input_shape[3],)


def _index_dtype(input_shape):
    return np.int32 if input_shape[1] * input_shape[2] <= _INT32_POSITIONS else np.int64


def _checked_backward(op, dy, input_shape, pool_size, strides, padding):
    xp, dy = _checked_image(op, dy, "dy")
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 4 or min(shape) < 0:
        raise ValueError(f"{op}: expected input_shape (N, H, W, C) of x, got {input_shape!r}")
    input_shape = shape
    geometry = _geometry(op, input_shape, pool_size, strides, padding)
    expected = _pooled_shape(input_shape, geometry)
    if tuple(dy.shape) != expected:
        raise ValueError(f"{op}: expected dy of shape {expected} (the pooled shape of an "
                         f"input {input_shape}), got {tuple(dy.shape)}")
    return xp, dy, input_shape, geometry


def _launch(xp, kernel, *args):
    if xp is np:
        shared_cores.run(getattr(_C, kernel + "_cpu"), *args)
    else:
        cuda_launch.launch(getattr(_C, kernel + "_cuda"), args[0], *args)
