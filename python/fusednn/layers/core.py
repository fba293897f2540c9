"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, InputLayer (and Input).

Shapes are batch first: N is the batch, F the input features, U the units.
Weights follow Keras: Dense kernel (F, U) and bias (U,).
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import _rng, activations, backend, constraints, initializers, regularizers
from ..errors import StateError
from ..ops.dropout import dropout, dropout_mask
from ..ops.gemm import matmul
from . import symbolic
from .base import InputSpec, Layer, _as_shape
from .registry import register


def _checked(layer: Layer, argument: str, lookup, identifier):
    """lookup(identifier), with errors re-raised under the layer's name."""
    try:
        return lookup(identifier)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{layer._label()}: invalid {argument}: {e}") from None


def _positive_int(layer: Layer, name: str, value, wrong_type=ValueError) -> int:
    """value as an int > 0, else an error naming the layer and argument (ValueError, or
    `wrong_type` for a value that is not an integer at all: Keras raises TypeError there
    for some layers, e.g. RepeatVector)."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or value <= 0:
        error = ValueError if is_int else wrong_type
        raise error(f"{layer._label()}: expected {name} to be a positive integer, got {value!r}")
    return int(value)


class ActivationAttribute:
    """A layer's `activation`: assignable as in Keras with anything activations.get takes
    (a name, an ActivationFunction, None for linear), errors naming the layer."""

    def __get__(self, layer, owner=None):
        return self if layer is None else layer.__dict__["_activation"]

    def __set__(self, layer, value):
        layer.__dict__["_activation"] = _checked(layer, "activation", activations.get, value)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _SoftmaxFusion:
    """The softmax fusion contract (models ↔ losses) for layers that may end in a softmax.

    A layer whose output is softmax(logits) over the last axis sets
    `outputs_softmax = True`, keeps the logits in its training cache, and lets a
    fused softmax cross-entropy skip the softmax Jacobian: the loss gives
    d loss / d logits and `backward_from_logits` carries it to the input.
    Subclasses provide `_logits(cache)` and `_backward_through_logits(dlogits, cache)`.
    """

    outputs_softmax = False

    def _softmax_cache(self, what: str):
        if not self.outputs_softmax:
            raise RuntimeError(f"{self._label()}: {what} is only defined for a layer whose output "
                               "is a softmax over the last axis")
        if not self._cache_valid:
            raise StateError(f"{self._label()}: {what} needs a preceding "
                             "forward(x, training=True)")
        return self._cache

    def logits_of_last_forward(self):
        """The pre-softmax values (same shape as the output) of the latest training forward."""
        return self._logits(self._softmax_cache("logits_of_last_forward()"))

    def backward_from_logits(self, dlogits):
        """Like backward(), but starting from d loss / d logits instead of d loss / d output."""
        cache = self._softmax_cache("backward_from_logits()")
        logits = self._logits(cache)
        dlogits = backend.as_float_array(dlogits, self.dtype,
                                         f"{self._label()} backward_from_logits gradient")
        if backend.device_of(dlogits) != backend.device_of(logits):
            raise TypeError(f"{self._label()}: backward_from_logits gradient is on "
                            f"{backend.device_of(dlogits)} but the logits are on "
                            f"{backend.device_of(logits)}")
        if tuple(dlogits.shape) != tuple(logits.shape):
            raise ValueError(f"{self._label()}: backward_from_logits expected a gradient of shape "
                             f"{tuple(logits.shape)} (the logits of the latest training forward), "
                             f"got {tuple(dlogits.shape)}")
        return self._backward_through_logits(dlogits, cache)


def _is_last_axis_softmax(activation) -> bool:
    # LogSoftmax subclasses Softmax, so compare the exact type.
    return type(activation) is activations.Softmax and activation.axis == -1


@register
class Dense(_SoftmaxFusion, Layer):
    """y = activation(x @ kernel + bias) over the last axis.

    Input (N, ..., F), output (N, ..., U); kernel (F, U), bias (U,).
    """

    input_spec = InputSpec(min_ndim=2)
    supports_masking = True  # a time-step mask passes on, as in Keras
    activation = ActivationAttribute()

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.units = _positive_int(self, "units", units)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _checked(self, "kernel_initializer", initializers.get,
                                           kernel_initializer)
        self.bias_initializer = _checked(self, "bias_initializer", initializers.get,
                                         bias_initializer)
        self.kernel_regularizer = _checked(self, "kernel_regularizer", regularizers.get,
                                           kernel_regularizer)
        self.bias_regularizer = _checked(self, "bias_regularizer", regularizers.get,
                                         bias_regularizer)
        self.kernel_constraint = _checked(self, "kernel_constraint", constraints.get,
                                          kernel_constraint)
        self.bias_constraint = _checked(self, "bias_constraint", constraints.get, bias_constraint)
        self.kernel = None
        self.bias = None

    @property
    def outputs_softmax(self) -> bool:
        return _is_last_axis_softmax(self.activation)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self._label()}: the last axis of the input must be known to "
                             f"create the kernel, got input shape {tuple(input_shape)}")
        self.kernel = self.add_weight("kernel", (features, self.units), self.kernel_initializer,
                                      self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer,
                                        self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: features})

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, x, training):
        # fusednn's GEMM, not NumPy's `@`: OpenBLAS's own thread pool would spin against
        # the conv kernels' OpenMP threads on the same cores in every training step.
        logits = matmul(x.reshape(-1, x.shape[-1]), self.kernel.value)
        logits = logits.reshape(x.shape[:-1] + (self.units,))
        if self.use_bias:
            logits += self.bias.value
        y = self.activation.forward(logits)
        return y, ((x, logits, y) if training else None)

    def call_backward(self, dy, cache):
        x, logits, y = cache
        return self._backward_through_logits(self.activation.backward(logits, y, dy), cache)

    def _logits(self, cache):
        return cache[1]

    def _backward_through_logits(self, dlogits, cache):
        x = cache[0]
        if self.trainable:  # a frozen layer passes dx back without computing weight gradients
            rows_x = x.reshape(-1, x.shape[-1])
            rows_d = dlogits.reshape(-1, self.units)
            self._accumulate(self.kernel, matmul(rows_x, rows_d, trans_a=True))
            if self.use_bias:
                self._accumulate(self.bias, rows_d.sum(axis=0))
        if not self._input_grad_needed:
            return None
        rows_dx = matmul(dlogits.reshape(-1, self.units), self.kernel.value, trans_b=True)
        return rows_dx.reshape(x.shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            activation=activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
            kernel_constraint=constraints.serialize(self.kernel_constraint),
            bias_constraint=constraints.serialize(self.bias_constraint),
        )
        return config


class _FunctionLayer(Layer):
    """A layer applying one activation function `self.function` (no weights); any shape."""

    supports_masking = True  # elementwise: a time-step mask passes on, as in Keras

    function: activations.ActivationFunction

    def call(self, x, training):
        y = self.function.forward(x)
        return y, ((x, y) if training else None)

    def call_backward(self, dy, cache):
        x, y = cache
        return self.function.backward(x, y, dy)


@register
class Activation(_SoftmaxFusion, _FunctionLayer):
    """Applies an activation by Keras name (or ActivationFunction) to any input shape."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.function = _checked(self, "activation", activations.get, activation)
        self.outputs_softmax = _is_last_axis_softmax(self.function)

    @property
    def activation(self):
        return self.function

    def _logits(self, cache):
        return cache[0]

    def _backward_through_logits(self, dlogits, cache):
        return dlogits

    def get_config(self):
        config = super().get_config()
        config["activation"] = activations.serialize(self.function)
        return config


