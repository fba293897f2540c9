"""fd.utils.plot_model / model_to_dot: the graph's nodes and edges read back from the
.dot text (pydot alone), rendering through Graphviz when its `dot` program is installed,
and the messages when pydot or Graphviz is missing."""
from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

import fusednn as fd

pydot = pytest.importorskip("pydot")
# Reading the .dot text back uses pydot's parser, which calls pyparsing's old names.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated - use:DeprecationWarning")


def branching_model():
    """x -> a -> (b, c) -> add -> out: one input, a fork and a join."""
    inputs = fd.Input((3,), name="x")
    a = fd.layers.Dense(4, name="a")(inputs)
    joined = fd.layers.Add(name="add")([fd.layers.Dense(4, name="b")(a),
                                        fd.layers.Dense(4, name="c")(a)])
    return fd.Model(inputs, fd.layers.Dense(2, name="out")(joined), name="fork")


def read_graph(path):
    """({node id: label}, {(source label, target label)}, cluster labels) of a .dot file."""
    graph = pydot.graph_from_dot_file(str(path))[0]
    graphs = [graph] + graph.get_subgraphs()
    labels = {n.get_name(): n.get_label().strip('"{}').split("|")[0]
              for g in graphs for n in g.get_nodes() if n.get_label()}
    edges = {(labels[e.get_source()], labels[e.get_destination()])
             for g in graphs for e in g.get_edges()}
    clusters = [g.get_label().strip('"') for g in graph.get_subgraphs()]
    return labels, edges, clusters


def test_functional_graph_nodes_edges_and_shapes(tmp_path):
    path = tmp_path / "fork.dot"
    fd.utils.plot_model(branching_model(), to_file=path, show_shapes=True,
                        show_layer_names=True)
    labels, edges, _ = read_graph(path)
    assert sorted(labels.values()) == ["a (Dense)", "add (Add)", "b (Dense)", "c (Dense)",
                                       "out (Dense)", "x (InputLayer)"]
    assert edges == {("x (InputLayer)", "a (Dense)"), ("a (Dense)", "b (Dense)"),
                     ("a (Dense)", "c (Dense)"), ("b (Dense)", "add (Add)"),
                     ("c (Dense)", "add (Add)"), ("add (Add)", "out (Dense)")}
    text = path.read_text()
    assert "output: (None, 2)" in text and "rankdir=TB" in text and "dpi=200" in text


def test_expand_nested_draws_a_cluster_entered_and_left_at_its_ends(tmp_path):
    inner = fd.Sequential([fd.layers.Dense(4, name="i1"), fd.layers.Dense(4, name="i2")],
                          name="inner")
    model = fd.Sequential([fd.layers.Input((3,)), fd.layers.Dense(3, name="first"), inner,
                           fd.layers.Dense(1, name="last")], name="outer")
    path = tmp_path / "nested.dot"
    fd.utils.plot_model(model, to_file=path, show_layer_names=True, expand_nested=True,
                        rankdir="LR")
    labels, edges, clusters = read_graph(path)
    assert clusters == ["inner (Sequential)"]
    assert edges == {("first (Dense)", "i1 (Dense)"), ("i1 (Dense)", "i2 (Dense)"),
                     ("i2 (Dense)", "last (Dense)")}
    fd.utils.plot_model(model, to_file=path, show_layer_names=True)
    labels, edges, clusters = read_graph(path)
    assert clusters == [] and ("first (Dense)", "inner (Sequential)") in edges


def test_a_subclassed_model_is_one_node_and_names_default_off(tmp_path):
    class Net(fd.Model):
        def __init__(self):
            super().__init__()
            self.dense = fd.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    model = Net()
    with pytest.raises(ValueError, match="not built"):
        fd.utils.plot_model(model, to_file=tmp_path / "net.dot")
    model(np.ones((1, 3), np.float32))
    fd.utils.plot_model(model, to_file=tmp_path / "net.dot")
    labels, edges, _ = read_graph(tmp_path / "net.dot")
    assert list(labels.values()) == ["Net"] and edges == set()  # Keras 3: names off


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_png_is_rendered_at_the_dpi_asked(tmp_path):
    sizes = []
    for dpi in (50, 100):
        path = tmp_path / f"fork{dpi}.png"
        fd.utils.plot_model(branching_model(), to_file=path, dpi=dpi)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.append(int.from_bytes(data[16:20], "big"))  # IHDR width
    # Graphviz scales the drawing with dpi: twice the dpi, twice the width (+-2 px rounding).
    assert abs(sizes[1] - 2 * sizes[0]) <= 2


def test_missing_graphviz_or_pydot_says_what_to_install(tmp_path, monkeypatch):
    model = branching_model()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ImportError, match="apt-get install graphviz"):
        fd.utils.plot_model(model, to_file=tmp_path / "fork.png")
    assert not (tmp_path / "fork.png").exists()
    fd.utils.plot_model(model, to_file=tmp_path / "fork.dot")  # text needs pydot only
    monkeypatch.setitem(sys.modules, "pydot", None)
    with pytest.raises(ImportError, match=r"pip install pydot"):
        fd.utils.plot_model(model, to_file=tmp_path / "fork2.dot")


def test_bad_rankdir():
    with pytest.raises(ValueError, match="rankdir must be one of"):
        fd.utils.model_to_dot(branching_model(), rankdir="UP")
