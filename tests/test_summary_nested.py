"""model.summary(expand_nested=True) for Sequential, functional and subclassed models:
the rows of nested models' layers follow their model's row, indented as Keras 3 does
("   " per level, then "└ "), checked against Keras 3's own summary of the same models
(names and parameter counts; fusednn keeps Keras 2's plain-text table around them)."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import fusednn as fd


def nested_models(lib):
    """A Sequential holding a functional model holding a Sequential, in fusednn or Keras."""
    encoder = lib.Sequential([lib.layers.Input((4,)), lib.layers.Dense(5, name="enc_dense"),
                              lib.layers.Dense(3, name="enc_out")], name="encoder")
    inputs = lib.Input((4,), name="x")
    outer = lib.Model(inputs, lib.layers.Dense(2, name="head")(encoder(inputs)), name="outer")
    return lib.Sequential([lib.layers.Input((4,)), outer, lib.layers.Dense(1, name="last")],
                          name="seq")


def fusednn_rows(model, **options):
    """(layer column, param column) of each row of the table between the '=' rules."""
    lines = []
    model.summary(print_fn=lines.append, **options)
    rules = [i for i, line in enumerate(lines) if line.startswith("=")]
    rows = lines[rules[0] + 1:rules[1]]
    width = len(lines[1])
    name_end = int(width * (0.45 if "Connected" not in lines[2] else 0.33))
    return [(row[1:name_end].rstrip(), row.split()[-1]) for row in rows]


def test_nested_rows_match_keras3():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    printed = []
    nested_models(keras).summary(expand_nested=True,
                                 print_fn=lambda text, line_break=None: printed.append(text))
    keras_rows = [(name.rstrip(), params.strip())
                  for name, _, params in re.findall(r"│ (.*?)│(.*?)│(.*?)│", "\n".join(printed))]
    assert fusednn_rows(nested_models(fd), expand_nested=True) == keras_rows


def test_collapsed_by_default_and_nesting_in_a_subclassed_model():
    model = nested_models(fd)
    assert [name for name, _ in fusednn_rows(model)] == ["outer (Functional)", "last (Dense)"]

    class Wrapper(fd.Model):
        def __init__(self):
            super().__init__(name="wrapper")
            self.body = model
            self.spare = fd.layers.Dense(7, name="spare")  # never called

        def call(self, inputs):
            return self.body(inputs)

    wrapper = Wrapper()
    wrapper(np.ones((2, 4), np.float32))
    lines = []
    # 80 columns: wide enough that no name wraps onto a second line.
    wrapper.summary(print_fn=lines.append, expand_nested=True, line_length=80)
    body = lines[lines.index("=" * 80) + 1:]
    assert body[:9] == [
        " seq (Sequential)                   (None, 1)                       54",
        "    └ outer (Functional)            (None, 2)                       51",
        "       └ x (InputLayer)             [(None, 4)]                     0",
        "       └ encoder (Sequential)       (None, 3)                       43",
        "          └ enc_dense (Dense)       (None, 5)                       25",
        "          └ enc_out (Dense)         (None, 3)                       18",
        "       └ head (Dense)               (None, 2)                       8",
        "    └ last (Dense)                  (None, 1)                       3",
        # As Keras: a tracked layer that call() never used is unbuilt: "0 (unused)".
        " spare (Dense)                      ?                               0 (unused)",
    ]
    assert "Total params: 54" in lines
