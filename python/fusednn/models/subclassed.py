"""Model subclassing, Keras's third way to make a model:

    class MLP(fd.Model):
        def __init__(self):
            super().__init__()
            self.hidden = fd.layers.Dense(32, activation="relu")
            self.out = fd.layers.Dense(10)

        def call(self, inputs, training=False):
            return self.out(self.hidden(inputs)) + fd.ops.mean(inputs)

`SubclassedModel` is the part of `Model` (models/training.py) that a user's subclass
uses; Sequential and Functional override all of it.

- Tracking: the layers (and models) held in attributes, directly or in lists, tuples
  and dicts, in the order the attributes were first assigned (Python keeps a dict's
  insertion order, and Keras lists them in that order too), are `layers`; their weights
  are the model's, so weights, get/set_weights, save_weights, summary and fit work.
- Building: on the first call, or `build(input_shape)`, which runs `call` once on zeros.
- backward comes from the tape (ops/tape.py). A training forward runs `call` on traced
  inputs with every layer call recorded as one tape op whose vjp is the layer's own
  backward, run once for all of the call's outputs after restoring that call's cache
  (models/call_state.py), so a layer called twice or a skip connection gets the sum of
  its gradients; fusednn.ops functions and arithmetic between the calls are recorded
  by the tape as usual. What the tape cannot differentiate is a TypeError naming it.
- training: given to `call` when it names the argument; layer calls inside `call`
  that give no `training` inherit the model's, as in Keras.
- A subclass that writes `call_backward` itself (call returning (y, cache), the layer
  protocol of layers/base.py) keeps Layer's forward, backward and output shape.
- Saving: a subclassed model is Python code, which fusednn's safe format does not hold:
  `get_config` (so `model.save`) raises and says to use save_weights / load_weights.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from .. import backend
from ..errors import StateError
from ..layers.base import Layer, _builds_once
from ..layers.symbolic import flatten, map_structure
from ..ops import tape
from .call_state import call_state, restore_call_state


class SubclassedModel:
    """The structure of a `Model` subclass that defines `call` (see the module docstring)."""

    # The softmax fusion (models/training.py) needs the logits of the last layer, which a
    # call written in Python does not expose.
    outputs_softmax = False

    @property
    def layers(self) -> list[Layer]:
        """The tracked layers, in the order their attributes were first assigned."""
        found, seen = [], {id(self)}
        for value in vars(self).values():
            for item in _tracked_leaves(value):
                if id(item) not in seen:
                    seen.add(id(item))
                    found.append(item)
        return found

    @property
    def sublayers(self) -> list[Layer]:
        return self.layers

    # A layer shared by two nested models is reached twice; Keras lists its weights once
    # (and an optimizer must update them once).
    @property
    def variables(self):
        return _unique(Layer.variables.fget(self))

    weights = variables

    @property
    def trainable_variables(self):
        return _unique(Layer.trainable_variables.fget(self))

    trainable_weights = trainable_variables

    # ----- shapes --------------------------------------------------------
    @_builds_once
    def build(self, input_shape) -> None:
        """Builds every layer by running `call` once on zeros of `input_shape` (batch
        first, a list of shapes for several inputs); the base class wraps this with the
        shape bookkeeping (layers/base.py _builds_once), which calls compute_output_shape."""

    def compute_output_shape(self, input_shape):
        """The output shape(s) `call` gives for `input_shape`, found by running it in
        inference mode on zeros (unknown sizes as 1), once per input shape."""
        if _writes_backward(type(self)):
            return Layer.compute_output_shape(self, input_shape)
        key = repr(input_shape)
        known = vars(self).setdefault("_output_shapes", {})
        if key not in known:
            outputs = self._run_call(self._zeros(input_shape), False, {})
            known[key] = map_structure(lambda y: (None,) + tuple(y.shape[1:]), outputs)
        return known[key]

    # ----- running (the layer protocol) ------------------------------------
    def forward(self, x, training: bool = False, **call_arguments):
        """call(x) (an array, or a list or dict of arrays); training=True records what
        backward needs. Further keyword arguments go to call."""
        if _writes_backward(type(self)):
            return Layer.forward(self, x, training, **call_arguments)
        if type(self).call is Layer.call:
            raise NotImplementedError(f"{self._label()}: a Model subclass defines "
                                      "call(self, inputs, training=False), the forward pass "
                                      "(or pass inputs and outputs for a functional model)")
        x = map_structure(lambda a: a if hasattr(a, "shape") else np.asarray(a), x)
        if not self.built:
            shapes = map_structure(lambda a: (None,) + tuple(a.shape[1:]), x)
            if isinstance(shapes, dict) and type(self).build is SubclassedModel.build:
                # Layer's build bookkeeping takes a shape or a list of shapes, not a dict.
                self.output_shape = self.compute_output_shape(shapes)
                self.input_shape, self.built = shapes, True
            else:
                self.build(shapes)
        return self._run_call(x, bool(training), call_arguments)

    def _run_call(self, x, training: bool, call_arguments: dict):
        arguments = dict(call_arguments)
        if "training" in _call_parameters(type(self)):
            arguments["training"] = training
        if not training:
            with tape.recording_layer_calls(None):
                return map_structure(tape.value_of, self.call(x, **arguments))
        inputs = map_structure(_traced_if_float, x)
        with tape.recording_layer_calls(_LayerCalls(training=True)):
            outputs = self.call(inputs, **arguments)
        values = map_structure(tape.value_of, outputs)
        self._cache = (inputs, outputs)
        self._cache_valid = True
        self._last_output_shape = (tuple(values.shape) if not isinstance(values, (list, dict))
                                   else [tuple(v.shape) for v in flatten(values)])
        return values

    def backward(self, dy):
        """Gradients w.r.t. the inputs of the latest forward(x, training=True) (like the
        inputs: an array, or a list in input order; None for an integer input), from dy,
        one gradient per output (a list in output order for several, None for zeros).
        Adds the weights' gradients into their buffers."""
        if _writes_backward(type(self)):
            return Layer.backward(self, dy)
        if not self._cache_valid:
            raise StateError(f"{self._label()}: backward() needs a preceding "
                             "forward(x, training=True)")
        inputs, outputs = self._cache
        if isinstance(dy, dict):
            dy = list(dy.values())
        dy = self._checked_output_gradients(dy)
        outputs, dy = flatten(outputs), dy if isinstance(dy, list) else [dy]
        if not any(isinstance(o, tape.Traced) for o in outputs):
            raise StateError(f"{self._label()}: the outputs of call() were not computed with "
                             "fusednn layers or fusednn.ops functions, so the tape recorded "
                             "nothing to differentiate (no weight would get a gradient)")
        leaves = flatten(inputs)
        traced = [leaf for leaf in leaves if isinstance(leaf, tape.Traced)]
        grads = iter(tape.gradients(outputs, traced, dy))
        result = [next(grads) if isinstance(leaf, tape.Traced) else None for leaf in leaves]
        return result if isinstance(inputs, (list, dict)) else result[0]

    def _zeros(self, input_shape):
        """Zeros on the model's device for an input shape (unknown sizes as 1), or a
        list / dict of them for a list / dict of shapes."""
        if isinstance(input_shape, dict):
            return {key: self._zeros(shape) for key, shape in input_shape.items()}
        if input_shape and all(isinstance(shape, (list, tuple)) for shape in input_shape):
            return [self._zeros(shape) for shape in input_shape]
        zeros = np.zeros([1 if d is None else int(d) for d in input_shape], self.dtype)
        return backend.to_device(zeros, self.device)

    # ----- saving ------------------------------------------------------------
    def get_config(self) -> dict:
        raise ValueError(f"{self._label()} is a subclassed model: its structure is the Python "
                         "code of its class, which fusednn's safe save format does not hold "
                         "(it stores no code). Save its weights with "
                         "model.save_weights(path); to load them, create the model in code, "
                         "build it (call it on a batch) and call model.load_weights(path)")


