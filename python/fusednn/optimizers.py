"""Optimizers under Keras 3's names, defaults and update formulas.

`opt.step(layer_or_model)` updates every trainable variable in place from its
gradient buffer `var.grad`; it does not zero the gradients. One step, as in
Keras 3's `apply`:

1. gradient = var.grad + regularizer gradient (on a copy: var.grad is left as is);
2. clipping, at most one kind (the constructor refuses more than one, as Keras
   does): clipnorm rescales each gradient to norm <= clipnorm, global_clipnorm
   rescales all gradients together to joint norm <= global_clipnorm, clipvalue
   clips elementwise to [-clipvalue, clipvalue];
3. decoupled weight decay, p -= lr * weight_decay * p (any optimizer, as Keras);
4. the optimizer's update with the learning rate of this step (a schedule is
   evaluated at `iterations`, the number of steps taken before this one);
5. each weight's constraint (fusednn.constraints; kernel_constraint= ...) projects it;
6. iterations += 1.

SGD, Adam, AdamW, Nadam, Adamax and Lion run on the fused kernels in
`fusednn.ops`: one call per step over all variables that share a device and dtype (usually one call in all).
RMSprop, Adagrad, Adadelta and Adam(amsgrad=True) are NumPy/CuPy expressions.

Per-variable state ("slots": Adam's moments, SGD's momentum, ...) is created on
the first step that sees a variable, on that variable's device, and moves with
it when the model moves (`model.to(device)`). `get_state` / `set_state` carry
the slots (as NumPy arrays, in the order the variables were first seen) and
the iteration count for checkpoints.
"""
from __future__ import annotations

import inspect
import math
import numbers
import re
from types import SimpleNamespace

import numpy as np

from . import backend, ops
from .layers.base import Variable
from .naming import default_layer_name
from .registry import Registry


# ----- learning-rate schedules ---------------------------------------------
class LearningRateSchedule:
    """Base class: `schedule(step) -> float`, step = optimizer.iterations (0 on the first step).

    Subclasses implement `__call__(step)` and `get_config()`.
    """

    def __call__(self, step) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(step)")

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement get_config()")

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


_SCHEDULES = Registry("learning-rate schedule", base=LearningRateSchedule)


@_SCHEDULES.register
class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps); with staircase=True the
    exponent is floor(step / decay_steps), so the rate drops every decay_steps steps."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        owner = "ExponentialDecay"
        self.initial_learning_rate = _real(owner, "initial_learning_rate", initial_learning_rate,
                                           lambda x: x > 0, "a number > 0")
        if isinstance(decay_steps, bool) or not isinstance(decay_steps, numbers.Real) \
                or not decay_steps > 0:
            raise ValueError(f"{owner}: decay_steps must be > 0, got {decay_steps!r}")
        self.decay_steps = decay_steps
        self.decay_rate = _real(owner, "decay_rate", decay_rate, lambda x: x > 0, "a number > 0")
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step) -> float:
        exponent = float(step) / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class _CallableLearningRate(LearningRateSchedule):
    """A user's zero-argument callable as the learning rate (Keras accepts one), called
    before every step; it cannot be saved."""

    def __init__(self, function):
        self.function = function

    def __call__(self, step):
        return _real("learning_rate", "the callable's value", self.function(),
                     lambda x: x >= 0, "a number >= 0")

    def get_config(self) -> dict:
        raise ValueError(f"the learning rate is a Python callable ({self.function!r}), which "
                         "cannot be saved; use a number or a registered LearningRateSchedule")


# Keras's `keras.optimizers.schedules` namespace.
schedules = SimpleNamespace(LearningRateSchedule=LearningRateSchedule,
                            ExponentialDecay=ExponentialDecay,
                            serialize=_SCHEDULES.serialize, deserialize=_SCHEDULES.deserialize)


