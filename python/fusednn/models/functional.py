"""Functional: a model over a graph of layer calls, `fd.Model(inputs, outputs)` (Keras's
functional API). `fd.Model` with inputs/outputs makes one (training.Model.__new__).

Construction walks back from the outputs over the nodes that calling layers on
`fd.Input` recorded (layers/symbolic.py) and orders them as Keras orders a model's
layers, by depth, which is a topological order. Then:
- forward runs the nodes in that order, each on its inbound values, passing masks
  along the edges (compute_mask per node); in training mode it stashes what each call
  left for backward (the layer's caches, its sublayers' too), because a shared layer
  keeps only its latest call's;
- backward runs the nodes in reverse, restoring each call's stash before the layer's
  backward, summing the gradients of a tensor that feeds several nodes; a shared
  layer's weight gradients add up in its one set of buffers.
Inputs and outputs are a tensor, a list or a dict; forward takes an array, a list
(input order) or a dict (input keys, or input names) and returns an array, a list or a
dict like the outputs; backward takes one gradient per output (None for zeros).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import backend, utils
from ..errors import StateError
from ..layers.base import Layer
from ..layers.symbolic import SymbolicTensor, flatten, is_symbolic, map_structure
from .call_state import call_state, restore_call_state
from .graph_config import rebuild
from .gradients_ready import GradientsReady
from .registry import MODELS, serialize_layer
from .training import Model

@MODELS.register
class Functional(Model):
    """A model over the graph from `inputs` (fd.Input tensors) to `outputs`."""

    def __init__(self, inputs, outputs, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self._input_structure = _checked_structure(self, "inputs", inputs)
        self._output_structure = _checked_structure(self, "outputs", outputs)
        self.inputs = flatten(self._input_structure)
        self.outputs = flatten(self._output_structure)
        self._check_inputs()
        nodes = _by_depth(_topological_nodes(self, self.inputs, self.outputs), self.outputs)
        # The calls to run, each after those it reads; the InputLayers' nodes only hold data.
        self._nodes = [node for node in nodes if not node.is_input]
        self._layers = list(dict.fromkeys(node.layer for node in nodes))
        # Backward finishes a layer's gradients at its first call (models/gradients_ready.py).
        self._finishing_nodes = {id(node) for node in
                                 {node.layer: node for node in reversed(self._nodes)}.values()}
        self.gradients_ready = GradientsReady()
        self._check_layer_names()
        self._node_states = None
        self.built = True
        self.input_shape = _shapes(self._input_structure, list_of_one=False)
        self.output_shape = _shapes(self._output_structure, list_of_one=False)

    # ----- structure -----------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """Every layer once, in Keras's order (by depth from the inputs)."""
        return list(self._layers)

    sublayers = layers

    @property
    def input_names(self) -> list[str]:
        if isinstance(self._input_structure, dict):
            return list(self._input_structure)
        return [t.node.layer.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        if isinstance(self._output_structure, dict):
            return list(self._output_structure)
        return [t.node.layer.name for t in self.outputs]

    def get_layer(self, name=None, index=None) -> Layer:
        """The layer named `name`, or at position `index` of `layers` (exactly one)."""
        if (name is None) == (index is None):
            raise ValueError(f"{self._label()}.get_layer: expected exactly one of name= or "
                             f"index=, got name={name!r}, index={index!r}")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                    or not -len(self._layers) <= index < len(self._layers):
                raise ValueError(f"{self._label()}.get_layer: expected an index in "
                                 f"[0, {len(self._layers)}), got {index!r}")
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self._label()}.get_layer: no layer named {name!r}; the layers are "
                         f"{[layer.name for layer in self._layers]}")

    def connections(self) -> dict:
        """For the summary: each layer's inbound tensors per call, as Keras prints them
        ("name[node][tensor]"); node indices count the calls of a layer in this model."""
        calls, index = self._calls()
        return {layer: [f"{t.node.layer.name}[{index[id(t.node)]}][{t.index}]"
                        for node in nodes for t in node.inbound]
                for layer, nodes in calls.items()}

    def output_shapes_of(self, layer) -> list:
        """The output shape (a list for several outputs) of each call of `layer` here."""
        return [_shapes(node.output_structure(), list_of_one=False)
                for node in self._all_nodes() if node.layer is layer]

    def _all_nodes(self) -> list:
        return [t.node for t in self.inputs] + self._nodes

    def _calls(self) -> tuple[dict, dict]:
        """{layer: its nodes here, in order} and {id(node): its index among them}."""
        calls, index = {}, {}
        for node in self._all_nodes():
            index[id(node)] = len(calls.setdefault(node.layer, []))
            calls[node.layer].append(node)
        return calls, index

    def _check_inputs(self) -> None:
        for position, tensor in enumerate(self.inputs):
            if not tensor.node.is_input:
                raise ValueError(f"{self._label()}: inputs must be tensors made by fd.Input, but "
                                 f"input {position} is the output of "
                                 f"{tensor.node.layer._label()}")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError(f"{self._label()}: the same Input tensor is given twice in inputs "
                             f"{[t.name for t in self.inputs]}")

    def _check_layer_names(self) -> None:
        names = [layer.name for layer in self._layers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{self._label()}: all layer names must be unique (weights are saved "
                             f"by name), but {repeated} name several different layers")

    def __call__(self, *args, **kwargs):
        # Symbolic inputs in a dict become a list in input order, the order in which
        # backward returns their gradients to the enclosing graph.
        if args and isinstance(args[0], dict) and is_symbolic(args[0]):
            args = (self._flat_inputs(args[0], "input", is_leaf=None),) + args[1:]
        return super().__call__(*args, **kwargs)

    # ----- shapes --------------------------------------------------------
    def build_for(self, input_shape):
        return self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        """Output shape(s) for input shape(s) like the inputs (shape, list or dict)."""
        given = self._flat_inputs(input_shape, "input shape",
                                  is_leaf=lambda s: not _is_shape_structure(s))
        shapes = {}
        for tensor, value in zip(self.inputs, given):
            shapes[id(tensor)] = tensor.node.layer.build_for(value)
        for node in self._nodes:
            out = node.layer.build_for(map_structure(lambda t: shapes[id(t)], node.inputs))
            for tensor, shape in zip(node.outputs, node.output_list(out)):
                shapes[id(tensor)] = tuple(shape)
        return _like_outputs(self._output_structure, [shapes[id(t)] for t in self.outputs])

    # ----- running (the layer protocol) ------------------------------------
    def forward(self, x, training: bool = False):
        """The outputs for inputs x (an array, a list in input order, or a dict);
        training=True keeps what backward needs, per call of each layer."""
        arrays = self._flat_inputs(x, "input", is_leaf=_is_one_array)
        values, masks = {}, {}
        for tensor, array in zip(self.inputs, arrays):
            if not hasattr(array, "shape"):
                array = np.asarray(array)
            layer = tensor.node.layer
            layer.input_spec.check(layer, tuple(array.shape))  # the InputLayer's declaration
            values[id(tensor)] = array
        states = [] if training else None
        for node in self._nodes:
            outputs = self._run_node(node, values, masks, bool(training))
            for tensor, value in zip(node.outputs, outputs):
                values[id(tensor)] = value
            if training:
                states.append(call_state(node.layer))
        self._node_states = states
        self._cache_valid = bool(training)
        results = [values[id(t)] for t in self.outputs]
        if training:
            self._last_output_shape = [tuple(r.shape) for r in results]
            self._last_output_dtypes = [r.dtype for r in results]
        return _like_outputs(self._output_structure, results)

    def _run_node(self, node, values, masks, training: bool) -> list:
        layer = node.layer
        inputs = map_structure(lambda t: values[id(t)], node.inputs)
        kwargs = {key: map_structure(lambda v: values[id(v)] if isinstance(v, SymbolicTensor)
                                     else v, value) for key, value in node.kwargs.items()}
        kwargs.setdefault("training", training)
        mask = map_structure(lambda t: masks.get(id(t)), node.inputs)
        if any(m is not None for m in flatten(mask)) and layer.supports_masking:
            kwargs["mask"] = mask
        outputs = node.output_list(layer.forward(inputs, **kwargs))
        out_masks = getattr(layer, "output_mask", None)
        out_masks = out_masks if isinstance(out_masks, list) else [out_masks]
        for tensor, out_mask in zip(node.outputs, out_masks):
            if out_mask is not None:
                masks[id(tensor)] = out_mask
        return outputs

    def backward(self, dy):
        """Gradients w.r.t. the inputs of the latest forward(x, training=True): an array
        for one input, else a list in input order. dy: one gradient per output (an
        array, a list, or a dict by output name), None for zeros."""
        if not self._cache_valid:
            raise StateError(f"{self._label()}: backward() needs a preceding "
                             "forward(x, training=True)")
        grads = {}
        for tensor, g in zip(self.outputs, self._output_gradients(dy)):
            if g is not None:
                _accumulate(grads, tensor, g)
        return self._backward_through(len(self._nodes), grads)

    def _backward_through(self, count: int, grads: dict):
        """Backward over the first `count` nodes (in reverse) from the tensor gradients
        `grads`; returns the input gradient(s)."""
        needed, read = self._backward_plan()
        for node, state in zip(reversed(self._nodes[:count]),
                               reversed(self._node_states[:count])):
            out = [grads.get(id(t)) for t in node.outputs]
            if all(g is None for g in out) or id(node) not in needed:
                continue  # nothing downstream depends on this call's outputs, or no one
                # reads the gradients its backward would give
            if node.kwargs.get("training") is False:
                raise StateError(
                    f"{self._label()}: {node.layer._label()} was called with training=False, "
                    "which keeps nothing for a backward, yet its gradient is needed (it has "
                    "trainable weights, or trainable layers feed it). Keras would train it in "
                    "inference mode; fusednn cannot yet: freeze it (trainable = False) or call "
                    "it without training=False")
            restore_call_state(state)
            skipped = not any(id(t) in read for t in node.inbound)
            with node.layer._input_grad_skipped() if skipped else contextlib.nullcontext():
                dx = node.layer.backward(out if node.several_outputs else out[0])
            self._report_gradients_ready(node)
            dx = dx if isinstance(dx, list) else [dx]
            if len(dx) != len(node.inbound):
                raise StateError(f"{self._label()}: {node.layer._label()} returned "
                                 f"{len(dx)} input gradients for {len(node.inbound)} inbound "
                                 "tensors")
            for tensor, g in zip(node.inbound, dx):
                if g is not None:
                    _accumulate(grads, tensor, g)
        result = [grads.get(id(t)) for t in self.inputs]
        return result if len(result) > 1 else result[0]

    # Softmax fusion (the contract in layers/core.py, as Sequential): one output, made by
    # the last call of a softmax layer and read by no other call, exposes its logits.
    @property
    def outputs_softmax(self) -> bool:
        # With one output, its node is the only one of depth 0: the last.
        if len(self.outputs) != 1 or not self._nodes \
                or self.outputs[0].node is not self._nodes[-1]:
            return False
        node = self._nodes[-1]
        read = any(node.outputs[0] in other.inbound for other in self._nodes)
        return not node.several_outputs and not read and bool(
            getattr(node.layer, "outputs_softmax", False))

    def logits_of_last_forward(self):
        self._restore_last_call()
        return self._nodes[-1].layer.logits_of_last_forward()

    def backward_from_logits(self, dlogits):
        """Backward from the gradient w.r.t. the output layer's logits."""
        node = self._nodes[-1]
        self._restore_last_call()
        dx = node.layer.backward_from_logits(dlogits)
        if utils.numerics_checked():
            node.layer._check_backward_numerics(dlogits, dx,
                                                incoming="the gradient w.r.t. the logits")
        grads = {}
        for tensor, g in zip(node.inbound, dx if isinstance(dx, list) else [dx]):
            if g is not None:
                _accumulate(grads, tensor, g)
        return self._backward_through(len(self._nodes) - 1, grads)

    def _backward_plan(self) -> tuple[set, set]:
        """(ids of the calls whose backward gives a gradient someone reads, ids of the
        tensors whose gradient someone reads). A call is needed when its layer has trainable
        weights or it is fed (along any path) by such a call or by a model input whose
        gradient is wanted; the gradients of that call's outputs are read. Keras's
        transfer-learning step calls a frozen base model with training=False, which keeps
        nothing for a backward; in a training step (model inputs' gradients unused) that call
        needs none and is skipped, and a call fed only by unread tensors (the first Conv2D or
        LSTM after an Input) skips its input gradient, as autodiff skips what requires no
        gradient."""
        read = {id(t) for t in self.inputs} if self._input_grad_needed else set()
        needed = set()
        for node in self._nodes:  # each after those it reads
            if node.layer.trainable_variables or any(id(t) in read for t in node.inbound):
                needed.add(id(node))
                read.update(id(t) for t in node.outputs)
        return needed, read

    @contextlib.contextmanager
    def _input_grad_unused(self):
        """The training step reads only weight gradients: calls fed only by the model's
        inputs and holding no trainable weights need no backward."""
        with self._input_grad_skipped():
            yield

    def _report_gradients_ready(self, node) -> None:
        if id(node) in self._finishing_nodes:
            self.gradients_ready(node.layer)

    def _restore_last_call(self) -> None:
        if not self._cache_valid:
            raise StateError(f"{self._label()}: the softmax fusion needs a preceding "
                             "forward(x, training=True)")
        restore_call_state(self._node_states[-1])

    def _output_gradients(self, dy) -> list:
        count = len(self.outputs)
        if isinstance(dy, dict):
            unknown = sorted(set(dy) - set(self.output_names))
            if unknown:
                raise ValueError(f"{self._label()}: backward got gradients for {unknown}, which "
                                 f"name no output; the outputs are {self.output_names}")
            dy = [dy.get(name) for name in self.output_names]
        elif count == 1 and not isinstance(dy, (list, tuple)):
            dy = [dy]
        if not isinstance(dy, (list, tuple)) or len(dy) != count:
            got = (f"a list of length {len(dy)}" if isinstance(dy, (list, tuple))
                   else type(dy).__name__)
            raise ValueError(f"{self._label()}: backward expected {count} gradient(s), one per "
                             f"output {self.output_names} (None for an unused one), got {got}")
        checked = []
        for name, g, shape, dtype in zip(self.output_names, dy, self._last_output_shape,
                                         self._last_output_dtypes):
            if g is not None:  # each output's gradient in that output's dtype
                g = backend.as_float_array(g, dtype, f"{self._label()} gradient of {name}")
                if tuple(g.shape) != shape:
                    raise ValueError(f"{self._label()}: backward expected a gradient of shape "
                                     f"{shape} for output {name!r}, got {tuple(g.shape)}")
            checked.append(g)
        return checked

    def _flat_inputs(self, given, what: str, is_leaf) -> list:
        """`given` (one value, a list in input order, or a dict by input key or name) as
        a list in input order, checked against the inputs."""
        count = len(self.inputs)
        if isinstance(given, dict):
            keys = list(self._input_structure) if isinstance(self._input_structure, dict) \
                else self.input_names
            unknown = sorted(set(given) - set(keys), key=str)
            missing = [key for key in keys if key not in given]
            if unknown or missing:
                raise ValueError(f"{self._label()}: expected a dict with one {what} per input "
                                 f"{keys}; " + (f"{unknown} name no input" if unknown else
                                                f"{missing} missing"))
            return [given[key] for key in keys]
        if count == 1 and is_leaf(given):
            return [given]
        if not isinstance(given, (list, tuple)) or len(given) != count:
            got = (f"a list of length {len(given)}" if isinstance(given, (list, tuple))
                   else type(given).__name__)
            raise ValueError(f"{self._label()}: expected {count} {what}s, one per input "
                             f"{self.input_names} (a list in that order or a dict), got {got}")
        return list(given)

    # ----- configuration ---------------------------------------------------
    def get_config(self) -> dict:
        """Keras-like: each layer once with the calls it makes here ("inbound_nodes",
        tensors as [layer name, node index, tensor index]), and the graph's ends."""
        calls, node_index = self._calls()

        def ref(value):
            if isinstance(value, SymbolicTensor):
                return {"__tensor__": [value.node.layer.name, node_index[id(value.node)],
                                       value.index]}
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            raise TypeError(f"{self._label()}: cannot save a call argument of type "
                            f"{type(value).__name__} ({value!r:.60}); only tensors, numbers, "
                            "strings, booleans and None are saved")

        layers = []
        for layer, nodes in calls.items():
            item = serialize_layer(layer)
            item["inbound_nodes"] = [] if nodes[0].is_input else [
                {"args": map_structure(ref, node.inputs),
                 "kwargs": {k: map_structure(ref, v) for k, v in node.kwargs.items()}}
                for node in nodes]
            layers.append(item)
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": map_structure(ref, self._input_structure),
                "output_layers": map_structure(ref, self._output_structure)}

    @classmethod
    def from_config(cls, config: dict) -> "Functional":
        """Rebuilds the graph: known layer classes only (models/registry.py); a reference
        to an unknown layer or a cycle is a ValueError."""
        inputs, outputs = rebuild(config)
        return cls(inputs=inputs, outputs=outputs, name=config.get("name"),
                   trainable=config.get("trainable", True))


