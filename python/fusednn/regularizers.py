"""Weight regularizers l1, l2, l1_l2 (Keras defaults: 0.01).

A regularizer gives its penalty, `reg(w) -> float`, and its gradient,
`reg.gradient(w)`; the optimizer adds the gradient before each update, so the
penalty is part of the loss minimised (fit reports it in the loss, as Keras does).
"""
from __future__ import annotations

import numbers

from . import backend


class Regularizer:
    def __call__(self, w) -> float:
        raise NotImplementedError

    def gradient(self, w):
        raise NotImplementedError


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


def L1(l1=0.01):
    return L1L2(l1=l1)


def L2(l2=0.01):
    return L1L2(l2=l2)


l1, l2, l1_l2 = L1, L2, lambda l1=0.01, l2=0.01: L1L2(l1=l1, l2=l2)

_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": l1_l2, "l1l2": L1L2}


def get(identifier):
    """None, a Regularizer, a Keras name ('l1', 'l2', 'l1_l2'), or a serialized dict
    (this module's {"l1", "l2"} or Keras's {"class_name": "L2", "config": {"l2": ...}})."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(f"regularizer must be None, a name, a serialized dict or a Regularizer, "
                    f"got {identifier!r}")


def _lookup(name: str):
    key = name.lower()
    if key not in _BY_NAME:
        raise ValueError(f"unknown regularizer {name!r}; expected one of "
                         f"{', '.join(sorted(_BY_NAME))}")
    return _BY_NAME[key]


def serialize(reg):
    return None if reg is None else reg.get_config()


def deserialize(config):
    if config is None or isinstance(config, str):
        return get(config)
    if not isinstance(config, dict):
        raise ValueError(f"a serialized regularizer is None, a name or a dict, got {config!r}")
    if "class_name" in config:
        return _lookup(config["class_name"])(**config.get("config", {}))
    return L1L2(**config)