# ----- argument checks -------------------------------------------------------
def _real(owner, name, value, condition, expected) -> float:
    """float(value) if it is a finite real number satisfying `condition`, else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be {expected}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or not condition(float(value)):
        raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}")
    return float(value)


def _optional_real(owner, name, value, condition, expected):
    return None if value is None else _real(owner, name, value, condition, expected)


def _decay_rate(owner, name, value) -> float:
    return _real(owner, name, value, lambda x: 0.0 <= x < 1.0, "a number in [0, 1)")


def _positive(owner, name, value) -> float:
    return _real(owner, name, value, lambda x: x > 0, "a number > 0")


# ----- the base class ----------------------------------------------------------
def _apply_constraints(variables) -> None:
    """Projects each updated weight with its constraint, in place, as Keras does right after
    the update; a constraint must give back the weight's shape on its device."""
    for var in variables:
        if var.constraint is None:
            continue
        projected = var.constraint(var.value)
        if tuple(getattr(projected, "shape", ())) != var.shape \
                or backend.device_of(projected) != backend.device_of(var.value):
            raise ValueError(f"constraint {var.constraint!r} of weight {var.name} must return an "
                             f"array of the weight's shape {var.shape} on "
                             f"{backend.device_of(var.value)}, got "
                             f"{type(projected).__name__} of shape "
                             f"{tuple(getattr(projected, 'shape', ()))} on "
                             f"{backend.device_of(projected)}")
        var.value[...] = projected


