"""Convolution on channels-last arrays, forward and backward, over the kernels of
csrc/include/fusednn/conv.h (CPU: tiled im2col + GEMM; CUDA: implicit GEMM).

Shapes (Keras layouts):
- conv2d: x (N, H, W, C), kernel (KH, KW, C, F), bias (F,) -> y (N, OH, OW, F).
- conv1d: x (N, T, C), kernel (K, C, F), bias (F,) -> y (N, OT, F); it runs as
  conv2d on (N, 1, T, C).
- conv2d_transpose: x (N, H, W, Cin), kernel (KH, KW, Cout, Cin), bias (Cout,)
  -> y (N, OH, OW, Cout). It is the adjoint (the data gradient) of the conv2d
  that maps y's shape back to x's with the same kernel, as in Keras/TensorFlow.
Every layer computes cross-correlation, as Keras does (no kernel flip).

Geometry, per spatial axis of length n, kernel k, stride s, dilation d, with
the dilated extent kd = (k - 1) * d + 1:
- "valid": out = floor((n - kd) / s) + 1, no padding; kd > n is a ValueError.
- "same": out = ceil(n / s); total padding max((out - 1) * s + kd - n, 0),
  total // 2 before and the rest (the odd one) after, as in Keras.
- "causal" (conv1d only): (k - 1) * d zeros before, out = ceil(n / s).
- transpose: "valid" out = (n - 1) * s + max(kd, s), "same" out = n * s, and
  with output_padding p: "valid" (n - 1) * s + kd + p, "same" (n - 1) * s +
  kd % 2 + p (Keras's formulas; p < s).

activation: "linear" or "relu" is fused into the kernels (the forward adds the
bias and applies it on each output tile; the backward gates dy with the saved
output y). Layers apply any other activation themselves.

Rules at this boundary: float32 or float64 NumPy arrays (float32 CuPy arrays
on the GPU), all of one dtype and on one device (else TypeError); inputs that
are not C-contiguous are copied; outputs are new arrays (large ones on
fusednn.buffer_pool's memory). Shapes and hyper-parameters are validated
(ValueError naming the op) before any kernel runs. tf32=True lets the CUDA
kernels multiply in TF32 on the tensor cores (ignored on the CPU).
"""
from __future__ import annotations

import numpy as np

from .. import _C, backend, shared_cores
from . import cuda_launch

_ACTIVATIONS = ("linear", "relu")
_CPU_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_GPU_DTYPES = (np.dtype(np.float32),)
_SIZE_LIMIT = 2**31  # kernel sizes, strides, dilations and output paddings stay below it


