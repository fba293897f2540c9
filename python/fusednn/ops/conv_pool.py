"""conv2d (+ bias, + relu or linear) directly followed by max pooling whose strides
equal its window and whose padding is 'valid' (Keras MaxPooling2D's defaults),
forward and backward, over csrc/include/fusednn/conv_pool.h.

Shapes: x (N, H, W, C), kernel (KH, KW, C, F), bias (F,) or None; the conv
output z (N, OH, OW, F) (fusednn.ops.conv's geometry); pooling window
pool_size = (PH, PW) -> y (N, OH // PH, OW // PW, F) and, when training, argmax
(N, OH // PH, OW // PW, F): oh * OW + ow of each maximum in z, as
fusednn.ops.max_pool2d returns it. Rows and columns of z past the last whole
window are dropped (floor).

Where it runs:
- CuPy float32 arrays: one CUDA kernel (implicit GEMM whose epilogue reduces
  each window), which never writes z to memory, when the window holds at most
  `_C.conv2d_max_pool2d_max_window` elements and OH * OW fits int32 (see
  `runs_fused`); otherwise conv2d then max_pool2d on the GPU.
- NumPy arrays: conv2d then max_pool2d on the CPU kernels, the reference.
The backward is composed of existing kernels on both devices: dy gated by
y > 0 (relu; exact, because windows do not overlap, so the pooled y is the
conv output at argmax), routed to argmax by max_pool2d_backward, then
conv2d_backward with no activation.

Inputs follow fusednn.ops.conv's rules (dtypes, devices, contiguity); everything
is validated before a kernel runs.
"""
from __future__ import annotations

import numpy as np

from .. import _C, backend
from . import cuda_launch
from . import conv as conv_ops
from . import pooling as pooling_ops

_INT32_MAX = np.iinfo(np.int32).max


def runs_fused(xp, pool_size, conv_output_hw) -> bool:
    """Whether arrays of module `xp` with this window and conv output size (OH, OW) take
    the one-kernel CUDA path."""
    PH, PW = pool_size
    OH, OW = conv_output_hw
    return (xp is not np and _C.build_info()["cuda_compiled"]
            and PH * PW <= _C.conv2d_max_pool2d_max_window and OH * OW <= _INT32_MAX)


def conv2d_max_pool2d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1,
                      activation="linear", pool_size=(2, 2), *, training=False, tf32=False):
    """y = max_pool(activation(conv(x, kernel) + bias)), windows pool_size = strides, 'valid'.

    Returns (y (N, OH // PH, OW // PW, F), argmax or None): argmax (int32, or int64
    for images past 2^31 pixels) when training, for conv2d_max_pool2d_backward.
    """
    op = "conv2d_max_pool2d"
    xp, x, kernel, bias = conv_ops._checked_arrays(op, x=(x, 4), kernel=(kernel, 4),
                                                   bias=(bias, 1))
    geometry = conv_ops._conv2d_geometry(op, x.shape, kernel.shape, strides, padding,
                                         dilation_rate)
    conv_ops._check_bias(op, bias, kernel.shape[3], "F = kernel.shape[3]")
    activation = conv_ops._checked_activation(op, activation)
    pool, pooled_shape = _pool_geometry(op, geometry, pool_size)
    for name, flag in (("training", training), ("tf32", tf32)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{op}: {name} must be a bool, got {flag!r}")
    if not runs_fused(xp, pool, conv_ops._output_shape(geometry)[1:3]):
        z = conv_ops.conv2d(x, kernel, bias, strides, padding, dilation_rate, activation,
                            tf32=tf32)
        y, argmax = pooling_ops.max_pool2d(z, pool, pool, "valid")
        return y, (argmax if training else None)
    y = backend.empty(xp, pooled_shape, x.dtype)
    argmax = backend.empty(xp, pooled_shape, np.int32) if training else None
    cuda_launch.launch(_C.conv2d_max_pool2d_forward_cuda, x, x, kernel, bias, y, argmax,
                       geometry, pool, activation, bool(tf32))
    return y, argmax


def conv2d_max_pool2d_backward(dy, x, kernel, y, argmax, strides=1, padding="valid",
                               dilation_rate=1, activation="linear", pool_size=(2, 2), *,
                               input_grad=True, kernel_grad=True, bias_grad=True, tf32=False):
    """Gradients of conv2d_max_pool2d from dy (N, OH // PH, OW // PW, F), given its training
    forward's y (needed for relu; may be None for linear) and argmax.

    Returns (dx (N, H, W, C), dkernel (KH, KW, C, F), dbias (F,)), None for each gradient
    not asked for.
    """
    op = "conv2d_max_pool2d_backward"
    xp, dy, x, kernel, y = conv_ops._checked_arrays(op, dy=(dy, 4), x=(x, 4),
                                                    kernel=(kernel, 4), y=(y, 4))
    geometry = conv_ops._conv2d_geometry(op, x.shape, kernel.shape, strides, padding,
                                         dilation_rate)
    activation = conv_ops._checked_activation(op, activation)
    pool, pooled_shape = _pool_geometry(op, geometry, pool_size)
    for name, array in (("dy", dy), ("y", y)):
        if array is not None and tuple(array.shape) != pooled_shape:
            raise ValueError(f"{op}: expected {name} of shape {pooled_shape} (the pooled output "
                             f"for these x, kernel and pool_size), got {tuple(array.shape)}")
    if activation == "relu" and y is None:
        raise ValueError(f"{op}: activation 'relu' needs the forward output y")
    if (not hasattr(argmax, "dtype") or backend.device_of(argmax)
            != backend.device_of(dy) or argmax.dtype not in (np.int32, np.int64)
            or tuple(argmax.shape) != pooled_shape):
        raise TypeError(f"{op}: expected argmax as returned by conv2d_max_pool2d(training=True) "
                        f"(int32/int64 of shape {pooled_shape} on dy's device), got "
                        f"{type(argmax).__name__} of shape "
                        f"{tuple(getattr(argmax, 'shape', ()))} and dtype "
                        f"{getattr(argmax, 'dtype', None)}")
    if activation == "relu":
        dy = xp.where(y > 0, dy, xp.zeros((), dtype=dy.dtype))
    dz = pooling_ops.max_pool2d_backward(dy, argmax, conv_ops._output_shape(geometry), pool,
                                         pool, "valid")
    return conv_ops.conv2d_backward(dz, x, kernel, None, strides, padding, dilation_rate,
                                    "linear", input_grad=input_grad, kernel_grad=kernel_grad,
                                    bias_grad=bias_grad, tf32=tf32)


def _pool_geometry(op, geometry, pool_size):
    """((PH, PW), pooled output shape) for the conv output of `geometry`, validated."""
    pool = pooling_ops.normalize_tuple(pool_size, 2, "pool_size", op)
    N, OH, OW, F = conv_ops._output_shape(geometry)
    for length, window, name in ((OH, pool[0], "height"), (OW, pool[1], "width")):
        if window > length:
            raise ValueError(f"{op}: the pooling window {pool} is larger than the conv output "
                             f"{(N, OH, OW, F)} along its {name}")
    return pool, (N, OH // pool[0], OW // pool[1], F)


__all__ = ["conv2d_max_pool2d", "conv2d_max_pool2d_backward", "runs_fused"]
