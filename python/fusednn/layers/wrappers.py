"""Wrappers: Bidirectional (a recurrent layer run both ways), TimeDistributed (a layer
applied to every time step) and RepeatVector (a vector repeated into a sequence).

Shapes: N batch, T time steps, F features, U units of the wrapped recurrent layer.
"""
from __future__ import annotations

from .. import backend
from ..errors import StateError
from .base import InputSpec, Layer
from .core import _positive_int
from .recurrent import _RNN
from .registry import deserialize, register, serialize

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _strip_prefix(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def _copy_of(layer: _RNN, name: str, **changes) -> _RNN:
    """A fresh, unbuilt layer with `layer`'s configuration, renamed (Keras's wrapper copies)."""
    config = layer.get_config()
    config.pop("input_shape", None)
    config.pop("batch_size", None)
    config.update(name=name, **changes)
    return type(layer).from_config(config)


@register
class Bidirectional(Layer):
    """Runs a recurrent layer forward in time and a copy of it backward, and merges the two.

    Input (N, T, F); each direction gives (N, T, U) (return_sequences=True) or (N, U).
    merge_mode: "concat" (default; last axis 2U), "sum", "mul", "ave", or None (forward
    returns the list [forward output, backward output] and backward takes the list of
    their gradients). The backward direction's sequence output is flipped back in time,
    so position t of both halves belongs to input step t.

    As Keras: the wrapped layer is copied as `forward_<name>`, the backward layer is a
    copy with go_backwards flipped named `backward_<name>` unless `backward_layer` is
    given; weights are the forward layer's, then the backward layer's. With
    return_state=True the output is [merged (or both outputs), *forward states,
    *backward states]. `forward(x, training, mask, initial_state)` accepts an initial
    state list whose first half goes to the forward layer and second half to the
    backward layer; backward then returns [dx, *d_initial_states] in the same order.
    """

    input_spec = InputSpec(ndim=3)
    supports_masking = True

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        if not isinstance(layer, _RNN):
            raise TypeError(f"Bidirectional: expected a recurrent layer (SimpleRNN, LSTM, GRU), "
                            f"got {type(layer).__name__}")
        if layer.declared_input_shape is not None and "input_shape" not in kwargs \
                and "input_dim" not in kwargs:
            # Keras lets the wrapped layer declare the input shape.
            kwargs["input_shape"] = layer.declared_input_shape
        super().__init__(**kwargs)
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"{self._label()}: expected merge_mode one of {_MERGE_MODES}, "
                             f"got {merge_mode!r}")
        self.merge_mode = merge_mode
        # A deserialized wrapper gets its forward copy back, so names stay stable.
        base_name = _strip_prefix(layer.name, "forward_")
        self.forward_layer = _copy_of(layer, "forward_" + base_name)
        if backward_layer is None:
            self.backward_layer = _copy_of(layer, "backward_" + base_name,
                                           go_backwards=not layer.go_backwards)
            self._given_backward_layer = False
        else:
            if not isinstance(backward_layer, _RNN):
                raise TypeError(f"{self._label()}: expected backward_layer to be a recurrent "
                                f"layer, got {type(backward_layer).__name__}")
            for attribute in ("return_sequences", "return_state"):
                if getattr(backward_layer, attribute) != getattr(layer, attribute):
                    raise ValueError(f"{self._label()}: the forward and backward layers must "
                                     f"have the same {attribute}, got "
                                     f"{getattr(layer, attribute)} and "
                                     f"{getattr(backward_layer, attribute)}")
            if backward_layer.go_backwards == layer.go_backwards:
                raise ValueError(f"{self._label()}: the backward layer must have go_backwards "
                                 f"different from the forward layer's, both are "
                                 f"{layer.go_backwards}")
            if backward_layer.built:
                raise ValueError(f"{self._label()}: backward_layer must not be built yet (its "
                                 "weights are created for the wrapper's input)")
            self.backward_layer = backward_layer
            self._given_backward_layer = True
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state

    @property
    def sublayers(self):
        return [self.forward_layer, self.backward_layer]

    def build(self, input_shape):
        self.forward_layer.build_for(input_shape)
        self.backward_layer.build_for(input_shape)
        self.input_spec = InputSpec(ndim=3, axes={-1: input_shape[-1]})

    def compute_output_shape(self, input_shape):
        forward_shape = self.forward_layer.compute_output_shape(input_shape)
        backward_shape = self.backward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            states = forward_shape[1:] + backward_shape[1:]
            forward_shape, backward_shape = forward_shape[0], backward_shape[0]
        if self.merge_mode is None:
            output = [forward_shape, backward_shape]
        elif self.merge_mode == "concat":
            output = [tuple(forward_shape[:-1]) + (forward_shape[-1] + backward_shape[-1],)]
        else:
            output = [forward_shape]
        if not states and len(output) == 1:
            return output[0]
        return output + states

    def call(self, x, training, mask=None, initial_state=None):
        """Merged output for x (N, T, F); mask (N, T) and initial_state as described above."""
        forward_state = backward_state = None
        if initial_state is not None:
            count = len(self.forward_layer._state_names)
            if not isinstance(initial_state, (list, tuple)) or len(initial_state) != 2 * count:
                got = (f"{len(initial_state)} arrays" if isinstance(initial_state, (list, tuple))
                       else type(initial_state).__name__)
                raise ValueError(f"{self._label()}: expected initial_state to be a list of "
                                 f"{2 * count} arrays (the forward layer's states, then the "
                                 f"backward layer's), got {got}")
            forward_state, backward_state = initial_state[:count], initial_state[count:]
        forward_result = self.forward_layer.forward(x, training, mask=mask,
                                                    initial_state=forward_state)
        backward_result = self.backward_layer.forward(x, training, mask=mask,
                                                      initial_state=backward_state)
        states = []
        if self.return_state:
            states = forward_result[1:] + backward_result[1:]
            forward_result, backward_result = forward_result[0], backward_result[0]
        if self.return_sequences:
            backward_result = backward_result[:, ::-1]
        merged = self._merge(forward_result, backward_result)
        outputs = (merged if isinstance(merged, list) else [merged]) + states
        cache = (forward_result, backward_result, initial_state is not None) if training else None
        return (outputs[0] if len(outputs) == 1 else outputs), cache

    def compute_mask(self, x, mask=None):
        return self.forward_layer.compute_mask(x, mask)

    def _merge(self, forward_output, backward_output):
        xp = backend.get_array_module(forward_output)
        if self.merge_mode == "concat":
            return xp.concatenate([forward_output, backward_output], axis=-1)
        if self.merge_mode == "sum":
            return forward_output + backward_output
        if self.merge_mode == "mul":
            return forward_output * backward_output
        if self.merge_mode == "ave":
            return (forward_output + backward_output) * 0.5
        return [forward_output, backward_output]

    def call_backward(self, dy, cache):
        """Gradient w.r.t. x of the latest forward(x, training=True) (plus the initial states'
        gradients when that forward was given some); dy: one gradient per output of forward
        (a list for merge_mode=None or return_state=True)."""
        forward_output, backward_output, given_state = cache
        dy = dy if isinstance(dy, list) else [dy]
        parts = 2 if self.merge_mode is None else 1
        count = len(self.forward_layer._state_names) if self.return_state else 0
        d_forward_states, d_backward_states = dy[parts:parts + count], dy[parts + count:]
        d_forward, d_backward = self._unmerge(dy[:parts], forward_output, backward_output)
        if self.return_sequences:
            d_backward = backend.get_array_module(d_backward).ascontiguousarray(
                d_backward[:, ::-1])
        forward_grads = self.forward_layer.backward(
            [d_forward] + d_forward_states if self.return_state else d_forward)
        backward_grads = self.backward_layer.backward(
            [d_backward] + d_backward_states if self.return_state else d_backward)
        if not given_state:
            return forward_grads + backward_grads
        return [forward_grads[0] + backward_grads[0]] + forward_grads[1:] + backward_grads[1:]

    def _unmerge(self, d_merged, forward_output, backward_output):
        """(d forward output, d backward output) from the merged output's gradient."""
        if self.merge_mode is None:
            return d_merged[0], d_merged[1]
        g = d_merged[0]
        if self.merge_mode == "concat":
            units = forward_output.shape[-1]
            return g[..., :units], g[..., units:]
        if self.merge_mode == "sum":
            return g, g
        if self.merge_mode == "mul":
            return g * backward_output, g * forward_output
        return g * 0.5, g * 0.5  # ave

    def get_config(self):
        config = super().get_config()
        config["layer"] = serialize(self.forward_layer)
        config["merge_mode"] = self.merge_mode
        if self._given_backward_layer:
            config["backward_layer"] = serialize(self.backward_layer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = deserialize(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize(config["backward_layer"])
        return cls(**config)


@register
class TimeDistributed(Layer):
    """Applies `layer` to every time step: (N, T, ...) -> (N * T, ...) -> layer -> (N, T, ...).

    The wrapped layer's weights are shared by all steps (e.g. TimeDistributed(Dense(1))
    after an LSTM(return_sequences=True)). A mask (N, T, ...) passes through unchanged.
    When the wrapped layer ends in a softmax, so does the wrapper, and a cross-entropy
    loss takes the fused path through its logits.
    """

    input_spec = InputSpec(min_ndim=3)
    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed: expected a fusednn Layer to wrap, got "
                            f"{type(layer).__name__}")
        super().__init__(**kwargs)
        self.layer = layer

    @property
    def sublayers(self):
        return [self.layer]

    def _checked_mask(self, mask, x):
        # Keras 3.15: a mask of two axes or more whose first two are the input's (N, T);
        # further axes (e.g. (N, T, 1)) are accepted and pass on as given.
        if mask is None:
            return None
        mask = self._mask_array(mask, x)
        if mask.ndim < 2 or tuple(mask.shape[:2]) != tuple(x.shape[:2]):
            raise ValueError(f"{self._label()}: the `mask` passed to the `TimeDistributed` "
                             f"layer has a shape {tuple(mask.shape)} that is incompatible with "
                             f"the input shape {tuple(x.shape)}: its first two axes must be "
                             f"the input's (batch size, timesteps) {tuple(x.shape[:2])}")
        return mask.astype(bool, copy=False)

    @property
    def outputs_softmax(self) -> bool:
        return getattr(self.layer, "outputs_softmax", False)

    @staticmethod
    def _step_shape(input_shape):
        batch, steps = input_shape[0], input_shape[1]
        rows = None if batch is None or steps is None else batch * steps
        return (rows,) + tuple(input_shape[2:])

    def build(self, input_shape):
        self.layer.build_for(self._step_shape(input_shape))

    def compute_output_shape(self, input_shape):
        # Once built, the wrapped layer also checks that the steps fit its weights.
        inner_shape = (self.layer.build_for if self.layer.built
                       else self.layer.compute_output_shape)
        inner = inner_shape(self._step_shape(input_shape))
        return tuple(input_shape[:2]) + tuple(inner[1:])

    def call(self, x, training):
        batch, steps = x.shape[0], x.shape[1]
        rows = x.reshape((batch * steps,) + tuple(x.shape[2:]))
        y = self.layer.forward(rows, training)
        return y.reshape((batch, steps) + tuple(y.shape[1:])), ((batch, steps) if training
                                                                else None)

    def call_backward(self, dy, cache):
        batch, steps = cache
        dx = self.layer.backward(dy.reshape((batch * steps,) + tuple(dy.shape[2:])))
        return dx.reshape((batch, steps) + tuple(dx.shape[1:]))

    # Softmax fusion, delegated to the wrapped layer over the (N * T) rows.
    def logits_of_last_forward(self):
        logits = self.layer.logits_of_last_forward()
        batch, steps = self._require_cache("logits_of_last_forward()")
        return logits.reshape((batch, steps) + tuple(logits.shape[1:]))

    def backward_from_logits(self, dlogits):
        batch, steps = self._require_cache("backward_from_logits()")
        rows = backend.as_float_array(dlogits, self.dtype,
                                      f"{self._label()} backward_from_logits gradient")
        if tuple(rows.shape[:2]) != (batch, steps):
            raise ValueError(f"{self._label()}: backward_from_logits expected a gradient of "
                             f"shape {self._last_output_shape}, got {tuple(rows.shape)}")
        dx = self.layer.backward_from_logits(rows.reshape((batch * steps,) +
                                                          tuple(rows.shape[2:])))
        return dx.reshape((batch, steps) + tuple(dx.shape[1:]))

    def _require_cache(self, what):
        if not self._cache_valid:
            raise StateError(f"{self._label()}: {what} needs a preceding "
                             "forward(x, training=True)")
        return self._cache

    def get_config(self):
        config = super().get_config()
        config["layer"] = serialize(self.layer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = deserialize(config["layer"])
        return cls(**config)


@register
class RepeatVector(Layer):
    """Repeats the input n times along a new time axis: (N, F) -> (N, n, F).

    The bridge from a vector to a sequence (vector-to-sequence models, the decoder
    of an encoder-decoder); its gradient sums over the n copies.
    """

    input_spec = InputSpec(ndim=2)

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = _positive_int(self, "n", n, wrong_type=TypeError)  # Keras: TypeError

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def call(self, x, training):
        xp = backend.get_array_module(x)
        out_shape = (x.shape[0], self.n, x.shape[1])
        backend.check_array_bytes(f"{self._label()}: {self.n} copies of an input "
                                  f"{tuple(x.shape)}", out_shape, x.dtype)
        return xp.ascontiguousarray(xp.broadcast_to(x[:, None, :], out_shape)), None

    def call_backward(self, dy, cache):
        return dy.sum(axis=1)

    def get_config(self):
        config = super().get_config()
        config["n"] = self.n
        return config
