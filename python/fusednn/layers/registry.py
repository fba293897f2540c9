"""The registry of layer classes: serialize/deserialize rebuild a layer only from a class
registered here (no import by name)."""
from __future__ import annotations

from .base import Layer

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Adds a Layer subclass to the registry under its class name; returns it (a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"layers.register: expected a Layer subclass, got {cls!r}")
    existing = _REGISTRY.get(cls.__name__)
    if existing is not None and existing is not cls:
        raise ValueError(f"layers.register: another class is already registered as "
                         f"'{cls.__name__}' ({existing.__module__}.{existing.__qualname__})")
    _REGISTRY[cls.__name__] = cls
    return cls


def registered_classes() -> dict[str, type]:
    """A copy of the registry: class name -> class."""
    return dict(_REGISTRY)


def serialize(layer: Layer) -> dict:
    """{"class_name": ..., "config": layer.get_config()} for a registered layer class."""
    cls = type(layer)
    if _REGISTRY.get(cls.__name__) is not cls:
        raise ValueError(f"layers.serialize: {cls.__name__} is not a registered layer class, so "
                         "it could not be loaded back; register it with "
                         "fusednn.layers.register")
    return {"class_name": cls.__name__, "config": layer.get_config()}


def deserialize(config: dict) -> Layer:
    """The layer described by {"class_name": ..., "config": ...} (from `serialize`)."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) \
            or not isinstance(config.get("config"), dict):
        raise ValueError(f"layers.deserialize: expected a dict with a 'class_name' string and a "
                         f"'config' dict, got {config!r}")
    cls = _REGISTRY.get(config["class_name"])
    if cls is None:
        raise ValueError(f"layers.deserialize: unknown layer class '{config['class_name']}'; "
                         f"known classes: {', '.join(sorted(_REGISTRY))}")
    return cls.from_config(dict(config["config"]))
