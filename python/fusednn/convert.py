"""Weights from PyTorch modules into fusednn's (Keras) layouts.

The state dict is given as a dict of NumPy arrays (e.g.
`{k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}`); torch is
never imported here. Layouts, PyTorch -> fusednn:

    nn.Linear           weight (U, F)                -> Dense kernel (F, U), bias (U,)
    nn.Conv1d           weight (F, C, K)             -> Conv1D kernel (K, C, F)
    nn.Conv2d           weight (F, C, KH, KW)        -> Conv2D kernel (KH, KW, C, F)
    nn.ConvTranspose2d  weight (C, F, KH, KW)        -> Conv2DTranspose kernel (KH, KW, F, C)
    nn.BatchNorm1d/2d   weight, bias, running_mean, running_var
                                                     -> gamma, beta, moving_mean, moving_variance
    nn.Embedding        weight (V, D)                -> embeddings (V, D)

PyTorch's images are NCHW and fusednn's NHWC by default (sequences NCT and NTC): a
converted model takes its input transposed (`x.transpose(0, 2, 3, 1)`), or its image
layers take data_format="channels_first" and the input as it is. PyTorch's running_var is
the variance its eval mode divides by, so it is Keras's moving_variance as is; the
epsilon is not in the state dict (PyTorch's default 1e-5, Keras's 1e-3), and neither
are strides, padding or activations: the fusednn layers must be configured to match.
A grouped convolution (groups > 1) maps onto a layer with the same groups: both keep
the kernel (..., C / groups, F) with the filters of group g in block g.

Recurrent modules keep, per layer k and direction ("" or "_reverse"):

    weight_ih_l{k} (G*U, F), weight_hh_l{k} (G*U, U), bias_ih_l{k} (G*U,), bias_hh_l{k} (G*U,)

with gate blocks LSTM (i, f, g, o), GRU (r, z, n), RNN a single block. Keras layouts
are the transposes, with gates LSTM (i, f, c, o) (the same order), GRU (z, r, h) (r
and z swapped). PyTorch's two biases become LSTM/SimpleRNN's single bias (their sum)
and GRU's (2, 3U) bias [input bias; recurrent bias] (PyTorch's GRU is Keras's
reset_after=True form, and both write h' = z * h + (1 - z) * n).
A module built with bias=False maps to a layer with use_bias=False (fewer arrays).
The reverse direction of a bidirectional module is a Keras layer with go_backwards=True,
so Bidirectional's weights are the forward then the reverse direction's.

    from fusednn import convert, layers
    layer = layers.GRU(64, return_sequences=True)
    layer.build_for((None, None, 16))
    convert.set_weights_from_torch(layer, state_dict)             # from nn.GRU(16, 64)

    convert.set_sequential_weights_from_torch(model, torch_model_state_dict)  # a whole stack

A Flatten after channels-last convolutions flattens (H, W, C) in fusednn but (C, H, W)
in PyTorch, so the whole-stack helper permutes the following Dense kernel's rows (and
the features of a BatchNormalization between them) into fusednn's order; after
channels-first layers the orders agree.
"""
from __future__ import annotations

import math
import re

import numpy as np

from .layers.convolutional import Conv1D, Conv2D, Conv2DTranspose
from .layers.core import Dense, Flatten
from .layers.embedding import Embedding
from .layers.normalization import BatchNormalization
from .layers.recurrent import GRU, LSTM, SimpleRNN
from .layers.wrappers import Bidirectional, TimeDistributed

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _require_dict(state_dict, what: str) -> None:
    if not isinstance(state_dict, dict):
        raise TypeError(f"{what}: expected a dict of NumPy arrays, got {type(state_dict).__name__}")


def _tensor(state_dict: dict, key: str, what: str):
    if key not in state_dict:
        available = ", ".join(sorted(state_dict)) or "none"
        raise KeyError(f"{what}: the state dict has no {key!r} (keys: {available})")
    array = np.asarray(state_dict[key])
    if array.dtype.kind != "f":
        raise TypeError(f"{what}: {key!r} must be a floating-point array, got dtype {array.dtype}")
    return array


