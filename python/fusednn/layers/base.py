"""The layer protocol (docs/ARCHITECTURE.md): every layer and every model is a Layer.

A subclass stores configuration in `__init__`, creates weights in
`build(input_shape)` with `add_weight`, and implements

    call(x, training, **call_arguments) -> (y, cache)   # cache: what backward needs
    call_backward(dy, cache) -> dx                       # adds parameter gradients

Users (and models) run a layer with

    y = layer.forward(x, training=False, mask=None, **call_arguments)   # or layer(x)
    dx = layer.backward(dy)          # after forward(x, training=True)
    layer.zero_grad(); layer.trainable = False

`call_arguments` are the keyword parameters `call` names after (x, training), e.g.
a recurrent layer's `initial_state`; `mask` reaches `call` only if it names it,
and `compute_mask` gives `output_mask`, the mask for the next layer. A layer with
several outputs returns a list from `call`; its backward takes one gradient per
output (None for zeros) and may return several input gradients. A layer that sets
`takes_input_list` (merging layers) takes a list of inputs (and of masks).

Called on symbolic tensors (fd.Input), `layer(x)` records a node of a graph instead
(layers/symbolic.py) for fd.Model(inputs, outputs).

The base class does the rest: building once (a direct `build` call counts, as in
Keras 3), the casting rule, device and shape checks, the numerics checks, keeping
the cache of the latest training forward, Keras weight lists, and moving weights
between devices. No subclass overrides forward or backward.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import warnings

import numpy as np

from .. import backend, constraints, initializers, regularizers, utils
from ..errors import StateError
from ..naming import default_layer_name
from ..ops import tape
from . import symbolic

_CHECKED_SHAPES = 64  # input shapes a built layer remembers as checked (build_for)


class Variable:
    """One weight: its value, its gradient buffer (same shape, device and dtype).

    zero_grad() only marks the buffer as zero: the next add_grad overwrites it instead
    of adding, and reading .grad before that fills it with zeros. A training step so
    writes each gradient once instead of zeroing it and then adding to it: the lecture
    LSTM model (806k weights, batch 16) spent 0.4 ms of its ~25 ms step zeroing them.
    """

    def __init__(self, name: str, value, trainable: bool = True, regularizer=None,
                 constraint=None):
        self.name = name
        self.value = value
        self._grad = backend.get_array_module(value).zeros_like(value)
        self._grad_pending_zero = False  # the buffer's contents stand for zeros
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint  # applied by the optimizer after each update

    @property
    def grad(self):
        if self._grad_pending_zero:
            self._grad[...] = 0
            self._grad_pending_zero = False
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = value
        self._grad_pending_zero = False

    def zero_grad(self) -> None:
        self._grad_pending_zero = True

    def add_grad(self, grad) -> None:
        """grad buffer += grad (broadcast and cast as NumPy's +=), or = grad after zero_grad."""
        if self._grad_pending_zero:
            self._grad[...] = grad
            self._grad_pending_zero = False
        else:
            self._grad += grad

    @property
    def shape(self):
        return tuple(self.value.shape)

    def __repr__(self):
        return f"<Variable {self.name} shape={self.shape} dtype={self.value.dtype}>"


class InputSpec:
    """What a layer accepts: exact rank or minimum rank, and fixed sizes on some axes."""

    def __init__(self, ndim=None, min_ndim=None, axes=None):
        self.ndim = ndim
        self.min_ndim = min_ndim
        self.axes = dict(axes or {})

    def check(self, layer: "Layer", shape) -> None:
        rank = len(shape)
        if self.ndim is not None and rank != self.ndim:
            raise ValueError(f"{layer._label()}: expected input of rank {self.ndim} "
                             f"(batch first), got shape {tuple(shape)} of rank {rank}")
        if self.min_ndim is not None and rank < self.min_ndim:
            raise ValueError(f"{layer._label()}: expected input of rank >= {self.min_ndim} "
                             f"(batch first), got shape {tuple(shape)} of rank {rank}")
        for axis, size in self.axes.items():
            if shape[axis] is not None and shape[axis] != size:
                raise ValueError(f"{layer._label()}: expected input with size {size} on axis "
                                 f"{axis}, got shape {tuple(shape)}")


def _build_shape(layer: "Layer", input_shape):
    """`input_shape` as a tuple of ints and None (batch first), or a clear error; a list
    of such tuples for a layer called on several inputs (merging layers, models)."""
    if _is_shape_list(input_shape):
        return [_build_shape(layer, shape) for shape in input_shape]
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"{layer._label()}: expected an input shape (a tuple of ints or None, "
                        f"batch first), got {input_shape!r}") from None
    if not shape:
        raise ValueError(f"{layer._label()}: expected an input shape with a batch axis, got ()")
    return shape


