"""Convolution layers: Conv1D, Conv2D, Conv2DTranspose (Keras names, arguments,
defaults, weight shapes and order, output shapes and configs).

Shapes are channels-last, batch first:
- Conv1D: input (N, T, C), kernel (K, C, F), bias (F,), output (N, OT, F).
- Conv2D: input (N, H, W, C), kernel (KH, KW, C, F), bias (F,), output (N, OH, OW, F).
- Conv2DTranspose: input (N, H, W, C), kernel (KH, KW, F, C), bias (F,),
  output (N, OH, OW, F).
Output sizes follow Keras (fusednn.ops.conv explains the formulas). The layers
compute cross-correlation, as Keras does. A linear or plain relu activation is
fused into the kernels; any other activation is applied here, after them.
"""
from __future__ import annotations

from .. import activations, backend, constraints, initializers, regularizers
from ..ops import conv as conv_ops
from .base import InputSpec, Layer
from .core import ActivationAttribute, _checked, _positive_int
from .data_format import ChannelsLayout, checked_data_format
from .registry import register


def _fusable(activation) -> str | None:
    """The kernels' name for an activation they can fuse ('linear', 'relu'), else None."""
    if type(activation) is activations.Linear:
        return "linear"
    if (type(activation) is activations.ReLU and activation.negative_slope == 0.0
            and activation.max_value is None and activation.threshold == 0.0):
        return "relu"
    return None