# ----- geometry ---------------------------------------------------------------
def conv_output_length(length, kernel_size, stride, padding, dilation=1):
    """(output length, padding before) of a convolution along one axis.

    padding is "valid", "same" or "causal" (see the module docstring). Raises
    ValueError when the (dilated) kernel does not fit the padded input.
    """
    extent = (kernel_size - 1) * dilation + 1
    if padding == "same":
        out = -(-length // stride)
        return out, max((out - 1) * stride + extent - length, 0) // 2
    if padding == "causal":
        return -(-length // stride), extent - 1
    if extent > length:
        raise ValueError(f"the kernel (size {kernel_size}, dilation {dilation}: extent {extent}) "
                         f"is larger than the input ({length}) and padding='valid' adds no "
                         "padding; use a smaller kernel or padding='same'")
    return (length - extent) // stride + 1, 0


def conv_transpose_output_length(length, kernel_size, stride, padding, output_padding=None,
                                 dilation=1):
    """(output length, padding before) of a transposed convolution along one axis.

    The padding returned is the top/left padding of the conv2d whose adjoint the
    transpose is (that conv2d maps the output length back to `length`).
    """
    extent = (kernel_size - 1) * dilation + 1
    if padding == "valid":
        extra = max(extent, stride) - extent if output_padding is None else output_padding
        return (length - 1) * stride + extent + extra, 0
    if output_padding is None:
        total = stride + extent - 2
    else:
        total = extent + extent % 2 - 2 + output_padding
    out = (length - 1) * stride + 1 + total - (extent - 1)
    before = min(total // 2 + total % 2, extent - 1)  # padding of the zero-inserted input
    return out, extent - 1 - before


def normalize_tuple(value, rank, what, op, allow_zero=False):
    """`value` as a tuple of `rank` ints in [1, 2^31) ([0, 2^31) with allow_zero); an int
    is repeated. The bound keeps every size, stride and padding within the kernels'
    index arithmetic (and a Python int within the bindings' int64)."""
    low = 0 if allow_zero else 1
    if type(value) is tuple and len(value) == rank and all(
            type(v) is int and low <= v < _SIZE_LIMIT for v in value):
        return value  # the common case, already normalised (as the layers pass it)
    if _is_int(value):
        values = (value,) * rank
    else:
        try:
            values = tuple(value)
        except TypeError:
            values = None
    if values is None or len(values) != rank or not all(
            _is_int(v) and low <= v < _SIZE_LIMIT for v in values):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{op}: expected {what} to be a {kind} int or a tuple of {rank} "
                         f"{kind} ints, each below 2^31, got {value!r}")
    return tuple(int(v) for v in values)


def normalize_padding(padding, op, allowed=("valid", "same")):
    """The padding name in lower case (Keras accepts any case); ValueError otherwise."""
    name = padding.lower() if isinstance(padding, str) else None
    if name not in allowed:
        raise ValueError(f"{op}: expected padding to be one of {', '.join(map(repr, allowed))}, "
                         f"got {padding!r}")
    return name


# ----- conv2d -------------------------------------------------------------------
def conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1,
           activation="linear", *, tf32=False):
    """y = activation(conv(x, kernel) + bias): x (N, H, W, C), kernel (KH, KW, C, F),
    bias (F,) or None -> y (N, OH, OW, F)."""
    op = "conv2d"
    xp, x, kernel, bias = _checked_arrays(op, x=(x, 4), kernel=(kernel, 4), bias=(bias, 1))
    geometry = _conv2d_geometry(op, x.shape, kernel.shape, strides, padding, dilation_rate)
    _check_bias(op, bias, kernel.shape[3], "F = kernel.shape[3]")
    activation = _checked_activation(op, activation)
    y = backend.empty(xp, _output_shape(geometry), x.dtype)
    _launch(xp, "conv2d_forward", x, kernel, bias, y, geometry, activation, tf32)
    return y


def conv2d_backward(dy, x, kernel, y=None, strides=1, padding="valid", dilation_rate=1,
                    activation="linear", *, input_grad=True, kernel_grad=True, bias_grad=True,
                    tf32=False):
    """Gradients of y = activation(conv(x, kernel) + bias) from dy (N, OH, OW, F).

    y is the forward output, needed when activation is "relu". Returns
    (dx (N, H, W, C), dkernel (KH, KW, C, F), dbias (F,)), None for each gradient
    not asked for.
    """
    op = "conv2d_backward"
    xp, dy, x, kernel, y = _checked_arrays(op, dy=(dy, 4), x=(x, 4), kernel=(kernel, 4),
                                           y=(y, 4))
    geometry = _conv2d_geometry(op, x.shape, kernel.shape, strides, padding, dilation_rate)
    activation = _checked_activation(op, activation)
    _check_gradient_shapes(op, geometry, dy, y, activation)
    dx = backend.empty(xp, x.shape, x.dtype) if input_grad else None
    dkernel = backend.empty(xp, kernel.shape, x.dtype) if kernel_grad else None
    dbias = backend.empty(xp, (kernel.shape[3],), x.dtype) if bias_grad else None
    if input_grad or kernel_grad or bias_grad:
        _launch(xp, "conv2d_backward", x if kernel_grad else None,
                y if activation != "linear" else None, dy, kernel if input_grad else None,
                dx, dkernel, dbias, geometry, activation, tf32)
    return dx, dkernel, dbias


# ----- conv1d -------------------------------------------------------------------
def conv1d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1,
           activation="linear", *, tf32=False):
    """y = activation(conv(x, kernel) + bias): x (N, T, C), kernel (K, C, F), bias (F,)
    or None -> y (N, OT, F). padding: "valid", "same" or "causal"."""
    op = "conv1d"
    xp, x, kernel, bias = _checked_arrays(op, x=(x, 3), kernel=(kernel, 3), bias=(bias, 1))
    geometry = _conv1d_geometry(op, x.shape, kernel.shape, strides, padding, dilation_rate)
    _check_bias(op, bias, kernel.shape[2], "F = kernel.shape[2]")
    activation = _checked_activation(op, activation)
    y = backend.empty(xp, _output_shape(geometry), x.dtype)
    _launch(xp, "conv2d_forward", x[:, None], kernel[None], bias, y, geometry, activation, tf32)
    return y[:, 0]


