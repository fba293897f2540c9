"""Weight constraints under Keras 3's names and formulas (keras.constraints), plus
WeightClipping for the Wasserstein GAN's critic.

A constraint maps a weight to its projection, `constraint(w) -> w'` (same shape, dtype and
device); layers take them as `kernel_constraint=`, `bias_constraint=`, ... and the
optimizer applies each to its weight right after every update (Optimizer.step), as Keras
does. They are written with fusednn.ops, so they run on NumPy and CuPy weights alike.
Norms are taken over `axis` with Keras's epsilon (1e-7) in the denominator: for a Dense
kernel (inputs, units) the default axis=0 constrains each unit's incoming weight vector.

A user constraint subclasses Constraint, implements __call__(w) (and get_config for
arguments), and registers with fusednn.constraints.register to be saved with a model.
"""
from __future__ import annotations

import math
import numbers

from . import ops
from .registry import Registry

# Keras's backend.epsilon(), added to norms before dividing by them.
_EPSILON = 1e-7


class Constraint:
    """Base class: the identity. Subclasses override __call__(w) and get_config()."""

    def __call__(self, w):
        return w

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


_CONSTRAINTS = Registry("constraint", base=Constraint, module="fusednn.constraints")
register = _CONSTRAINTS.register


def _number(owner: str, name: str, value, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < low:
        raise ValueError(f"{owner}: {name} must be a finite number >= {low:g}, got {value!r}")
    return float(value)


def _axis(owner: str, axis):
    """An int or a list of ints (Keras accepts both), as given."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if not axes or any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in axes):
        raise TypeError(f"{owner}: axis must be an int or a list of ints, got {axis!r}")
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)


def _norms(w, axis):
    return ops.sqrt(ops.sum(ops.square(w), axis=tuple(axis) if isinstance(axis, list) else axis,
                            keepdims=True))


@register(aliases=("max_norm",))
class MaxNorm(Constraint):
    """Rescales each slice along `axis` whose L2 norm exceeds max_value to norm max_value:
    w * clip(norm, 0, max_value) / (epsilon + norm)."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = _number("MaxNorm", "max_value", max_value)
        self.axis = _axis("MaxNorm", axis)

    def __call__(self, w):
        norms = _norms(w, self.axis)
        return w * (ops.clip(norms, 0, self.max_value) / (_EPSILON + norms))

    def get_config(self) -> dict:
        return {"max_value": self.max_value, "axis": self.axis}


@register(aliases=("min_max_norm",))
class MinMaxNorm(Constraint):
    """Moves each slice's L2 norm towards [min_value, max_value] at `rate` (1: at once):
    w * (rate * clip(norm, min, max) + (1 - rate) * norm) / (epsilon + norm)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = _number("MinMaxNorm", "min_value", min_value)
        self.max_value = _number("MinMaxNorm", "max_value", max_value)
        if self.max_value < self.min_value:
            raise ValueError(f"MinMaxNorm: max_value must be >= min_value, got "
                             f"min_value={min_value!r}, max_value={max_value!r}")
        self.rate = _number("MinMaxNorm", "rate", rate)
        if self.rate > 1.0:
            raise ValueError(f"MinMaxNorm: rate must be in [0, 1], got {rate!r}")
        self.axis = _axis("MinMaxNorm", axis)

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = (self.rate * ops.clip(norms, self.min_value, self.max_value)
                   + (1 - self.rate) * norms)
        return w * (desired / (_EPSILON + norms))

    def get_config(self) -> dict:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


@register(aliases=("non_neg",))
class NonNeg(Constraint):
    """Negative entries become 0: w * (w >= 0)."""

    def __call__(self, w):
        return w * ops.cast(ops.greater_equal(w, 0.0), w.dtype)


@register(aliases=("unit_norm",))
class UnitNorm(Constraint):
    """Each slice along `axis` divided by (epsilon + its L2 norm)."""

    def __init__(self, axis=0):
        self.axis = _axis("UnitNorm", axis)

    def __call__(self, w):
        return w / (_EPSILON + _norms(w, self.axis))

    def get_config(self) -> dict:
        return {"axis": self.axis}


@register(aliases=("weight_clipping",))
class WeightClipping(Constraint):
    """Every entry clipped to [-clip_value, clip_value]: the Wasserstein GAN's critic
    (Arjovsky et al. 2017, c = 0.01) keeps its weights in this box. Keras has no built-in
    one; its WGAN examples write it as a Constraint subclass (ClipConstraint)."""

    def __init__(self, clip_value=0.01):
        self.clip_value = _number("WeightClipping", "clip_value", clip_value)
        if self.clip_value == 0:
            raise ValueError("WeightClipping: clip_value must be > 0 (0 would zero every "
                             "weight), got 0")

    def __call__(self, w):
        return ops.clip(w, -self.clip_value, self.clip_value)

    def get_config(self) -> dict:
        return {"clip_value": self.clip_value}


max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm


def get(identifier):
    """None, a Constraint, a function w -> w (kept as is, but not savable), a name
    ('max_norm', 'NonNeg', ...), or a serialized dict."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if callable(identifier) and not isinstance(identifier, type):
        return identifier
    return _CONSTRAINTS.get(identifier)


def serialize(constraint):
    """None for None, else {"class_name": ..., "config": ...} of a registered Constraint."""
    return None if constraint is None else _CONSTRAINTS.serialize(constraint)


deserialize = get
