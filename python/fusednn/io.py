"""Saving and loading models in the safetensors format, written and read by this module.

File layout (https://github.com/huggingface/safetensors, "Format"):

    8 bytes     N, the header length, unsigned little-endian
    N bytes     JSON header, padded with spaces to a multiple of 8 bytes:
                {"<tensor name>": {"dtype": "F32"|"F64", "shape": [...],
                                   "data_offsets": [begin, end]}, ...,
                 "__metadata__": {"<key>": "<string>", ...}}
    rest        the tensors' raw little-endian bytes; offsets count from here,
                cover it without holes or overlaps

What fusednn stores:
- weights, one tensor per variable, named "<layer>/<variable>" (e.g. "dense/kernel"),
  in the model's Keras weight order;
- metadata "fusednn_config": the model's config as JSON, rebuilt on loading only
  through fusednn.layers.deserialize (known layer classes; no pickle, no import by name);
- after `model.save` of a compiled model, "fusednn_compile" (optimizer, loss and
  metrics configs) and, unless include_optimizer=False, the optimizer state:
  "fusednn_optimizer_state" is its JSON with each array replaced by
  {"__tensor__": "<name>"}, and those arrays are tensors "optimizer_state/...".

Any file name works: "model.keras" or "model.h5" are just names here, the content
is always safetensors (not Keras's zip or HDF5 formats). Writes are atomic: a
temporary file in the same folder, flushed and fsynced, then os.replace; on any
error the temporary file is removed and an existing file is left as it was.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import struct
import warnings

import numpy as np

from . import _C, backend, losses, optimizers
from . import metrics as metrics_module

_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_CODES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
# Headers beyond this are refused before parsing (the reference implementation uses 100 MB).
_MAX_HEADER_BYTES = 100_000_000
_STATE_PREFIX = "optimizer_state/"


# ----- the file format ------------------------------------------------------------

def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Atomically writes `tensors` ({name: float32/float64 NumPy or CuPy array}) and metadata."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        array = backend.to_numpy(array)
        code = _CODES.get(array.dtype)
        if code is None:
            raise ValueError(f"cannot save tensor {name!r}: dtype {array.dtype} is not float32 "
                             "or float64")
        raw = np.ascontiguousarray(array, dtype=_DTYPES[code]).reshape(-1).view(np.uint8)
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + raw.size]}
        offset += raw.size
        chunks.append(raw)
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"safetensors metadata must map strings to strings, got "
                                f"{key!r}: {type(value).__name__}")
        header["__metadata__"] = dict(metadata)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # the data starts 8-byte aligned

    temporary = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 gives the file the usual permissions (umask applied), unlike mkstemp.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            for raw in chunks:
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Makes the rename durable where the OS allows syncing a directory (not on Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def read_safetensors(path) -> tuple[dict, dict]:
    """Reads and validates a safetensors file: ({name: NumPy array} in file order, metadata).

    Every inconsistency (too short, header length beyond the file, bad JSON,
    dtypes other than F32/F64, offsets that do not match shapes or leave holes,
    truncated data) is a ValueError that names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    # The header length is checked before anything else is read, so a foreign or damaged
    # file is refused without reading (or allocating) more than its first 8 bytes.
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: not a safetensors file: {len(prefix)} bytes, fewer than "
                             "the 8-byte header length")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > size - 8:
            raise ValueError(f"{path}: the header length {header_length} is larger than the "
                             f"{size - 8} bytes that follow it (the file is truncated or not "
                             "safetensors)")
        if header_length > _MAX_HEADER_BYTES:
            raise ValueError(f"{path}: the header length {header_length} exceeds the limit of "
                             f"{_MAX_HEADER_BYTES} bytes")
        data = prefix + f.read()
    try:
        header = json.loads(data[8:8 + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: the safetensors header is not valid UTF-8 JSON "
                         f"({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the safetensors header must be a JSON object, got "
                         f"{type(header).__name__}")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"{path}: __metadata__ must map strings to strings")
    buffer = memoryview(data)[8 + header_length:]

    entries = []
    for name, info in header.items():
        entries.append(_check_entry(path, name, info))
    entries.sort(key=lambda entry: entry[0])
    position = 0
    for begin, end, name, _, _ in entries:
        if begin != position:
            raise ValueError(f"{path}: tensor {name!r} starts at data byte {begin}, but the data "
                             f"before it ends at byte {position} (overlap or hole)")
        position = end
    if position > len(buffer):
        raise ValueError(f"{path}: truncated: the tensors need {position} data bytes but the file "
                         f"holds {len(buffer)}")
    if position < len(buffer):
        raise ValueError(f"{path}: {len(buffer) - position} bytes after the last tensor belong to "
                         "no tensor")
    tensors = {}
    for begin, end, name, code, shape in entries:
        array = np.frombuffer(buffer[begin:end], dtype=_DTYPES[code])
        tensors[name] = array.astype(_DTYPES[code].newbyteorder("="), copy=True).reshape(shape)
    return tensors, metadata