Model._functional_class = Functional


# ----- construction helpers ----------------------------------------------------------

def _checked_structure(model, what: str, structure):
    """A tensor, a list/tuple (kept as a list) or a dict of tensors, or a clear error."""
    if isinstance(structure, tuple):
        structure = list(structure)
    leaves = flatten(structure)
    nested = isinstance(structure, list) and any(isinstance(s, (list, dict)) for s in structure)
    if nested or (isinstance(structure, dict) and any(isinstance(s, (list, tuple, dict))
                                                      for s in structure.values())):
        raise TypeError(f"{model._label()}: expected {what} as a tensor, a list or a dict of "
                        "tensors (not nested)")
    if not leaves:
        raise ValueError(f"{model._label()}: expected at least one tensor in {what}, got "
                         f"{structure!r}")
    for leaf in leaves:
        if not isinstance(leaf, SymbolicTensor):
            raise TypeError(f"{model._label()}: expected {what} to be symbolic tensors (from "
                            f"fd.Input and layers called on them), got {type(leaf).__name__}"
                            f" {leaf!r:.80}")
    if isinstance(structure, dict) and not all(isinstance(k, str) for k in structure):
        raise TypeError(f"{model._label()}: the keys of {what} must be strings, got "
                        f"{list(structure)}")
    return structure


