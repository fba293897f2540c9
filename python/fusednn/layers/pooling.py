"""Pooling layers: MaxPooling2D/1D, AveragePooling2D/1D and the global poolings.

Shapes are channels last (Keras's default): images (N, H, W, C), sequences
(N, T, C), or channels first with data_format="channels_first" (layers/data_format.py).
All of them run on the pooling kernels (fusednn.ops.pooling): a 1-D
pooling is a 2-D one over (N, 1, T, C), and a global pooling is one window
covering the whole image or sequence, whose max kernel also keeps the argmax
for backward. Geometry ("valid" / "same", Keras's asymmetric padding, average
pooling dividing by the elements inside the window) is that of
fusednn.ops.pooling. The one exception: GlobalAveragePooling1D given a time-step
mask averages the unmasked steps with array arithmetic.
"""
from __future__ import annotations

from typing import NamedTuple

from .. import backend, ops
from ..ops import pooling as pooling_ops
from .base import InputSpec, Layer
from .data_format import ChannelsLayout, checked_data_format
from .registry import register


class _Pooling(Layer):
    """Max or average pooling over the spatial axes of a rank-(rank + 2) input.

    Subclasses set `rank` (1 or 2) and `mode` ("max" or "avg").
    """

    rank: int
    mode: str

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        label = self._label()
        self.pool_size = pooling_ops.normalize_tuple(pool_size, self.rank, "pool_size", label)
        self.strides = (self.pool_size if strides is None
                        else pooling_ops.normalize_tuple(strides, self.rank, "strides", label))
        self.padding = pooling_ops.normalize_padding(padding, label)
        self.data_format = checked_data_format(self, data_format)
        self._layout = ChannelsLayout(self.data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def compute_output_shape(self, input_shape):
        return self._layout.to_user_shape(
            self._output_shape_last(self._layout.to_last_shape(input_shape)))

    def _output_shape_last(self, input_shape):
        spatial = []
        for axis, (size, pool, stride) in enumerate(
                zip(input_shape[1:-1], self.pool_size, self.strides)):
            if size is None:
                spatial.append(None)
                continue
            try:
                spatial.append(pooling_ops.pool_output_length(size, pool, stride, self.padding)[0])
            except ValueError as e:
                raise ValueError(f"{self._label()}: input shape {tuple(input_shape)}, spatial "
                                 f"axis {axis + 1}: {e}") from None
        return (input_shape[0],) + tuple(spatial) + (input_shape[-1],)

    def _as_image(self, x):
        """The (N, H, W, C) view the 2-D kernels take: 1-D inputs gain H = 1."""
        return x if self.rank == 2 else x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])

    def _window(self):
        if self.rank == 2:
            return self.pool_size, self.strides
        return (1,) + self.pool_size, (1,) + self.strides

    def call(self, x, training):
        x = self._layout.to_last(x)
        out_shape = self._output_shape_last(x.shape)  # a window that does not fit fails here
        image = self._as_image(x)
        pool, strides = self._window()
        if self.mode == "max":
            y, argmax = ops.max_pool2d(image, pool, strides, self.padding)
        else:
            y, argmax = ops.avg_pool2d(image, pool, strides, self.padding), None
        cache = (argmax, image.shape, x.shape) if training else None
        return self._layout.to_user(y.reshape(out_shape)), cache

    def call_backward(self, dy, cache):
        argmax, image_shape, input_shape = cache
        pool, strides = self._window()
        dy = self._layout.to_last(dy)
        dy = dy.reshape((image_shape[0],) + ((1,) if self.rank == 1 else ()) + dy.shape[1:])
        if self.mode == "max":
            dx = ops.max_pool2d_backward(dy, argmax, image_shape, pool, strides, self.padding)
        else:
            dx = ops.avg_pool2d_backward(dy, image_shape, pool, strides, self.padding)
        return self._layout.to_user(dx.reshape(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=list(self.pool_size), strides=list(self.strides),
                      padding=self.padding, data_format=self.data_format)
        return config


@register
class MaxPooling2D(_Pooling):
    """Maximum over pool_size windows moved by strides (default pool_size):
    (N, H, W, C) -> (N, OH, OW, C)."""

    rank, mode = 2, "max"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


@register
class AveragePooling2D(_Pooling):
    """Mean over pool_size windows (padding not counted): (N, H, W, C) -> (N, OH, OW, C)."""

    rank, mode = 2, "avg"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


@register
class MaxPooling1D(_Pooling):
    """Maximum over windows of pool_size steps: (N, T, C) -> (N, OT, C)."""

    rank, mode = 1, "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


@register
class AveragePooling1D(_Pooling):
    """Mean over windows of pool_size steps (padding not counted): (N, T, C) -> (N, OT, C)."""

    rank, mode = 1, "avg"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class _GlobalPooling(Layer):
    """Max or mean over all spatial positions: (N, ..., C) -> (N, C), or with
    keepdims=True (N, 1, ..., 1, C). Subclasses set `rank` and `mode`."""

    rank: int
    mode: str

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(keepdims, bool):
            raise TypeError(f"{self._label()}: expected keepdims to be a bool, got {keepdims!r}")
        self.keepdims = keepdims
        self.data_format = checked_data_format(self, data_format)
        self._layout = ChannelsLayout(self.data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def compute_output_shape(self, input_shape):
        return self._layout.to_user_shape(
            self._output_shape_last(self._layout.to_last_shape(input_shape)))

    def _output_shape_last(self, input_shape):
        if self.keepdims:
            return (input_shape[0],) + (1,) * self.rank + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    def call(self, x, training):
        x = self._layout.to_last(x)
        image = x if self.rank == 2 else x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])
        window = image.shape[1:3]
        if 0 in window:
            raise ValueError(f"{self._label()}: cannot pool over an empty input of shape "
                             f"{tuple(x.shape)}")
        if self.mode == "max":
            y, argmax = ops.max_pool2d(image, window)
        else:
            y, argmax = ops.avg_pool2d(image, window), None
        cache = (argmax, image.shape, x.shape) if training else None
        return self._layout.to_user(y.reshape(self._output_shape_last(x.shape))), cache

    def call_backward(self, dy, cache):
        argmax, image_shape, input_shape = cache
        dy = dy.reshape(image_shape[0], 1, 1, image_shape[3])  # the same in either format
        window = image_shape[1:3]
        if self.mode == "max":
            dx = ops.max_pool2d_backward(dy, argmax, image_shape, window)
        else:
            dx = ops.avg_pool2d_backward(dy, image_shape, window)
        return self._layout.to_user(dx.reshape(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update(data_format=self.data_format, keepdims=self.keepdims)
        return config


@register
class GlobalMaxPooling2D(_GlobalPooling):
    """Maximum over H and W: (N, H, W, C) -> (N, C) (keepdims: (N, 1, 1, C))."""

    rank, mode = 2, "max"


@register
class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over H and W: (N, H, W, C) -> (N, C) (keepdims: (N, 1, 1, C))."""

    rank, mode = 2, "avg"


@register
class GlobalMaxPooling1D(_GlobalPooling):
    """Maximum over time: (N, T, C) -> (N, C) (keepdims: (N, 1, C))."""

    rank, mode = 1, "max"


class _MaskedMean(NamedTuple):
    """GlobalAveragePooling1D's training cache with a mask: each step's weight (N, T)."""

    weights: object
    input_shape: tuple


@register
class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over time: (N, T, C) -> (N, C) (keepdims: (N, 1, C)).

    With a time-step mask (N, T) (channels_first too) the mean is over the unmasked steps
    only, and the mask ends here (Keras); a sequence with no unmasked step averages to 0.
    """

    rank, mode = 1, "avg"
    supports_masking = True

    def call(self, x, training, mask=None):
        if mask is None:
            return super().call(x, training)
        x = self._layout.to_last(x)
        xp = backend.get_array_module(x)
        weights = mask.astype(x.dtype) / xp.maximum(mask.sum(axis=1, keepdims=True), 1)
        y = (x * weights[:, :, None]).sum(axis=1)
        return (self._layout.to_user(y.reshape(self._output_shape_last(x.shape))),
                _MaskedMean(weights, tuple(x.shape)) if training else None)

    def call_backward(self, dy, cache):
        if not isinstance(cache, _MaskedMean):
            return super().call_backward(dy, cache)
        batch, _, channels = cache.input_shape
        return self._layout.to_user(dy.reshape(batch, 1, channels) * cache.weights[:, :, None])

    def _checked_mask(self, mask, x):
        # The mask is (N, T) in either data format: check it against the (N, T, C) view.
        return super()._checked_mask(mask, self._layout.to_last(x))

    def compute_mask(self, x, mask=None):
        return None
