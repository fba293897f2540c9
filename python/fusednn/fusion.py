"""Layer fusion inside a Sequential, chosen automatically and reported.

On the CUDA device, a Conv2D whose activation the conv kernels fuse (linear or
plain relu) immediately followed by a MaxPooling2D with strides == pool_size
and padding 'valid' runs as one step (fusednn.ops.conv2d_max_pool2d): one
kernel in the forward, inference and training, which never writes the
un-pooled conv output; the backward composes the existing kernels. The two
layers, their weights, summary, configs and saving are untouched; only the
order of the work changes. `Sequential.fused_layers` lists the fused pairs.
"""
from __future__ import annotations

import numpy as np

from . import _C, backend, utils
from .errors import StateError
from .layers.base import Layer
from .layers.convolutional import Conv2D
from .layers.pooling import MaxPooling2D
from .ops import conv_pool as conv_pool_ops


def fusable(conv: Layer, pool: Layer) -> bool:
    """Whether `conv` then `pool` run as one ConvPool step on the GPU."""
    return (type(conv) is Conv2D and conv.fused_activation is not None and conv.dtype == np.float32
            and conv.data_format == pool.data_format == "channels_last"
            and type(pool) is MaxPooling2D and pool.strides == pool.pool_size
            and pool.padding == "valid"
            and pool.pool_size[0] * pool.pool_size[1] <= _C.conv2d_max_pool2d_max_window)


def plan(layers: list[Layer], device: str) -> list:
    """The steps a Sequential on `device` runs: its layers, with each fusable pair as one
    ConvPool (only on 'cuda')."""
    if device != "cuda":
        return list(layers)
    steps = []
    i = 0
    while i < len(layers):
        if i + 1 < len(layers) and fusable(layers[i], layers[i + 1]):
            steps.append(ConvPool(layers[i], layers[i + 1]))
            i += 2
        else:
            steps.append(layers[i])
            i += 1
    return steps


class ConvPool:
    """A Conv2D and the MaxPooling2D after it as one step: forward(x, training) and
    backward(dy), with the layers' own checks; gradients go into the Conv2D's buffers."""

    supports_masking = False
    output_mask = None  # Conv2D drops a time-step mask, as in Keras

    def __init__(self, conv: Conv2D, pool: MaxPooling2D):
        self.conv, self.pool = conv, pool
        self._cache = None

    def forward(self, x, training: bool = False):
        conv, pool = self.conv, self.pool
        x = conv._prepare_input(x)
        conv.input_spec.check(conv, x.shape)
        pool.build_for(conv.build_for((None,) + tuple(x.shape[1:])))
        bias = conv.bias.value if conv.use_bias else None
        y, argmax = conv_pool_ops.conv2d_max_pool2d(
            x, conv.kernel.value, bias, conv.strides, conv.padding, conv.dilation_rate,
            conv.fused_activation, pool.pool_size, training=bool(training))
        if training:
            # The layers' own caches would be stale: their backward must not run alone.
            conv._cache_valid = pool._cache_valid = False
            self._cache = (x, y, argmax)
        if utils.numerics_checked():
            self._check_forward_numerics(x, y)
        return y

    def backward(self, dy):
        if self._cache is None:
            raise StateError(f"{self._label()}: backward() needs a preceding "
                             "forward(x, training=True)")
        x, y, argmax = self._cache
        dy = backend.as_float_array(dy, self.conv.dtype, f"{self._label()} backward gradient")
        if tuple(dy.shape) != tuple(y.shape):
            raise ValueError(f"{self._label()}: backward expected a gradient of shape "
                             f"{tuple(y.shape)} (the output of the latest training forward), "
                             f"got {tuple(dy.shape)}")
        conv, pool = self.conv, self.pool
        want_kernel = conv.trainable and conv.kernel.trainable
        want_bias = conv.use_bias and conv.trainable and conv.bias.trainable
        dx, dkernel, dbias = conv_pool_ops.conv2d_max_pool2d_backward(
            dy, x, conv.kernel.value, y, argmax, conv.strides, conv.padding, conv.dilation_rate,
            conv.fused_activation, pool.pool_size, kernel_grad=want_kernel, bias_grad=want_bias)
        if want_kernel:
            conv._accumulate(conv.kernel, dkernel)
        if want_bias:
            conv._accumulate(conv.bias, dbias)
        if utils.numerics_checked():
            self._check_backward_numerics(dy, dx)
        return dx

    def _label(self) -> str:
        return f"{self.conv._label()} fused with {self.pool._label()}"

    # fd.utils.check_numerics: the checks of the Conv2D, whose weights the step owns
    # (a Layer runs them in Layer.forward/backward; this step is not a Layer).
    def _check_forward_numerics(self, x, y) -> None:
        self.conv._check_forward_numerics(x, y)

    def _check_backward_numerics(self, dy, dx, incoming="the gradient passed to backward()"):
        self.conv._check_backward_numerics(dy, dx, incoming)