def conv1d_backward(dy, x, kernel, y=None, strides=1, padding="valid", dilation_rate=1,
                    activation="linear", *, input_grad=True, kernel_grad=True, bias_grad=True,
                    tf32=False):
    """Gradients of conv1d from dy (N, OT, F): (dx (N, T, C), dkernel (K, C, F),
    dbias (F,)), None for each gradient not asked for."""
    op = "conv1d_backward"
    xp, dy, x, kernel, y = _checked_arrays(op, dy=(dy, 3), x=(x, 3), kernel=(kernel, 3),
                                           y=(y, 3))
    geometry = _conv1d_geometry(op, x.shape, kernel.shape, strides, padding, dilation_rate)
    activation = _checked_activation(op, activation)
    dy4 = dy[:, None]
    y4 = None if y is None else y[:, None]
    _check_gradient_shapes(op, geometry, dy4, y4, activation, squeeze=True)
    dx = backend.empty(xp, x.shape, x.dtype) if input_grad else None
    dkernel = backend.empty(xp, kernel.shape, x.dtype) if kernel_grad else None
    dbias = backend.empty(xp, (kernel.shape[2],), x.dtype) if bias_grad else None
    if input_grad or kernel_grad or bias_grad:
        _launch(xp, "conv2d_backward", x[:, None] if kernel_grad else None,
                y4 if activation != "linear" else None, dy4,
                kernel[None] if input_grad else None,
                None if dx is None else dx[:, None], None if dkernel is None else dkernel[None],
                dbias, geometry, activation, tf32)
    return dx, dkernel, dbias


# ----- conv2d_transpose ---------------------------------------------------------
def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid", output_padding=None,
                     dilation_rate=1, activation="linear", *, tf32=False):
    """y = activation(conv2d_transpose(x, kernel) + bias): x (N, H, W, Cin), kernel
    (KH, KW, Cout, Cin), bias (Cout,) or None -> y (N, OH, OW, Cout)."""
    op = "conv2d_transpose"
    xp, x, kernel, bias = _checked_arrays(op, x=(x, 4), kernel=(kernel, 4), bias=(bias, 1))
    geometry = _transpose_geometry(op, x.shape, kernel.shape, strides, padding, output_padding,
                                   dilation_rate)
    _check_bias(op, bias, kernel.shape[2], "Cout = kernel.shape[2]")
    activation = _checked_activation(op, activation)
    backend.check_array_bytes(f"{op}: the output of x {tuple(x.shape)}", _input_shape(geometry),
                              x.dtype)
    y = backend.empty(xp, _input_shape(geometry), x.dtype)
    _launch(xp, "conv2d_backward_data", x, kernel, bias, y, geometry, activation, tf32)
    return y


def conv2d_transpose_backward(dy, x, kernel, y=None, strides=1, padding="valid",
                              output_padding=None, dilation_rate=1, activation="linear", *,
                              input_grad=True, kernel_grad=True, bias_grad=True, tf32=False):
    """Gradients of conv2d_transpose from dy (N, OH, OW, Cout): (dx (N, H, W, Cin),
    dkernel (KH, KW, Cout, Cin), dbias (Cout,)), None for each not asked for.

    As the transpose is the adjoint of a conv2d, its data gradient is that
    conv2d's forward and its kernel gradient that conv2d's kernel gradient with
    the roles of input and output gradient exchanged.
    """
    op = "conv2d_transpose_backward"
    xp, dy, x, kernel, y = _checked_arrays(op, dy=(dy, 4), x=(x, 4), kernel=(kernel, 4),
                                           y=(y, 4))
    geometry = _transpose_geometry(op, x.shape, kernel.shape, strides, padding, output_padding,
                                   dilation_rate)
    activation = _checked_activation(op, activation)
    expected = _input_shape(geometry)
    for name, array in (("dy", dy), ("y", y)):
        if array is not None and tuple(array.shape) != expected:
            raise ValueError(f"{op}: expected {name} of shape {expected} (the output for x "
                             f"{tuple(x.shape)}), got {tuple(array.shape)}")
    if activation == "relu":
        if y is None:
            raise ValueError(f"{op}: activation 'relu' needs the forward output y")
        dy = xp.where(y > 0, dy, xp.zeros((), dtype=dy.dtype))
    dx = dkernel = dbias = None
    if input_grad:
        dx = backend.empty(xp, x.shape, x.dtype)
        _launch(xp, "conv2d_forward", dy, kernel, None, dx, geometry, "linear", tf32)
    if kernel_grad:
        dkernel = backend.empty(xp, kernel.shape, x.dtype)
        _launch(xp, "conv2d_backward", dy, None, x, None, None, dkernel, None, geometry,
                "linear", tf32)
    if bias_grad:
        dbias = dy.sum(axis=(0, 1, 2))
    return dx, dkernel, dbias