class _Conv(Layer):
    """Shared configuration, weights and activation handling of the convolution layers.

    Subclasses set `rank`, `_paddings`, and implement `_kernel_shape(channels)`,
    `_output_length(axis, length)`, `_conv(x, kernel, bias, activation)` and
    `_conv_backward(dy, x, kernel, y, activation, wanted)` (one kernel call each).
    groups > 1 (grouped convolution, Keras's `groups`) runs one kernel call per group
    on its slice of the channels and of the filters.
    """

    rank = 2
    activation = ActivationAttribute()
    _paddings = ("valid", "same")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        label = self._label()
        self.filters = _positive_int(self, "filters", filters)
        self.groups = _positive_int(self, "groups", groups)
        if self.filters % self.groups:
            raise ValueError(f"{label}: filters={self.filters} must be divisible by "
                             f"groups={self.groups}")
        self.kernel_size = conv_ops.normalize_tuple(kernel_size, self.rank, "kernel_size", label)
        self.strides = conv_ops.normalize_tuple(strides, self.rank, "strides", label)
        self.dilation_rate = conv_ops.normalize_tuple(dilation_rate, self.rank, "dilation_rate",
                                                      label)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{label}: strides > 1 together with dilation_rate > 1 is not "
                             f"supported (as in Keras), got strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        self.padding = conv_ops.normalize_padding(padding, label, self._paddings)
        self.data_format = checked_data_format(self, data_format)
        self._layout = ChannelsLayout(self.data_format)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _checked(self, "kernel_initializer", initializers.get,
                                           kernel_initializer)
        self.bias_initializer = _checked(self, "bias_initializer", initializers.get,
                                         bias_initializer)
        self.kernel_regularizer = _checked(self, "kernel_regularizer", regularizers.get,
                                           kernel_regularizer)
        self.bias_regularizer = _checked(self, "bias_regularizer", regularizers.get,
                                         bias_regularizer)
        self.kernel_constraint = _checked(self, "kernel_constraint", constraints.get,
                                          kernel_constraint)
        self.bias_constraint = _checked(self, "bias_constraint", constraints.get, bias_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        self.kernel = None
        self.bias = None

    # ----- shapes and weights ----------------------------------------------------
    def _input_channels(self, input_shape) -> int:
        """The size of the input's channel axis, which the kernel's shape needs."""
        channels = input_shape[self._layout.channel_axis]
        if channels is None:
            raise ValueError(f"{self._label()}: the channel axis ({self.data_format}) of the "
                             f"input must be known to create the kernel, got input shape "
                             f"{tuple(input_shape)}")
        return channels

    def build(self, input_shape):
        axis = self._layout.channel_axis
        channels = self._input_channels(input_shape)
        if channels % self.groups:
            raise ValueError(f"{self._label()}: the {channels} input channels must be divisible "
                             f"by groups={self.groups}")
        self.compute_output_shape(input_shape)  # a kernel that does not fit fails here
        self.kernel = self.add_weight("kernel", self._kernel_shape(channels // self.groups),
                                      self.kernel_initializer, self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={axis: channels})

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"{self._label()}: expected input of rank {self.rank + 2} "
                             f"(batch first), got shape {input_shape}")
        return self._layout.to_user_shape(
            self._output_shape_last(self._layout.to_last_shape(input_shape)))

    def _output_shape_last(self, input_shape):
        spatial = []
        for axis, length in enumerate(input_shape[1:-1]):
            if length is None:
                spatial.append(None)
                continue
            try:
                spatial.append(self._output_length(axis, length))
            except ValueError as e:
                raise ValueError(f"{self._label()}: input shape {input_shape}, spatial axis "
                                 f"{axis + 1}: {e}") from None
        return (input_shape[0], *spatial, self._output_channels(input_shape[-1]))

    def _output_channels(self, input_channels):
        """The channel count of the output for `input_channels` in (None while unknown)."""
        return self.filters

    def _output_length(self, axis, length):
        return conv_ops.conv_output_length(length, self.kernel_size[axis], self.strides[axis],
                                           self.padding, self.dilation_rate[axis])[0]

    @property
    def fused_activation(self) -> str | None:
        """The kernels' name for the activation when they apply it themselves, else None."""
        return _fusable(self.activation)

    # ----- one kernel call, or one per group --------------------------------------
    def _grouped_kernel(self):
        """The kernel as the group loop slices it: (..., C / groups, filters)."""
        return self.kernel.value

    def _forward(self, x, bias, activation):
        kernel = self._grouped_kernel()
        if self.groups == 1:
            return self._conv(x, kernel, bias, activation)
        xp = backend.get_array_module(x)
        return xp.concatenate(
            [self._conv(x_g, k_g, b_g, activation) for x_g, k_g, b_g in zip(
                _split(x, self.groups), _split(kernel, self.groups),
                _split(bias, self.groups))], axis=-1)

    def _backward(self, dy, x, y, activation, wanted):
        kernel = self._grouped_kernel()
        if self.groups == 1:
            return self._conv_backward(dy, x, kernel, y, activation, wanted)
        xp = backend.get_array_module(dy)
        parts = [self._conv_backward(dy_g, x_g, k_g, y_g, activation, wanted)
                 for dy_g, x_g, k_g, y_g in zip(
                     _split(dy, self.groups), _split(x, self.groups),
                     _split(kernel, self.groups), _split(y, self.groups))]
        return tuple(None if part[0] is None else xp.concatenate(part, axis=-1)
                     for part in zip(*parts))

    # ----- running ---------------------------------------------------------------
    def call(self, x, training):
        y, cache = self._call_last(self._layout.to_last(x), training)
        return self._layout.to_user(y), cache

    def call_backward(self, dy, cache):
        return self._layout.to_user(self._backward_last(self._layout.to_last(dy), cache))

    def _call_last(self, x, training):
        bias = self.bias.value if self.use_bias else None
        activation = self.activation
        fused = _fusable(activation)
        if fused is not None:
            y = self._forward(x, bias, fused)
            return y, ((x, None, y, fused) if training else None)
        z = self._forward(x, bias, "linear")
        y = activation.forward(z)
        return y, ((x, z, y, activation) if training else None)

    def _backward_last(self, dy, cache):
        x, z, y, activation = cache  # the activation of that forward (a kernel name if fused)
        if z is None:
            saved_output = y
        else:
            dy = activation.backward(z, y, dy)
            activation, saved_output = "linear", None
        # A frozen layer passes dx back without computing weight gradients.
        want_kernel = self.trainable and self.kernel.trainable
        want_bias = self.use_bias and self.trainable and self.bias.trainable
        dx, dkernel, dbias = self._backward(dy, x, saved_output, activation,
                                            dict(input_grad=self._input_grad_needed,
                                                 kernel_grad=want_kernel, bias_grad=want_bias))
        if want_kernel:
            self._accumulate(self.kernel, dkernel.reshape(self.kernel.shape))
        if want_bias:
            self._accumulate(self.bias, dbias)
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            strides=list(self.strides),
            padding=self.padding,
            data_format=self.data_format,
            dilation_rate=list(self.dilation_rate),
            groups=self.groups,
            activation=activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
            kernel_constraint=constraints.serialize(self.kernel_constraint),
            bias_constraint=constraints.serialize(self.bias_constraint),
        )
        return config


def _split(array, groups: int):
    """`groups` equal slices of the last axis (channels, filters or bias); Nones for None."""
    if array is None:
        return [None] * groups
    width = array.shape[-1] // groups
    return [array[..., g * width:(g + 1) * width] for g in range(groups)]


