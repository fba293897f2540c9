"""The summary table of a model, as Keras 2 prints it."""
from __future__ import annotations

import numpy as np


def summary_lines(model, line_length=None, positions=None) -> list[str]:
    """Keras 2's table: layer (type), output shape, parameter count, and totals."""
    line_length = int(line_length or 65)
    positions = list(positions or [0.45, 0.85, 1.0])
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    lines = [f'Model: "{model.name}"', "_" * line_length]
    lines += _table_row(["Layer (type)", "Output Shape", "Param #"], positions)
    lines.append("=" * line_length)
    for layer in model.layers:
        lines += _table_row([f"{layer.name} ({type(layer).__name__})",
                             _shape_text(layer.output_shape), str(layer.count_params())],
                            positions)
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


def _shape_text(shape) -> str:
    return str(tuple(shape)) if shape is not None else "?"


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
