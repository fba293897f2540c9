"""Layers that change the spatial extent: UpSampling2D/1D, ZeroPadding2D, Cropping2D.

Shapes are channels last: images (N, H, W, C), sequences (N, T, C); the 2-D layers
also take data_format="channels_first", images (N, C, H, W) (layers/data_format.py).
Upsampling runs on the nearest-neighbour kernels (fusednn.ops.pooling), or
interpolates bilinearly / bicubically (fusednn.ops.resize); padding and cropping are a
slice copy each way, which NumPy / CuPy do at memory speed already.
"""
from __future__ import annotations

import numpy as np

from .. import backend, ops
from ..ops import pooling as pooling_ops
from ..ops import resize as resize_ops
from .base import InputSpec, Layer
from .core import _positive_int
from .data_format import ChannelsLayout, checked_data_format
from .registry import register


@register
class UpSampling2D(Layer):
    """Upsamples by size = (SH, SW): (N, H, W, C) -> (N, H*SH, W*SW, C).

    interpolation: "nearest" repeats each pixel (the kernel; backward sums each block),
    "bilinear" or "bicubic" interpolate with half-pixel centres (fusednn.ops.resize).
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = pooling_ops.normalize_tuple(size, 2, "size", self._label())
        self.data_format = checked_data_format(self, data_format)
        self._layout = ChannelsLayout(self.data_format)
        if interpolation not in ("nearest",) + resize_ops.METHODS:
            raise ValueError(f"{self._label()}: expected interpolation one of 'nearest', "
                             f"{', '.join(repr(m) for m in resize_ops.METHODS)}, got "
                             f"{interpolation!r}")
        self.interpolation = interpolation
        self.input_spec = InputSpec(ndim=4)

    def compute_output_shape(self, input_shape):
        N, H, W, C = self._layout.to_last_shape(input_shape)
        return self._layout.to_user_shape((N, None if H is None else H * self.size[0],
                                           None if W is None else W * self.size[1], C))

    def call(self, x, training):
        x = self._layout.to_last(x)
        if self.interpolation == "nearest":
            y = ops.upsample_nearest2d(x, self.size)
        else:
            y = resize_ops.upsample_interpolated2d(x, self.size, self.interpolation)
        return self._layout.to_user(y), None

    def call_backward(self, dy, cache):
        dy = self._layout.to_last(dy)
        if self.interpolation == "nearest":
            dx = ops.upsample_nearest2d_backward(dy, self.size)
        else:
            dx = resize_ops.upsample_interpolated2d_backward(dy, self.size, self.interpolation)
        return self._layout.to_user(dx)

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size), data_format=self.data_format,
                      interpolation=self.interpolation)
        return config


@register
class UpSampling1D(Layer):
    """Repeats each time step `size` times: (N, T, C) -> (N, T * size, C)."""

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        # Keras: an int only (TypeError otherwise), > 0 (ValueError); below 2^31 as every
        # size the kernels take.
        _positive_int(self, "size", size, wrong_type=TypeError)
        self.size = pooling_ops.normalize_tuple(size, 1, "size", self._label())[0]
        self.input_spec = InputSpec(ndim=3)

    def compute_output_shape(self, input_shape):
        N, T, C = input_shape
        return (N, None if T is None else T * self.size, C)

    def call(self, x, training):
        # The 2-D kernel on (N, 1, T, C) with factors (1, size).
        N, T, C = x.shape
        y = ops.upsample_nearest2d(x.reshape(N, 1, T, C), (1, self.size))
        return y.reshape(N, T * self.size, C), None

    def call_backward(self, dy, cache):
        N, T, C = dy.shape
        dx = ops.upsample_nearest2d_backward(dy.reshape(N, 1, T, C), (1, self.size))
        return dx.reshape(N, T // self.size, C)

    def get_config(self):
        config = super().get_config()
        config["size"] = self.size
        return config


def _pairs(layer: Layer, argument: str, value):
    """Keras's forms of per-side amounts, as ((top, bottom), (left, right)) of ints >= 0:
    n (all sides), (h, w) (symmetric per axis) or ((top, bottom), (left, right))."""
    def is_count(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0

    pairs = None
    if is_count(value):
        pairs = ((value, value), (value, value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        if all(is_count(v) for v in value):
            pairs = ((value[0], value[0]), (value[1], value[1]))
        elif all(isinstance(v, (tuple, list)) and len(v) == 2 and all(is_count(u) for u in v)
                 for v in value):
            pairs = tuple(tuple(v) for v in value)
    if pairs is None:
        raise ValueError(f"{layer._label()}: expected {argument} to be an int >= 0, a tuple of 2 "
                         f"ints >= 0 (height, width) or ((top, bottom), (left, right)), "
                         f"got {value!r}")
    return tuple(tuple(int(v) for v in pair) for pair in pairs)


@register
class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros: (N, H, W, C) -> (N, top+H+bottom, left+W+right, C).

    padding: n, (h, w) or ((top, bottom), (left, right)). With data_format=
    "channels_first" the image is (N, C, H, W) and the same rows and columns are added.
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(self, "padding", padding)
        self.data_format = checked_data_format(self, data_format)
        self.input_spec = InputSpec(ndim=4)

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, (before, after) in zip(_spatial_axes(self), self.padding):
            out[axis] = None if out[axis] is None else before + out[axis] + after
        return tuple(out)

    def _window(self, shape) -> tuple:
        """The index of the unpadded image inside the padded one."""
        window = [slice(None)] * 4
        for axis, (before, _) in zip(_spatial_axes(self), self.padding):
            window[axis] = slice(before, before + shape[axis])
        return tuple(window)

    def call(self, x, training):
        xp = backend.get_array_module(x)
        out_shape = self.compute_output_shape(x.shape)
        backend.check_array_bytes(f"{self._label()}: the padded output of an input "
                                  f"{tuple(x.shape)}", out_shape, x.dtype)
        y = xp.zeros(out_shape, dtype=x.dtype)
        y[self._window(x.shape)] = x
        return y, (x.shape if training else None)

    def call_backward(self, dy, input_shape):
        xp = backend.get_array_module(dy)
        return xp.ascontiguousarray(dy[self._window(input_shape)])

    def get_config(self):
        config = super().get_config()
        config.update(padding=[list(pair) for pair in self.padding],
                      data_format=self.data_format)
        return config


@register
class Cropping2D(Layer):
    """Removes rows and columns at the borders: (N, H, W, C) -> (N, H-top-bottom, W-left-right, C).

    cropping: n, (h, w) or ((top, bottom), (left, right)); at least one row and
    column must remain. With data_format="channels_first" the image is (N, C, H, W).
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(self, "cropping", cropping)
        self.data_format = checked_data_format(self, data_format)
        self.input_spec = InputSpec(ndim=4)

    def compute_output_shape(self, input_shape):
        out = list(input_shape)
        for axis, name, (before, after) in zip(_spatial_axes(self), ("height", "width"),
                                               self.cropping):
            size = input_shape[axis]
            if size is not None and before + after >= size:
                raise ValueError(f"{self._label()}: values in `cropping` argument should be "
                                 f"smaller than the corresponding spatial dimension of the "
                                 f"input (Keras's words): cropping {self.cropping} removes "
                                 f"{before + after} of the {size} positions on the {name} of an "
                                 f"input of shape {tuple(input_shape)}; at least one must remain")
            out[axis] = None if size is None else size - before - after
        return tuple(out)

    def _window(self, shape) -> tuple:
        """The index of the kept part of an input of `shape`."""
        window = [slice(None)] * 4
        for axis, (before, after) in zip(_spatial_axes(self), self.cropping):
            window[axis] = slice(before, shape[axis] - after)
        return tuple(window)

    def call(self, x, training):
        self.compute_output_shape(x.shape)
        xp = backend.get_array_module(x)
        y = xp.ascontiguousarray(x[self._window(x.shape)])
        return y, (x.shape if training else None)

    def call_backward(self, dy, input_shape):
        xp = backend.get_array_module(dy)
        dx = xp.zeros(input_shape, dtype=dy.dtype)
        dx[self._window(input_shape)] = dy
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(cropping=[list(pair) for pair in self.cropping],
                      data_format=self.data_format)
        return config


def _spatial_axes(layer) -> tuple[int, int]:
    """The (height, width) axes of an image in the layer's data_format."""
    return (2, 3) if layer.data_format == "channels_first" else (1, 2)
