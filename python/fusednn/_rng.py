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


def uniform_like(xp, shape, dtype):
    """Uniform [0, 1) draws on the device of `xp`, from the global generator."""
    if xp is np:
        return _generator.random(shape, dtype=np.float64).astype(dtype, copy=False)
    # Seed CuPy from the global generator so set_random_seed also fixes GPU draws.
    gen = xp.random.default_rng(int(_generator.integers(2**63)))
    return gen.random(shape, dtype=np.float32).astype(dtype, copy=False)
