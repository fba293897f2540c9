"""Keras-style layers, and their (de)serialisation over an explicit registry.

Each layer class registers itself (`@register` above its definition in its family's
module); this package imports the family modules and exports every registered class,
so adding a layer to a family is one decorated class in one file (a new family module
is also named in the import below). `serialize(layer)` gives {"class_name": ...,
"config": ...}; `deserialize` rebuilds a layer only from a registered class (no import
by name).
"""
from __future__ import annotations

# The family modules, imported for the classes they register.
from . import (activation_layers, convolutional, core, depthwise, embedding,  # noqa: F401
               lambda_layer, merging, normalization, pooling, recurrent, reshaping,
               wrappers)
from .base import InputSpec, Layer, Variable
from .core import Input
from .merging import (FUNCTIONS as _MERGE_FUNCTIONS, add, average, concatenate,  # noqa: F401
                      dot, maximum, minimum, multiply, subtract)
from .registry import deserialize, register, registered_classes, serialize

globals().update(registered_classes())

__all__ = sorted(registered_classes()) + _MERGE_FUNCTIONS + [
    "Input", "InputSpec", "Layer", "Variable",
    "deserialize", "register", "registered_classes", "serialize",
]
