"""Models: Sequential and load_model, with the training API they share.

    sequential.py   Sequential, the stack of layers (structure, forward/backward, config)
    training.py     Model, the Keras training API (compile/fit/evaluate/predict/save) that
                    talks to a model only through the small interface it documents
    data.py         checks and batching of the x/y/batch_size/verbose given to it
    summary.py      the summary table
    saving.py       load_model (the file format itself is fusednn.io)
"""
from .saving import load_model
from .sequential import Sequential

__all__ = ["Sequential", "load_model"]
