"""load_model: rebuilds a model saved with `model.save` (the file format is fusednn.io),
or read from a Keras 3 .keras zip (keras_format)."""
from __future__ import annotations

from .. import io
from . import keras_format
from .sequential import Sequential, _deserialize_layer


def load_model(filepath, compile=True) -> Sequential:
    """Rebuilds a model saved with `model.save` (safetensors; only known layer types), or
    a Keras 3 .keras file (a zip, told apart by its content; compile settings not read)."""
    if keras_format.is_keras_zip(filepath):
        return keras_format.load_keras_model(filepath)
    return io.load_model(filepath, _rebuild, compile=compile)


def _rebuild(config) -> Sequential:
    model = _deserialize_layer(config)
    if not isinstance(model, Sequential) or not model.built:
        raise ValueError("the saved config does not describe a built Sequential model")
    return model