def _check_entry(path, name, info):
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"{path}: tensor {name!r} must have exactly dtype, shape and "
                         f"data_offsets, got {info!r:.200}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if code not in _DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has dtype {code!r}; fusednn reads only "
                         f"{' and '.join(_DTYPES)}")
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(
            isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]):
        raise ValueError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
    expected = math.prod(shape) * _DTYPES[code].itemsize
    if offsets[1] - offsets[0] != expected:
        raise ValueError(f"{path}: tensor {name!r} of shape {tuple(shape)} and dtype {code} needs "
                         f"{expected} bytes, but its data_offsets {offsets} span "
                         f"{offsets[1] - offsets[0]}")
    return offsets[0], offsets[1], name, code, tuple(shape)


# ----- models ----------------------------------------------------------------------

def _weight_tensors(model) -> dict:
    if not model.built:
        raise ValueError(f"{model._label()}: cannot save a model that is not built (its weights "
                         "do not exist yet); build it or call it on data first")
    tensors = {}
    for var in model.variables:
        if var.name in tensors:
            raise ValueError(f"{model._label()}: two weights are named {var.name!r}; give the "
                             "layers unique names before saving")
        tensors[var.name] = var.value
    return tensors


def _model_metadata(model) -> dict:
    """Version and the model's config {"class_name", "config"}, which load_model rebuilds it
    from; serialising raises ValueError for unregistered layer classes."""
    metadata = {"format": "fusednn", "fusednn_version": _C.build_info()["version"]}
    metadata["fusednn_config"] = json.dumps({"class_name": type(model).__name__,
                                             "config": model.get_config()})
    return metadata


def save_weights(model, path) -> None:
    """Writes the model's weights to `path`, with its config when it can be serialised
    (a model holding custom, unregistered layers saves its weights without it)."""
    try:
        metadata = _model_metadata(model)
    except ValueError:
        metadata = {"format": "fusednn", "fusednn_version": _C.build_info()["version"]}
    write_safetensors(path, _weight_tensors(model), metadata)


def save_model(model, path, include_optimizer: bool = True, metadata: dict | None = None) -> None:
    """Writes config, weights, compile settings and (optionally) the optimizer state.

    metadata: extra {str: str} entries for the file's metadata (BackupAndRestore keeps
    its position in training there), written in the same atomic write.
    """
    tensors = _weight_tensors(model)
    extra = dict(metadata or {})
    metadata = _model_metadata(model)
    clash = sorted(set(extra) & set(metadata))
    if clash:
        raise ValueError(f"save_model: the extra metadata keys {clash} are fusednn's own")
    metadata.update(extra)
    if getattr(model, "optimizer", None) is not None:
        given = model.compile_arguments

        def metric_names(identifiers):
            """Metric names in compile's structure; a metric the file cannot hold is left
            out of its list (with a warning), a None of the structure is kept."""
            if isinstance(identifiers, dict) and "class_name" not in identifiers:
                return {key: metric_names(item) for key, item in identifiers.items()}
            if not isinstance(identifiers, (list, tuple)):
                return None if identifiers is None else _metric_name(identifiers, path)
            names = [metric_names(item) if item is None or isinstance(item, (list, tuple))
                     or isinstance(item, dict) and "class_name" not in item
                     else _metric_name(item, path) for item in identifiers]
            return [name for name, item in zip(names, identifiers)
                    if name is not None or item is None]

        metadata["fusednn_compile"] = json.dumps({
            "optimizer": optimizers.serialize(model.optimizer),
            "loss": _per_output(given["loss"], lambda loss: losses.serialize(losses.get(loss))),
            "loss_weights": given["loss_weights"],
            "metrics": metric_names(given["metrics"]),
            "weighted_metrics": metric_names(given["weighted_metrics"]),
        })
        if include_optimizer:
            state_tensors = {}
            tree = _encode_state(model.optimizer.get_state(), _STATE_PREFIX.rstrip("/"),
                                 state_tensors)
            clash = sorted(set(state_tensors) & set(tensors))
            if clash:
                raise ValueError(f"{model._label()}: weight names {clash} clash with the optimizer "
                                 "state's tensor names; rename those layers")
            tensors.update(state_tensors)
            metadata["fusednn_optimizer_state"] = json.dumps(tree)
    write_safetensors(path, tensors, metadata)


