"""Recurrent layers SimpleRNN, LSTM and GRU over the fused sequence kernels (fusednn.ops).

Shapes: N batch, T time steps, F input features, U units. Input (N, T, F); output
(N, T, U) with return_sequences=True, else (N, U). Weights follow Keras exactly:

    SimpleRNN  kernel (F, U),  recurrent_kernel (U, U),  bias (U,)
    LSTM       kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U,)      gates (i, f, c, o)
    GRU        kernel (F, 3U), recurrent_kernel (U, 3U), gates (z, r, h),
               bias (2, 3U) = [input bias; recurrent bias] with reset_after=True (default),
               bias (3U,) with reset_after=False

GRU follows Keras's convention h' = z * h + (1 - z) * hh; the lecture writes
h' = (1 - z) * h + z * hh, the same cell with z renamed 1 - z.

Through the layer protocol, `forward` takes Keras's call arguments:

    layer.forward(x, training=False, mask=None, initial_state=None)

- mask (N, T) bool: False marks padded steps; the state is carried over them unchanged
  and the output there repeats the previous one (zeros before the first valid step).
  Masking and Embedding(mask_zero=True) produce it and Sequential passes it on.
- initial_state: [h0] (SimpleRNN, GRU; a bare array works too) or [h0, c0] (LSTM),
  each (N, U); zeros when not given.
- return_state=True: forward returns [output, h_T] ([output, h_T, c_T] for LSTM);
  backward then takes the matching list [d_output, d_h_T(, d_c_T)], where None
  stands for a zero gradient (an output that the loss does not use).
- backward returns dx, or [dx, d_h0(, d_c0)] when the forward was given an initial
  state, so that gradients reach whatever computed that state (an encoder).

dropout / recurrent_dropout (training only) draw one mask per sequence, as Keras:
an input mask (N, F) that multiplies x at every step, and a recurrent mask (N, U)
applied to h before the recurrent matmul (the op's `recurrent_mask`).
go_backwards=True processes the sequence last step first and, like Keras, returns
the sequence output in that processing order (Bidirectional flips it back). The
output mask handed to the next layer (return_sequences=True) is flipped with it, so
it marks the same steps as the output; Keras passes the unflipped input mask on.
stateful=True keeps the final states of each batch as the initial states of the next
(same batch size; gradients stop at the batch boundary, as in Keras) until
reset_states() (Keras 3 also spells it reset_state()) sets them to zero.
zero_output_for_mask=True outputs zeros at masked steps instead of repeating the
previous output. unroll, implementation and use_cudnn are accepted for Keras scripts
and do not change the computation (the fused kernels are the one implementation).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import _rng, activations, backend, constraints, initializers, ops, regularizers
from .base import InputSpec, Layer
from .core import _checked, _positive_int
from .registry import register


def _rate(layer: Layer, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{layer._label()}: expected {name} to be a number in [0, 1), "
                         f"got {value!r}")
    return float(value)


def _fixed_activation(layer: Layer, argument: str, identifier, allowed: tuple[str, ...]):
    """The activation, restricted to those the fused kernel implements."""
    function = _checked(layer, argument, activations.get, identifier)
    if function.name not in allowed or function.get_config() != activations.get(
            function.name).get_config():
        raise ValueError(f"{layer._label()}: the fused kernel supports {argument} "
                         f"{' or '.join(repr(a) for a in allowed)}, got "
                         f"{activations.serialize(function)!r}")
    return function


class _ForgetBiasOne:
    """LSTM bias initializer for unit_forget_bias=True: the forget-gate quarter (i, f, c, o)
    is 1, the rest comes from the layer's bias_initializer (Keras)."""

    def __init__(self, bias_initializer, units: int):
        self.bias_initializer = bias_initializer
        self.units = units

    def __call__(self, shape, dtype="float32"):
        u = self.units
        rest = np.asarray(self.bias_initializer((u,), dtype)), np.asarray(
            self.bias_initializer((2 * u,), dtype))
        return np.concatenate([rest[0], np.ones((u,), dtype=dtype), rest[1]]).astype(dtype)