def _is_shape_list(input_shape) -> bool:
    """Whether `input_shape` lists several shapes (its items are sequences, not sizes)."""
    return (isinstance(input_shape, (list, tuple)) and len(input_shape) > 0
            and all(isinstance(shape, (list, tuple)) for shape in input_shape))


def _builds_once(build):
    """Wraps a layer's `build` as Keras 3 does (Layer.__new__'s build_wrapper): after the
    first call the layer is built, with input_shape and output_shape set, whether the call
    came from forward, from a model or from the user. A later call creates nothing: it
    checks that the shape fits the built layer (its input spec and output shape), so a
    layer never silently gets fresh weights. A build that fails leaves no weights behind."""

    @functools.wraps(build)
    def build_once(self, input_shape):
        if self._building:  # a subclass's build calling super().build
            return build(self, input_shape)
        shape = _build_shape(self, input_shape)
        if self.input_spec is not None and not isinstance(shape, list):
            self.input_spec.check(self, shape)
        if self.built:
            output_shape = self.compute_output_shape(shape)  # raises when it does not fit
            if self.input_shape is None:  # a layer built when created (no weights)
                self.input_shape, self.output_shape = shape, output_shape
            return None
        own_weights = len(self._variables)
        self._building = True
        try:
            build(self, shape)
            output_shape = self.compute_output_shape(shape)
        except BaseException:
            del self._variables[own_weights:]
            raise
        finally:
            self._building = False
        self.built = True
        self.input_shape = shape
        self.output_shape = output_shape
        return None

    build_once.builds_once = True
    return build_once


