"""Models: Model (functional graphs), Sequential and load_model, with the training API
they share.

    training.py      Model, the Keras training API (compile/fit/evaluate/predict/save) that
                     talks to a model only through the small interface it documents;
                     Model(inputs=, outputs=) makes a functional model
    functional.py    Functional, the model over a graph of layer calls
    graph_config.py  rebuilding a functional model's graph from its config
    sequential.py    Sequential, the stack of layers (structure, forward/backward, config)
    registry.py      the closed registry of model classes, (de)serializing a model's layers
    data.py          checks and batching of the x/y/batch_size/verbose given to it
    summary.py       the summary table
    saving.py        load_model (the file format itself is fusednn.io)
"""
from .functional import Functional
from .saving import load_model
from .sequential import Sequential
from .training import Model

__all__ = ["Functional", "Model", "Sequential", "load_model"]
