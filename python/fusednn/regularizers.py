"""Weight regularizers L1, L2 (Keras default 0.01) and L1L2 (default 0), as Keras 3's classes.

A regularizer gives its penalty, `reg(w) -> float`, and its gradient,
`reg.gradient(w)`; the optimizer adds the gradient before each update, so the
penalty is part of the loss minimised (fit reports it in the loss, as Keras does).
"""
from __future__ import annotations

import math
import numbers

from . import backend
from .registry import Registry


class Regularizer:
    """Base class (Keras's): `__call__(w)` the penalty, `gradient(w)` its gradient,
    `get_config()` and the classmethod `from_config(config)`."""

    def __call__(self, w) -> float:
        raise NotImplementedError

    def gradient(self, w):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


_REGULARIZERS = Registry("regularizer", base=Regularizer, module="fusednn.regularizers")
register = _REGULARIZERS.register


def _factor(name: str, value, default: float) -> float:
    """The factor as a float; None means the default (as Keras); Keras's ValueError for
    anything but a finite number >= 0."""
    if value is None:
        return default
    if isinstance(value, bool) or not (isinstance(value, numbers.Real)
                                       and math.isfinite(value) and value >= 0):
        raise ValueError(f"regularizer {name} factor must be a finite number >= 0 (a "
                         f"non-negative float), got {value!r}")
    return float(value)


@register(aliases=("l1_l2",))
class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w^2); Keras 3's defaults are 0 for both (also under the
    name l1_l2, which Keras 3 maps to this class)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = _factor("l1", l1, 0.0), _factor("l2", l2, 0.0)

    def __call__(self, w) -> float:
        xp = backend.get_array_module(w)
        return float(self.l1 * xp.abs(w).sum() + self.l2 * (w * w).sum())

    def gradient(self, w):
        xp = backend.get_array_module(w)
        return self.l1 * xp.sign(w) + (2.0 * self.l2) * w

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


@register
class L1(L1L2):
    """l1 * sum(|w|) (Keras default 0.01)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=_factor("l1", l1, 0.01))

    def get_config(self) -> dict:
        return {"l1": self.l1}


@register
class L2(L1L2):
    """l2 * sum(w^2) (Keras default 0.01)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=_factor("l2", l2, 0.01))

    def get_config(self) -> dict:
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2


def get(identifier):
    """None, a Regularizer, a Keras name ('l1', 'l2', 'l1_l2'), or a serialized dict
    (Keras's {"class_name": "L2", "config": {"l2": ...}} or the {"l1", "l2"} of L1L2's
    config, which fusednn wrote before)."""
    return deserialize(identifier)


def serialize(reg):
    """None for None, else {"class_name": "L1" / "L2" / "L1L2", "config": {...}}."""
    return None if reg is None else _REGULARIZERS.serialize(reg)


def deserialize(config):
    if config is None or isinstance(config, Regularizer):
        return config
    if isinstance(config, dict) and "class_name" not in config:
        return L1L2(**config)
    return _REGULARIZERS.get(config)
