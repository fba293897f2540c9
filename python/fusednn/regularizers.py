"""Weight regularizers l1, l2, l1_l2 (Keras defaults: 0.01).

A regularizer gives its penalty, `reg(w) -> float`, and its gradient,
`reg.gradient(w)`; the optimizer adds the gradient before each update, so the
penalty is part of the loss minimised (fit reports it in the loss, as Keras does).
"""
from __future__ import annotations

import numbers

from . import backend
from .registry import Registry


class Regularizer:
    def __call__(self, w) -> float:
        raise NotImplementedError

    def gradient(self, w):
        raise NotImplementedError


_REGULARIZERS = Registry("regularizer", base=Regularizer, module="fusednn.regularizers")
register = _REGULARIZERS.register


@register
class L1L2(Regularizer):
    def __init__(self, l1=0.0, l2=0.0):
        for name, value in (("l1", l1), ("l2", l2)):
            if isinstance(value, bool) or not (isinstance(value, numbers.Real) and value >= 0):
                raise ValueError(f"regularizer {name} factor must be a number >= 0, got {value!r}")
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, w) -> float:
        xp = backend.get_array_module(w)
        return float(self.l1 * xp.abs(w).sum() + self.l2 * (w * w).sum())

    def gradient(self, w):
        xp = backend.get_array_module(w)
        return self.l1 * xp.sign(w) + (2.0 * self.l2) * w

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


# Keras's shorthands, registered under their names ("L1" also as "l1", any case).
@register
def L1(l1=0.01):
    return L1L2(l1=l1)


@register
def L2(l2=0.01):
    return L1L2(l2=l2)


@register
def l1_l2(l1=0.01, l2=0.01):
    return L1L2(l1=l1, l2=l2)


l1, l2 = L1, L2


def get(identifier):
    """None, a Regularizer, a Keras name ('l1', 'l2', 'l1_l2'), or a serialized dict
    (Keras's {"class_name": "L2", "config": {"l2": ...}} or the {"l1", "l2"} of L1L2's
    config, which fusednn wrote before)."""
    return deserialize(identifier)


def serialize(reg):
    """None for None, else {"class_name": "L1L2", "config": {"l1", "l2"}}."""
    return None if reg is None else _REGULARIZERS.serialize(reg)


def deserialize(config):
    if config is None or isinstance(config, Regularizer):
        return config
    if isinstance(config, dict) and "class_name" not in config:
        return L1L2(**config)
    return _REGULARIZERS.get(config)
