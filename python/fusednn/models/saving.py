"""load_model: rebuilds a model saved with `model.save` (the file format is fusednn.io)."""
from __future__ import annotations

from .. import io
from .registry import MODELS, deserialize_layer
from .training import Model


def load_model(filepath, compile=True) -> Model:
    """Rebuilds a model saved with `model.save` (safetensors; only known layer and model
    classes: Sequential and functional models)."""
    return io.load_model(filepath, _rebuild, compile=compile)


def _rebuild(config) -> Model:
    name = config.get("class_name") if isinstance(config, dict) else None
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"the saved config does not describe a model; expected one of "
                         f"{sorted(MODELS.entries())}, got class {name!r:.80}")
    model = deserialize_layer(config)
    if not model.built:
        raise ValueError(f"the saved config describes an unbuilt {type(model).__name__}")
    return model