class Optimizer:
    """Base class: learning rate (float or schedule), weight decay, clipping, slots, state.

    Subclasses define `_slot_names()` (names of the per-variable state arrays) and
    `_update(values, grads, slots, learning_rate)`, which updates one group of variables
    sharing a device and dtype in place: values and grads are lists of arrays, slots maps
    each slot name to the list of that slot's arrays in the same order.
    """

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **unknown):
        owner = type(self).__name__
        if unknown:
            accepted = [p.name for klass in type(self).__mro__ if "__init__" in klass.__dict__
                        for p in inspect.signature(klass.__dict__["__init__"]).parameters.values()
                        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                        and p.name != "self"]
            raise TypeError(f"{owner}: unknown keyword argument(s) {', '.join(sorted(unknown))}; "
                            f"accepted: {', '.join(dict.fromkeys(accepted))}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{owner}: name must be a non-empty string, got {name!r}")
        # Keras's automatic names: the class name in snake case, uniquified by the counter the
        # layers use (adam, adam_1, sgd, adam_w, rm_sprop; clear_session restarts it).
        self.name = name or default_layer_name(type(self).__name__)
        if not isinstance(learning_rate, LearningRateSchedule) and not callable(learning_rate):
            _positive(owner, "learning_rate", learning_rate)
        self.learning_rate = learning_rate
        self.weight_decay = _optional_real(owner, "weight_decay", weight_decay,
                                           lambda x: x >= 0, "None or a number >= 0")
        self.clipnorm = _optional_real(owner, "clipnorm", clipnorm, lambda x: x > 0,
                                       "None or a number > 0")
        self.clipvalue = _optional_real(owner, "clipvalue", clipvalue, lambda x: x > 0,
                                        "None or a number > 0")
        self.global_clipnorm = _optional_real(owner, "global_clipnorm", global_clipnorm,
                                              lambda x: x > 0, "None or a number > 0")
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"{owner}: only one of clipnorm, clipvalue and global_clipnorm can be "
                             f"set, got clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        self.iterations = 0
        self._tracked: list[Variable] = []          # variables in the order first seen
        self._slots: dict[int, dict[str, object]] = {}   # id(variable) -> slot name -> array
        self._pending_slots = None                  # restored by set_state before the first step

    # ----- learning rate -------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (a schedule evaluated at `iterations`).

        Settable with a float (callbacks such as ReduceLROnPlateau do this), a
        LearningRateSchedule or a zero-argument callable (called before each step); as in
        Keras, a float cannot replace a schedule (TypeError).
        """
        if isinstance(self._learning_rate, LearningRateSchedule):
            return float(self._learning_rate(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value) and not isinstance(value, LearningRateSchedule):
            value = _CallableLearningRate(value)
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
        elif isinstance(getattr(self, "_learning_rate", None), LearningRateSchedule):
            raise TypeError(f"{type(self).__name__} was created with a LearningRateSchedule as "
                            "its learning_rate, so its learning rate cannot be set to a number "
                            f"(got {value!r}); set another LearningRateSchedule instead")
        else:
            # >= 0 rather than > 0: schedules set from callbacks may anneal to exactly 0.
            self._learning_rate = _real(type(self).__name__, "learning_rate", value,
                                        lambda x: x >= 0, "a number >= 0 or a LearningRateSchedule")

    @property
    def learning_rate_schedule(self):
        """The LearningRateSchedule in use, or None for a constant learning rate."""
        lr = self._learning_rate
        return lr if isinstance(lr, LearningRateSchedule) else None

    # ----- one step --------------------------------------------------------
    def step(self, layer_or_model) -> None:
        """Updates the trainable variables of a layer/model (or an iterable of Variables)."""
        variables = self._trainable_variables_of(layer_or_model)
        if not variables:
            return
        self._track(variables)
        grads = self._gradients(variables)
        learning_rate = self.learning_rate
        groups: dict[tuple, list[int]] = {}
        for i, var in enumerate(variables):
            groups.setdefault((backend.device_of(var.value), var.value.dtype.str), []).append(i)
        for indices in groups.values():
            group_slots = {name: [self._slots[id(variables[i])][name] for i in indices]
                           for name in self._slot_names()}
            self._update([variables[i].value for i in indices], [grads[i] for i in indices],
                         group_slots, learning_rate)
        _apply_constraints(variables)
        self.iterations += 1

    def apply_gradients(self, grads_and_vars) -> None:
        """Keras's apply_gradients: one step on the Variables of the (gradient, Variable)
        pairs with those gradients (arrays of each Variable's shape); pairs whose gradient
        is None are skipped, as Keras skips them. The Variables' own gradient buffers
        (var.grad) are left as they were."""
        pairs = [(grad, var) for grad, var in grads_and_vars]
        self.apply([grad for grad, _ in pairs], [var for _, var in pairs])

    def apply(self, grads, trainable_variables) -> None:
        """Keras's apply(grads, trainable_variables): apply_gradients(zip(grads, variables))."""
        grads, variables = list(grads), list(trainable_variables)
        name = type(self).__name__
        if len(grads) != len(variables):
            raise ValueError(f"{name}.apply: expected one gradient per variable, got "
                             f"{len(grads)} gradients for {len(variables)} variables")
        given = []
        for grad, var in zip(grads, variables):
            if not isinstance(var, Variable):
                raise TypeError(f"{name}.apply_gradients: expected fusednn Variables (a layer's "
                                f"trainable_weights), got {type(var).__name__}")
            if grad is None:
                continue
            xp = backend.get_array_module(var.value)
            grad = xp.asarray(grad, dtype=var.value.dtype)
            if tuple(grad.shape) != var.shape:
                raise ValueError(f"{name}.apply_gradients: gradient of {var.name} has shape "
                                 f"{tuple(grad.shape)}, expected the variable's {var.shape}")
            given.append((var, grad))
        saved = [var.grad for var, _ in given]
        try:
            for var, grad in given:
                var.grad = grad
            self.step([var for var, _ in given])
        finally:
            for (var, _), grad in zip(given, saved):
                var.grad = grad

    def _trainable_variables_of(self, layer_or_model) -> list[Variable]:
        if hasattr(layer_or_model, "trainable_variables"):
            return list(layer_or_model.trainable_variables)
        try:
            variables = list(layer_or_model)
        except TypeError:
            raise TypeError(f"{type(self).__name__}.step expects a layer or model (or an iterable "
                            f"of Variables), got {type(layer_or_model).__name__}") from None
        for var in variables:
            if not isinstance(var, Variable):
                raise TypeError(f"{type(self).__name__}.step expects a layer or model (or an "
                                f"iterable of Variables), got an iterable holding "
                                f"{type(var).__name__}")
        return [v for v in variables if v.trainable]

    def _track(self, variables) -> None:
        """Creates slots for newly seen variables; moves slots to their variable's device."""
        if self._pending_slots is not None and not self._tracked:
            self._assign_slots(variables, self._pending_slots)
            self._pending_slots = None
        for var in variables:
            slots = self._slots.get(id(var))
            if slots is None:
                self._slots[id(var)] = {name: self._new_slot(name, var.value)
                                        for name in self._slot_names()}
                self._tracked.append(var)
                continue
            device = backend.device_of(var.value)
            for name, array in slots.items():
                if backend.device_of(array) != device:
                    slots[name] = backend.to_device(array, device)

    def _gradients(self, variables) -> list:
        """var.grad plus the regularizer gradient, clipped; contiguous, one per variable."""
        grads = []
        for var in variables:
            grad = var.grad
            if tuple(grad.shape) != var.shape or grad.dtype != var.value.dtype:
                raise ValueError(f"{type(self).__name__}: gradient of {var.name} has shape "
                                 f"{tuple(grad.shape)} and dtype {grad.dtype}, expected the "
                                 f"variable's {var.shape} and {var.value.dtype}")
            if var.regularizer is not None:
                grad = grad + var.regularizer.gradient(var.value)   # new array
            grads.append(grad)
        if self.clipnorm is not None:
            grads = [self._clip_by_norm(g) for g in grads]
        elif self.global_clipnorm is not None:
            norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
            # Keras: scale = c * min(1 / norm, 1 / c), NaN when the norm is not finite.
            scale = (self.global_clipnorm * min(1.0 / norm, 1.0 / self.global_clipnorm)
                     if norm > 0 else 1.0) if math.isfinite(norm) else math.nan
            grads = [g * scale for g in grads]
        elif self.clipvalue is not None:
            grads = [backend.get_array_module(g).clip(g, -self.clipvalue, self.clipvalue)
                     for g in grads]
        # Not ascontiguousarray: it turns a scalar variable's () gradient into (1,).
        return [g if g.flags.c_contiguous else g.copy(order="C") for g in grads]

    def _clip_by_norm(self, grad):
        xp = backend.get_array_module(grad)
        norm = xp.sqrt((grad * grad).sum())
        return grad * (self.clipnorm / xp.maximum(norm, self.clipnorm))

    def _decay_weights(self, values, learning_rate) -> None:
        """Decoupled weight decay p -= lr * weight_decay * p, for the non-fused optimizers."""
        if self.weight_decay:
            for value in values:
                value -= value * (self.weight_decay * learning_rate)

    def _slot_names(self) -> tuple:
        return ()

    def _new_slot(self, name, value):
        return backend.get_array_module(value).zeros_like(value)

    def _update(self, values, grads, slots, learning_rate) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    # ----- state for checkpoints ------------------------------------------
    def get_state(self) -> dict:
        """{'iterations': int, 'learning_rate': float (absent with a schedule),
        'slots': {'<i>/<slot name>': numpy array}} with i the variable's position in the
        order the optimizer first saw it (the model's trainable-variable order)."""
        state = {"iterations": self.iterations}
        if self.learning_rate_schedule is None:
            state["learning_rate"] = self.learning_rate
        if self._pending_slots is not None:
            per_variable = self._pending_slots
        else:
            per_variable = [self._slots[id(var)] for var in self._tracked]
        state["slots"] = {f"{i}/{name}": backend.to_numpy(array).copy()
                          for i, slots in enumerate(per_variable) for name, array in slots.items()}
        return state

    def set_state(self, state: dict) -> None:
        """Restores `get_state()`'s output. Slots are matched to variables by position: at
        once if the optimizer has already stepped, else on the next step."""
        owner = type(self).__name__
        if not isinstance(state, dict) or "iterations" not in state:
            raise TypeError(f"{owner}.set_state expects the dict returned by get_state(), "
                            f"got {type(state).__name__}")
        iterations = state["iterations"]
        if isinstance(iterations, (bool, float)) or not isinstance(iterations, numbers.Integral) \
                or iterations < 0:
            raise ValueError(f"{owner}.set_state: iterations must be an int >= 0, got {iterations!r}")
        per_variable = self._parse_slots(state.get("slots") or {})
        if "learning_rate" in state and self.learning_rate_schedule is None:
            learning_rate = _real(owner, "learning_rate", state["learning_rate"],
                                  lambda x: x >= 0, "a number >= 0")
        else:
            learning_rate = None
        if self._tracked and per_variable:
            self._assign_slots(self._tracked, per_variable)
        elif per_variable:
            self._pending_slots = per_variable
        else:  # the state of an optimizer that never stepped
            self._tracked, self._slots, self._pending_slots = [], {}, None
        self.iterations = int(iterations)
        if learning_rate is not None:
            self.learning_rate = learning_rate

    def _parse_slots(self, flat: dict) -> list[dict]:
        owner, expected = type(self).__name__, set(self._slot_names())
        per_variable: dict[int, dict] = {}
        for key, array in flat.items():
            match = re.fullmatch(r"(\d+)/(\w+)", str(key))
            if match is None or match.group(2) not in expected:
                raise ValueError(f"{owner}.set_state: unexpected slot {key!r}; this optimizer's "
                                 f"slots are '<index>/<name>' with name in "
                                 f"{sorted(expected) or 'nothing (it keeps no slots)'}")
            per_variable.setdefault(int(match.group(1)), {})[match.group(2)] = np.asarray(array)
        if sorted(per_variable) != list(range(len(per_variable))) or \
                any(set(slots) != expected for slots in per_variable.values()):
            raise ValueError(f"{owner}.set_state: slots must cover variables 0..n-1 with "
                             f"{sorted(expected)} each, got keys {sorted(flat)}")
        return [per_variable[i] for i in range(len(per_variable))]

    def _assign_slots(self, variables, per_variable) -> None:
        owner = type(self).__name__
        if len(per_variable) != len(variables):
            raise ValueError(f"{owner}: the restored state holds slots for {len(per_variable)} "
                             f"variables but there are {len(variables)} trainable variables")
        for var, slots in zip(variables, per_variable):
            for name, array in slots.items():
                if tuple(array.shape) != var.shape:
                    raise ValueError(f"{owner}: restored slot {name!r} for {var.name} has shape "
                                     f"{tuple(array.shape)}, expected {var.shape}")
        self._tracked = list(variables)
        self._slots = {
            id(var): {name: backend.to_device(np.array(array, dtype=var.value.dtype),
                                              backend.device_of(var.value))
                      for name, array in slots.items()}
            for var, slots in zip(variables, per_variable)}

    # ----- configuration ----------------------------------------------------
    def get_config(self) -> dict:
        schedule = self.learning_rate_schedule
        return {"name": self.name,
                "learning_rate": (self.learning_rate if schedule is None
                                  else _SCHEDULES.serialize(schedule)),
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = _SCHEDULES.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} iterations={self.iterations}>"


# ----- the optimizers ----------------------------------------------------------
_OPTIMIZERS = Registry("optimizer", base=Optimizer, module="fusednn.optimizers")
register = _OPTIMIZERS.register


@register
class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras form:
    m = momentum * m - lr * g; p += m, or p += momentum * m - lr * g with nesterov."""


    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.momentum = _decay_rate("SGD", "momentum", momentum)
        self.nesterov = bool(nesterov)

    def _slot_names(self):
        return ("momentum",) if self.momentum > 0 else ()

    def _update(self, values, grads, slots, learning_rate):
        ops.sgd_update(values, grads, slots.get("momentum"), learning_rate=learning_rate,
                       momentum=self.momentum, nesterov=self.nesterov,
                       weight_decay=self.weight_decay or 0.0)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@register
class Adam(Optimizer):
    """Adam, Keras form (epsilon is the paper's "epsilon hat"), step t = iterations + 1:
    m += (1 - b1)(g - m); v += (1 - b2)(g^2 - v);
    p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon).
    amsgrad=True divides by the running maximum of v instead of v."""


    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        owner = type(self).__name__
        self.beta_1 = _decay_rate(owner, "beta_1", beta_1)
        self.beta_2 = _decay_rate(owner, "beta_2", beta_2)
        self.epsilon = _positive(owner, "epsilon", epsilon)
        self.amsgrad = bool(amsgrad)

    def _slot_names(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def _update(self, values, grads, slots, learning_rate):
        step = self.iterations + 1
        if not self.amsgrad:
            ops.adam_update(values, grads, slots["momentum"], slots["velocity"],
                            learning_rate=learning_rate, beta_1=self.beta_1, beta_2=self.beta_2,
                            epsilon=self.epsilon, step=step, weight_decay=self.weight_decay or 0.0)
            return
        self._decay_weights(values, learning_rate)
        alpha = learning_rate * math.sqrt(1 - self.beta_2 ** step) / (1 - self.beta_1 ** step)
        for value, grad, m, v, v_hat in zip(values, grads, slots["momentum"], slots["velocity"],
                                            slots["velocity_hat"]):
            xp = backend.get_array_module(value)
            m += (1 - self.beta_1) * (grad - m)
            v += (1 - self.beta_2) * (grad * grad - v)
            xp.maximum(v_hat, v, out=v_hat)
            value -= alpha * m / (xp.sqrt(v_hat) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


@register
class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.004, Keras): p -= lr * weight_decay * p
    before each Adam step."""


    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number >= 0, got None")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, weight_decay=weight_decay,
                         clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                         name=name, **kwargs)


