"""The summary table of a model, as Keras 2 prints it."""
from __future__ import annotations

import numpy as np


def summary_lines(model, line_length=None, positions=None, expand_nested=False) -> list[str]:
    """Keras 2's table: layer (type), output shape, parameter count, and totals; for a
    graph model (one with `connections()`) also "Connected to", each inbound tensor as
    "layer[call][output]", as Keras 2 prints a functional model. With expand_nested the
    layers of a nested model follow its row, indented as Keras 3 does ("   " per level
    and "└ ")."""
    graph = hasattr(model, "connections")
    line_length = int(line_length or (98 if graph else 65))
    positions = list(positions or ([0.33, 0.55, 0.67, 1.0] if graph else [0.45, 0.85, 1.0]))
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    header = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if graph else [])
    lines = [f'Model: "{model.name}"', "_" * line_length]
    lines += _table_row(header, positions)
    lines.append("=" * line_length)
    for row in _layer_rows(model, graph, expand_nested, level=0):
        lines += _table_row(row, positions)
    trainable = {id(v) for v in model.trainable_variables}
    sizes = [(int(np.prod(v.shape)), id(v) in trainable) for v in model.variables]
    total = sum(size for size, _ in sizes)
    trainable_total = sum(size for size, is_trainable in sizes if is_trainable)
    lines += ["=" * line_length,
              f"Total params: {total:,}",
              f"Trainable params: {trainable_total:,}",
              f"Non-trainable params: {total - trainable_total:,}",
              "_" * line_length]
    return lines


def _layer_rows(model, graph_columns: bool, expand_nested: bool, level: int):
    """The rows of `model`'s layers (and, with expand_nested, of the layers inside them)."""
    graph = hasattr(model, "connections")
    connections = model.connections() if graph else {}
    prefix = "   " * level + "└ " if level else ""
    for layer in model.layers:
        # As Keras: a layer that call() never used is not built and has no weights yet.
        params = str(layer.count_params()) if layer.built else "0 (unused)"
        row = [f"{prefix}{layer.name} ({type(layer).__name__})",
               _graph_shape_text(model, layer) if graph else _shape_text(layer.output_shape),
               params]
        yield row + ([str(connections.get(layer, ""))] if graph_columns else [])
        if expand_nested and getattr(layer, "layers", None):
            yield from _layer_rows(layer, graph_columns, expand_nested, level + 1)


def _shape_text(shape) -> str:
    return str(tuple(shape)) if shape is not None else "?"


def _graph_shape_text(model, layer) -> str:
    """As Keras 2: an InputLayer's shape in a list, several outputs as a list of shapes,
    "multiple" for a layer whose calls give different shapes."""
    shapes = model.output_shapes_of(layer)
    if any(shape != shapes[0] for shape in shapes):
        return "multiple"
    shape = shapes[0]
    if isinstance(shape, list):
        return str([tuple(s) for s in shape])
    return str([tuple(shape)]) if getattr(layer, "is_input_layer", False) else str(tuple(shape))


def _table_row(fields, positions) -> list[str]:
    """One summary row, wrapped like Keras 2: column text that does not fit continues below."""
    left = [str(f) for f in fields]
    lines = []
    while any(left):
        line = ""
        for col, text in enumerate(left):
            start = positions[col - 1] if col > 0 else 0
            space = 2 if col != len(positions) - 1 else 0
            # The first column starts with one space (Keras forgets it and shifts the row).
            cutoff = positions[col] - start - space - (1 if col == 0 else 0)
            piece = text[:cutoff]
            # Prefer breaking right after the end of a tuple/list item, as Keras does.
            breaks = [piece.find(mark) + len(mark) for mark in ("),", "},", "],", "',")
                      if piece.find(mark) >= 0]
            if breaks and len(text) > cutoff:
                cutoff = min(breaks)
                piece = piece[:cutoff]
            line += (" " if col == 0 else "") + piece + " " * space
            left[col] = text[cutoff:]
            line += " " * (positions[col] - len(line))
        lines.append(line.rstrip())
    return lines
