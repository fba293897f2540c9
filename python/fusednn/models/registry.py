"""The closed registry of model classes (Sequential, Functional), and the one place that
(de)serializes any layer of a model: a model through this registry, any other layer
through fusednn.layers' registry. Nothing is imported by name, so a saved file can only
rebuild known classes."""
from __future__ import annotations

from .. import layers as layers_module
from ..registry import Registry
from .training import Model

MODELS = Registry("model", base=Model, module="fusednn.models")


def serialize_layer(layer) -> dict:
    """{"class_name", "config"} of a layer or a model inside a model."""
    return MODELS.serialize(layer) if isinstance(layer, Model) else layers_module.serialize(layer)


def deserialize_layer(item):
    """The layer or model a serialized item describes (registered classes only)."""
    if isinstance(item, dict) and isinstance(item.get("class_name"), str) \
            and item["class_name"] in MODELS:
        return MODELS.deserialize({"class_name": item["class_name"], "config": item.get("config")})
    return layers_module.deserialize(item)
