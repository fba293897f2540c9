"""Rebuilding a functional model's graph from its config (Functional.get_config's format):
each layer is deserialized once (known classes only), then its recorded calls are replayed
on symbolic tensors as soon as the tensors they read exist. A call that never becomes
ready reads a tensor of a layer that is not in the config, or is part of a cycle."""
from __future__ import annotations

from ..layers.symbolic import flatten
from .registry import deserialize_layer


def rebuild(config):
    """(inputs, outputs) structures of symbolic tensors for config["input_layers"] and
    config["output_layers"]."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(f"Functional.from_config: expected a dict with a 'layers' list, got "
                         f"{config!r:.200}")
    layers, pending = {}, []
    for item in config["layers"]:
        if not isinstance(item, dict) or not isinstance(item.get("inbound_nodes"), list):
            raise ValueError(f"Functional.from_config: expected each layer as a dict with "
                             f"'class_name', 'config' and 'inbound_nodes', got {item!r:.200}")
        layer = deserialize_layer({"class_name": item.get("class_name"),
                                   "config": item.get("config")})
        if layer.name in layers:
            raise ValueError(f"Functional.from_config: two layers are named {layer.name!r}")
        layers[layer.name] = layer
        pending += [(layer, index, call) for index, call in enumerate(item["inbound_nodes"])]
    tensors = {}  # (layer name, node index) -> the call's output tensors
    for name, layer in layers.items():
        if getattr(layer, "is_input_layer", False):
            tensors[(name, 0)] = [layer.output_tensor()]

    def resolve(value):
        layer_name, node, index = _reference(value)
        if layer_name not in layers:
            raise ValueError(f"Functional.from_config: a call reads a tensor of layer "
                             f"{layer_name!r}, which is not in the config")
        outputs = tensors[(layer_name, node)]
        if not 0 <= index < len(outputs):
            raise ValueError(f"Functional.from_config: a call reads output {index} of "
                             f"{layer_name}[{node}], which has {len(outputs)} output(s)")
        return outputs[index]

    def ready(value):
        refs = [_reference(leaf) for leaf in _leaves(value)
                if isinstance(leaf, dict) and "__tensor__" in leaf]
        return all((ref[0], ref[1]) in tensors or ref[0] not in layers for ref in refs)

    while pending:
        waiting = []
        for layer, index, call in pending:
            if not isinstance(call, dict) or not ready(call):
                waiting.append((layer, index, call))
                continue
            args = _structure(call.get("args"), resolve)
            kwargs = {key: _structure(value, resolve)
                      for key, value in (call.get("kwargs") or {}).items()}
            outputs = layer(args, **kwargs)
            tensors[(layer.name, index)] = flatten(outputs)
        if len(waiting) == len(pending):
            names = sorted({f"{layer.name}[{index}]" for layer, index, _ in waiting})
            raise ValueError(f"Functional.from_config: the calls {names} never get their "
                             "inputs: the graph has a cycle or a malformed call")
        pending = waiting
    return (_structure(config.get("input_layers"), resolve),
            _structure(config.get("output_layers"), resolve))


def _reference(value) -> tuple:
    """(layer name, call index, output index) of a saved tensor reference."""
    ref = value["__tensor__"]
    if not (isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ref[1:])):
        raise ValueError(f"Functional.from_config: expected a tensor reference [layer name, "
                         f"call index, output index], got {ref!r:.100}")
    return tuple(ref)


def _structure(value, resolve):
    """A saved structure of tensor references (a reference, a list or a dict of them)
    with each reference resolved."""
    if isinstance(value, dict) and "__tensor__" in value:
        return resolve(value)
    if isinstance(value, dict):
        return {key: _structure(item, resolve) for key, item in value.items()}
    if isinstance(value, list):
        return [_structure(item, resolve) for item in value]
    return value


def _leaves(value) -> list:
    if isinstance(value, dict) and "__tensor__" not in value:
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