@register
class Nadam(Optimizer):
    """Adam with Nesterov momentum, Keras 3 form, step t = iterations + 1: with the
    momentum cache u_s = beta_1 (1 - 0.5 * 0.96^s) and its product U_t = u_1 ... u_t,
    m += (1 - b1)(g - m); v += (1 - b2)(g^2 - v);
    m_hat = u_{t+1} m / (1 - U_t u_{t+1}) + (1 - u_t) g / (1 - U_t);
    p -= lr m_hat / (sqrt(v / (1 - b2^t)) + epsilon).
    U_t is optimizer state (Keras's u_product): get_state carries it as "u_product"."""


    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.beta_1 = _decay_rate("Nadam", "beta_1", beta_1)
        self.beta_2 = _decay_rate("Nadam", "beta_2", beta_2)
        self.epsilon = _positive("Nadam", "epsilon", epsilon)
        self._u_product = 1.0           # U_t after the last step taken
        self._u_product_before = 1.0    # U_{t-1}: every device group of one step starts from it
        self._u_product_step = 0        # the step whose groups use _u_product_before

    def _slot_names(self):
        return ("momentum", "velocity")

    def _update(self, values, grads, slots, learning_rate):
        step = self.iterations + 1
        if self._u_product_step != step:   # the first group of this step
            self._u_product_before, self._u_product_step = self._u_product, step
        self._u_product = ops.nadam_update(
            values, grads, slots["momentum"], slots["velocity"], learning_rate=learning_rate,
            beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, step=step,
            u_product=self._u_product_before, weight_decay=self.weight_decay or 0.0)

    def get_state(self) -> dict:
        return {**super().get_state(), "u_product": self._u_product}

    def set_state(self, state: dict) -> None:
        u_product = 1.0
        if isinstance(state, dict) and state.get("iterations"):
            if "u_product" not in state:
                raise ValueError(f"Nadam.set_state: the state of a Nadam that has stepped must "
                                 f"hold 'u_product' (the momentum-cache product), got keys "
                                 f"{sorted(state)}")
            u_product = _real("Nadam.set_state", "u_product", state["u_product"],
                              lambda x: 0 < x <= 1, "a number in (0, 1]")
        super().set_state(state)
        self._u_product = self._u_product_before = u_product
        self._u_product_step = self.iterations

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