@register
class Dropout(Layer):
    """Inverted dropout: in training, zeroes each entry with probability `rate` and scales
    the rest by 1 / (1 - rate); at inference the identity.

    noise_shape: the mask's shape (rank of the input, batch first), None entries taking
    the input's size and size-1 entries sharing one draw along that axis (Keras).
    seed: None draws from fusednn's global generator (fd.utils.set_random_seed repeats
    it); an int gives the layer its own generator, started from that seed.
    """

    supports_masking = True  # a time-step mask passes on, as in Keras

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not _is_number(rate) or not 0 <= rate < 1:
            raise ValueError(f"{self._label()}: expected rate to be a number in [0, 1), "
                             f"got {rate!r}")
        if noise_shape is not None:
            if not isinstance(noise_shape, (tuple, list)) or not all(
                    d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                  and d > 0) for d in noise_shape):
                raise ValueError(f"{self._label()}: expected noise_shape to be None or a tuple "
                                 f"of positive ints and None, got {noise_shape!r}")
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)
                                 or seed < 0):
            raise ValueError(f"{self._label()}: expected seed to be None or an int >= 0, "
                             f"got {seed!r}")
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.seed = None if seed is None else int(seed)
        self._generator = None if seed is None else np.random.default_rng(self.seed)

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return tuple(shape)
        if len(self.noise_shape) != len(shape) or any(
                d is not None and d != 1 and s is not None and d != s
                for d, s in zip(self.noise_shape, shape)):
            raise ValueError(f"{self._label()}: noise_shape {self.noise_shape} does not broadcast "
                             f"to the input shape {tuple(shape)} (each entry must be None, 1 or "
                             "the input's size)")
        return tuple(s if d is None else d for d, s in zip(self.noise_shape, shape))

    def compute_output_shape(self, input_shape):
        # Built when created, as Keras's Dropout: a noise_shape that does not fit the input
        # (rank, fixed sizes) fails here, on the first forward or model build.
        self._mask_shape(input_shape)
        return tuple(input_shape)

    def call(self, x, training):
        """The cache: None (nothing dropped), the key of the mask (the backward redraws
        it), or with a noise_shape the mask itself (broadcast over x)."""
        if not training or self.rate == 0.0:
            return x, None
        key = _rng.key(self._generator)
        if self.noise_shape is None:
            return dropout(x, self.rate, key), key
        mask = dropout_mask(backend.get_array_module(x), self._mask_shape(x.shape), self.rate,
                            x.dtype, key)
        return x * mask, mask

    def call_backward(self, dy, cache):
        if cache is None:
            return dy
        if isinstance(cache, int):
            return dropout(dy, self.rate, cache)
        return dy * cache

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate,
                      noise_shape=None if self.noise_shape is None else list(self.noise_shape),
                      seed=self.seed)
        return config


