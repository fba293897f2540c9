"""The global random generator behind initializers, dropout and shuffling.

fd.utils.set_random_seed(seed) reseeds it (and CuPy's), which makes CPU
training repeatable.
"""
import numpy as np

_generator = np.random.default_rng()


def generator() -> np.random.Generator:
    return _generator


def seed(value: int) -> None:
    global _generator
    _generator = np.random.default_rng(value)


def key(source=None) -> int:
    """A key in [0, 2**63) for a counter-based draw (dropout masks) or a CuPy generator's
    seed, from `source` (a np.random.Generator) or the global generator."""
    return int((_generator if source is None else source).integers(2**63))
