"""Keras 3 `.keras` files into fusednn models (load_model reads a zip file with this).

A `.keras` file is a zip of config.json (the model's config), metadata.json and
model.weights.h5 (the weights; fusednn.keras_weights reads them). The config is
rebuilt only through fusednn's layer registry: each Keras class_name must name a
registered fusednn layer class, and nothing is imported or executed, so custom
objects, Lambda layers (Python code) and unknown classes are refused with the class
named. Keras options fusednn does not implement (activity regularizers, quantization,
...) are refused unless they hold their neutral value; constraints come in through
fusednn's constraint registry; initializers
are dropped (the weights come from the file). Sequential and functional models (the
calls of a functional config replayed by fusednn's graph_config); compile settings are
not restored (compile the loaded model).

Hostile files: the zip members are read with a size cap (a member whose declared or
actual size exceeds it is refused before it fills memory: zip bombs), and a truncated
or damaged zip, bad JSON or a malformed config are ValueErrors naming the file.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
import zlib

from .. import layers
from ..keras_weights import load_keras_weights
from ..layers.base import _accepted_keywords
from ..layers.registry import LAYERS
from .registry import deserialize_layer
from .sequential import Sequential

ZIP_MAGIC = b"PK\x03\x04"
# config.json of even a large model is a few hundred kB.
MAX_JSON_BYTES = 64 * 2**20
MAX_WEIGHTS_BYTES = 16 * 2**30
_CHUNK = 2**20

# Keras options without a fusednn counterpart, accepted only at the value that means
# "not used"; the others fusednn refuses. Ignored: options with no effect on inference
# results fusednn gives (renorm's momentum without renorm; seeds of initializers).
_NEUTRAL = {
    "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
    "recurrent_constraint": None, "beta_constraint": None, "gamma_constraint": None,
    "embeddings_constraint": None, "alpha_constraint": None, "depthwise_constraint": None,
    "pointwise_constraint": None,
    "groups": 1, "unroll": False, "quantization_config": None, "synchronized": False,
    "renorm": False, "renorm_clipping": None, "sparse": False, "ragged": False,
    "optional": False, "data_format": "channels_last", "lora_rank": None,
}
# zero_output_for_mask: Keras zeroes a masked step's output where fusednn repeats the
# last one; both carry the state, so outputs differ only at masked steps.
_IGNORED = {"renorm_momentum", "zero_output_for_mask", "shared_object_id", "lora_alpha"}
# Layers whose config holds code (a marshalled function): refused, never rebuilt.
_CODE_LAYERS = {"Lambda"}


def is_keras_zip(path) -> bool:
    """Whether `path` is a zip file (a Keras 3 .keras file), by its first bytes."""
    try:
        with open(os.fspath(path), "rb") as f:
            return f.read(4) == ZIP_MAGIC
    except OSError:
        return False


def _read_member(archive, name: str, limit: int, path: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"{path}: the .keras zip has no {name} (members: "
                         f"{', '.join(archive.namelist()) or 'none'})") from None
    if info.file_size > limit:
        raise ValueError(f"{path}: {name} would unpack to {info.file_size} bytes, more than the "
                         f"limit of {limit} (a zip bomb or not a Keras file)")
    chunks, size = [], 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ValueError(f"{path}: {name} unpacks to more than the limit of {limit} "
                                     "bytes (its declared size is wrong: a zip bomb)")
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise ValueError(f"{path}: {name} is damaged or truncated ({type(e).__name__}: {e})") \
            from None
    return b"".join(chunks)


def _json(data: bytes, name: str, path: str):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: {name} is not valid UTF-8 JSON ({type(e).__name__}: {e})") \
            from None


def _check_builtin(item: dict, where: str) -> None:
    """Refuses objects that Keras itself would have to import or look up by name."""
    module, registered = item.get("module"), item.get("registered_name")
    # Keras names its own classes by module (and Functional also by registered_name);
    # custom ones carry their package's module and a "package>Name" registered_name.
    if registered not in (None, item.get("class_name")) or (
            module is not None and not str(module).startswith("keras")):
        raise ValueError(f"{where}: {item.get('class_name')!r} is a custom object (module "
                         f"{module!r}, registered_name {registered!r}); fusednn loads only "
                         "built-in layers and runs no code from the file")


def _plain(value, where: str):
    """A Keras serialized object ({"module", "class_name", "config", "registered_name"})
    as fusednn's {"class_name", "config"}, for its registries (regularizers, activations)."""
    if isinstance(value, dict) and "class_name" in value:
        _check_builtin(value, where)
        return {"class_name": value["class_name"],
                "config": {k: _plain(v, where) for k, v in (value.get("config") or {}).items()}}
    return value


def _dtype(value, cls, where: str):
    name = value.get("config", {}).get("name") if isinstance(value, dict) else value
    if name in ("float32", "float64"):
        return name
    if cls is layers.InputLayer and isinstance(name, str) and name.startswith(("int", "uint")):
        return None  # integer ids: fusednn's models take them as they are
    raise ValueError(f"{where}: dtype {name!r} is not supported (fusednn computes in float32 "
                     "or float64)")


