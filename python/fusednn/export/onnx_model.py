"""fusednn.export.onnx: a built Sequential or functional model as an ONNX graph, layer by
layer (a functional model node by node).

The graph's input and output are the model's (same layouts: NHWC images, (N, T, F)
sequences; int64 ids for a model starting with Embedding, float32 otherwise), with a
dynamic batch dimension named "batch". Each layer is written by the exporter its class
has in onnx_layers.EXPORTERS (recurrent layers: onnx_recurrent); a functional model's
nodes are walked with the same exporters, its inputs and outputs named as the model
names them (Model.input_names / output_names). Opset 17 by default; 14 (for
HardSwish) to the newest the installed onnx knows. The model is checked with
onnx.checker before the file is written.
"""
from __future__ import annotations

import os

from .. import _C, layers
from . import onnx_recurrent  # noqa: F401  (registers the recurrent exporters)
from .graph import GraphBuilder
from ..layers.symbolic import flatten
from .onnx_layers import export_layer

DEFAULT_OPSET = 17
MIN_OPSET = 14


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("export.onnx needs the onnx package: pip install onnx (or "
                          "fusednn[onnx])") from None
    return onnx


def _value_info(onnx, name: str, element_type, shape):
    dims = ["batch"] + [None if d is None else int(d) for d in shape[1:]]
    return onnx.helper.make_tensor_value_info(name, element_type, dims)


def build_onnx_model(model, opset: int = DEFAULT_OPSET, input_name: str = "input",
                     output_name: str = "output"):
    """The checked onnx.ModelProto of a built Sequential or functional `model`."""
    onnx = _import_onnx()
    what = "export.onnx"
    if isinstance(opset, bool) or not isinstance(opset, int) \
            or not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"{what}: expected opset to be an int from {MIN_OPSET} to "
                         f"{onnx.defs.onnx_opset_version()} (the installed onnx's newest), "
                         f"got {opset!r}")
    for argument, value in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{what}: expected {argument} to be a non-empty string, "
                             f"got {value!r}")
    if input_name == output_name:
        raise ValueError(f"{what}: input_name and output_name must differ, both are "
                         f"{input_name!r}")
    if getattr(model, "layers", None) is None or not hasattr(model, "_all_layers") \
            and not hasattr(model, "_nodes"):
        raise TypeError(f"{what}: expected a fusednn Sequential or functional Model, got "
                        f"{type(model).__name__}")
    if not model.built or not model.layers:
        raise ValueError(f"{what}: {model._label()} is not built (or has no layers); build it "
                         "or call it on data first, so that its input shape is known")
    g = GraphBuilder(onnx, opset)
    walk = _graph_model if hasattr(model, "_nodes") else _sequential_model
    inputs, outputs = walk(g, model, input_name, output_name)
    graph = onnx.helper.make_graph(
        g.nodes, model.name,
        [_value_info(onnx, name, element_type, shape) for name, element_type, shape in inputs],
        [_value_info(onnx, name, onnx.TensorProto.FLOAT, shape) for name, shape in outputs],
        g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="fusednn",
                                   producer_version=_C.build_info()["version"],
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _element_type(g, first_layer):
    """int64 ids for an Embedding, float32 otherwise."""
    is_ids = isinstance(first_layer, layers.Embedding)
    return g.onnx.TensorProto.INT64 if is_ids else g.onnx.TensorProto.FLOAT


def _sequential_model(g, model, input_name: str, output_name: str):
    """The layers one after the other; ([(input name, type, shape)], [(output name, shape)])."""
    g.name(input_name)
    g.reserve(output_name)
    x, mask = input_name, None
    for layer in model.layers:
        x, mask = export_layer(g, layer, x, mask)
    g.op("Identity", [x], hint=output_name)
    return ([(input_name, _element_type(g, model.layers[0]), model.input_shape)],
            [(output_name, model.output_shape)])


def _graph_model(g, model, input_name: str, output_name: str):
    """A functional model node by node (in fusednn's depth order), its inputs and outputs
    named as the model names them (input_name / output_name are for Sequential models)."""
    names, masks = {}, {}
    for tensor, name in zip(model.inputs, model.input_names):
        names[id(tensor)] = g.name(name)
    for name in model.output_names:
        g.reserve(f"{name}_output" if name in model.input_names else name)
    for node in model._nodes:
        layer = node.layer
        if node.kwargs or len(node.outputs) != 1:
            raise ValueError(f"export.onnx: {layer._label()} is called with keyword tensors "
                             "(initial_state, ...) or returns several outputs; the export takes "
                             "one output per layer call")
        inbound = flatten(node.inputs)
        x = [names[id(t)] for t in inbound]
        x, mask = export_layer(g, layer, x[0] if len(x) == 1 else x,
                               masks.get(id(inbound[0])) if len(x) == 1 else None)
        names[id(node.outputs[0])] = x
        if mask is not None:
            masks[id(node.outputs[0])] = mask
    outputs = []
    for tensor, name in zip(model.outputs, model.output_names):
        name = f"{name}_output" if name in model.input_names else name
        g.op("Identity", [names[id(tensor)]], hint=name)
        outputs.append((name, tensor.shape))
    consumers = {id(t): [n.layer for n in model._nodes if any(t is u for u in n.inbound)]
                 for t in model.inputs}
    inputs = [(names[id(t)], _element_type(g, (consumers[id(t)] or [None])[0]), t.shape)
              for t in model.inputs]
    return inputs, outputs


def onnx(model, path, opset: int = DEFAULT_OPSET, input_name: str = "input",
         output_name: str = "output") -> None:
    """Writes the built Sequential or functional `model` to `path` as ONNX (see the module
    docstring). A layer without an ONNX export raises ValueError naming it, before
    anything is written."""
    proto = build_onnx_model(model, opset, input_name, output_name)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"export.onnx: cannot write {path}: the folder {folder} does "
                                "not exist")
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
