"""GraphBuilder: the ONNX graph of one export, built node by node by the layer exporters.

It hands out unique tensor names, turns NumPy constants into initializers, and keeps
the opset, so an exporter writes `g.op("MatMul", [x, g.const(kernel)])` and gets the
output's name back. The `onnx` package is imported by the caller (fusednn.export.onnx)
and passed in, so `import fusednn` never needs it.
"""
from __future__ import annotations

import numpy as np


class GraphBuilder:
    def __init__(self, onnx, opset: int):
        self.onnx = onnx
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self._used: set[str] = set()
        self._reserved: set[str] = set()

    def name(self, hint: str) -> str:
        """A tensor name not used before, made from `hint`."""
        candidate, count = hint, 1
        while candidate in self._used:
            count += 1
            candidate = f"{hint}_{count}"
        self._used.add(candidate)
        return candidate

    def reserve(self, name: str) -> str:
        """Takes `name` as it is (a graph input or output), for one later op's output."""
        if name in self._used:
            raise ValueError(f"export.onnx: the tensor name {name!r} is used twice")
        self._used.add(name)
        self._reserved.add(name)
        return name

    def const(self, array, hint: str = "const", dtype=None) -> str:
        """An initializer holding `array` (float arrays as float32 unless dtype says else)."""
        array = np.asarray(array)
        if dtype is None:
            dtype = np.float32 if array.dtype.kind == "f" else np.int64
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs, hint: str | None = None, outputs: int = 1,
           **attributes):
        """Adds one node; returns its output name (a list of names when outputs > 1).
        An empty string in `inputs` is an omitted optional input; a hint reserved with
        name() beforehand (the graph's output) is used as it is."""
        names = [hint if hint in self._reserved else self.name(hint or op_type.lower())
                 for _ in range(outputs)]
        self._reserved.discard(hint)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names,
                                                     name=self.name(f"node_{names[0]}"),
                                                     **attributes))
        return names[0] if outputs == 1 else names

    # ----- helpers whose form depends on the opset ------------------------------------
    def reduce(self, op_type: str, x: str, axes, keepdims: bool, hint: str | None = None) -> str:
        """ReduceSum/Max/Mean over `axes`: an input from opset 18 (13 for ReduceSum), an
        attribute before."""
        axes = [int(a) for a in axes]
        if self.opset >= 18 or (op_type == "ReduceSum" and self.opset >= 13):
            return self.op(op_type, [x, self.const(np.array(axes, np.int64), "axes")], hint,
                           keepdims=int(keepdims))
        return self.op(op_type, [x], hint, axes=axes, keepdims=int(keepdims))

    def transpose(self, x: str, perm, hint: str | None = None) -> str:
        return self.op("Transpose", [x], hint, perm=[int(p) for p in perm])

    def reshape(self, x: str, shape, hint: str | None = None) -> str:
        """Reshape to `shape` (a constant; 0 copies the input's size, -1 is inferred) or to
        the shape held by the tensor named `shape`."""
        if not isinstance(shape, str):
            shape = self.const(np.array(shape, np.int64), "shape")
        return self.op("Reshape", [x, shape], hint)

    def slice(self, x: str, starts, ends, axes, steps=None, hint: str | None = None) -> str:
        inputs = [x] + [self.const(np.array(v, np.int64), n)
                        for n, v in (("starts", starts), ("ends", ends), ("axes", axes))]
        if steps is not None:
            inputs.append(self.const(np.array(steps, np.int64), "steps"))
        return self.op("Slice", inputs, hint)

    def channels_first(self, x: str, rank: int) -> str:
        """(N, *spatial, C) -> (N, C, *spatial), the layout of ONNX's Conv and pools."""
        return self.transpose(x, (0, rank - 1) + tuple(range(1, rank - 1)))

    def channels_last(self, x: str, rank: int) -> str:
        """(N, C, *spatial) -> (N, *spatial, C)."""
        return self.transpose(x, (0,) + tuple(range(2, rank)) + (1,))