def _torch_weights(kind: str, state_dict: dict, layer: int, reverse: bool, prefix: str):
    """(kernel (F, G*U), recurrent_kernel (U, G*U), bias_ih, bias_hh or None, None) in
    PyTorch's gate order, transposed to Keras's (input, output) layout."""
    what = f"convert {kind} layer {layer}{' reverse' if reverse else ''}"
    _require_dict(state_dict, what)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer < 0:
        raise ValueError(f"{what}: expected layer to be an int >= 0, got {layer!r}")
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    if prefix + "weight_hr" + suffix in state_dict:
        raise ValueError(f"{what}: LSTMs with proj_size > 0 have no Keras equivalent")
    w_ih = _tensor(state_dict, prefix + "weight_ih" + suffix, what)
    w_hh = _tensor(state_dict, prefix + "weight_hh" + suffix, what)
    gates = _GATES[kind]
    if w_ih.ndim != 2 or w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1] \
            or w_ih.shape[0] != w_hh.shape[0]:
        raise ValueError(f"{what}: expected weight_ih ({gates}U, F) and weight_hh ({gates}U, U), "
                         f"got {w_ih.shape} and {w_hh.shape}")
    has_bias = prefix + "bias_ih" + suffix in state_dict
    biases = None
    if has_bias:
        b_ih = _tensor(state_dict, prefix + "bias_ih" + suffix, what)
        b_hh = _tensor(state_dict, prefix + "bias_hh" + suffix, what)
        if b_ih.shape != (w_hh.shape[0],) or b_hh.shape != (w_hh.shape[0],):
            raise ValueError(f"{what}: expected biases of shape ({w_hh.shape[0]},), got "
                             f"{b_ih.shape} and {b_hh.shape}")
        biases = (b_ih, b_hh)
    return w_ih.T, w_hh.T, biases


def _gru_to_keras_gates(array):
    """PyTorch's (r, z, n) blocks on the last axis -> Keras's (z, r, h)."""
    r, z, n = np.split(array, 3, axis=-1)
    return np.concatenate([z, r, n], axis=-1)


def lstm_weights_from_torch(state_dict, layer=0, reverse=False, prefix="") -> list:
    """[kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U,)] of nn.LSTM layer `layer`
    (direction "_reverse" with reverse=True); `prefix` is prepended to every key
    (e.g. "encoder." for a submodule's entries). Without biases: two arrays."""
    kernel, recurrent, biases = _torch_weights("lstm", state_dict, layer, reverse, prefix)
    weights = [kernel, recurrent]
    if biases is not None:
        weights.append(biases[0] + biases[1])
    return [np.ascontiguousarray(w) for w in weights]


def gru_weights_from_torch(state_dict, layer=0, reverse=False, prefix="") -> list:
    """[kernel (F, 3U), recurrent_kernel (U, 3U), bias (2, 3U)] of nn.GRU layer `layer`
    for a GRU(reset_after=True); gates reordered from (r, z, n) to (z, r, h)."""
    kernel, recurrent, biases = _torch_weights("gru", state_dict, layer, reverse, prefix)
    weights = [_gru_to_keras_gates(kernel), _gru_to_keras_gates(recurrent)]
    if biases is not None:
        weights.append(np.stack([_gru_to_keras_gates(biases[0]), _gru_to_keras_gates(biases[1])]))
    return [np.ascontiguousarray(w) for w in weights]


def simple_rnn_weights_from_torch(state_dict, layer=0, reverse=False, prefix="") -> list:
    """[kernel (F, U), recurrent_kernel (U, U), bias (U,)] of nn.RNN layer `layer`
    (its nonlinearity must match the SimpleRNN's activation: tanh or relu)."""
    kernel, recurrent, biases = _torch_weights("rnn", state_dict, layer, reverse, prefix)
    weights = [kernel, recurrent]
    if biases is not None:
        weights.append(biases[0] + biases[1])
    return [np.ascontiguousarray(w) for w in weights]


_RECURRENT = {LSTM: lstm_weights_from_torch, GRU: gru_weights_from_torch,
              SimpleRNN: simple_rnn_weights_from_torch}


# ----- feed-forward layers ----------------------------------------------------------------

def _floating_weight(state_dict: dict, prefix: str, ranks: tuple, what: str):
    _require_dict(state_dict, what)
    weight = _tensor(state_dict, prefix + "weight", what)
    if weight.ndim not in ranks:
        raise ValueError(f"{what}: expected {prefix + 'weight'!r} of rank "
                         f"{' or '.join(map(str, ranks))}, got shape {weight.shape}")
    return weight


