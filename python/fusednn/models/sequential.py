"""Sequential: a linear stack of layers, the model most Keras code starts with.

As a Layer it follows the protocol (forward/backward/zero_grad/get_weights/...),
so hand-written loops compose models, e.g. a GAN generator step is
`G.backward(D.backward(dloss))`. The training API (compile/fit/evaluate/predict/
summary/save) comes from `Model` (models/training.py), which talks to this class
only through the model interface documented there.

Devices: a model moved with `model.to("cuda")` keeps its weights on the GPU;
calling `model.forward` directly expects arrays already on the model's device.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import fusion, utils
from .. import layers as layers_module
from ..errors import StateError
from ..layers.base import Layer
from ..layers.symbolic import SymbolicTensor
from .gradients_ready import GradientsReady
from .registry import MODELS, deserialize_layer, serialize_layer
from .training import Model


@MODELS.register
class Sequential(Model):
    """A linear stack of layers; `layers` may be given at once or added with `add`.

    A first layer with `input_shape=`/`input_dim=`, or an `InputLayer`/`Input`
    first, builds the model immediately (so `summary()` works before any data);
    otherwise the model builds on its first batch or on `build(input_shape)`.
    """

    def __init__(self, layers=None, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self._layers: list[Layer] = []
        # Full input shape (batch first) declared before any data: by the first layer's
        # input_shape= or by an InputLayer.
        self._input_shape_hint = None
        self._input_layer = None
        self.gradients_ready = GradientsReady()  # called with each step after its backward
        for layer in layers or []:
            self.add(layer)

    # ----- structure -----------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def sublayers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def fused_layers(self) -> list[tuple[str, str]]:
        """Names of the (Conv2D, MaxPooling2D) pairs that run as one kernel on the model's
        device (fusednn.fusion)."""
        return [(step.conv.name, step.pool.name)
                for step in fusion.plan(self._layers, self.device)
                if isinstance(step, fusion.ConvPool)]

    def add(self, layer: Layer) -> None:
        """Appends `layer`; builds the model when the input shape becomes known."""
        if isinstance(layer, SymbolicTensor) and layer.node.is_input:
            layer = layer.node.layer  # fd.Input's tensor declares the input, as in Keras
        if not isinstance(layer, Layer):
            raise TypeError(f"{self._label()}.add: expected a fusednn Layer, got "
                            f"{type(layer).__name__} ({layer!r})")
        if layer is self:
            raise ValueError(f"{self._label()}.add: a model cannot contain itself")
        if isinstance(layer, layers_module.InputLayer):
            self._add_input_layer(layer)
            return
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"{self._label()}.add: all layers need unique names (weights are "
                             f"saved by name), and '{layer.name}' is already in the model")
        self._layers.append(layer)
        hint_before = self._input_shape_hint
        try:
            if self.built:
                self.output_shape = layer.build_for(self.output_shape)
            elif len(self._layers) == 1 and self._input_shape_hint is None:
                self._input_shape_hint = _declared_shape(layer)
            if not self.built and self._input_shape_hint is not None:
                self.build(self._input_shape_hint)
        except Exception:
            self._layers.pop()  # a layer that does not fit the model is not kept
            self._input_shape_hint = hint_before
            raise

    def _add_input_layer(self, layer: Layer) -> None:
        # As in Keras, an InputLayer declares the input shape (and checks inputs against it)
        # but is not one of `layers`.
        if self._layers or self._input_layer is not None:
            raise ValueError(f"{self._label()}.add: an InputLayer must come first and only once, "
                             f"but the model already has "
                             f"{[l.name for l in self._layers] or 'an InputLayer'}")
        self._input_layer = layer
        self._input_shape_hint = _declared_shape(layer)

    def pop(self) -> Layer:
        """Removes and returns the last layer."""
        if not self._layers:
            raise ValueError(f"{self._label()}.pop: the model has no layers to remove")
        layer = self._layers.pop()
        if self.built:
            if self._layers:
                self.output_shape = self._layers[-1].output_shape
            else:
                self.built, self.output_shape = False, None
                self._input_shape_hint = self.input_shape
        self._cache_valid = False
        return layer

    def build(self, input_shape) -> None:
        """Builds every layer in order for `input_shape` (full, batch first; batch may be None)."""
        if not self._layers:
            raise ValueError(f"{self._label()}: cannot build a model without layers; add layers "
                             "first")
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
        shape = input_shape
        for layer in self._layers:
            shape = layer.build_for(shape)
        self.built = True
        self.input_shape = input_shape
        self.output_shape = shape

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = layer.build_for(shape)
        return shape

    # ----- running (the layer protocol) ------------------------------------
    def forward(self, x, training: bool = False):
        """The stack's output for the batch x (N, ...); training=True keeps caches for backward."""
        if not self._layers:
            raise ValueError(f"{self._label()}: the model has no layers; add layers before "
                             "calling it")
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"{self._label()}: expected a batch of inputs (rank >= 1, batch "
                             "first), got a scalar")
        if self._input_layer is not None:
            self._input_layer.input_spec.check(self._input_layer, tuple(x.shape))
        if not self.built:
            self.build_for((None,) + tuple(x.shape[1:]))
        mask = None  # time-step mask (N, T) from Masking / Embedding(mask_zero=True)
        steps = fusion.plan(self._layers, self.device)  # layers, fused pairs as one step
        for layer in steps:  # each layer checks the shape it receives, and its numerics
            if mask is not None and getattr(layer, "supports_masking", False):
                x = layer.forward(x, training, mask=mask)
            else:
                x = layer.forward(x, training)
            mask = layer.output_mask
        if training:
            self._cache_valid = True
            self._last_output_shape = tuple(x.shape)
            self._steps = steps
        return x

    def backward(self, dy):
        """Gradient w.r.t. the input of the latest forward(x, training=True).

        Chains every layer's backward in reverse; adds parameter gradients into the
        gradient buffers (call zero_grad first).
        """
        self._require_training_forward()
        return self._backward_through(reversed(self._steps), dy)

    def _backward_through(self, layers, dy):
        for layer in layers:  # each layer checks its own numerics (Layer.backward)
            dy = layer.backward(dy)
            self.gradients_ready(layer)
        return dy

    def _require_training_forward(self) -> None:
        if not self._cache_valid:
            raise StateError(f"{self._label()}: backward() needs a preceding "
                             "forward(x, training=True)")

    # Softmax fusion (see the contracts of layers and losses): a model whose last layer
    # outputs a softmax exposes the logits, so a cross-entropy loss can skip the Jacobian.
    @property
    def outputs_softmax(self) -> bool:
        return bool(self._layers) and getattr(self._layers[-1], "outputs_softmax", False)

    def logits_of_last_forward(self):
        self._require_training_forward()
        return self._layers[-1].logits_of_last_forward()

    def backward_from_logits(self, dlogits):
        """Backward from the gradient w.r.t. the last layer's logits (N, C)."""
        self._require_training_forward()
        last = self._layers[-1]
        dx = last.backward_from_logits(dlogits)
        if utils.numerics_checked():
            last._check_backward_numerics(dlogits, dx, incoming="the gradient w.r.t. the logits")
        self.gradients_ready(last)
        return self._backward_through(reversed(self._steps[:-1]), dx)

    # ----- configuration ---------------------------------------------------
    def _all_layers(self) -> list[Layer]:
        """The layers with the InputLayer (if any) first, as Keras 2 serialises them."""
        return ([self._input_layer] if self._input_layer is not None else []) + self._layers

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": [serialize_layer(layer) for layer in self._all_layers()],
            "build_input_shape": list(self.input_shape) if self.built else None,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        """Rebuilds layers through fusednn.layers.deserialize (known classes only)."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError(f"Sequential.from_config: expected a dict with a 'layers' list, "
                             f"got {config!r:.200}")
        model = cls(layers=[deserialize_layer(item) for item in config["layers"]],
                    name=config.get("name"), trainable=config.get("trainable", True))
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            model.build(shape)
        return model

    @contextlib.contextmanager
    def _input_grad_unused(self):
        """The training step reads only weight gradients: its first layer may skip the
        gradient w.r.t. the model's input (Conv and Dense do; 8% of the lecture CNN's step
        on one CPU thread)."""
        with self._layers[0]._input_grad_skipped():
            yield


def _declared_shape(layer: Layer):
    """Full input shape (batch first) a layer declares, or None."""
    if layer.declared_input_shape is not None:
        return (layer.declared_batch_size,) + tuple(layer.declared_input_shape)
    if layer.built and layer.input_shape is not None:
        return tuple(layer.input_shape)
    return None
