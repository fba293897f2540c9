"""fusednn.export.onnx: a built Sequential model as an ONNX graph, layer by layer.

The graph's input and output are the model's (same layouts: NHWC images, (N, T, F)
sequences; int64 ids for a model starting with Embedding, float32 otherwise), with a
dynamic batch dimension named "batch". Each layer is written by the exporter its class
has in onnx_layers.EXPORTERS (recurrent layers: onnx_recurrent), so a graph model is
exported by walking its nodes with the same exporters. Opset 17 by default; 14 (for
HardSwish) to the newest the installed onnx knows. The model is checked with
onnx.checker before the file is written.
"""
from __future__ import annotations

import os

from .. import _C, layers
from . import onnx_recurrent  # noqa: F401  (registers the recurrent exporters)
from .graph import GraphBuilder
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
    """The checked onnx.ModelProto of a built Sequential `model`."""
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
    model_layers = getattr(model, "layers", None)
    if model_layers is None or not hasattr(model, "_all_layers"):
        raise TypeError(f"{what}: expected a fusednn Sequential model, got "
                        f"{type(model).__name__}")
    if not model.built or not model_layers:
        raise ValueError(f"{what}: {model._label()} is not built (or has no layers); build it "
                         "or call it on data first, so that its input shape is known")
    g = GraphBuilder(onnx, opset)
    g.name(input_name)
    g.reserve(output_name)
    ids = isinstance(model_layers[0], layers.Embedding)
    input_type = onnx.TensorProto.INT64 if ids else onnx.TensorProto.FLOAT
    x, mask = input_name, None
    for layer in model_layers:
        x, mask = export_layer(g, layer, x, mask)
    g.op("Identity", [x], hint=output_name)
    graph = onnx.helper.make_graph(
        g.nodes, model.name,
        [_value_info(onnx, input_name, input_type, model.input_shape)],
        [_value_info(onnx, output_name, onnx.TensorProto.FLOAT, model.output_shape)],
        g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="fusednn",
                                   producer_version=_C.build_info()["version"],
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto, full_check=True)
    return proto


def onnx(model, path, opset: int = DEFAULT_OPSET, input_name: str = "input",
         output_name: str = "output") -> None:
    """Writes the built Sequential `model` to `path` as an ONNX model (see the module
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