@register
class Adamax(Optimizer):
    """Adam with the infinity norm, Keras 3 form, step t = iterations + 1:
    m += (1 - b1)(g - m); u = max(b2 u, |g|); p -= lr / (1 - b1^t) * m / (u + epsilon)."""


    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.beta_1 = _decay_rate("Adamax", "beta_1", beta_1)
        self.beta_2 = _decay_rate("Adamax", "beta_2", beta_2)
        self.epsilon = _positive("Adamax", "epsilon", epsilon)

    def _slot_names(self):
        return ("momentum", "norm")

    def _update(self, values, grads, slots, learning_rate):
        ops.adamax_update(values, grads, slots["momentum"], slots["norm"],
                          learning_rate=learning_rate, beta_1=self.beta_1, beta_2=self.beta_2,
                          epsilon=self.epsilon, step=self.iterations + 1,
                          weight_decay=self.weight_decay or 0.0)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


@register
class Lion(Optimizer):
    """Lion (evolved sign momentum), Keras 3 form:
    p -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g. beta_1 in (0, 1], beta_2 in [0, 1)."""


    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        # Keras refuses beta_1 outside (0, 1]: beta_1 = 0 would ignore the momentum entirely.
        self.beta_1 = _real("Lion", "beta_1", beta_1, lambda x: 0.0 < x <= 1.0,
                            "a number in (0, 1]")
        self.beta_2 = _decay_rate("Lion", "beta_2", beta_2)

    def _slot_names(self):
        return ("momentum",)

    def _update(self, values, grads, slots, learning_rate):
        ops.lion_update(values, grads, slots["momentum"], learning_rate=learning_rate,
                        beta_1=self.beta_1, beta_2=self.beta_2,
                        weight_decay=self.weight_decay or 0.0)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


