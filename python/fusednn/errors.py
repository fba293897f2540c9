"""Exception classes of fusednn beyond Python's built-in ones."""
from __future__ import annotations


class StateError(RuntimeError, ValueError):
    """A call made in the wrong order: fit before compile, backward before a training
    forward. A RuntimeError, as Keras and PyTorch raise for these, and a ValueError, as
    every other bad-input error of fusednn is one, so either `except` catches it."""
