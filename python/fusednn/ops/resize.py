"""Bilinear and bicubic upsampling of NHWC images by integer factors, forward and backward;
resize_matrix, one axis resized to any size (image_dataset_from_directory).

Each axis is resized by one interpolation matrix A (out, in), so y = A_h x A_w^T per
image and channel, and the gradient is A_h^T dy A_w: array arithmetic (einsum), the same
on NumPy and CuPy, with no kernel of its own (UpSampling2D with interpolation other than
"nearest" is rare next to the convolutions around it).

Coordinates are half-pixel centred, as Keras's image resize on every backend: output
position o samples the input at (o + 0.5) / scale - 0.5, and taps beyond the border take
the border value. Bilinear weights are (1 - t, t); bicubic uses Keys's cubic with
a = -0.5, as TensorFlow and JAX (PyTorch's bicubic uses a = -0.75).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .conv import normalize_tuple

METHODS = ("bilinear", "bicubic")


def _keys_cubic(d, a=-0.5):
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def resize_matrix(in_size: int, out_size: int, method: str) -> np.ndarray:
    """A (out_size, in_size) float64: row o holds the weights of output o's taps, for any
    sizes (image_dataset_from_directory resizes down as well as up). "nearest" takes the
    input pixel whose cell holds the output's centre, floor((o + 0.5) * in / out), as
    Keras's resize (tf.image.resize, PyTorch's "nearest-exact"); none of the methods
    antialias when shrinking, as Keras's default antialias=False."""
    out = np.arange(out_size)
    matrix = np.zeros((out_size, in_size))
    if method == "nearest":
        # In float32 as TensorFlow and PyTorch compute it: where (o + 0.5) * in / out is a
        # whole number (in=26, out=11, o=5 gives 13) their rounded scale picks the pixel
        # before it (12), which float64 would not.
        scale = np.float32(in_size) / np.float32(out_size)
        source = (out.astype(np.float32) + np.float32(0.5)) * scale
        matrix[out, np.minimum(np.floor(source), in_size - 1).astype(np.int64)] = 1
        return matrix
    source = (out + 0.5) * in_size / out_size - 0.5
    base = np.floor(source)
    t = source - base
    if method == "bilinear":
        offsets, weights = (0, 1), (1 - t, t)
    else:
        offsets = (-1, 0, 1, 2)
        weights = tuple(_keys_cubic(t - k) for k in offsets)
    for k, w in zip(offsets, weights):
        np.add.at(matrix, (out, np.clip(base + k, 0, in_size - 1).astype(np.int64)), w)
    return matrix


def interpolation_matrix(in_size: int, scale: int, method: str) -> np.ndarray:
    """A (in_size * scale, in_size) float64: the upsampling of one axis by `scale`."""
    return resize_matrix(in_size, in_size * scale, method)


def _matrices(xp, shape, size, method, dtype):
    return tuple(backend.to_device(interpolation_matrix(n, s, method).astype(dtype),
                                   "cuda" if xp is not np else "cpu")
                 for n, s in zip(shape, size))


def _checked(op, x, name, size, method):
    xp = backend.get_array_module(x)
    if xp is np:
        x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{op}: expected {name} of rank 4 (N, H, W, C), got shape "
                         f"{tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: expected {name} of dtype float32 or float64, got {x.dtype}")
    if method not in METHODS:
        raise ValueError(f"{op}: expected method one of {METHODS}, got {method!r}")
    return xp, x, normalize_tuple(size, 2, "size", op)


def upsample_interpolated2d(x, size=(2, 2), method="bilinear"):
    """x (N, H, W, C) -> (N, H * SH, W * SW, C) by `method` ("bilinear" or "bicubic")."""
    xp, x, size = _checked("upsample_interpolated2d", x, "x", size, method)
    rows, cols = _matrices(xp, x.shape[1:3], size, method, x.dtype)
    return xp.einsum("oh,nhwc,pw->nopc", rows, x, cols, optimize=True)


def upsample_interpolated2d_backward(dy, size=(2, 2), method="bilinear"):
    """Gradient (N, H, W, C) of upsample_interpolated2d for dy (N, H * SH, W * SW, C)."""
    op = "upsample_interpolated2d_backward"
    xp, dy, size = _checked(op, dy, "dy", size, method)
    OH, OW = dy.shape[1:3]
    if OH % size[0] or OW % size[1]:
        raise ValueError(f"{op}: dy's spatial shape {(OH, OW)} is not a multiple of the "
                         f"upsampling factors {size}")
    rows, cols = _matrices(xp, (OH // size[0], OW // size[1]), size, method, dy.dtype)
    return xp.einsum("oh,nopc,pw->nhwc", rows, dy, cols, optimize=True)
