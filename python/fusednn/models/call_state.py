"""What a layer call leaves for its backward, saved and restored per call: a layer keeps
only its latest call's cache, so a model that calls a layer more than once (a shared
layer in a functional graph, a layer used twice in a subclassed model's `call`) stashes
each call's state after its forward and puts it back before that call's backward."""
from __future__ import annotations

from ..layers.base import Layer

# What a layer call leaves for its backward, on the layer and on every layer or fused
# step inside it (layers/base.py, models/sequential.py, fusion.py, functional.py,
# subclassed.py).
_CALL_STATE = ("_cache", "_cache_valid", "_last_output_shape", "_steps", "_node_states",
               "_last_output_dtypes")


def _owners(layer) -> list:
    """The layer, every layer inside it and the fused steps of a Sequential."""
    found, stack = [], [layer]
    while stack:
        item = stack.pop()
        found.append(item)
        stack.extend(getattr(item, "sublayers", []))
        stack.extend(step for step in (vars(item).get("_steps") or [])
                     if not isinstance(step, Layer))
    return found


def call_state(layer) -> list:
    """What the latest call left for backward, on the layer and everything inside it."""
    return [(owner, {key: vars(owner)[key] for key in _CALL_STATE if key in vars(owner)})
            for owner in _owners(layer)]


def restore_call_state(state) -> None:
    for owner, attributes in state:
        for key, value in attributes.items():
            setattr(owner, key, value)
