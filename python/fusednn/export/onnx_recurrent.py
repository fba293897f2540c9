"""ONNX exporters of SimpleRNN, LSTM, GRU and Bidirectional: ONNX's RNN, LSTM and GRU
operators, time-major, between transposes.

Weights: ONNX wants W (D, G*U, F), R (D, G*U, U) and B (D, 2*G*U) = [input bias;
recurrent bias] per direction D, with gates LSTM (i, o, f, c) (Keras's (i, f, c, o)
reordered), GRU (z, r, h) (Keras's order; reset_after=True is linear_before_reset=1,
whose recurrent bias sits inside the reset product as Keras's second bias row does).
go_backwards is the "reverse" direction, whose Y ONNX gives in input order: fusednn
returns it in processing order, so it is flipped. Bidirectional is the
"bidirectional" direction with the merge applied to Y (or Y_h).

A time-step mask becomes sequence_lens (the count of valid steps), which describes
sequences whose padding comes last, as Embedding(mask_zero=True) gives for
end-padded ids. ONNX zeroes Y after a sequence's end where fusednn repeats the last
output of the forward direction; a Where puts that output back.
"""
from __future__ import annotations

import numpy as np

from .. import layers
from .onnx_layers import exports, weight


def _lstm_gates(array):
    """Keras's (i, f, c, o) blocks on the last axis -> ONNX's (i, o, f, c)."""
    i, f, c, o = np.split(array, 4, axis=-1)
    return np.concatenate([i, o, f, c], axis=-1)


def _onnx_weights(cell):
    """(W (G*U, F), R (G*U, U), B (2*G*U,)) of one direction."""
    reorder = _lstm_gates if isinstance(cell, layers.LSTM) else (lambda a: a)
    width = cell._gates * cell.units
    kernel, recurrent = reorder(weight(cell.kernel)), reorder(weight(cell.recurrent_kernel))
    bias = weight(cell.bias) if cell.use_bias else np.zeros(cell._bias_shape(), np.float32)
    if bias.ndim == 2:  # GRU reset_after: [input bias; recurrent bias]
        bias = bias.reshape(-1)
    else:
        bias = np.concatenate([reorder(bias), np.zeros(width, np.float32)])
    return kernel.T, recurrent.T, bias


def _cells_and_direction(layer):
    if not isinstance(layer, layers.Bidirectional):
        if layer.return_state:
            raise ValueError(f"export.onnx: {layer._label()} has return_state=True; a Sequential "
                             "model passes one output on")
        return [layer], ("reverse" if layer.go_backwards else "forward")
    if layer.merge_mode is None or layer.return_state:
        raise ValueError(f"export.onnx: {layer._label()} returns several outputs "
                         "(merge_mode=None or return_state=True); a Sequential model passes one "
                         "output on")
    if layer.forward_layer.go_backwards or not layer.backward_layer.go_backwards:
        raise ValueError(f"export.onnx: {layer._label()} wraps a go_backwards layer; ONNX's "
                         "bidirectional direction runs the first layer forward in time")
    return [layer.forward_layer, layer.backward_layer], "bidirectional"


@exports(layers.SimpleRNN, layers.LSTM, layers.GRU, layers.Bidirectional)
def _recurrent(g, layer, x, mask):
    cells, direction = _cells_and_direction(layer)
    cell = cells[0]
    W, R, B = (np.stack(arrays) for arrays in zip(*(_onnx_weights(c) for c in cells)))
    attributes = {"hidden_size": cell.units, "direction": direction}
    if isinstance(cell, layers.GRU):
        attributes["linear_before_reset"] = int(cell.reset_after)
        if any(c.reset_after != cell.reset_after for c in cells):
            raise ValueError(f"export.onnx: {layer._label()}: both directions must have the same "
                             "reset_after")
    if isinstance(cell, layers.SimpleRNN):
        attributes["activations"] = [{"tanh": "Tanh", "relu": "Relu"}[c.activation.name]
                                     for c in cells]
    op_type = {layers.SimpleRNN: "RNN", layers.LSTM: "LSTM", layers.GRU: "GRU"}[type(cell)]
    name = layer.name
    outputs = g.op(op_type, [g.transpose(x, (1, 0, 2)), g.const(W, f"{name}.W"),
                             g.const(R, f"{name}.R"), g.const(B, f"{name}.B"),
                             mask or ""],
                   hint=name, outputs=3 if op_type == "LSTM" else 2, **attributes)
    y_sequence, y_last = outputs[0], outputs[1]
    directions = len(cells)
    last = g.transpose(y_last, (1, 0, 2))  # (N, D, U)
    if layer.return_sequences:
        y = g.transpose(y_sequence, (2, 0, 1, 3))  # (N, T, D, U)
        if mask is not None:
            y = _repeat_last_output_after_end(g, y, last, x, mask, cells)
        if direction == "reverse":
            y = g.slice(y, [-1], [np.iinfo(np.int64).min], [1], [-1])
    else:
        y = last
    return _merge(g, layer, y, directions)


def _repeat_last_output_after_end(g, y, last, x, lengths, cells):
    """Y where the step is inside the sequence or the direction runs backward in time,
    else the forward direction's last output (fusednn carries it over masked steps)."""
    steps = g.op("Range", [g.const(np.array(0, np.int64), "start"),
                           g.op("Gather", [g.op("Shape", [x]),
                                           g.const(np.array(1, np.int64), "time_axis")]),
                           g.const(np.array(1, np.int64), "delta")])
    lengths = g.op("Unsqueeze", [g.op("Cast", [lengths], to=g.onnx.TensorProto.INT64),
                                 g.const(np.array([1], np.int64), "axes")])
    inside = g.op("Less", [g.op("Unsqueeze", [steps, g.const(np.array([0], np.int64), "axes")]),
                           lengths])  # (N, T)
    inside = g.op("Unsqueeze", [inside, g.const(np.array([2, 3], np.int64), "axes")])
    backward = np.array([c.go_backwards for c in cells]).reshape(1, 1, -1, 1)
    keep = g.op("Or", [inside, g.const(backward, "backward_directions", dtype=np.bool_)])
    repeated = g.op("Unsqueeze", [last, g.const(np.array([1], np.int64), "axes")])
    return g.op("Where", [keep, y, repeated])


def _merge(g, layer, y, directions):
    """(N, [T,] D, U) -> fusednn's output: D = 1 squeezed, Bidirectional merged."""
    if directions == 1 or layer.merge_mode == "concat":
        return g.reshape(y, [0, 0, -1] if layer.return_sequences else [0, -1])
    halves = g.op("Split", [y, g.const(np.array([1, 1], np.int64), "split")], outputs=2,
                  axis=-2)
    halves = [g.op("Squeeze", [h, g.const(np.array([-2], np.int64), "axes")]) for h in halves]
    merged = g.op({"sum": "Add", "mul": "Mul", "ave": "Add"}[layer.merge_mode], halves)
    if layer.merge_mode == "ave":
        merged = g.op("Mul", [merged, g.const(np.array(0.5, np.float32), "half")])
    return merged