@register
class Conv2D(_Conv):
    """2-D convolution: y = activation(conv(x, kernel) + bias).

    Input (N, H, W, C), kernel (KH, KW, C, filters), bias (filters,), output
    (N, OH, OW, filters); padding "valid" or "same".
    """

    def _kernel_shape(self, channels):
        return (*self.kernel_size, channels, self.filters)

    def _geometry_args(self):
        return self.strides, self.padding, self.dilation_rate

    def _conv(self, x, kernel, bias, activation):
        return conv_ops.conv2d(x, kernel, bias, *self._geometry_args(), activation=activation)

    def _conv_backward(self, dy, x, kernel, y, activation, wanted):
        return conv_ops.conv2d_backward(dy, x, kernel, y, *self._geometry_args(),
                                        activation=activation, **wanted)


@register
class Conv1D(_Conv):
    """1-D convolution over time: y = activation(conv(x, kernel) + bias).

    Input (N, T, C), kernel (K, C, filters), bias (filters,), output (N, OT,
    filters); padding "valid", "same" or "causal" (output t sees inputs <= t).
    """

    rank = 1
    _paddings = ("valid", "same", "causal")

    def _kernel_shape(self, channels):
        return (self.kernel_size[0], channels, self.filters)

    def _geometry_args(self):
        return self.strides[0], self.padding, self.dilation_rate[0]

    def _conv(self, x, kernel, bias, activation):
        return conv_ops.conv1d(x, kernel, bias, *self._geometry_args(), activation=activation)

    def _conv_backward(self, dy, x, kernel, y, activation, wanted):
        return conv_ops.conv1d_backward(dy, x, kernel, y, *self._geometry_args(),
                                        activation=activation, **wanted)


@register
class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution (the adjoint of Conv2D, "deconvolution").

    Input (N, H, W, C), kernel (KH, KW, filters, C), bias (filters,), output
    (N, OH, OW, filters) with, per axis, OH = (H - 1) * s + max(k, s) for
    "valid" and H * s for "same" (k the dilated kernel extent), or with
    output_padding p (< s): (H - 1) * s + k + p ("valid"), (H - 1) * s + k % 2 + p
    ("same").
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate,
                         activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, **kwargs)
        if output_padding is not None:
            output_padding = conv_ops.normalize_tuple(output_padding, self.rank,
                                                      "output_padding", self._label(),
                                                      allow_zero=True)
            if any(p >= s for p, s in zip(output_padding, self.strides)):
                raise ValueError(f"{self._label()}: strides {self.strides} must be greater "
                                 f"than output_padding {output_padding}")
        self.output_padding = output_padding

    def _kernel_shape(self, channels):
        return (*self.kernel_size, self.filters, channels)

    def _output_length(self, axis, length):
        padding = None if self.output_padding is None else self.output_padding[axis]
        out = conv_ops.conv_transpose_output_length(length, self.kernel_size[axis],
                                                    self.strides[axis], self.padding, padding,
                                                    self.dilation_rate[axis])[0]
        if out < 1:
            raise ValueError(f"the output would be empty (length {out}); use a larger "
                             "output_padding")
        return out

    def _geometry_args(self):
        return self.strides, self.padding, self.output_padding, self.dilation_rate

    def _conv(self, x, kernel, bias, activation):
        return conv_ops.conv2d_transpose(x, kernel, bias, *self._geometry_args(),
                                         activation=activation)

    def _conv_backward(self, dy, x, kernel, y, activation, wanted):
        return conv_ops.conv2d_transpose_backward(dy, x, kernel, y, *self._geometry_args(),
                                                  activation=activation, **wanted)

    def get_config(self):
        config = super().get_config()
        del config["groups"]  # Keras's Conv2DTranspose has no groups
        config["output_padding"] = (None if self.output_padding is None
                                    else list(self.output_padding))
        return config


@register
class Conv1DTranspose(Conv2DTranspose):
    """Transposed 1-D convolution: (N, T, C) -> (N, OT, filters), kernel (K, filters, C),
    OT as Conv2DTranspose's rule on one axis. Runs the 2-D kernels on (N, 1, T, C)."""

    rank = 1

    @staticmethod
    def _as_2d(geometry):
        strides, padding, output_padding, dilation_rate = geometry
        return ((1,) + strides, padding,
                None if output_padding is None else (0,) + output_padding,
                (1,) + dilation_rate)

    def _conv(self, x, kernel, bias, activation):
        return conv_ops.conv2d_transpose(x[:, None], kernel[None], bias,
                                         *self._as_2d(self._geometry_args()),
                                         activation=activation)[:, 0]

    def _conv_backward(self, dy, x, kernel, y, activation, wanted):
        dx, dkernel, dbias = conv_ops.conv2d_transpose_backward(
            dy[:, None], x[:, None], kernel[None], None if y is None else y[:, None],
            *self._as_2d(self._geometry_args()), activation=activation, **wanted)
        return (None if dx is None else dx[:, 0], None if dkernel is None else dkernel[0],
                dbias)
