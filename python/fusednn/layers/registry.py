"""The registry of layer classes (fusednn.registry's mechanism): a layer class registers
itself with `@register` above its definition, and serialize/deserialize rebuild a layer
only from a registered class (no import by name)."""
from __future__ import annotations

from ..registry import Registry
from .base import Layer

LAYERS = Registry("layer", base=Layer, module="fusednn.layers")

register = LAYERS.register
serialize = LAYERS.serialize
deserialize = LAYERS.deserialize
registered_classes = LAYERS.entries