def _topological_nodes(model, inputs, outputs) -> list:
    """The input nodes (in input order), then every node the outputs depend on, each
    after the nodes it reads; errors for tensors no given input leads to."""
    given = {id(t.node) for t in inputs}
    order = [t.node for t in inputs]
    done = set(given)
    used = set()
    for output in outputs:
        stack = [(output.node, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            if node.is_input:
                raise ValueError(
                    f"{model._label()}: graph disconnected: the outputs depend on the input "
                    f"'{node.layer.name}', which is not among the model's inputs "
                    f"{[t.node.layer.name for t in inputs]}")
            stack.append((node, True))
            for tensor in reversed(node.inbound):
                used.add(id(tensor.node))
                if id(tensor.node) not in done:
                    stack.append((tensor.node, False))
        used.add(id(output.node))
    unused = [t.node.layer.name for t in inputs if id(t.node) not in used]
    if unused:
        raise ValueError(f"{model._label()}: the outputs do not depend on the input(s) "
                         f"{unused}; every input must lead to an output")
    return order


def _by_depth(nodes: list, outputs) -> list:
    """The nodes ordered as Keras orders a functional model's layers: by depth (the longest
    path to an output) from the deepest, ties in discovery order; still topological, as a
    node is deeper than every node reading it."""
    depth = {id(t.node): 0 for t in outputs}
    for node in reversed(nodes):  # every reader of a node comes after it in `nodes`
        for tensor in node.inbound:
            depth[id(tensor.node)] = max(depth.get(id(tensor.node), 0), depth[id(node)] + 1)
    return sorted(nodes, key=lambda node: -depth[id(node)])


def _is_one_array(value) -> bool:
    """Whether `value` is one input's data (an array, or nested lists of numbers) rather
    than a list of arrays."""
    return not isinstance(value, (list, tuple)) or not all(hasattr(v, "shape") for v in value)


def _is_shape_structure(value) -> bool:
    """Whether `value` holds several shapes (a list/dict of tuples) rather than one shape."""
    if isinstance(value, dict):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(item, (list, tuple)) for item in value)


def _shapes(structure, list_of_one: bool):
    shapes = map_structure(lambda t: t.shape, structure)
    return shapes if list_of_one or not isinstance(shapes, list) or len(shapes) != 1 \
        else shapes[0]


def _like_outputs(structure, values: list):
    """values (one per output, in order) arranged like the outputs."""
    if isinstance(structure, dict):
        return dict(zip(structure, values))
    if isinstance(structure, list):
        return list(values)
    return values[0]


def _accumulate(grads: dict, tensor, g) -> None:
    """Adds g into the gradient of `tensor` (a new array: layers may keep what they return)."""
    key = id(tensor)
    grads[key] = g if key not in grads else grads[key] + g