def _unique(variables: list) -> list:
    """Each variable once, in first-seen order."""
    return list({id(v): v for v in variables}.values())


def _tracked_leaves(value) -> list:
    """The layers in an attribute's value: the value itself, or those in a list, tuple or
    dict (nested), in order."""
    if isinstance(value, Layer):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _tracked_leaves(item)]
    return []


def _writes_backward(cls) -> bool:
    """Whether a subclass follows the layer protocol itself (defines call_backward)."""
    return cls.call_backward is not Layer.call_backward


def _traced_if_float(value):
    """An input as the tape's leaf; integer inputs (token ids) are not differentiated."""
    return tape.trace(value) if getattr(value.dtype, "kind", None) == "f" else value


@functools.lru_cache(maxsize=None)
def _call_parameters(cls) -> tuple:
    return tuple(inspect.signature(cls.call).parameters)


class _LayerCalls:
    """The recorder of a training forward (ops/tape.py recording_layer_calls): runs each
    layer called in `call` and returns its outputs as Traced values whose vjp is the
    layer's backward."""

    def __init__(self, training: bool):
        self.training = training

    def __call__(self, layer, args, kwargs):
        if len(args) != 1:
            raise TypeError(f"{layer._label()}: inside a subclassed model's call, give the "
                            "inputs as one positional argument (an array, or a list of arrays) "
                            f"and the rest (training=, mask=, ...) by keyword; got {len(args)} "
                            "positional arguments")
        for key, value in kwargs.items():
            if any(isinstance(leaf, tape.Traced) for leaf in flatten(value)):
                raise TypeError(f"{layer._label()}: the argument {key}= depends on the model's "
                                "inputs, which fusednn cannot differentiate through; only the "
                                "inputs (the first argument) of a layer call are differentiated")
        kwargs = dict(kwargs)
        training = kwargs.pop("training", None)
        training = self.training if training is None else bool(training)
        x = args[0]
        with tape.recording_layer_calls(None):  # the layer's own forward runs plainly
            y = layer.forward(map_structure(tape.value_of, x), training=training, **kwargs)
        return _recorded_call(layer, flatten(x), y, call_state(layer) if training else None)