def _translate_layer(item, where: str) -> dict:
    """fusednn's {"class_name", "config"} of one Keras layer config."""
    if not isinstance(item, dict) or not isinstance(item.get("class_name"), str) \
            or not isinstance(item.get("config"), dict):
        raise ValueError(f"{where}: expected a layer {{class_name, config}}, got {item!r:.200}")
    _check_builtin(item, where)
    class_name = item["class_name"]
    if class_name in _CODE_LAYERS:
        raise ValueError(f"{where}: the Keras layer class {class_name!r} holds Python code, "
                         "which fusednn never runs from a file; build that layer in code")
    if class_name not in LAYERS or class_name.lower() == "sequential":
        raise ValueError(f"{where}: the Keras layer class {class_name!r} has no fusednn "
                         f"equivalent (fusednn has {', '.join(sorted(layers.registered_classes()))}"
                         "); nothing in the file is executed")
    cls = LAYERS.lookup(class_name)
    where = f"{where}: {class_name} {item['config'].get('name', '')!r}"
    accepted = set(_accepted_keywords(cls))
    config = {}
    for key, value in item["config"].items():
        if key == "dtype":
            dtype = _dtype(value, cls, where)
            if dtype is not None:
                config["dtype"] = dtype
        elif key.endswith("_initializer") and key in accepted:
            continue  # the weights come from the file
        elif key in ("layer", "backward_layer") and key in accepted:
            config[key] = None if value is None else _translate_layer(value, where)
        elif key in accepted:
            config[key] = _plain(value, where)
        elif key in _IGNORED or (key in _NEUTRAL and value == _NEUTRAL[key]):
            continue
        else:
            raise ValueError(f"{where}: the Keras option {key}={value!r} is not supported by "
                             f"fusednn's {cls.__name__}")
    return {"class_name": class_name, "config": config}


def _tensor_refs(value, where: str):
    """Keras's saved call arguments with each tensor ({"class_name": "__keras_tensor__",
    ..., "keras_history": [layer, call, output]}) as fusednn's {"__tensor__": [...]}."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if not isinstance(history, list) or len(history) != 3:
            raise ValueError(f"{where}: a tensor without a keras_history [layer, call, output]")
        return {"__tensor__": history}
    if isinstance(value, dict):
        return {key: _tensor_refs(item, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_tensor_refs(item, where) for item in value]
    return value


def _graph_ends(value, where: str):
    """input_layers / output_layers: [layer, call, output] or a list (or dict) of them."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return {"__tensor__": value}
    if isinstance(value, list):
        return [_graph_ends(item, where) for item in value]
    if isinstance(value, dict):
        return {key: _graph_ends(item, where) for key, item in value.items()}
    raise ValueError(f"{where}: expected [layer, call, output] references, got {value!r:.100}")


def _functional_config(body: dict, path: str) -> dict:
    """fusednn's functional config (models/functional.py) of a Keras functional config:
    each layer translated, each call's single positional argument (the inputs) kept."""
    translated = []
    for index, item in enumerate(body["layers"]):
        where = f"{path}: layer {index}"
        layer = _translate_layer(item, where)
        calls = []
        for call in item.get("inbound_nodes") or []:
            args = call.get("args") if isinstance(call, dict) else None
            if not isinstance(args, list) or len(args) != 1:
                raise ValueError(f"{where}: expected each call to pass the inputs as its one "
                                 f"positional argument, got {call!r:.200}")
            calls.append({"args": _tensor_refs(args[0], where),
                          "kwargs": _tensor_refs(call.get("kwargs") or {}, where)})
        translated.append({**layer, "inbound_nodes": calls})
    return {"name": body.get("name"), "trainable": body.get("trainable", True),
            "layers": translated,
            "input_layers": _graph_ends(body.get("input_layers"), f"{path}: input_layers"),
            "output_layers": _graph_ends(body.get("output_layers"), f"{path}: output_layers")}


def _rebuild(config, path: str):
    kind = config.get("class_name") if isinstance(config, dict) else None
    if kind not in ("Sequential", "Functional"):
        raise ValueError(f"{path}: expected a Keras Sequential or functional model, got "
                         f"{kind or type(config).__name__!r} (subclassed Keras models have no "
                         "config fusednn can rebuild)")
    _check_builtin(config, path)
    body = config.get("config")
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise ValueError(f"{path}: the {kind} config has no 'layers' list")
    try:
        if kind == "Functional":
            model = deserialize_layer({"class_name": "Functional",
                                       "config": _functional_config(body, path)})
        else:
            model = Sequential([layers.deserialize(_translate_layer(item, f"{path}: layer {i}"))
                                for i, item in enumerate(body["layers"])],
                               name=body.get("name"))
        if not model.built:
            shape = body.get("build_input_shape") or (config.get("build_config") or {}).get(
                "input_shape")
            if shape is None:
                raise ValueError("the file does not say for which input shape the model is built")
            model.build(shape)
    except (TypeError, ValueError, KeyError) as e:
        message = str(e)
        if message.startswith(path):
            raise
        raise ValueError(f"{path}: cannot rebuild the model from its config: "
                         f"{type(e).__name__}: {e}") from None
    return model


def load_keras_model(path):
    """The fusednn Sequential or functional model a Keras 3 .keras file describes, with
    its weights."""
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path}: not a readable .keras zip ({type(e).__name__}: {e}); the "
                         "file may be truncated") from None
    with archive:
        config = _json(_read_member(archive, "config.json", MAX_JSON_BYTES, path),
                       "config.json", path)
        model = _rebuild(config, path)
        weights = _read_member(archive, "model.weights.h5", MAX_WEIGHTS_BYTES, path)
    load_keras_weights(model, io.BytesIO(weights), f"{path}: model.weights.h5")
    return model
