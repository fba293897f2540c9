"""Keras's `data_format` for the layers whose kernels work channels last.

The convolution, pooling, upsampling, padding and cropping kernels take (N, ..., C).
With data_format="channels_first" a layer's input and output are (N, C, ...) instead:
the layer's public shapes (compute_output_shape, its input spec, build's input shape)
follow that format, and `call` / `call_backward` move the channel axis last for the
kernels and back (one transposing copy each way; NCHW users pay those two copies, as
PyTorch users of channels-last kernels do the reverse). Every family keeps one
channels-last implementation and converts at its edges through a `ChannelsLayout`.
"""
from __future__ import annotations

from .. import backend

FORMATS = ("channels_last", "channels_first")


def checked_data_format(layer, value) -> str:
    """`value` as one of FORMATS (None: Keras's default, channels_last), else ValueError."""
    if value is None:
        return "channels_last"
    if value not in FORMATS:
        raise ValueError(f"{layer._label()}: expected data_format 'channels_last' or "
                         f"'channels_first' (or None), got {value!r}")
    return value


class ChannelsLayout:
    """Conversions between a layer's data_format and the kernels' channels-last layout."""

    def __init__(self, data_format: str):
        self.first = data_format == "channels_first"

    @property
    def channel_axis(self) -> int:
        return 1 if self.first else -1

    def to_last_shape(self, shape) -> tuple:
        shape = tuple(shape)
        if not self.first or len(shape) < 3:
            return shape
        return (shape[0],) + shape[2:] + (shape[1],)

    def to_user_shape(self, shape) -> tuple:
        shape = tuple(shape)
        if not self.first or len(shape) < 3:
            return shape
        return (shape[0], shape[-1]) + shape[1:-1]

    def to_last(self, x):
        """x in the layer's format as a C-contiguous channels-last array."""
        if not self.first or x.ndim < 3:
            return x
        xp = backend.get_array_module(x)
        return xp.ascontiguousarray(xp.moveaxis(x, 1, -1))

    def to_user(self, y):
        """A channels-last y in the layer's format (C-contiguous); None stays None (an
        input gradient that the model did not ask for)."""
        if not self.first or y is None or y.ndim < 3:
            return y
        xp = backend.get_array_module(y)
        return xp.ascontiguousarray(xp.moveaxis(y, -1, 1))