@register
class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...); a rank-1 input (N,) becomes (N, 1).

    data_format="channels_first" moves axis 1 last before flattening (Keras), so
    the order of the features matches a channels-last model's.
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(f"{self._label()}: expected data_format None, 'channels_last' or "
                             f"'channels_first', got {data_format!r}")
        self.data_format = data_format or "channels_last"

    def _permutation(self, ndim):
        if self.data_format == "channels_first" and ndim > 2:
            return (0,) + tuple(range(2, ndim)) + (1,)
        return None

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)

    def call(self, x, training):
        permutation = self._permutation(x.ndim)
        moved = x if permutation is None else x.transpose(permutation)
        # An explicit size (not -1) so an empty batch reshapes too.
        y = moved.reshape(x.shape[0], math.prod(x.shape[1:]))
        return y, ((tuple(moved.shape), permutation) if training else None)

    def call_backward(self, dy, cache):
        moved_shape, permutation = cache
        d_moved = dy.reshape(moved_shape)
        if permutation is None:
            return d_moved
        return d_moved.transpose(tuple(int(i) for i in np.argsort(permutation)))

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


@register
class Reshape(Layer):
    """(N, ...) -> (N, *target_shape); one entry of target_shape may be -1 (inferred)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target = tuple(target_shape)
        except TypeError:
            target = None
        if (target is None or not target
                or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                           and (d > 0 or d == -1) for d in target)
                or sum(d == -1 for d in target) > 1):
            raise ValueError(f"{self._label()}: expected target_shape to be a non-empty tuple of "
                             f"positive ints with at most one -1, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in target)

    def _resolve(self, input_shape):
        """target_shape with -1 filled in; None where the input's size is unknown."""
        rest = input_shape[1:]
        known = math.prod(d for d in self.target_shape if d != -1)
        if any(d is None for d in rest):
            return tuple(None if d == -1 else d for d in self.target_shape)
        size = math.prod(rest)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"{self._label()}: cannot reshape an input of shape "
                                 f"{tuple(input_shape)} ({size} values per sample) to "
                                 f"{self.target_shape}: {size} is not a multiple of {known}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if size != known:
            raise ValueError(f"{self._label()}: cannot reshape an input of shape "
                             f"{tuple(input_shape)} ({size} values per sample) to "
                             f"{self.target_shape} ({known} values)")
        return self.target_shape

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._resolve(input_shape)

    def call(self, x, training):
        y = x.reshape((x.shape[0],) + self._resolve(x.shape))
        return y, (tuple(x.shape) if training else None)

    def call_backward(self, dy, input_shape):
        return dy.reshape(input_shape)

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config