def _vectors(state_dict: dict, prefix: str, names: tuple, size: int, what: str) -> list:
    """The per-feature vectors `names` the module has (bias=False / affine=False modules
    lack some), each checked to be (size,)."""
    vectors = []
    for name in names:
        if prefix + name in state_dict:
            vector = _tensor(state_dict, prefix + name, what)
            if vector.shape != (size,):
                raise ValueError(f"{what}: expected {prefix + name!r} of shape ({size},), got "
                                 f"{vector.shape}")
            vectors.append(vector)
    return vectors


def _channels_last_features(array, shape, axis: int, what: str):
    """`array` with its `axis` (the features a PyTorch Flatten made channels-first from an
    input of channels-last `shape` (..., C), batch excluded) reordered as fusednn's
    Flatten orders them: (C, *spatial) -> (*spatial, C)."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)
    if array.shape[axis] != size:
        raise ValueError(f"{what}: the Flatten before it turns {shape} into {size} features, but "
                         f"the weight has {array.shape[axis]} on that axis (shape {array.shape})")
    moved = np.moveaxis(array, axis, -1)
    lead = moved.shape[:-1]
    blocks = np.moveaxis(moved.reshape(lead + (shape[-1],) + shape[:-1]), len(lead), -1)
    return np.moveaxis(blocks.reshape(lead + (size,)), -1, axis)


def linear_weights_from_torch(state_dict, prefix="", flattened_shape=None) -> list:
    """[kernel (F, U), bias (U,)] of nn.Linear (weight (U, F)). flattened_shape: the
    channels-last shape (..., C), batch excluded, that a Flatten turned into the F
    inputs: the kernel's rows move from PyTorch's (C, ...) order to fusednn's (..., C)."""
    what = f"convert nn.Linear {prefix!r}"
    weight = _floating_weight(state_dict, prefix, (2,), what)
    if flattened_shape is not None:
        weight = _channels_last_features(weight, flattened_shape, 1, what)
    weights = [weight.T] + _vectors(state_dict, prefix, ("bias",), weight.shape[0], what)
    return [np.ascontiguousarray(w) for w in weights]


def conv_weights_from_torch(state_dict, prefix="", transposed=False) -> list:
    """[kernel, bias] of nn.Conv1d (weight (F, C, K) -> (K, C, F)), nn.Conv2d
    ((F, C, KH, KW) -> (KH, KW, C, F)) or, transposed=True, nn.ConvTranspose2d
    ((C, F, KH, KW) -> (KH, KW, F, C)): kernel axes first, then the two channel axes
    swapped. Both libraries compute cross-correlation (and its adjoint), so no kernel
    is flipped."""
    what = f"convert {'nn.ConvTranspose2d' if transposed else 'convolution'} {prefix!r}"
    weight = _floating_weight(state_dict, prefix, (4,) if transposed else (3, 4), what)
    kernel = np.transpose(weight, tuple(range(2, weight.ndim)) + (1, 0))
    filters = weight.shape[1] if transposed else weight.shape[0]
    weights = [kernel] + _vectors(state_dict, prefix, ("bias",), filters, what)
    return [np.ascontiguousarray(w) for w in weights]


def batch_norm_weights_from_torch(state_dict, prefix="", flattened_shape=None) -> list:
    """[gamma, beta, moving_mean, moving_variance] of nn.BatchNorm1d/2d (weight, bias,
    running_mean, running_var; affine=False modules give the last two only).
    flattened_shape: as for linear_weights_from_torch, for a BatchNorm1d after a Flatten."""
    what = f"convert batch norm {prefix!r}"
    _require_dict(state_dict, what)
    mean = _tensor(state_dict, prefix + "running_mean", what)
    if mean.ndim != 1:
        raise ValueError(f"{what}: expected {prefix + 'running_mean'!r} of rank 1, got shape "
                         f"{mean.shape}")
    weights = _vectors(state_dict, prefix, ("weight", "bias", "running_mean", "running_var"),
                       mean.shape[0], what)
    if len(weights) not in (2, 4) or prefix + "running_var" not in state_dict:
        raise ValueError(f"{what}: expected weight and bias (or neither, affine=False), "
                         "running_mean and running_var (track_running_stats=True)")
    if flattened_shape is not None:
        weights = [_channels_last_features(w, flattened_shape, 0, what) for w in weights]
    return [np.ascontiguousarray(w) for w in weights]