class _OutputGradients:
    """The gradients reaching one layer call's outputs ({output index: gradient}),
    gathered by the tape's sums so that the layer's backward runs once for all of them."""

    __slots__ = ("by_output",)

    def __init__(self, by_output: dict):
        self.by_output = by_output

    def __add__(self, other):
        merged = dict(self.by_output)
        for index, grad in other.by_output.items():
            merged[index] = grad if index not in merged else merged[index] + grad
        return _OutputGradients(merged)


def _recorded_call(layer, inputs: list, y, state):
    """The tape ops of one layer call: a node for the call whose parents are the traced
    inputs (and an anchor, so that a call on constants still gives its weights their
    gradients), and one Traced output per output of the layer. `state`: the call's
    saved cache, None for a call in inference mode (which has no backward)."""
    several = isinstance(y, list)
    outputs = y if several else [y]
    done = {}

    def input_gradients(grads: _OutputGradients) -> list:
        if done.get("for") is not grads:  # the call's parents share one backward
            if state is None:
                raise StateError(f"{layer._label()} was called with training=False inside a "
                                 "training forward, and a gradient flows through that call; "
                                 "fusednn's layers compute gradients from a training forward "
                                 "only (give training=True, or leave it out to inherit it)")
            restore_call_state(state)
            dy = [grads.by_output.get(index) for index in range(len(outputs))]
            dx = layer.backward(dy if several else dy[0])
            done["for"], done["dx"] = grads, dx if isinstance(dx, list) else [dx]
        return done["dx"]

    anchor = tape.Traced(np.zeros(()))
    parents = [(anchor, functools.partial(_run_backward, input_gradients))]
    for position, leaf in enumerate(inputs):
        if isinstance(leaf, tape.Traced):
            parents.append((leaf, functools.partial(_input_gradient, input_gradients,
                                                    position, leaf)))
    call = tape.Traced(None, tuple(parents))
    traced = [tape.Traced(value, ((call, functools.partial(_as_output_gradient, index)),))
              for index, value in enumerate(outputs)]
    return traced if several else traced[0]


def _run_backward(input_gradients, grads) -> float:
    input_gradients(grads)
    return 0.0  # the anchor's gradient, which nobody reads


def _as_output_gradient(index: int, grad) -> _OutputGradients:
    return _OutputGradients({index: grad})


def _input_gradient(input_gradients, position: int, leaf, grads):
    dx = input_gradients(grads)[position]
    if dx is None:  # the layer gives no gradient for this input (e.g. integer ids)
        return backend.get_array_module(leaf.value).zeros_like(leaf.value)
    return dx