@register
class InputLayer(Layer):
    """Declares a model's input: per-sample `shape` (no batch axis) and optionally a fixed
    `batch_size`; passes data through unchanged, checking its shape.

    Accepts Keras 3's `shape=` / `batch_shape=` and Keras 2's `input_shape=`.
    """

    def __init__(self, shape=None, batch_size=None, input_shape=None, batch_shape=None,
                 dtype=None, **kwargs):
        given = [n for n, v in (("shape", shape), ("input_shape", input_shape),
                                ("batch_shape", batch_shape)) if v is not None]
        label = f"InputLayer '{kwargs.get('name')}'" if kwargs.get("name") else "InputLayer"
        if len(given) != 1:
            raise ValueError(f"{label}: expected exactly one of shape= (without the batch axis), "
                             f"input_shape= or batch_shape=, got {given or 'none'}")
        if batch_shape is not None:
            batch_shape = tuple(batch_shape)
            if not batch_shape:
                raise ValueError(f"{label}: batch_shape must include the batch axis, got ()")
            if batch_size is not None:  # Keras raises even when they agree
                raise ValueError(f"{label}: cannot pass both `batch_size` and `batch_shape` "
                                 f"(got batch_size={batch_size}, batch_shape={batch_shape}); "
                                 f"batch_shape holds the batch size")
            batch_size, shape = batch_shape[0], batch_shape[1:]
        if input_shape is not None:
            warnings.warn("InputLayer: argument input_shape is deprecated (as in Keras 3); use "
                          "shape instead", stacklevel=2)
        shape = _as_shape(shape if shape is not None else input_shape, f"{label} shape")
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                       or isinstance(batch_size, bool) or batch_size <= 0):
            raise ValueError(f"{label}: expected batch_size to be None or a positive int, "
                             f"got {batch_size!r}")
        tensor_dtype = _input_dtype(label, dtype)
        # An integer input (ids for an Embedding) is the tensor's dtype; the layer, which
        # computes nothing, keeps a float one.
        self.tensor_dtype = tensor_dtype if tensor_dtype is not None \
            and tensor_dtype.kind != "f" else None
        super().__init__(input_shape=shape, batch_size=None if batch_size is None
                         else int(batch_size),
                         dtype=None if self.tensor_dtype is not None else dtype, **kwargs)
        self.input_spec = InputSpec(ndim=len(shape) + 1,
                                    axes={i + 1: d for i, d in enumerate(shape) if d is not None})

    is_input_layer = True  # its call node starts a graph (layers/symbolic.py)

    def output_tensor(self):
        """The symbolic tensor this layer stands for in a graph (made once), of the
        input's dtype."""
        if getattr(self, "_output_tensor", None) is None:
            self.build_for(self.batch_shape)
            node = symbolic.Node(self, [], {}, self.batch_shape,
                                 self.tensor_dtype if self.tensor_dtype is not None
                                 else self.dtype)
            self._output_tensor = node.outputs[0]
        return self._output_tensor

    @property
    def batch_shape(self):
        """(batch_size, *shape), batch_size None when not fixed."""
        return (self.declared_batch_size,) + tuple(self.declared_input_shape)

    def call(self, x, training):
        return x, None

    def call_backward(self, dy, cache):
        return dy

    def get_config(self):
        config = super().get_config()
        del config["input_shape"]
        config.update(shape=list(self.declared_input_shape), batch_size=self.declared_batch_size)
        if self.tensor_dtype is not None:
            config["dtype"] = self.tensor_dtype.name
        return config


def _input_dtype(label: str, dtype):
    """dtype as a NumPy dtype (None stays None), refused unless numeric."""
    if dtype is None:
        return None
    try:
        tensor_dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{label}: expected a NumPy dtype name such as 'float32' or 'int32', "
                        f"got {dtype!r}") from None
    if tensor_dtype.kind not in "biuf":
        raise TypeError(f"{label}: expected a numeric dtype, got {tensor_dtype}")
    return tensor_dtype


def Input(shape=None, batch_size=None, name=None, dtype=None, batch_shape=None):
    """Keras's `Input`: a symbolic tensor standing for a model's input, made by a new
    InputLayer. Layers called on it build a graph for `fd.Model(inputs, outputs)`;
    `Sequential([Input((4,)), Dense(2)])` takes it as the input declaration. `shape`
    excludes the batch axis; an integer dtype (ids for an Embedding) is the tensor's,
    the layer keeps its float dtype."""
    _input_dtype(f"Input '{name}'" if name else "Input", dtype)  # named as the user called it
    layer = InputLayer(shape=shape, batch_size=batch_size, batch_shape=batch_shape, name=name,
                       dtype=dtype)
    return layer.output_tensor()