# ----- internals ----------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _checked_arrays(op, **named):
    """(xp, *arrays): each (array or None, ndim) checked for rank, dtype and device,
    made C-contiguous; all must share one device and one dtype."""
    present = {name: a for name, (a, _) in named.items() if a is not None}
    try:
        xp = backend.get_array_module(*present.values())
    except TypeError as e:
        raise TypeError(f"{op}: {e}") from None
    backend.check_cuda_kernels(op, xp)
    allowed = _CPU_DTYPES if xp is np else _GPU_DTYPES
    out, dtype = [], None
    for name, (array, ndim) in named.items():
        if array is None:
            out.append(None)
            continue
        if xp is np and not isinstance(array, np.ndarray):
            array = np.asarray(array)
        if array.ndim != ndim:
            raise ValueError(f"{op}: expected {name} of rank {ndim}, got shape "
                             f"{tuple(array.shape)}")
        if array.dtype not in allowed:
            where = "NumPy" if xp is np else "CuPy"
            raise TypeError(f"{op}: {where} {name} must be "
                            f"{' or '.join(d.name for d in allowed)}, got dtype {array.dtype}")
        if dtype is None:
            dtype = array.dtype
        elif array.dtype != dtype:
            raise TypeError(f"{op}: all arrays must share one dtype, got {name} {array.dtype} "
                            f"and {dtype} before it")
        out.append(xp.ascontiguousarray(array))
    if xp is not np:
        devices = {name: a.device.id for name, a in present.items()}
        if len(set(devices.values())) > 1:
            raise TypeError(f"{op}: arrays are on different GPUs: {devices}")
    return (xp, *out)


def _checked_activation(op, activation):
    name = "linear" if activation is None else activation
    if name not in _ACTIVATIONS:
        raise ValueError(f"{op}: the fused activation must be 'linear' or 'relu' (apply others "
                         f"after the op), got {activation!r}")
    return name


def _check_channels(op, x_shape, kernel_shape, channel_axis, what):
    if kernel_shape[channel_axis] != x_shape[-1]:
        raise ValueError(f"{op}: the kernel {tuple(kernel_shape)} expects {what} = "
                         f"{kernel_shape[channel_axis]} input channels, but x "
                         f"{tuple(x_shape)} has {x_shape[-1]}")
    if x_shape[-1] == 0 or 0 in kernel_shape:
        raise ValueError(f"{op}: channels and kernel sizes must be >= 1, got x "
                         f"{tuple(x_shape)} and kernel {tuple(kernel_shape)}")


def _check_bias(op, bias, channels, what):
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"{op}: expected bias of shape ({channels},) ({what}), got "
                         f"{tuple(bias.shape)}")


def _check_spatial(op, shape, axes):
    if any(shape[a] == 0 for a in axes):
        raise ValueError(f"{op}: spatial sizes must be >= 1, got x of shape {tuple(shape)}")


def _strides_and_dilation(op, strides, dilation_rate, rank):
    strides = normalize_tuple(strides, rank, "strides", op)
    dilation = normalize_tuple(dilation_rate, rank, "dilation_rate", op)
    if max(strides) > 1 and max(dilation) > 1:
        raise ValueError(f"{op}: strides > 1 together with dilation_rate > 1 is not supported "
                         f"(as in Keras), got strides={strides} and dilation_rate={dilation}")
    return strides, dilation


def _axis(op, name, length, kernel_size, stride, padding, dilation, transpose=False,
          output_padding=None):
    try:
        if transpose:
            return conv_transpose_output_length(length, kernel_size, stride, padding,
                                                output_padding, dilation)
        return conv_output_length(length, kernel_size, stride, padding, dilation)
    except ValueError as e:
        raise ValueError(f"{op}: along {name}: {e}") from None