class Layer:
    """Base class of every layer and model."""

    # Rank checks that hold before the layer is built (subclasses may narrow them).
    input_spec: InputSpec | None = None
    # Whether an incoming time-step mask reaches the next layer (Keras's flag; see
    # compute_mask). Sequential passes its mask only to layers that set it.
    supports_masking = False
    # A model's training step clears this on its first layer (a functional model: on every
    # call fed only by tensors whose gradient nobody reads) for one backward, so a layer
    # that can skip computing its input gradient (Conv, Dense, the recurrent layers)
    # returns None instead. Users' backward(dy) always returns dx.
    _input_grad_needed = True
    # True while the layer's own build runs (a subclass's build may call super().build).
    _building = False
    # Whether forward takes a list of inputs (merging layers): x, mask and the input
    # shape are then lists, and backward returns one gradient per input.
    takes_input_list = False
    # Whether build_for remembers the input shapes it has checked (not in models).
    _remembers_shapes = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if build is not None and not getattr(build, "builds_once", False):
            cls.build = _builds_once(build)

    def __init__(self, name=None, trainable=True, dtype=None, input_shape=None,
                 input_dim=None, batch_size=None, **unknown):
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown keyword argument(s) "
                            f"{', '.join(sorted(unknown))}; accepted: "
                            f"{', '.join(_accepted_keywords(type(self)))}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string, got {name!r}")
        self.name = name or default_layer_name(type(self).__name__)
        self._trainable = bool(trainable)
        try:
            self.dtype = backend.float_dtype(dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{self._label()}: {e}") from None
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        if input_shape is not None:
            input_shape = _as_shape(input_shape, f"{type(self).__name__} input_shape")
        # Declared input shape without the batch axis (Keras `input_shape=`).
        self.declared_input_shape = input_shape
        self.declared_batch_size = batch_size
        # As in Keras 3, a layer with no build of its own (no weights) is built when created.
        self.built = type(self).build is Layer.build
        self.input_shape = None   # full shape (batch first, None for any batch) once built
        self.output_shape = None
        self.device = "cpu"
        self._variables: list[Variable] = []
        self._cache = None
        self._cache_valid = False
        self._last_output_shape = None  # a list of shapes for several outputs
        self._checked_shapes = {}  # input shape -> output shape, checked once built (build_for)
        self.output_mask = None  # the mask for the next layer, set by forward

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        # As in Keras, freezing a model or wrapper freezes every layer inside it.
        self._trainable = bool(value)
        for layer in self.sublayers:
            layer.trainable = value

    # ----- configuration -------------------------------------------------
    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        if self.declared_batch_size is not None:
            config["batch_size"] = self.declared_batch_size
        return config

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def _label(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    # ----- weights -------------------------------------------------------
    def add_weight(self, name, shape, initializer="glorot_uniform", regularizer=None,
                   trainable=True, constraint=None) -> Variable:
        """Creates a weight on the layer's device; call from `build`."""
        shape = tuple(int(s) for s in shape)
        backend.check_array_bytes(f"{self._label()}: weight '{name}'", shape, self.dtype)
        # None means Keras's default for a float weight.
        value = initializers.get(initializer or "glorot_uniform")(shape, self.dtype)
        # C order: optimizers update weights in place and need contiguous buffers (an
        # initializer may return a transposed view, e.g. Orthogonal for wide shapes);
        # asarray, not ascontiguousarray, which would make a scalar weight (1,).
        value = backend.to_device(np.asarray(value, dtype=self.dtype, order="C"), self.device)
        var = Variable(f"{self.name}/{name}", value, trainable=trainable,
                       regularizer=regularizers.get(regularizer),
                       constraint=constraints.get(constraint))
        self._variables.append(var)
        return var

    @property
    def sublayers(self) -> list["Layer"]:
        """Layers this one is made of (models, wrappers); their weights follow its own."""
        return []

    def reset_states(self) -> None:
        """Forgets the states that stateful recurrent layers inside keep between batches."""
        for layer in self.sublayers:
            layer.reset_states()

    reset_state = reset_states  # Keras 3's name

    @property
    def variables(self) -> list[Variable]:
        out = list(self._variables)
        for layer in self.sublayers:
            out.extend(layer.variables)
        return out

    weights = variables

    @property
    def trainable_variables(self) -> list[Variable]:
        if not self.trainable:
            return []
        out = [v for v in self._variables if v.trainable]
        for layer in self.sublayers:
            out.extend(layer.trainable_variables)
        return out

    trainable_weights = trainable_variables

    @property
    def non_trainable_variables(self) -> list[Variable]:
        trainable = {id(v) for v in self.trainable_variables}
        return [v for v in self.variables if id(v) not in trainable]

    non_trainable_weights = non_trainable_variables

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(f"{self._label()} is not built yet, so {what} is unknown: call it on "
                             "data, call build(input_shape), or give the first layer input_shape=")

    def get_weights(self) -> list[np.ndarray]:
        """NumPy copies of the weights, in Keras order."""
        return [backend.to_numpy(v.value).copy() for v in self.variables]

    def get_gradients(self) -> list[np.ndarray]:
        """NumPy copies of the gradient buffers, in the order of get_weights."""
        return [backend.to_numpy(v.grad).copy() for v in self.variables]

    def set_weights(self, weights) -> None:
        """Copies `weights` (Keras order and shapes) into the layer, checking count and shapes."""
        variables = self.variables
        weights = list(weights)
        if len(weights) != len(variables):
            raise ValueError(f"{self._label()}: set_weights expected {len(variables)} arrays "
                             f"({', '.join(str(v.shape) for v in variables) or 'no weights'}), "
                             f"got {len(weights)}")
        arrays = []
        for var, w in zip(variables, weights):
            w = backend.as_float_array(backend.to_numpy(w), var.value.dtype,
                                       f"{self._label()} set_weights for {var.name}")
            if tuple(w.shape) != var.shape:
                raise ValueError(f"{self._label()}: set_weights expected shape {var.shape} for "
                                 f"{var.name}, got {tuple(w.shape)}")
            arrays.append(w)
        for var, w in zip(variables, arrays):
            var.value[...] = backend.to_device(w, backend.device_of(var.value))

    def zero_grad(self) -> None:
        for var in self.variables:
            var.zero_grad()

    @contextlib.contextmanager
    def _input_grad_skipped(self):
        """While the block runs, a layer that can skip its input gradient returns None for
        it (see _input_grad_needed): a model's training step, where nobody reads it."""
        self._input_grad_needed = False
        try:
            yield
        finally:
            del self._input_grad_needed  # the class default, True, again

    def count_params(self) -> int:
        self._require_built("its parameter count")
        return int(sum(int(np.prod(v.shape)) for v in self.variables))

    def regularization_loss(self) -> float:
        """Sum of the weight regularizers' penalties (0.0 without regularizers)."""
        total = 0.0
        for var in self.trainable_variables:
            if var.regularizer is not None:
                total += float(var.regularizer(var.value))
        return total

    def _accumulate(self, var: Variable, grad) -> None:
        """Adds a parameter gradient; frozen layers and weights get none."""
        if self.trainable and var.trainable:
            var.add_grad(grad)

    # ----- devices -------------------------------------------------------
    def to(self, device: str) -> "Layer":
        """Moves weights, gradients and any state to 'cpu' or 'cuda'; returns self."""
        device = backend.check_device(device)
        for var in self._variables:
            var.value = backend.to_device(var.value, device)
            var.grad = backend.to_device(var.grad, device)
        for layer in self.sublayers:
            layer.to(device)
        self.device = device
        self._cache, self._cache_valid = None, False
        return self

    # ----- building ------------------------------------------------------
    @_builds_once
    def build(self, input_shape) -> None:
        """Creates the weights for `input_shape` (batch first); layers with weights override.

        Every override is wrapped (`_builds_once`) as Keras 3 wraps it: a direct call marks
        the layer built, and a later call only checks the shape against the built layer.
        """

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def build_for(self, input_shape):
        """Builds once for `input_shape` (full, batch first); returns the output shape.

        A built layer remembers the single input shapes it has checked and their output
        shapes: every forward calls this, and checking again (the input spec, the output
        shape, twice) took 0.2-0.3 ms of the lecture CNN's ~7 ms training step. Models
        (whose layers may still change) check every time."""
        if self._remembers_shapes and self.built:
            try:
                return self._checked_shapes[input_shape]
            except (KeyError, TypeError):  # not seen yet, or unhashable (a list, say)
                pass
        shape = _build_shape(self, input_shape)
        self.build(shape)
        output_shape = self.compute_output_shape(shape)
        if self._remembers_shapes and self.built and type(shape) is tuple \
                and type(output_shape) is tuple:
            if len(self._checked_shapes) >= _CHECKED_SHAPES:
                self._checked_shapes.clear()  # e.g. a new sequence length every batch
            self._checked_shapes[shape] = output_shape
        return output_shape

    # ----- running -------------------------------------------------------
    def _prepare_input(self, x):
        x = backend.as_float_array(x, self.dtype, f"{self._label()} input")
        if self.variables and backend.device_of(x) != self.device:
            raise TypeError(f"{self._label()}: input is on {backend.device_of(x)} "
                            f"({type(x).__module__}.{type(x).__name__}) but the layer's weights "
                            f"are on {self.device}; call .to('{backend.device_of(x)}') on the "
                            f"model or move the input with fusednn.backend.to_device")
        return x

    def forward(self, x, training: bool = False, mask=None, **call_arguments):
        """Output for input `x`; with training=True also keeps what backward needs.

        mask: Keras's time-step mask (N, T) (False marks padding), for layers that
        support masking; `output_mask` then holds the mask for the next layer
        (`compute_mask`). Further keyword arguments (e.g. a recurrent layer's
        initial_state=) go to `call`. A layer with several outputs returns a list.
        """
        if self.takes_input_list:
            x = self._input_list(x)
            self.build_for([(None,) + tuple(item.shape[1:]) for item in x])
            mask = self._checked_masks(mask, x)
        else:
            x = self._checked_input(x)
            self.build_for((None,) + tuple(x.shape[1:]))
            mask = self._checked_mask(mask, x)
        y, cache = self.call(x, bool(training), **self._call_arguments(call_arguments, mask))
        if utils.numerics_checked():
            self._check_forward_numerics(x, y)
        self.output_mask = self.compute_mask(x, mask)
        if training:
            self._cache, self._cache_valid = cache, True
            self._last_output_shape = ([tuple(o.shape) for o in y] if isinstance(y, list)
                                       else tuple(y.shape))
        return y

    def __call__(self, *args, **kwargs):
        """Keras's call: on symbolic tensors (fd.Input, or a layer's output on one) records
        the call in a graph and returns symbolic outputs (see layers/symbolic.py); on arrays
        it is forward(x, training=False, mask=None, **call_arguments)."""
        if symbolic.is_symbolic(args, kwargs):
            return symbolic.call_symbolically(self, args, kwargs)
        recorder = tape.layer_call_recorder()  # in a subclassed model's training forward
        if recorder is not None:
            return recorder(self, args, kwargs)
        return self.forward(*args, **kwargs)

    def _checked_input(self, x):
        x = self._prepare_input(x)
        if x.ndim == 0:
            raise ValueError(f"{self._label()}: expected a batch of inputs (rank >= 1, batch "
                             f"first), got a scalar")
        if self.input_spec is not None:
            self.input_spec.check(self, x.shape)  # names the received shape, batch included
        return x

    def _input_list(self, x) -> list:
        """The inputs of a layer that takes a list (merging layers), each checked."""
        if not isinstance(x, (list, tuple)) or not x:
            got = "an empty list" if isinstance(x, (list, tuple)) else type(x).__name__
            raise TypeError(f"{self._label()}: expected a list of input arrays (batch first), "
                            f"got {got}")
        return [self._checked_input(item) for item in x]

    def _checked_masks(self, mask, x: list):
        """One checked mask (or None) per input of a layer that takes a list; None when
        no input has a mask."""
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)) or len(mask) != len(x):
            raise ValueError(f"{self._label()}: expected a list of {len(x)} masks (None for an "
                             f"unmasked input), one per input, got {type(mask).__name__}"
                             + (f" of length {len(mask)}" if isinstance(mask, (list, tuple))
                                else ""))
        if all(m is None for m in mask):
            return None
        return [self._checked_mask(m, item) for m, item in zip(mask, x)]

    def compute_mask(self, x, mask=None):
        """The mask of the output for the input mask `mask` (checked, or None), as Keras:
        a layer that supports masking passes it on, others drop it. Layers that make or
        consume a mask (Masking, Embedding, recurrent layers) override this."""
        return mask if self.supports_masking else None

    def _checked_mask(self, mask, x):
        """The mask as a boolean array whose shape leads x's shape ((N, T) for (N, T, ...)).
        Softmax and BatchNormalization override it with Keras's broadcasting for them."""
        if mask is None:
            return None
        mask = self._mask_array(mask, x)
        if mask.ndim == 0 or tuple(mask.shape) != tuple(x.shape[:mask.ndim]):
            raise ValueError(f"{self._label()}: expected a mask of shape (N, T) = "
                             f"{tuple(x.shape[:2])} for an input of shape {tuple(x.shape)}, got "
                             f"{tuple(mask.shape)}")
        return mask.astype(bool, copy=False)

    def _mask_array(self, mask, x):
        """The mask as an array of x's array module, on x's device, of a boolean or number
        dtype (its shape unchecked)."""
        if hasattr(mask, "shape") and backend.device_of(mask) != backend.device_of(x):
            raise TypeError(f"{self._label()}: mask is on {backend.device_of(mask)} but the input "
                            f"is on {backend.device_of(x)}")
        mask = backend.get_array_module(x).asarray(mask)
        if mask.dtype.kind not in "biuf":
            raise TypeError(f"{self._label()}: expected a boolean mask, got dtype {mask.dtype}")
        return mask

    def _call_arguments(self, given: dict, mask) -> dict:
        """The keyword arguments for `call`: those its signature names, checked."""
        accepted = _call_keywords(type(self))
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            raise TypeError(f"{self._label()}: forward got unexpected keyword argument(s) "
                            f"{', '.join(unknown)}; it accepts training, mask"
                            f"{''.join(', ' + name for name in accepted if name != 'mask')}")
        arguments = dict(given)
        if mask is not None and "mask" in accepted:
            arguments["mask"] = mask
        elif mask is not None and not self.supports_masking:
            warnings.warn(f"{self._label()} was given a mask but does not support masking, so "
                          "the mask stops here (as in Keras): the next layer gets none",
                          stacklevel=3)
        return arguments

    def backward(self, dy):
        """Gradient w.r.t. the input of the latest forward(x, training=True).

        dy: the output's gradient; for a layer with several outputs, a list with one
        gradient per output, None standing for zeros (an output the loss does not use).
        Adds parameter gradients into the gradient buffers (call zero_grad first).
        """
        if not self._cache_valid:
            raise StateError(f"{self._label()}: backward() needs a preceding "
                             "forward(x, training=True)")
        dy = self._checked_output_gradients(dy)
        dx = self.call_backward(dy, self._cache)
        if utils.numerics_checked():
            self._check_backward_numerics(dy, dx)
        return dx

    def _checked_output_gradients(self, dy):
        """dy checked against the latest training output (a list for several outputs)."""
        shapes = self._last_output_shape
        if not isinstance(shapes, list):
            return self._checked_gradient(dy, shapes)
        if not isinstance(dy, (list, tuple)) or len(dy) != len(shapes):
            got = (f"a list of length {len(dy)}" if isinstance(dy, (list, tuple))
                   else type(dy).__name__)
            raise ValueError(f"{self._label()}: backward expected a list of {len(shapes)} "
                             f"gradients, one per output of forward (None for an unused one), "
                             f"got {got}")
        xp = backend.xp_for_device(self.device)
        return [xp.zeros(shape, dtype=self.dtype) if g is None else self._checked_gradient(g, shape)
                for g, shape in zip(dy, shapes)]

    def _checked_gradient(self, dy, shape):
        dy = backend.as_float_array(dy, self.dtype, f"{self._label()} backward gradient")
        expected_device = self.device if self.variables else None
        if expected_device is not None and backend.device_of(dy) != expected_device:
            raise TypeError(f"{self._label()}: gradient is on {backend.device_of(dy)} but the "
                            f"layer is on {expected_device}")
        if tuple(dy.shape) != shape:
            raise ValueError(f"{self._label()}: backward expected a gradient of shape "
                             f"{shape} (the output of the latest training forward), got "
                             f"{tuple(dy.shape)}")
        return dy

    # ----- numerics checks (fd.utils.check_numerics) ------------------------
    def _check_forward_numerics(self, x, y) -> None:
        """Raises FloatingPointError naming this layer if its finite input gave NaN/Inf
        (y: the output, or the list of outputs)."""
        utils.check_finite(x, f"the input of {self._label()} already holds non-finite values")
        utils.check_finite(y, f"{self._label()} produced non-finite values in its forward "
                              "output from a finite input")

    def _check_backward_numerics(self, dy, dx,
                                 incoming="the gradient passed to backward()") -> None:
        """Raises FloatingPointError naming this layer if a finite output gradient gave a
        NaN/Inf input gradient or weight gradient (dy, dx: arrays or lists of them; a None
        dx means the input gradient was skipped, see _input_grad_needed)."""
        utils.check_finite(dy, f"{incoming} of {self._label()} already holds non-finite values")
        utils.check_finite(dx, f"{self._label()} produced non-finite values in its backward "
                               "gradient w.r.t. its input from a finite output gradient")
        for var in self._variables:
            utils.check_finite(var.grad, f"{self._label()} produced non-finite values in the "
                                         f"gradient of its weight '{var.name}' in backward")

    def call(self, x, training):
        """Subclasses: returns (y, cache); y is a list for several outputs. A subclass
        that takes `mask` or other call arguments names them as keyword parameters."""
        raise NotImplementedError

    def call_backward(self, dy, cache):
        """Subclasses: returns dx and adds parameter gradients with `_accumulate`; dy is
        a list (zeros for unused outputs) when call returned several outputs."""
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


@functools.lru_cache(maxsize=None)
def _call_keywords(cls) -> tuple:
    """The keyword arguments of `cls.call` after (x, training): what forward passes on."""
    parameters = list(inspect.signature(cls.call).parameters.values())[3:]
    return tuple(p.name for p in parameters
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _accepted_keywords(cls) -> list[str]:
    """The keyword arguments a layer class accepts: its own and those of every base
    __init__ it forwards **kwargs to (for the message about an unknown one)."""
    names = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY) \
                    and parameter.name != "self" and parameter.name not in names:
                names.append(parameter.name)
    return names


def _as_shape(shape, what: str) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{what}: expected a tuple of positive ints, got {shape!r}") from None
    for d in shape:
        if d is not None and (not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d <= 0):
            raise ValueError(f"{what}: expected a tuple of positive ints, got {shape!r}")
    return tuple(None if d is None else int(d) for d in shape)