def embedding_weights_from_torch(state_dict, prefix="") -> list:
    """[embeddings (V, D)] of nn.Embedding (the same layout)."""
    weight = _floating_weight(state_dict, prefix, (2,), f"convert nn.Embedding {prefix!r}")
    return [np.ascontiguousarray(weight)]


_FEED_FORWARD = {
    Dense: lambda state_dict, prefix, flat: linear_weights_from_torch(state_dict, prefix, flat),
    BatchNormalization: lambda state_dict, prefix, flat: batch_norm_weights_from_torch(
        state_dict, prefix, flat),
    Conv1D: lambda state_dict, prefix, _: conv_weights_from_torch(state_dict, prefix),
    Conv2D: lambda state_dict, prefix, _: conv_weights_from_torch(state_dict, prefix),
    Conv2DTranspose: lambda state_dict, prefix, _: conv_weights_from_torch(state_dict, prefix,
                                                                          transposed=True),
    Embedding: lambda state_dict, prefix, _: embedding_weights_from_torch(state_dict, prefix),
}
_TAKES_FLATTENED = (Dense, BatchNormalization)


# ----- one layer ---------------------------------------------------------------------------

def _recurrent_converter(layer, what: str):
    converter = _RECURRENT.get(type(layer))
    if isinstance(layer, GRU) and not layer.reset_after:
        raise ValueError(f"{what}: PyTorch's GRU is the reset_after=True form, but "
                         f"{layer._label()} has reset_after=False")
    return converter


def _supported_names() -> str:
    return ", ".join(cls.__name__ for cls in (*_FEED_FORWARD, *_RECURRENT)) + \
        ", Bidirectional (of a recurrent layer) or TimeDistributed (of any of them)"


def torch_weights_for(layer, state_dict, layer_index=0, prefix="", flattened_shape=None) -> list:
    """The weights (fusednn order and layouts) of `layer` from the PyTorch module whose
    state-dict keys start with `prefix`; layer_index picks the layer of a multi-layer
    recurrent module. Raises TypeError for a layer kind PyTorch has no module for."""
    what = "convert.set_weights_from_torch"
    if isinstance(layer, TimeDistributed):  # one set of weights shared by every step
        layer = layer.layer
    inner = layer.forward_layer if isinstance(layer, Bidirectional) else layer
    converter = _recurrent_converter(inner, what)
    if converter is not None:
        if isinstance(layer, Bidirectional):
            return (converter(state_dict, layer_index, False, prefix)
                    + converter(state_dict, layer_index, True, prefix))
        return converter(state_dict, layer_index, False, prefix)
    feed_forward = _FEED_FORWARD.get(type(layer))
    if feed_forward is None:
        raise TypeError(f"{what}: expected one of {_supported_names()}, got "
                        f"{type(layer).__name__}")
    if layer_index != 0:
        raise ValueError(f"{what}: layer_index selects a layer of a recurrent module; "
                         f"{layer._label()} takes 0, got {layer_index!r}")
    if flattened_shape is not None and not isinstance(layer, _TAKES_FLATTENED):
        raise ValueError(f"{what}: flattened_shape applies to Dense and BatchNormalization, not "
                         f"{layer._label()}")
    return feed_forward(state_dict, prefix, flattened_shape)


def set_weights_from_torch(layer, state_dict, layer_index=0, prefix="",
                           flattened_shape=None) -> None:
    """Sets a built layer from the PyTorch module whose state-dict keys start with `prefix`
    (see torch_weights_for). Shapes are checked by set_weights, so a size mismatch
    (a grouped convolution, a different kernel size) raises ValueError naming the weight."""
    weights = torch_weights_for(layer, state_dict, layer_index, prefix, flattened_shape)
    if not layer.built:
        raise ValueError(f"convert.set_weights_from_torch: {layer._label()} is not built; call "
                         "it on data or build(input_shape) first")
    layer.set_weights(weights)


# ----- a whole stack -----------------------------------------------------------------------