def _conv2d_geometry(op, x_shape, kernel_shape, strides, padding, dilation_rate):
    """The 15-tuple of the bindings: (N, H, W, C, OH, OW, F, KH, KW, sh, sw, dh, dw, pt, pl)."""
    _check_channels(op, x_shape, kernel_shape, 2, "C = kernel.shape[2]")
    _check_spatial(op, x_shape, (1, 2))
    (sh, sw), (dh, dw) = _strides_and_dilation(op, strides, dilation_rate, 2)
    padding = normalize_padding(padding, op)
    N, H, W, C = x_shape
    KH, KW, _, F = kernel_shape
    OH, top = _axis(op, "the height", H, KH, sh, padding, dh)
    OW, left = _axis(op, "the width", W, KW, sw, padding, dw)
    return (N, H, W, C, OH, OW, F, KH, KW, sh, sw, dh, dw, top, left)


def _conv1d_geometry(op, x_shape, kernel_shape, strides, padding, dilation_rate):
    """conv2d geometry of (N, 1, T, C) * (1, K, C, F)."""
    _check_channels(op, x_shape, kernel_shape, 1, "C = kernel.shape[1]")
    _check_spatial(op, x_shape, (1,))
    (stride,), (dilation,) = _strides_and_dilation(op, strides, dilation_rate, 1)
    padding = normalize_padding(padding, op, ("valid", "same", "causal"))
    N, T, C = x_shape
    K, _, F = kernel_shape
    OT, left = _axis(op, "the steps", T, K, stride, padding, dilation)
    return (N, 1, T, C, 1, OT, F, 1, K, 1, stride, 1, dilation, 0, left)


def _transpose_geometry(op, x_shape, kernel_shape, strides, padding, output_padding,
                        dilation_rate):
    """Geometry of the conv2d whose adjoint the transpose is: that conv2d's input is the
    transpose's output (N, OH, OW, Cout), its output the transpose's input x."""
    _check_channels(op, x_shape, kernel_shape, 3, "Cin = kernel.shape[3]")
    _check_spatial(op, x_shape, (1, 2))
    (sh, sw), (dh, dw) = _strides_and_dilation(op, strides, dilation_rate, 2)
    padding = normalize_padding(padding, op)
    if output_padding is not None:
        output_padding = normalize_tuple(output_padding, 2, "output_padding", op, allow_zero=True)
        if output_padding[0] >= sh or output_padding[1] >= sw:
            raise ValueError(f"{op}: strides {(sh, sw)} must be greater than output_padding "
                             f"{output_padding}")
    pads = (None, None) if output_padding is None else output_padding
    N, H, W, Cin = x_shape
    KH, KW, Cout, _ = kernel_shape
    OH, top = _axis(op, "the height", H, KH, sh, padding, dh, True, pads[0])
    OW, left = _axis(op, "the width", W, KW, sw, padding, dw, True, pads[1])
    if OH < 1 or OW < 1:
        raise ValueError(f"{op}: the output of x {tuple(x_shape)} would be empty "
                         f"({OH} x {OW}); use a larger output_padding or input")
    return (N, OH, OW, Cout, H, W, Cin, KH, KW, sh, sw, dh, dw, top, left)


def _input_shape(geometry):
    return tuple(geometry[0:4])


def _output_shape(geometry):
    N, OH, OW, F = geometry[0], geometry[4], geometry[5], geometry[6]
    return (N, OH, OW, F)


def _check_gradient_shapes(op, geometry, dy, y, activation, squeeze=False):
    expected = _output_shape(geometry)

    def shown(shape):
        return (shape[0],) + tuple(shape[2:]) if squeeze else tuple(shape)

    for name, array in (("dy", dy), ("y", y)):
        if array is not None and tuple(array.shape) != expected:
            raise ValueError(f"{op}: expected {name} of shape {shown(expected)} (the output "
                             f"for these x and kernel), got {shown(array.shape)}")
    if activation != "linear" and y is None:
        raise ValueError(f"{op}: activation {activation!r} needs the forward output y")


def _launch(xp, name, *args):
    *arrays, geometry, activation, tf32 = args
    if xp is np:
        shared_cores.run(getattr(_C, name + "_cpu"), *arrays, geometry, activation)
        return
    if not isinstance(tf32, (bool, np.bool_)):
        raise TypeError(f"{name}: tf32 must be a bool, got {tf32!r}")
    first = next(a for a in arrays if a is not None)
    cuda_launch.launch(getattr(_C, name + "_cuda"), first, *arrays, geometry, activation,
                       bool(tf32))


__all__ = [
    "conv1d", "conv1d_backward", "conv2d", "conv2d_backward", "conv2d_transpose",
    "conv2d_transpose_backward", "conv_output_length", "conv_transpose_output_length",
]