def _encode_state(value, name: str, tensors: dict):
    """The state as JSON, arrays moved into `tensors` under path-like names."""
    if isinstance(value, dict):
        return {str(k): _encode_state(v, f"{name}/{k}", tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_state(v, f"{name}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0 \
            and not backend.is_cuda_array(value):
        return np.asarray(value).item()
    if isinstance(value, np.ndarray) or backend.is_cuda_array(value):
        tensors[name] = value
        return {"__tensor__": name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save optimizer state entry {name!r} of type {type(value).__name__}")


def _decode_state(value, tensors: dict, path: str):
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            name = value["__tensor__"]
            if name not in tensors:
                raise ValueError(f"{path}: the optimizer state refers to tensor {name!r}, which "
                                 "the file does not hold")
            return tensors[name]
        return {k: _decode_state(v, tensors, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_state(v, tensors, path) for v in value]
    return value


def _state_tensor_names(value) -> set:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return {value["__tensor__"]}
        return set().union(*(_state_tensor_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_state_tensor_names(v) for v in value))
    return set()


def _json_metadata(path: str, metadata: dict, key: str):
    try:
        return json.loads(metadata[key])
    except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: absurd nesting
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON "
                         f"({type(e).__name__}: {e})") from None


def _assign_weights(model, weights: dict, path: str) -> None:
    """Checks every tensor against the model's variables, then copies them all.

    Matched by name when the names agree, else by order (as Keras's load_weights),
    so a model whose layers got other automatic names still loads.
    """
    variables = model.variables
    if len(weights) != len(variables):
        raise ValueError(f"{path}: the file holds {len(weights)} weight tensors "
                         f"({', '.join(weights) or 'none'}) but {model._label()} has "
                         f"{len(variables)} weights "
                         f"({', '.join(v.name for v in variables) or 'none'})")
    if set(weights) == {v.name for v in variables}:
        pairs = [(var, var.name, weights[var.name]) for var in variables]
    else:
        pairs = [(var, name, array) for var, (name, array) in zip(variables, weights.items())]
    for var, name, array in pairs:
        if tuple(array.shape) != var.shape:
            layer, _, variable = var.name.rpartition("/")
            raise ValueError(f"{path}: weight '{variable}' of layer '{layer}' has shape "
                             f"{var.shape} in the model, but the file's tensor {name!r} has shape "
                             f"{tuple(array.shape)}")
    for var, _, array in pairs:
        var.value[...] = backend.to_device(array.astype(var.value.dtype, copy=False),
                                           backend.device_of(var.value))


def _split_tensors(tensors: dict, metadata: dict, path: str):
    """(weights, optimizer state JSON or None); tensors the state refers to are not weights."""
    state = None
    if "fusednn_optimizer_state" in metadata:
        state = _json_metadata(path, metadata, "fusednn_optimizer_state")
    state_names = _state_tensor_names(state)
    weights = {name: array for name, array in tensors.items() if name not in state_names}
    return weights, state


def load_weights(model, path) -> None:
    """Loads weights from a file written by save_weights or save into `model`.

    An unbuilt model is built first for the input shape stored in the file's config.
    """
    path = os.fspath(path)
    tensors, metadata = read_safetensors(path)
    weights, _ = _split_tensors(tensors, metadata, path)
    _build_for_file(model, metadata, path)
    _assign_weights(model, weights, path)


def _build_for_file(model, metadata: dict, path: str) -> None:
    """Builds an unbuilt model for the input shape stored in the file's config."""
    if model.built:
        return
    shape = None
    if "fusednn_config" in metadata:
        shape = _json_metadata(path, metadata, "fusednn_config").get("config", {}).get(
            "build_input_shape")
    if shape is None:
        raise ValueError(f"{model._label()} is not built and {path} does not say for which "
                         "input shape; build the model (or call it on data) first")
    model.build(shape)


def load_training_state(model, path) -> dict:
    """Loads the weights and the optimizer state of a file written by save_model into
    `model`, which must be compiled with the same kind of optimizer; returns the
    file's metadata (for BackupAndRestore, which resumes training from it)."""
    path = os.fspath(path)
    tensors, metadata = read_safetensors(path)
    weights, state = _split_tensors(tensors, metadata, path)
    if state is not None and getattr(model, "optimizer", None) is None:
        raise ValueError(f"{path}: holds an optimizer state but {model._label()} has no "
                         "optimizer; compile it first")
    _build_for_file(model, metadata, path)
    _assign_weights(model, weights, path)
    if state is not None:
        try:
            model.optimizer.set_state(_decode_state(state, tensors, path))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: cannot restore the optimizer state: {e}") from e
    return metadata


def load_model(path, rebuild, compile: bool = True):
    """Rebuilds a model saved with `model.save`, with its weights and, if it was
    compiled (and compile=True), its optimizer (state included), loss and metrics.

    rebuild(config) -> model: the built model the saved config {"class_name", "config"}
    describes, raising ValueError if it describes none (fusednn.models.load_model passes
    it: this module knows the file, not the model classes)."""
    path = os.fspath(path)
    tensors, metadata = read_safetensors(path)
    if "fusednn_config" not in metadata:
        raise ValueError(f"{path}: holds no model config (metadata 'fusednn_config'); it may hold "
                         "weights only: build the model in code and call load_weights")
    config = _json_metadata(path, metadata, "fusednn_config")
    try:
        model = rebuild(config)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as e:
        raise ValueError(f"{path}: cannot rebuild the model from its saved config: "
                         f"{type(e).__name__}: {e}") from e
    weights, state = _split_tensors(tensors, metadata, path)
    _assign_weights(model, weights, path)
    if compile and "fusednn_compile" in metadata:
        settings = _json_metadata(path, metadata, "fusednn_compile")
        try:
            model.compile(optimizer=optimizers.deserialize(settings["optimizer"]),
                          loss=_per_output(settings.get("loss"), losses.deserialize),
                          loss_weights=settings.get("loss_weights"),
                          metrics=settings.get("metrics") or None,
                          weighted_metrics=settings.get("weighted_metrics") or None)
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: cannot restore the compile settings: {e}") from e
        if state is not None:
            try:
                model.optimizer.set_state(_decode_state(state, tensors, path))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: cannot restore the optimizer state: {e}") from e
    return model


def _per_output(value, convert):
    """`convert` applied to compile's argument as given: one value, a list or a dict per
    output (a serialized object, a dict with "class_name", counts as one value)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_per_output(item, convert) for item in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {key: _per_output(item, convert) for key, item in value.items()}
    return convert(value)


def _metric_name(identifier, path):
    """A metric as the file holds it (a name, or a built-in Metric class with its config),
    or None (with a warning) for a metric the file cannot hold."""
    if isinstance(identifier, dict):
        return identifier  # already serialized (a loaded model's compile arguments)
    try:
        return metrics_module.serialize(identifier)
    except (TypeError, ValueError) as e:
        warnings.warn(f"saving {path}: {e}", RuntimeWarning, stacklevel=4)
        return None
