"""Symbolic tensors and nodes: what calling layers on `fd.Input` records (Keras's
KerasTensor and Node), from which `fd.Model(inputs, outputs)` reads its graph.

A Node is one call of a layer: the layer, the inputs it was called on (a tensor, a
list or a dict of tensors), the keyword arguments of the call (tensors among them,
e.g. a recurrent layer's initial_state=) and the tensors it returned. A
SymbolicTensor is one output of a node: a shape (batch first, None for unknown
sizes) and a dtype, no data. Tensors are immutable, so a recorded graph has no cycle.
"""
from __future__ import annotations

import numpy as np


class SymbolicTensor:
    """A placeholder for an array in a graph: shape, dtype and the node that makes it."""

    def __init__(self, shape, dtype, node: "Node", index: int):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.index = index  # which output of node.layer's call

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def name(self) -> str:
        outputs = len(self.node.outputs)
        return self.node.layer.name + (f"[{self.index}]" if outputs > 1 else "")

    def __repr__(self):
        return (f"<SymbolicTensor shape={self.shape} dtype={self.dtype.name} "
                f"from {self.node.layer._label()}>")

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic (a placeholder in a graph of layers), not data: "
                        "build fd.Model(inputs, outputs) and call the model on arrays")


class Node:
    """One call of `layer` on symbolic `inputs` (with keyword arguments `kwargs`)."""

    def __init__(self, layer, inputs, kwargs: dict, output_shape, dtype):
        self.layer = layer
        self.inputs = inputs
        self.kwargs = dict(kwargs)
        # Every tensor the call reads, in the order backward returns their gradients:
        # the inputs, then the tensors among the keyword arguments (sorted by name).
        self.inbound = flatten(inputs) + [t for key in sorted(self.kwargs)
                                          for t in flatten(self.kwargs[key])
                                          if isinstance(t, SymbolicTensor)]
        # Several outputs come as a list, or as a dict from a model with dict outputs.
        self.output_keys = list(output_shape) if isinstance(output_shape, dict) else None
        if self.output_keys is not None:
            output_shape = [output_shape[key] for key in self.output_keys]
        several = isinstance(output_shape, list)
        shapes = output_shape if several else [output_shape]
        self.outputs = [SymbolicTensor(shape, dtype, self, i) for i, shape in enumerate(shapes)]
        self.several_outputs = several

    @property
    def is_input(self) -> bool:
        return not self.inbound and not self.kwargs and getattr(self.layer, "is_input_layer",
                                                                False)

    def output_structure(self):
        if self.output_keys is not None:
            return dict(zip(self.output_keys, self.outputs))
        return list(self.outputs) if self.several_outputs else self.outputs[0]

    def output_list(self, values) -> list:
        """The layer's outputs for this call (an array, a list or a dict) as a list."""
        if self.output_keys is not None:
            return [values[key] for key in self.output_keys]
        return values if self.several_outputs else [values]


def flatten(structure) -> list:
    """The leaves of a tensor, a list/tuple or a dict (in key order) of them."""
    if isinstance(structure, dict):
        return [leaf for key in structure for leaf in flatten(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def map_structure(function, structure):
    """`structure` with every leaf replaced by function(leaf) (lists stay lists)."""
    if isinstance(structure, dict):
        return {key: map_structure(function, value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [map_structure(function, item) for item in structure]
    return function(structure)


def is_symbolic(*structures) -> bool:
    return any(isinstance(leaf, SymbolicTensor) for s in structures for leaf in flatten(s))


def call_symbolically(layer, args: tuple, kwargs: dict):
    """Keras's symbolic call: builds the layer for the inputs' shapes, records a Node and
    returns its output tensor(s) (a list for a layer with several outputs)."""
    if len(args) != 1:
        raise TypeError(f"{layer._label()}: expected the inputs as one positional argument (a "
                        f"tensor, or a list or dict of tensors), got {len(args)} positional "
                        "arguments")
    inputs = args[0]
    leaves = flatten(inputs)
    not_symbolic = [type(leaf).__name__ for leaf in leaves if not isinstance(leaf, SymbolicTensor)]
    if not_symbolic or not leaves:
        raise TypeError(f"{layer._label()}: expected symbolic tensors (from fd.Input or a layer "
                        f"called on one) as inputs, got {not_symbolic or 'no tensor'}; a layer "
                        "is called either on symbolic tensors or on arrays, not on a mix")
    if kwargs.get("mask") is not None:
        raise TypeError(f"{layer._label()}: mask= cannot be given to a symbolic call: masks "
                        "travel along the graph from the layers that make them (Masking, "
                        "Embedding(mask_zero=True))")
    kwargs = {key: value for key, value in kwargs.items() if key != "mask"}
    output_shape = layer.build_for(map_structure(lambda t: t.shape, inputs))
    return Node(layer, inputs, kwargs, output_shape, layer.dtype).output_structure()
