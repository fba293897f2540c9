"""One ONNX exporter per layer class (the registry the model walk looks layers up in).

An exporter `export(g, layer, x, mask) -> y` writes the nodes that compute the built
`layer` on the tensor named `x` (layout and shape exactly as fusednn's: NHWC images,
(N, T, F) sequences) and returns its output's name. `mask` is the sequence_lens tensor
(int32, (N,)) of a time-step mask, or None; only the recurrent exporters use it.
Weights are written as float32. Convolutions and poolings are ONNX's NCHW operators
between two transposes; runtimes fold the transposes of consecutive layers. A layer with
data_format="channels_first" is exported channels last between two more transposes.
"""
from __future__ import annotations

import numpy as np

from .. import backend, layers
from ..layers.pooling import _GlobalPooling, _Pooling
from ..ops import conv as conv_ops
from .onnx_activations import export_activation

EXPORTERS = {}


def exports(*classes):
    """Registers the decorated function as the exporter of `classes`."""
    def add(function):
        for cls in classes:
            EXPORTERS[cls] = function
        return function
    return add


def weight(variable, dtype=np.float32) -> np.ndarray:
    """A layer's weight as a NumPy array (float32 for the graph)."""
    return np.asarray(backend.to_numpy(variable.value), dtype=dtype)


def _activation(g, layer, x, function=None):
    return export_activation(g, function or layer.activation, x, layer._label())


# ----- core --------------------------------------------------------------------------------

@exports(layers.Dense)
def _dense(g, layer, x, mask):
    y = g.op("MatMul", [x, g.const(weight(layer.kernel), f"{layer.name}.kernel")])
    if layer.use_bias:
        y = g.op("Add", [y, g.const(weight(layer.bias), f"{layer.name}.bias")])
    return _activation(g, layer, y)


@exports(layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU, layers.Softmax)
def _activation_layer(g, layer, x, mask):
    return _activation(g, layer, x, layer.function)


@exports(layers.PReLU)
def _prelu(g, layer, x, mask):
    return g.op("PRelu", [x, g.const(weight(layer.alpha), f"{layer.name}.alpha")])


@exports(layers.Dropout, layers.InputLayer)
def _identity(g, layer, x, mask):
    return x


@exports(layers.Flatten)
def _flatten(g, layer, x, mask):
    permutation = layer._permutation(len(layer.input_shape))
    if permutation is not None:
        x = g.transpose(x, permutation)
    return g.op("Flatten", [x], axis=1)


@exports(layers.Reshape)
def _reshape(g, layer, x, mask):
    return g.reshape(x, [0] + list(layer.target_shape))


@exports(layers.RepeatVector)
def _repeat_vector(g, layer, x, mask):
    rows = g.op("Unsqueeze", [x, g.const(np.array([1], np.int64), "axes")])
    return g.op("Expand", [rows, g.const(np.array([1, layer.n, 1], np.int64), "shape")])


@exports(layers.TimeDistributed)
def _time_distributed(g, layer, x, mask):
    """(N, T, ...) -> (N * T, ...) -> the wrapped layer -> (N, T, ...)."""
    inner = layer.layer
    rows = g.reshape(x, [-1] + list(layer.input_shape[2:]))
    y = export_layer(g, inner, rows, None)[0]
    batch_and_steps = g.slice(g.op("Shape", [x]), [0], [2], [0])
    rest = g.const(np.array(inner.output_shape[1:], np.int64), "shape")
    return g.reshape(y, g.op("Concat", [batch_and_steps, rest], axis=0))


@exports(layers.Embedding)
def _embedding(g, layer, ids, mask):
    ids = g.op("Cast", [ids], to=g.onnx.TensorProto.INT64)
    return g.op("Gather", [g.const(weight(layer.embeddings), f"{layer.name}.embeddings"),
                           ids], axis=0)


@exports(layers.BatchNormalization)
def _batch_norm(g, layer, x, mask):
    """The inference form as one affine map per channel, folded in float64:
    y = x * gamma / sqrt(var + eps) + (beta - mean * gamma / sqrt(var + eps))."""
    scale = 1.0 / np.sqrt(weight(layer.moving_variance, np.float64) + layer.epsilon)
    if layer.scale:
        scale = scale * weight(layer.gamma, np.float64)
    shift = -weight(layer.moving_mean, np.float64) * scale
    if layer.center:
        shift = shift + weight(layer.beta, np.float64)
    _, broadcast = layer._layout(len(layer.input_shape))
    broadcast = broadcast[1:]  # the batch axis broadcasts on its own
    y = g.op("Mul", [x, g.const(scale.reshape(broadcast), f"{layer.name}.scale")])
    return g.op("Add", [y, g.const(shift.reshape(broadcast), f"{layer.name}.shift")])