@register
class RMSprop(Optimizer):
    """RMSprop, Keras form (epsilon inside the square root):
    v = rho v + (1 - rho) g^2; with centered, a = rho a + (1 - rho) g and the
    denominator is sqrt(v - a^2 + epsilon), else sqrt(v + epsilon);
    increment = lr g / denominator; with momentum, m = momentum m + increment, p -= m,
    else p -= increment."""


    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.rho = _decay_rate("RMSprop", "rho", rho)
        self.momentum = _decay_rate("RMSprop", "momentum", momentum)
        self.epsilon = _positive("RMSprop", "epsilon", epsilon)
        self.centered = bool(centered)

    def _slot_names(self):
        return (("velocity",) + (("momentum",) if self.momentum > 0 else ())
                + (("average_gradient",) if self.centered else ()))

    def _update(self, values, grads, slots, learning_rate):
        self._decay_weights(values, learning_rate)
        rho = self.rho
        for i, (value, grad) in enumerate(zip(values, grads)):
            xp = backend.get_array_module(value)
            velocity = slots["velocity"][i]
            velocity[...] = rho * velocity + (1 - rho) * (grad * grad)
            if self.centered:
                average = slots["average_gradient"][i]
                average[...] = rho * average + (1 - rho) * grad
                denominator = velocity - average * average + self.epsilon
            else:
                denominator = velocity + self.epsilon
            increment = learning_rate * grad / xp.sqrt(denominator)
            if self.momentum > 0:
                momentum = slots["momentum"][i]
                momentum[...] = self.momentum * momentum + increment
                value -= momentum
            else:
                value -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


