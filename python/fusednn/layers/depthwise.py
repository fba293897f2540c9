"""DepthwiseConv1D/2D and SeparableConv1D/2D (Keras 3's layers and weights).

Depthwise: each input channel c is convolved with its own depth_multiplier (M) filters,
output channel c * M + m: a grouped convolution with groups = C (layers/convolutional.py
runs one kernel call per group), weights `depthwise_kernel` (..., C, M) and `bias` (C * M,).
Separable: that depthwise step (no bias, linear) followed by a pointwise 1x1 convolution
`pointwise_kernel` (1.., C * M, filters) with `bias` (filters,) and the activation.

The per-group loop is correct for every shape but makes C kernel calls: fine for the
models of the courses, slow for a MobileNet with hundreds of channels (a depthwise
kernel of its own would remove that; not written yet).
"""
from __future__ import annotations

from .. import constraints, initializers, regularizers
from ..ops import conv as conv_ops
from .base import InputSpec, Layer
from .convolutional import Conv1D, Conv2D
from .core import _checked, _positive_int
from .registry import register


class _Depthwise(Layer):
    """Depthwise convolution: every input channel gets its own depth_multiplier (M) filters,
    output channel c * M + m; weights depthwise_kernel (..., C, M) and bias (C * M,).
    Mixed in before Conv1D / Conv2D, whose geometry, data_format and activation it keeps."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, depthwise_constraint=None,
                 **kwargs):
        super().__init__(1, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate,
                         activation=activation, use_bias=use_bias,
                         bias_initializer=bias_initializer, bias_regularizer=bias_regularizer,
                         **kwargs)
        self.depth_multiplier = _positive_int(self, "depth_multiplier", depth_multiplier)
        self.kernel_initializer = _checked(self, "depthwise_initializer", initializers.get,
                                           depthwise_initializer)
        self.kernel_regularizer = _checked(self, "depthwise_regularizer", regularizers.get,
                                           depthwise_regularizer)
        self.kernel_constraint = _checked(self, "depthwise_constraint", constraints.get,
                                          depthwise_constraint)

    def build(self, input_shape):
        channels = self._build_depthwise(input_shape)
        self.filters = channels * self.depth_multiplier
        self.compute_output_shape(input_shape)  # a kernel that does not fit fails here
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        self.bias_regularizer, constraint=self.bias_constraint)

    def _build_depthwise(self, input_shape) -> int:
        """Creates depthwise_kernel (..., C, M) and sets groups = C; returns C."""
        axis = self._layout.channel_axis
        channels = self._input_channels(input_shape)
        self.groups = channels
        self.kernel = self.add_weight("depthwise_kernel",
                                      (*self.kernel_size, channels, self.depth_multiplier),
                                      self.kernel_initializer, self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={axis: channels})
        return channels

    def _output_channels(self, input_channels):
        # C * M, from the input: compute_output_shape before build must not set `filters`.
        return None if input_channels is None else input_channels * self.depth_multiplier

    def _grouped_kernel(self):
        # (..., C, M) -> (..., 1, C * M): group c takes output channels c * M .. c * M + M - 1.
        shape = self.kernel.value.shape
        return self.kernel.value.reshape(shape[:-2] + (1, shape[-2] * shape[-1]))

    def get_config(self):
        config = super().get_config()
        for key in ("filters", "groups", "kernel_initializer", "kernel_regularizer",
                    "kernel_constraint"):
            config.pop(key, None)
        config.update(depth_multiplier=self.depth_multiplier,
                      depthwise_initializer=initializers.serialize(self.kernel_initializer),
                      depthwise_regularizer=regularizers.serialize(self.kernel_regularizer),
                      depthwise_constraint=constraints.serialize(self.kernel_constraint))
        return config


@register
class DepthwiseConv2D(_Depthwise, Conv2D):
    """Depthwise 2-D convolution: (N, H, W, C) -> (N, OH, OW, C * depth_multiplier)."""


@register
class DepthwiseConv1D(_Depthwise, Conv1D):
    """Depthwise 1-D convolution: (N, T, C) -> (N, OT, C * depth_multiplier)."""


class _Separable(_Depthwise):
    """The depthwise step (no bias, linear), then a pointwise 1x1 convolution to `filters`
    with the bias and the activation; weights depthwise_kernel, pointwise_kernel, bias."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, pointwise_constraint=None,
                 **kwargs):
        super().__init__(kernel_size, strides=strides, padding=padding,
                         depth_multiplier=depth_multiplier, data_format=data_format,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         depthwise_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer,
                         depthwise_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, **kwargs)
        self.pointwise_filters = _positive_int(self, "filters", filters)
        self.pointwise_initializer = _checked(self, "pointwise_initializer", initializers.get,
                                              pointwise_initializer)
        self.pointwise_regularizer = _checked(self, "pointwise_regularizer", regularizers.get,
                                              pointwise_regularizer)
        self.pointwise_constraint = _checked(self, "pointwise_constraint", constraints.get,
                                             pointwise_constraint)
        self.pointwise_kernel = None

    def build(self, input_shape):
        channels = self._build_depthwise(input_shape)
        self.filters = self.pointwise_filters
        self.compute_output_shape(input_shape)  # a kernel that does not fit fails here
        self.pointwise_kernel = self.add_weight(
            "pointwise_kernel", (1,) * self.rank + (channels * self.depth_multiplier,
                                                    self.filters),
            self.pointwise_initializer, self.pointwise_regularizer,
            constraint=self.pointwise_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        self.bias_regularizer, constraint=self.bias_constraint)

    def _output_channels(self, input_channels):
        return self.pointwise_filters

    def _pointwise(self, depthwise_output, bias, activation):
        op = conv_ops.conv2d if self.rank == 2 else conv_ops.conv1d
        return op(depthwise_output, self.pointwise_kernel.value, bias, activation=activation)

    def _forward(self, x, bias, activation):
        return self._pointwise(super()._forward(x, None, "linear"), bias, activation)

    def _backward(self, dy, x, y, activation, wanted):
        depthwise_output = super()._forward(x, None, "linear")  # recomputed: one cheap pass
        op = conv_ops.conv2d_backward if self.rank == 2 else conv_ops.conv1d_backward
        d_depthwise, d_pointwise, dbias = op(
            dy, depthwise_output, self.pointwise_kernel.value, y, activation=activation,
            input_grad=True, kernel_grad=wanted["kernel_grad"], bias_grad=wanted["bias_grad"])
        if d_pointwise is not None:
            self._accumulate(self.pointwise_kernel, d_pointwise)
        dx, dkernel, _ = super()._backward(d_depthwise, x, None, "linear",
                                           dict(wanted, bias_grad=False))
        return dx, dkernel, dbias

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.pointwise_filters,
                      pointwise_initializer=initializers.serialize(self.pointwise_initializer),
                      pointwise_regularizer=regularizers.serialize(self.pointwise_regularizer),
                      pointwise_constraint=constraints.serialize(self.pointwise_constraint))
        return config


@register
class SeparableConv2D(_Separable, Conv2D):
    """Depthwise then pointwise 2-D convolution: (N, H, W, C) -> (N, OH, OW, filters)."""


@register
class SeparableConv1D(_Separable, Conv1D):
    """Depthwise then pointwise 1-D convolution: (N, T, C) -> (N, OT, filters)."""