# ----- convolutions and pooling --------------------------------------------------------------

def _conv_padding(layer) -> dict:
    if layer.padding == "same" and max(layer.strides) > 1:
        return {"auto_pad": "SAME_UPPER"}  # the extra row after, as Keras (no dilation here)
    if layer.padding == "same":  # stride 1: (k - 1) * d in all, the extra one after
        totals = [(k - 1) * d for k, d in zip(layer.kernel_size, layer.dilation_rate)]
        return {"pads": [t // 2 for t in totals] + [t - t // 2 for t in totals]}
    if layer.padding == "causal":  # all of the padding before the sequence
        return {"pads": [(layer.kernel_size[0] - 1) * layer.dilation_rate[0], 0]}
    return {"pads": [0] * (2 * layer.rank)}


def _geometry(layer) -> dict:
    return dict(strides=list(layer.strides), dilations=list(layer.dilation_rate),
                **_conv_padding(layer))


def _conv_node(g, layer, x, kernel, bias, groups: int, **geometry) -> str:
    """ONNX Conv of the channels-first `x` with a fusednn kernel (*K, C / groups, F)."""
    rank = kernel.ndim
    w = kernel.transpose((rank - 1, rank - 2) + tuple(range(rank - 2)))  # (F, C / groups, *K)
    inputs = [x, g.const(w, f"{layer.name}.kernel")]
    if bias is not None:
        inputs.append(g.const(bias, f"{layer.name}.bias"))
    return g.op("Conv", inputs, kernel_shape=list(w.shape[2:]), group=groups, **geometry)


def _grouped_kernel(layer) -> np.ndarray:
    """The kernel as (*K, C / groups, F): a depthwise (*K, C, M) is (*K, 1, C * M)."""
    return np.asarray(backend.to_numpy(layer._grouped_kernel()), np.float32)


@exports(layers.Conv1D, layers.Conv2D, layers.DepthwiseConv1D, layers.DepthwiseConv2D)
def _conv(g, layer, x, mask):
    rank = layer.rank + 2
    bias = weight(layer.bias) if layer.use_bias else None
    y = _conv_node(g, layer, g.channels_first(x, rank), _grouped_kernel(layer), bias,
                   layer.groups, **_geometry(layer))
    return _activation(g, layer, g.channels_last(y, rank))


@exports(layers.SeparableConv1D, layers.SeparableConv2D)
def _separable_conv(g, layer, x, mask):
    """The depthwise Conv (group = C, no bias), then the 1x1 pointwise Conv with the bias."""
    rank = layer.rank + 2
    depthwise = _conv_node(g, layer, g.channels_first(x, rank), _grouped_kernel(layer), None,
                           layer.groups, **_geometry(layer))
    bias = weight(layer.bias) if layer.use_bias else None
    y = _conv_node(g, layer, depthwise, weight(layer.pointwise_kernel), bias, 1)
    return _activation(g, layer, g.channels_last(y, rank))


@exports(layers.Conv2DTranspose)
def _conv_transpose(g, layer, x, mask):
    """ONNX's ConvTranspose crops pads[begin] and pads[end] off its full output
    (L - 1) * s + extent (+ output_padding); fusednn's output starts `before` rows in
    (the conv2d padding of the adjoint) and has `out` rows. Both are independent of L."""
    if layer.groups != 1:
        raise ValueError(f"export.onnx: {layer._label()}: a grouped transposed convolution "
                         "(groups > 1) has no ONNX export here")
    pads_begin, pads_end, output_padding = [], [], []
    for axis in range(2):
        extent = (layer.kernel_size[axis] - 1) * layer.dilation_rate[axis] + 1
        padding = None if layer.output_padding is None else layer.output_padding[axis]
        out, before = conv_ops.conv_transpose_output_length(
            1, layer.kernel_size[axis], layer.strides[axis], layer.padding, padding,
            layer.dilation_rate[axis])
        end = extent - before - out
        pads_begin.append(before)
        pads_end.append(max(end, 0))
        output_padding.append(max(-end, 0))
    kernel = weight(layer.kernel)  # (KH, KW, F, C) -> ONNX (C, F, KH, KW)
    inputs = [g.channels_first(x, 4), g.const(kernel.transpose(3, 2, 0, 1),
                                              f"{layer.name}.kernel")]
    if layer.use_bias:
        inputs.append(g.const(weight(layer.bias), f"{layer.name}.bias"))
    y = g.op("ConvTranspose", inputs, kernel_shape=list(layer.kernel_size),
             strides=list(layer.strides), dilations=list(layer.dilation_rate),
             pads=pads_begin + pads_end, output_padding=output_padding)
    return _activation(g, layer, g.channels_last(y, 4))


@exports(*(cls for cls in layers.registered_classes().values() if issubclass(cls, _Pooling)))
def _pool(g, layer, x, mask):
    rank = layer.rank + 2
    padding = ({"auto_pad": "SAME_UPPER"} if layer.padding == "same"
               else {"pads": [0] * (2 * layer.rank)})
    y = g.op("MaxPool" if layer.mode == "max" else "AveragePool", [g.channels_first(x, rank)],
             kernel_shape=list(layer.pool_size), strides=list(layer.strides), **padding)
    return g.channels_last(y, rank)


@exports(*(cls for cls in layers.registered_classes().values()
           if issubclass(cls, _GlobalPooling)))
def _global_pool(g, layer, x, mask):
    if mask is not None:
        raise ValueError(f"export.onnx: {layer._label()} averages the unmasked steps of a "
                         "time-step mask, which the export does not express")
    axes = list(range(1, layer.rank + 1))
    return g.reduce("ReduceMax" if layer.mode == "max" else "ReduceMean", x, axes,
                    layer.keepdims)


@exports(layers.UpSampling2D, layers.UpSampling1D)
def _upsampling(g, layer, x, mask):
    """Nearest-neighbour Resize on the channels-last tensor: "asymmetric" coordinates with
    "floor" rounding repeat each position exactly `size` times."""
    if getattr(layer, "interpolation", "nearest") != "nearest":
        raise ValueError(f"export.onnx: {layer._label()}: interpolation "
                         f"{layer.interpolation!r} has no ONNX export here; 'nearest' has")
    size = list(layer.size) if isinstance(layer, layers.UpSampling2D) else [layer.size]
    scales = g.const(np.array([1.0] + size + [1.0], np.float32), "scales")
    return g.op("Resize", [x, "", scales], mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")


@exports(layers.ZeroPadding2D)
def _zero_padding(g, layer, x, mask):
    (top, bottom), (left, right) = layer.padding
    pads = g.const(np.array([0, top, left, 0, 0, bottom, right, 0], np.int64), "pads")
    return g.op("Pad", [x, pads])


@exports(layers.Cropping2D)
def _cropping(g, layer, x, mask):
    (top, bottom), (left, right) = layer.cropping
    _, height, width, _ = _channels_last_shape(layer)
    ends = [height - bottom if height is not None else -bottom or np.iinfo(np.int64).max,
            width - right if width is not None else -right or np.iinfo(np.int64).max]
    return g.slice(x, [top, left], ends, [1, 2])


# ----- masks -------------------------------------------------------------------------------

def _kept_steps(g, layer, x, element_type, keepdims: bool) -> str:
    """Masking's kept steps as 0/1 of `element_type`: 1 where some feature of the step
    differs from mask_value ((N, T), or (N, T, 1, ...) with keepdims)."""
    differs = g.op("Not", [g.op("Equal", [x, g.const(np.array(layer.mask_value, np.float32),
                                                     "mask_value")])])
    features = list(range(2, len(layer.input_shape)))
    return g.reduce("ReduceMax", g.op("Cast", [differs], to=element_type), features, keepdims)


def sequence_lens_of(g, layer, x):
    """The sequence_lens (int32, (N,)) of the mask `layer` makes from its input `x`:
    the number of valid steps per sequence."""
    int32 = g.onnx.TensorProto.INT32
    if isinstance(layer, layers.Embedding):
        ids = g.op("Cast", [x], to=g.onnx.TensorProto.INT64)
        valid = g.op("Cast", [g.op("Not", [g.op("Equal", [ids, g.const(np.array(0, np.int64),
                                                                       "zero")])])], to=int32)
    else:
        valid = _kept_steps(g, layer, x, int32, keepdims=False)
    return g.reduce("ReduceSum", valid, [1], False, hint="sequence_lens")


@exports(layers.Masking)
def _masking(g, layer, x, mask):
    """x with the masked steps zeroed, as fusednn's Masking outputs."""
    return g.op("Mul", [x, _kept_steps(g, layer, x, g.onnx.TensorProto.FLOAT, keepdims=True)])


def _channels_first(layer) -> bool:
    """Whether the layer's images are (N, C, ...); Flatten's data_format means something
    else (its own exporter handles it)."""
    return getattr(layer, "data_format", None) == "channels_first" \
        and not isinstance(layer, layers.Flatten)


def _channels_last_shape(layer) -> tuple:
    shape = tuple(layer.input_shape)
    return (shape[0],) + shape[2:] + (shape[1],) if _channels_first(layer) else shape


def _makes_mask(layer) -> bool:
    return isinstance(layer, layers.Masking) or (isinstance(layer, layers.Embedding)
                                                  and layer.mask_zero)


def export_layer(g, layer, x: str, mask):
    """(output name, mask after the layer) of `layer` on `x` with the incoming mask."""
    exporter = EXPORTERS.get(type(layer))
    if exporter is None:
        raise ValueError(f"export.onnx: {layer._label()}: the layer class "
                         f"{type(layer).__name__} has no ONNX export; supported: "
                         f"{', '.join(sorted(cls.__name__ for cls in EXPORTERS))}")
    given = mask if getattr(layer, "supports_masking", False) and isinstance(x, str) else None
    if _channels_first(layer):
        # The exporters work channels last, as fusednn's kernels do (data_format.py);
        # runtimes cancel the transposes of consecutive channels-first layers.
        x = g.channels_last(x, len(layer.input_shape))
        y = exporter(g, layer, x, given)
        if len(layer.output_shape) >= 3:
            y = g.channels_first(y, len(layer.output_shape))
    else:
        y = exporter(g, layer, x, given)
    if _makes_mask(layer):
        return y, sequence_lens_of(g, layer, x)
    if given is None or getattr(layer, "return_sequences", True) is False:
        return y, None
    return y, given


# ----- merging layers (graph models) ---------------------------------------------------------

_MERGE_OPERATORS = {layers.Add: "Sum", layers.Multiply: "Mul", layers.Maximum: "Max",
                    layers.Minimum: "Min", layers.Average: "Sum"}


@exports(*_MERGE_OPERATORS)
def _merge(g, layer, xs, mask):
    """The n-ary ONNX operator (Sum, Max, ...; Mul pairwise), broadcasting as fusednn."""
    op_type = _MERGE_OPERATORS[type(layer)]
    if op_type == "Mul":
        y = xs[0]
        for x in xs[1:]:
            y = g.op("Mul", [y, x])
    else:
        y = g.op(op_type, list(xs))
    if isinstance(layer, layers.Average):
        y = g.op("Mul", [y, g.const(np.array(1.0 / len(xs), np.float32), "inverse_count")])
    return y


@exports(layers.Subtract)
def _subtract(g, layer, xs, mask):
    return g.op("Sub", list(xs))


@exports(layers.Concatenate)
def _concatenate(g, layer, xs, mask):
    return g.op("Concat", list(xs), axis=layer.axis)


@exports(layers.Dot)
def _dot(g, layer, xs, mask):
    """As Dot.call: the first input's axis moved last and the second's to position 1,
    each L2-normalised with normalize=True, then a batched MatMul of (N, L, K) by
    (N, K, R) reshaped to (N, ...) (or (N, 1)). The axes other than the batch must have
    static sizes, except one on each side."""
    shapes = [tuple(shape) for shape in layer.input_shape]
    axis1, axis2 = layer._pair(shapes)
    rank1, rank2 = len(shapes[0]), len(shapes[1])
    a = g.transpose(xs[0], [i for i in range(rank1) if i != axis1] + [axis1])
    b = g.transpose(xs[1], [0, axis2] + [i for i in range(1, rank2) if i != axis2])
    if layer.normalize:
        a = _l2_normalized(g, a, -1)
        b = _l2_normalized(g, b, 1)
    size = shapes[0][axis1]
    a = g.reshape(a, [0, -1, size])
    b = g.reshape(b, [0, size, -1])
    y = g.op("MatMul", [a, b])
    out_shape = layer.compute_output_shape(shapes)
    if sum(d is None for d in out_shape[1:]) > 1:
        raise ValueError(f"{layer._label()}: Dot's ONNX export needs at most one axis of "
                         f"unknown size besides the batch, got output shape {out_shape}")
    return g.reshape(y, [0] + [-1 if d is None else d for d in out_shape[1:]])


def _l2_normalized(g, x, axis):
    """x / sqrt(max(sum(x^2, axis), 1e-12)), Keras's l2_normalize as Dot uses it."""
    squares = g.reduce("ReduceSum", g.op("Mul", [x, x]), [axis], keepdims=True)
    floor = g.const(np.array(1e-12, np.float32), "l2_floor")
    return g.op("Div", [x, g.op("Sqrt", [g.op("Max", [squares, floor])])])
