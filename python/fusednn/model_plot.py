"""Keras's `plot_model` and `model_to_dot`: a model's layers as a graph, drawn with pydot
(the `plot` extra) and Graphviz's `dot` program.

The graph: a Sequential model's layers in a chain; a functional model's layer calls,
one node per layer and an edge per inbound tensor; a subclassed model (whose `call` is
Python code, not a recorded graph) as a single node, as Keras 3 draws it. With
expand_nested, a nested model is a cluster holding its own graph, entered at its
first layers and left from its output layers.

A file ending in .dot or .gv gets the graph's text, which needs pydot only; any other
extension (png, svg, pdf, ...) is rendered by Graphviz's `dot` program.
"""
from __future__ import annotations

import os
import shutil

_RANKDIRS = ("TB", "LR", "BT", "RL")
_TEXT_FORMATS = ("dot", "gv")
_NO_PYDOT = ("You must install pydot (`pip install pydot`, or `pip install fusednn[plot]`) for "
             "`plot_model` to work.")
_NO_GRAPHVIZ = ("You must install graphviz for `plot_model` to render {extension} files: its "
                "`dot` program was not found on PATH (Debian/Ubuntu: `apt-get install graphviz`; "
                "others: https://graphviz.org/download/). A file ending in .dot needs pydot only.")


def _pydot():
    try:
        import pydot
    except ImportError:
        raise ImportError(_NO_PYDOT) from None
    return pydot


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=False,
                 rankdir="TB", expand_nested=False, dpi=200, subgraph=False):
    """The model's graph as a pydot.Dot (a pydot.Cluster with subgraph=True)."""
    what = "model_to_dot"
    if rankdir not in _RANKDIRS:
        raise ValueError(f"{what}: rankdir must be one of {list(_RANKDIRS)}, got {rankdir!r}")
    if not getattr(model, "built", False):
        raise ValueError(f"{what}: {model._label()} is not built yet, so its layers and shapes "
                         "are unknown; call it on a batch or call model.build(input_shape) first")
    pydot = _pydot()
    if subgraph:
        dot = pydot.Cluster(style="dashed", graph_name=model.name, label=model.name)
    else:
        dot = pydot.Dot(graph_type="digraph", rankdir=rankdir, concentrate=True, dpi=dpi)
        dot.set_node_defaults(shape="record")
    options = {"show_shapes": show_shapes, "show_dtype": show_dtype,
               "show_layer_names": show_layer_names, "expand_nested": expand_nested}
    _add_graph(pydot, dot, model, options)
    return dot


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=False, rankdir="TB", expand_nested=False, dpi=200):
    """Writes the model's graph to `to_file`: the Graphviz text for .dot / .gv, else an
    image rendered by Graphviz in the format the extension names (png without one).
    Keras 3's arguments and defaults (layer names off, top to bottom, 200 dpi)."""
    extension = os.path.splitext(str(to_file))[1][1:].lower() or "png"
    dot = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype,
                       show_layer_names=show_layer_names, rankdir=rankdir,
                       expand_nested=expand_nested, dpi=dpi)
    if extension in _TEXT_FORMATS:
        dot.write(str(to_file), format="raw")  # pydot's own text: no Graphviz needed
        return
    if shutil.which("dot") is None:
        raise ImportError(_NO_GRAPHVIZ.format(extension=f".{extension}"))
    dot.write(str(to_file), format=extension)


# ----- the graph -------------------------------------------------------------------

def _add_graph(pydot, dot, model, options) -> tuple[list, list]:
    """Adds `model`'s layers and edges to `dot`; returns the node ids where the model's
    graph starts and ends (its first and its output layers), for edges from outside."""
    if hasattr(model, "connections"):      # functional: the recorded layer calls
        return _add_functional(pydot, dot, model, options)
    if not _has_graph(model):              # subclassed: one node
        node = _add_layer(pydot, dot, model, model.input_shape, model.output_shape, options)
        return node, node
    previous, first = None, None            # sequential: a chain
    for layer in model.layers:
        starts, ends = _add_layer(pydot, dot, layer, layer.input_shape, layer.output_shape,
                                  options)
        if previous is not None:
            _connect(pydot, dot, previous, starts)
        first, previous = first or starts, ends
    return first or [], previous or []


def _add_functional(pydot, dot, model, options) -> tuple[list, list]:
    ends_of, starts_of = {}, {}
    for layer in model.layers:
        shapes = model.output_shapes_of(layer)
        starts_of[id(layer)], ends_of[id(layer)] = _add_layer(
            pydot, dot, layer, layer.input_shape, shapes[0] if len(shapes) == 1 else shapes,
            options)
    edges = set()
    for node in model._nodes:  # every call, in order (models/functional.py)
        for tensor in node.inbound:
            pair = (id(tensor.node.layer), id(node.layer))
            if pair not in edges:
                edges.add(pair)
                _connect(pydot, dot, ends_of[pair[0]], starts_of[pair[1]])
    starts = [n for t in model.inputs for n in starts_of[id(t.node.layer)]]
    ends = [n for t in model.outputs for n in ends_of[id(t.node.layer)]]
    return starts, ends


def _add_layer(pydot, dot, layer, input_shape, output_shape, options) -> tuple[list, list]:
    """A layer's node, or with expand_nested a nested model's cluster."""
    if options["expand_nested"] and _has_graph(layer) and layer.layers:
        cluster = pydot.Cluster(style="dashed", graph_name=f"{id(layer)}",
                                label=f"{layer.name} ({type(layer).__name__})")
        dot.add_subgraph(cluster)
        return _add_graph(pydot, cluster, layer, options)
    lines = [f"{layer.name} ({type(layer).__name__})" if options["show_layer_names"]
             else type(layer).__name__]
    if options["show_dtype"]:
        lines.append(f"dtype: {layer.dtype.name}")
    if options["show_shapes"]:
        lines.append(f"input: {_shape_text(input_shape)}")
        lines.append(f"output: {_shape_text(output_shape)}")
    node_id = str(id(layer))
    # A record label: lines become fields; the characters records treat as syntax escaped.
    label = "|".join(_escaped(line) for line in lines)
    dot.add_node(pydot.Node(node_id, label="{" + label + "}"))
    return [node_id], [node_id]


def _has_graph(layer) -> bool:
    """Whether the layer is a Sequential or functional model (a graph to expand)."""
    return hasattr(layer, "connections") or hasattr(layer, "add")


def _connect(pydot, dot, sources, targets) -> None:
    for source in sources:
        for target in targets:
            dot.add_edge(pydot.Edge(source, target))


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(_shape_text(s) for s in shape)
    return str(tuple(shape))


def _escaped(text: str) -> str:
    for mark in "\\{}|<>\"":
        text = text.replace(mark, "\\" + mark)
    return text
