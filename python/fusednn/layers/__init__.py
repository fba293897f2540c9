"""Keras-style layers, and their (de)serialisation over an explicit registry.

`serialize(layer)` gives {"class_name": ..., "config": ...}; `deserialize` rebuilds
a layer only from a class registered here (no import by name). Layer families
defined elsewhere (convolution, recurrent, ...) add themselves with `register`.
"""
from __future__ import annotations

from .base import InputSpec, Layer, Variable

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


from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Reshape  # noqa: E402
from .activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax  # noqa: E402
from .recurrent import GRU, LSTM, SimpleRNN  # noqa: E402
from .wrappers import Bidirectional, RepeatVector, TimeDistributed  # noqa: E402
from .embedding import Embedding, Masking  # noqa: E402
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,  # noqa: E402
                      GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                      MaxPooling1D, MaxPooling2D)
from .reshaping import Cropping2D, UpSampling1D, UpSampling2D, ZeroPadding2D  # noqa: E402
from .normalization import BatchNormalization  # noqa: E402
from .convolutional import Conv1D, Conv2D, Conv2DTranspose  # noqa: E402

for _cls in (Activation, Dense, Dropout, Flatten, InputLayer, Reshape,
             AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
             GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D,
             Cropping2D, UpSampling1D, UpSampling2D, ZeroPadding2D, BatchNormalization,
             ELU, LeakyReLU, PReLU, ReLU, Softmax,
             GRU, LSTM, SimpleRNN, Bidirectional, RepeatVector, TimeDistributed,
             Embedding, Masking,
             Conv1D, Conv2D, Conv2DTranspose):
    register(_cls)
del _cls

__all__ = [
    "AveragePooling1D", "AveragePooling2D", "BatchNormalization", "Cropping2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "MaxPooling1D", "MaxPooling2D", "UpSampling1D", "UpSampling2D",
    "ZeroPadding2D",
    "Activation", "Dense", "Dropout", "ELU", "Flatten", "Input", "InputLayer", "InputSpec",
    "Layer", "LeakyReLU", "PReLU", "ReLU", "Reshape", "Softmax", "Variable",
    "deserialize", "register", "registered_classes", "serialize",
    "Bidirectional", "Embedding", "GRU", "LSTM", "Masking", "RepeatVector", "SimpleRNN",
    "TimeDistributed",
    "Conv1D", "Conv2D", "Conv2DTranspose",
]