def _torch_modules(state_dict: dict) -> list:
    """(key prefix, layer index) of each PyTorch module holding weights, in state-dict order;
    a multi-layer recurrent module counts once per layer."""
    groups: dict[str, list[str]] = {}
    for key in state_dict:
        module, _, name = str(key).rpartition(".")
        groups.setdefault(module + "." if module else "", []).append(name)
    modules = []
    for prefix, names in groups.items():
        indices = sorted({int(match.group(1)) for name in names
                          if (match := re.fullmatch(r"weight_ih_l(\d+)(_reverse)?", name))})
        modules += [(prefix, index) for index in indices] or [(prefix, 0)]
    return modules


def _flattened_channels_last(flatten, channels_first_input: bool, what: str):
    """The channels-last shape (..., C) whose order a Flatten's features have, when that
    differs from PyTorch's channels-first (C, ...) flattening; None when they agree."""
    shape = tuple(flatten.input_shape[1:])
    moves_channels_last = flatten.data_format == "channels_first"
    if channels_first_input:
        return shape[1:] + shape[:1] if moves_channels_last else None
    if moves_channels_last:
        raise ValueError(f"{what}: {flatten._label()} has data_format='channels_first' but the "
                         "layers before it are channels last")
    return shape


def _weighted_layers(model, what: str) -> list:
    """(layer, flattened_shape) of each layer with weights, in order; flattened_shape is
    the channels-last shape a preceding Flatten flattened (see _flattened_channels_last),
    while the features keep its order."""
    targets, flattened, channels_first = [], None, False
    for layer in model.layers:
        if isinstance(layer, Flatten):
            if len(layer.input_shape) > 2:
                flattened = _flattened_channels_last(layer, channels_first, what)
        elif layer.variables:
            targets.append((layer, flattened if isinstance(layer, _TAKES_FLATTENED) else None))
            if flattened is not None and not isinstance(layer, BatchNormalization):
                if not isinstance(layer, Dense):
                    raise ValueError(f"{what}: {layer._label()} follows a Flatten of "
                                     f"{flattened}; only Dense (or BatchNormalization) can take "
                                     "PyTorch's channels-first flattened features")
                flattened = None
        elif flattened is not None and tuple(layer.output_shape) != tuple(layer.input_shape):
            raise ValueError(f"{what}: {layer._label()} changes the shape of the features a "
                             f"Flatten of {flattened} made, so their order cannot be mapped "
                             "from PyTorch's channels-first flattening")
        if hasattr(layer, "data_format") and not isinstance(layer, Flatten):
            channels_first = layer.data_format == "channels_first"
    return targets


def set_sequential_weights_from_torch(model, state_dict) -> None:
    """Sets every weighted layer of a built fusednn Sequential, in order, from the modules
    with weights of a PyTorch model of the same structure (an nn.Sequential's state dict:
    "0.weight", "0.bias", "3.weight", ...); activations, pooling, dropout and other
    modules without weights are not counted. A Flatten after convolutions has the next
    Dense's kernel rows permuted (see the module docstring). Either every layer is set or,
    on any error, none is changed."""
    what = "convert.set_sequential_weights_from_torch"
    _require_dict(state_dict, what)
    if not hasattr(model, "layers") or not getattr(model, "built", False):
        raise ValueError(f"{what}: expected a built fusednn Sequential (build it or call it on "
                         f"data first), got {model!r:.100}")
    targets = _weighted_layers(model, what)
    modules = _torch_modules(state_dict)
    if len(targets) != len(modules):
        raise ValueError(
            f"{what}: the PyTorch state dict has {len(modules)} modules with weights "
            f"({', '.join(p.rstrip('.') + (f'[layer {i}]' if i else '') for p, i in modules)}) "
            f"but {model._label()} has {len(targets)} layers with weights "
            f"({', '.join(layer.name for layer, _ in targets)})")
    converted = []
    for (prefix, index), (layer, flattened) in zip(modules, targets):
        try:
            weights = torch_weights_for(layer, state_dict, index, prefix, flattened)
            expected = [v.shape for v in layer.variables]
            if [tuple(np.shape(w)) for w in weights] != expected:
                raise ValueError(f"expected weights of shapes {expected}, the module gives "
                                 f"{[tuple(np.shape(w)) for w in weights]}")
        except (KeyError, TypeError, ValueError) as e:
            message = e.args[0] if isinstance(e, KeyError) else str(e)
            raise type(e)(f"{what}: PyTorch module {prefix.rstrip('.')!r} -> "
                          f"{layer._label()}: {message}") from None
        converted.append((layer, weights))
    for layer, weights in converted:
        layer.set_weights(weights)
