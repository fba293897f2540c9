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


KEY_BOUND = 2**63  # what CuPy's generators take as a seed


def key(source=None) -> int:
    """A key in [0, KEY_BOUND) for a counter-based draw (dropout masks) or a CuPy
    generator's seed, from `source` (a np.random.Generator) or the global generator."""
    return int((_generator if source is None else source).integers(KEY_BOUND))