class _RNN(Layer):
    """What SimpleRNN, LSTM and GRU share: configuration, weights, masks, dropout,
    initial and returned states, direction, and the calls to the fused ops.

    Subclasses set `_gates` (weight columns per unit), `_state_names` and implement
    `_bias_shape`, `_op_forward` and `_op_backward`.
    """

    input_spec = InputSpec(ndim=3)
    supports_masking = True
    _gates = 1
    _state_names: tuple[str, ...] = ("h",)

    def __init__(self, units, use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, seed=None,
                 zero_output_for_mask=False, unroll=False, implementation=None,
                 use_cudnn="auto", **kwargs):
        super().__init__(**kwargs)
        self.units = _positive_int(self, "units", units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _checked(self, "kernel_initializer", initializers.get,
                                           kernel_initializer)
        self.recurrent_initializer = _checked(self, "recurrent_initializer", initializers.get,
                                              recurrent_initializer)
        self.bias_initializer = _checked(self, "bias_initializer", initializers.get,
                                         bias_initializer)
        self.kernel_regularizer = _checked(self, "kernel_regularizer", regularizers.get,
                                           kernel_regularizer)
        self.recurrent_regularizer = _checked(self, "recurrent_regularizer", regularizers.get,
                                              recurrent_regularizer)
        self.bias_regularizer = _checked(self, "bias_regularizer", regularizers.get,
                                         bias_regularizer)
        self.kernel_constraint = _checked(self, "kernel_constraint", constraints.get,
                                          kernel_constraint)
        self.recurrent_constraint = _checked(self, "recurrent_constraint", constraints.get,
                                             recurrent_constraint)
        self.bias_constraint = _checked(self, "bias_constraint", constraints.get, bias_constraint)
        self.dropout = _rate(self, "dropout", dropout)
        self.recurrent_dropout = _rate(self, "recurrent_dropout", recurrent_dropout)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.states = None  # stateful: the final states of the latest batch
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.unroll = bool(unroll)
        self.use_cudnn = use_cudnn
        del implementation  # Keras 2's choice of kernel; the fused kernel is the only one
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)
                                 or seed < 0):
            raise ValueError(f"{self._label()}: expected seed to be None or an int >= 0, "
                             f"got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._generator = None if seed is None else np.random.default_rng(self.seed)
        self.kernel = self.recurrent_kernel = self.bias = None

    # ----- weights -------------------------------------------------------
    def _bias_shape(self) -> tuple:
        return (self._gates * self.units,)

    def _bias_initializer_for_build(self):
        return self.bias_initializer

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self._label()}: the last axis of the input (features) must be "
                             f"known to create the kernel, got input shape {tuple(input_shape)}")
        width = self._gates * self.units
        self.kernel = self.add_weight("kernel", (features, width), self.kernel_initializer,
                                      self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, width),
                                                self.recurrent_initializer,
                                                self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", self._bias_shape(),
                                        self._bias_initializer_for_build(), self.bias_regularizer,
                                        constraint=self.bias_constraint)
        self.input_spec = InputSpec(ndim=3, axes={-1: features})

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        output = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [output] + [(batch, self.units)] * len(self._state_names)
        return output

    # ----- running -------------------------------------------------------
    def call(self, x, training, mask=None, initial_state=None):
        """Output for the batch x (N, T, F); see the module docstring for mask,
        initial_state and the list returned with return_state=True."""
        if x.shape[1] == 0:
            raise ValueError(f"{self._label()}: expected at least one time step, got input shape "
                             f"{tuple(x.shape)}")
        if mask is not None and mask.ndim != 2:
            raise ValueError(f"{self._label()}: expected a time-step mask of shape (N, T) = "
                             f"{tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        xp = backend.get_array_module(x)
        states = self._checked_initial_state(initial_state, x)
        given_state = initial_state is not None
        if states is None and self.stateful:
            states = self._kept_states(x)
        if states is None:
            states = [xp.zeros((x.shape[0], self.units), dtype=self.dtype)
                      for _ in self._state_names]
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        input_mask = recurrent_mask = None
        if training and self.dropout > 0:
            input_mask = self._dropout_mask(xp, (x.shape[0], x.shape[2]), self.dropout)
            x = x * input_mask[:, None, :]
        if training and self.recurrent_dropout > 0:
            recurrent_mask = self._dropout_mask(xp, (x.shape[0], self.units),
                                                self.recurrent_dropout)
        x = xp.ascontiguousarray(x)
        mask = None if mask is None else xp.ascontiguousarray(mask)
        y, final_states, op_cache = self._op_forward(x, states, mask, recurrent_mask, training)
        if self.stateful:
            self.states = [xp.array(state, copy=True) for state in final_states]
        output_mask = None
        if self.zero_output_for_mask and mask is not None and self.return_sequences:
            output_mask = mask[:, :, None].astype(self.dtype)
            y = y * output_mask
        output = y if self.return_sequences else final_states[0]
        result = [output] + list(final_states) if self.return_state else output
        cache = ((op_cache, input_mask, given_state, tuple(y.shape), output_mask) if training
                 else None)
        return result, cache

    def compute_mask(self, x, mask=None):
        """The sequence output's mask, in the output's time order (reversed with
        go_backwards); None for the last-step output."""
        if mask is None or not self.return_sequences:
            return None
        return mask[:, ::-1] if self.go_backwards else mask

    def call_backward(self, dy, cache):
        """Gradients w.r.t. the input (and the initial state, when one was given) of the
        latest forward(x, training=True); adds the weight gradients.

        dy: d_output, or with return_state=True the list [d_output, d_h_T(, d_c_T)]
        (the base class turned None entries into zeros). Returns dx (N, T, F), or
        [dx, d_h0(, d_c0)] when that forward was given initial_state.
        """
        op_cache, input_mask, given_state, sequence_shape, output_mask = cache
        xp = backend.get_array_module(dy[0] if self.return_state else dy)
        grads = [xp.ascontiguousarray(g) for g in (dy if self.return_state else [dy])]
        d_output = grads[0]
        d_states = grads[1:] or [None] * len(self._state_names)
        if self.return_sequences:
            dy_sequence = d_output if output_mask is None else d_output * output_mask
            d_final = d_states
        else:
            dy_sequence = xp.zeros(sequence_shape, dtype=self.dtype)
            # The output is h_T itself, so its gradient joins h_T's.
            d_final = [d_output if d_states[0] is None else d_output + d_states[0]]
            d_final += d_states[1:]
        dx, d_initial, dkernel, drecurrent, dbias = self._op_backward(
            dy_sequence, d_final, op_cache, input_grad=self._input_grad_needed)
        self._accumulate(self.kernel, dkernel)
        self._accumulate(self.recurrent_kernel, drecurrent)
        if self.use_bias:
            self._accumulate(self.bias, dbias)
        if dx is not None and input_mask is not None:
            dx = dx * input_mask[:, None, :]
        if dx is not None and self.go_backwards:
            dx = xp.ascontiguousarray(dx[:, ::-1])
        return [dx] + list(d_initial) if given_state else dx

    # ----- stateful ---------------------------------------------------------
    def _kept_states(self, x):
        """The states kept from the previous batch (None before the first or after a reset)."""
        if self.states is None:
            return None
        kept = tuple(self.states[0].shape)
        if kept != (x.shape[0], self.units):
            raise ValueError(f"{self._label()}: a stateful layer needs the same batch size for "
                             f"every batch: the kept states are {kept}, the input batch has "
                             f"{x.shape[0]} samples; call reset_states() to start again")
        if backend.device_of(self.states[0]) != backend.device_of(x):
            raise TypeError(f"{self._label()}: the kept states are on "
                            f"{backend.device_of(self.states[0])} but the input is on "
                            f"{backend.device_of(x)}; call reset_states()")
        return self.states

    def reset_states(self) -> None:
        """Forgets the states kept by stateful=True (the next batch starts from zeros)."""
        self.states = None

    reset_state = reset_states

    # ----- argument checks -------------------------------------------------
    def _checked_initial_state(self, initial_state, x):
        if initial_state is None:
            return None
        count = len(self._state_names)
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if len(initial_state) != count:
            raise ValueError(f"{self._label()}: expected initial_state to be a list of {count} "
                             f"array(s) [{', '.join(n + '0' for n in self._state_names)}], each "
                             f"(N, U), got {len(initial_state)}")
        expected = (x.shape[0], self.units)
        states = []
        for name, state in zip(self._state_names, initial_state):
            state = backend.as_float_array(state, self.dtype,
                                           f"{self._label()} initial_state {name}0")
            if backend.device_of(state) != backend.device_of(x):
                raise TypeError(f"{self._label()}: initial_state {name}0 is on "
                                f"{backend.device_of(state)} but the input is on "
                                f"{backend.device_of(x)}")
            if tuple(state.shape) != expected:
                raise ValueError(f"{self._label()}: expected initial_state {name}0 of shape "
                                 f"(N, U) = {expected}, got {tuple(state.shape)}")
            states.append(backend.get_array_module(state).ascontiguousarray(state))
        return states

    def _dropout_mask(self, xp, shape, rate):
        """Inverted-dropout mask: 0 with probability `rate`, else 1 / (1 - rate)."""
        return ops.dropout_mask(xp, shape, rate, self.dtype, _rng.key(self._generator))

    def _weights_for_op(self, xp):
        bias = (self.bias.value if self.use_bias
                else xp.zeros(self._bias_shape(), dtype=self.dtype))
        return self.kernel.value, self.recurrent_kernel.value, bias

    # ----- configuration ---------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            recurrent_initializer=initializers.serialize(self.recurrent_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
            recurrent_regularizer=regularizers.serialize(self.recurrent_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
            kernel_constraint=constraints.serialize(self.kernel_constraint),
            recurrent_constraint=constraints.serialize(self.recurrent_constraint),
            bias_constraint=constraints.serialize(self.bias_constraint),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            seed=self.seed,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
            use_cudnn=self.use_cudnn,
        )
        return config


@register
class SimpleRNN(_RNN):
    """Fully connected recurrence h' = activation(x kernel + h recurrent_kernel + bias).

    activation: "tanh" (default) or "relu" (the fused kernel's two).
    """

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        self.activation = _fixed_activation(self, "activation", activation, ("tanh", "relu"))

    def _op_forward(self, x, states, mask, recurrent_mask, training):
        xp = backend.get_array_module(x)
        y, h, cache = ops.simple_rnn_forward(x, states[0], *self._weights_for_op(xp),
                                             activation=self.activation.name, mask=mask,
                                             recurrent_mask=recurrent_mask, training=training)
        return y, [h], cache

    def _op_backward(self, dy, d_final, cache, input_grad):
        dx, dh0, dkernel, drecurrent, dbias = ops.simple_rnn_backward(dy, d_final[0], cache,
                                                                      input_grad=input_grad)
        return dx, [dh0], dkernel, drecurrent, dbias

    def get_config(self):
        config = super().get_config()
        config["activation"] = activations.serialize(self.activation)
        return config


@register
class LSTM(_RNN):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), Keras's gate order (i, f, c, o):

        i = sigmoid(x Wi + h Ui + bi)   f = sigmoid(x Wf + h Uf + bf)
        g = tanh(x Wc + h Uc + bc)      o = sigmoid(x Wo + h Uo + bo)
        c' = f * c + i * g              h' = o * tanh(c')

    unit_forget_bias=True starts the forget-gate bias at 1 (Keras's default).
    """

    _gates = 4
    _state_names = ("h", "c")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.activation = _fixed_activation(self, "activation", activation, ("tanh",))
        self.recurrent_activation = _fixed_activation(self, "recurrent_activation",
                                                      recurrent_activation, ("sigmoid",))
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_initializer_for_build(self):
        if self.unit_forget_bias:
            return _ForgetBiasOne(self.bias_initializer, self.units)
        return self.bias_initializer

    def _op_forward(self, x, states, mask, recurrent_mask, training):
        xp = backend.get_array_module(x)
        y, h, c, cache = ops.lstm_forward(x, states[0], states[1], *self._weights_for_op(xp),
                                          mask=mask, recurrent_mask=recurrent_mask,
                                          training=training)
        return y, [h, c], cache

    def _op_backward(self, dy, d_final, cache, input_grad):
        dx, dh0, dc0, dkernel, drecurrent, dbias = ops.lstm_backward(dy, d_final[0], d_final[1],
                                                                     cache, input_grad=input_grad)
        return dx, [dh0, dc0], dkernel, drecurrent, dbias

    def get_config(self):
        config = super().get_config()
        config.update(activation=activations.serialize(self.activation),
                      recurrent_activation=activations.serialize(self.recurrent_activation),
                      unit_forget_bias=self.unit_forget_bias)
        return config


@register
class GRU(_RNN):
    """Gated recurrent unit (Cho et al. 2014), Keras's gate order (z, r, h):

        z = sigmoid(x Wz + h Uz + b...)   r = sigmoid(x Wr + h Ur + b...)
        reset_after=True:  hh = tanh(x Wh + bh_in + r * (h Uh + bh_rec))   bias (2, 3U)
        reset_after=False: hh = tanh(x Wh + (r * h) Uh + bh)                bias (3U,)
        h' = z * h + (1 - z) * hh

    reset_after=True is Keras's default and cuDNN's (and PyTorch's) form.
    """

    _gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.activation = _fixed_activation(self, "activation", activation, ("tanh",))
        self.recurrent_activation = _fixed_activation(self, "recurrent_activation",
                                                      recurrent_activation, ("sigmoid",))
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _op_forward(self, x, states, mask, recurrent_mask, training):
        xp = backend.get_array_module(x)
        y, h, cache = ops.gru_forward(x, states[0], *self._weights_for_op(xp),
                                      reset_after=self.reset_after, mask=mask,
                                      recurrent_mask=recurrent_mask, training=training)
        return y, [h], cache

    def _op_backward(self, dy, d_final, cache, input_grad):
        dx, dh0, dkernel, drecurrent, dbias = ops.gru_backward(dy, d_final[0], cache,
                                                               input_grad=input_grad)
        return dx, [dh0], dkernel, drecurrent, dbias

    def get_config(self):
        config = super().get_config()
        config.update(activation=activations.serialize(self.activation),
                      recurrent_activation=activations.serialize(self.recurrent_activation),
                      reset_after=self.reset_after)
        return config