@register
class Adagrad(Optimizer):
    """Adagrad, Keras form: acc += g^2; p -= lr g / sqrt(acc + epsilon); acc starts at
    initial_accumulator_value."""


    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.initial_accumulator_value = _real("Adagrad", "initial_accumulator_value",
                                               initial_accumulator_value, lambda x: x >= 0,
                                               "a number >= 0")
        self.epsilon = _positive("Adagrad", "epsilon", epsilon)

    def _slot_names(self):
        return ("accumulator",)

    def _new_slot(self, name, value):
        return backend.get_array_module(value).full_like(value, self.initial_accumulator_value)

    def _update(self, values, grads, slots, learning_rate):
        self._decay_weights(values, learning_rate)
        for value, grad, accumulator in zip(values, grads, slots["accumulator"]):
            xp = backend.get_array_module(value)
            accumulator += grad * grad
            value -= learning_rate * grad / xp.sqrt(accumulator + self.epsilon)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


@register
class Adadelta(Optimizer):
    """Adadelta, Keras form, rms(x) = sqrt(x + epsilon):
    Eg = rho Eg + (1 - rho) g^2; delta = -rms(Edx) g / rms(Eg);
    Edx = rho Edx + (1 - rho) delta^2; p += lr delta."""


    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                         clipvalue=clipvalue, global_clipnorm=global_clipnorm, name=name, **kwargs)
        self.rho = _decay_rate("Adadelta", "rho", rho)
        self.epsilon = _positive("Adadelta", "epsilon", epsilon)

    def _slot_names(self):
        return ("accumulated_grad", "accumulated_delta_var")

    def _update(self, values, grads, slots, learning_rate):
        self._decay_weights(values, learning_rate)
        rho, eps = self.rho, self.epsilon
        for value, grad, acc_grad, acc_delta in zip(values, grads, slots["accumulated_grad"],
                                                    slots["accumulated_delta_var"]):
            xp = backend.get_array_module(value)
            acc_grad[...] = rho * acc_grad + (1 - rho) * (grad * grad)
            delta = -xp.sqrt(acc_delta + eps) * grad / xp.sqrt(acc_grad + eps)
            acc_delta[...] = rho * acc_delta + (1 - rho) * (delta * delta)
            value += learning_rate * delta

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


def get(identifier):
    """An Optimizer from an Optimizer (returned as is), a name ('adam', 'sgd', 'rmsprop',
    'adamw', 'adagrad', 'adadelta', 'nadam', 'adamax', 'lion', any case; Keras defaults),
    a serialized dict, or None."""
    return None if identifier is None else _OPTIMIZERS.get(identifier)


serialize = _OPTIMIZERS.serialize
deserialize = _OPTIMIZERS.deserialize
