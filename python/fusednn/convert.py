"""Weights from PyTorch's nn.LSTM / nn.GRU / nn.RNN into fusednn's (Keras) layouts.

The state dict is given as a dict of NumPy arrays (e.g.
`{k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}`); torch is
never imported here. PyTorch keeps, per layer k and direction ("" or "_reverse"):

    weight_ih_l{k} (G*U, F), weight_hh_l{k} (G*U, U), bias_ih_l{k} (G*U,), bias_hh_l{k} (G*U,)

with gate blocks LSTM (i, f, g, o), GRU (r, z, n), RNN a single block. Keras layouts
are the transposes, with gates LSTM (i, f, c, o) (the same order), GRU (z, r, h) (r
and z swapped). PyTorch's two biases become LSTM/SimpleRNN's single bias (their sum)
and GRU's (2, 3U) bias [input bias; recurrent bias] (PyTorch's GRU is Keras's
reset_after=True form, and both write h' = z * h + (1 - z) * n).
A module built with bias=False maps to a layer with use_bias=False (two arrays).
The reverse direction of a bidirectional module is a Keras layer with go_backwards=True,
so Bidirectional's weights are the forward then the reverse direction's.

    from fusednn import convert, layers
    layer = layers.GRU(64, return_sequences=True)
    layer.build_for((None, None, 16))
    convert.set_weights_from_torch(layer, state_dict)             # from nn.GRU(16, 64)
"""
from __future__ import annotations

import numpy as np

from .layers.recurrent import GRU, LSTM, SimpleRNN
from .layers.wrappers import Bidirectional

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


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
    if not isinstance(state_dict, dict):
        raise TypeError(f"{what}: expected a dict of NumPy arrays, got {type(state_dict).__name__}")
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


_CONVERTERS = {LSTM: lstm_weights_from_torch, GRU: gru_weights_from_torch,
               SimpleRNN: simple_rnn_weights_from_torch}


def _converter_for(layer, what: str):
    converter = _CONVERTERS.get(type(layer))
    if converter is None:
        raise TypeError(f"{what}: expected an LSTM, GRU, SimpleRNN or a Bidirectional of one, "
                        f"got {type(layer).__name__}")
    if isinstance(layer, GRU) and not layer.reset_after:
        raise ValueError(f"{what}: PyTorch's GRU is the reset_after=True form, but "
                         f"{layer._label()} has reset_after=False")
    return converter


def set_weights_from_torch(layer, state_dict, layer_index=0, prefix="") -> None:
    """Sets a built LSTM / GRU / SimpleRNN (or Bidirectional of one) from the entries of
    PyTorch layer `layer_index` (both directions for Bidirectional). Shapes are checked
    by set_weights, so a size mismatch raises ValueError naming the weight."""
    what = "convert.set_weights_from_torch"
    if isinstance(layer, Bidirectional):
        converter = _converter_for(layer.forward_layer, what)
        weights = (converter(state_dict, layer_index, False, prefix)
                   + converter(state_dict, layer_index, True, prefix))
    else:
        converter = _converter_for(layer, what)
        weights = converter(state_dict, layer_index, False, prefix)
    if not layer.built:
        raise ValueError(f"{what}: {layer._label()} is not built; call it on data or "
                         "build((None, T, F)) first")
    layer.set_weights(weights)
