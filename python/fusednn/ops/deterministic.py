"""fd.utils.set_deterministic / fd.utils.is_deterministic: whether GPU gradients are
bitwise the same from run to run (the switch of PyTorch's
torch.use_deterministic_algorithms and TensorFlow's enable_op_determinism; Keras 3 has
none of its own).

The CUDA conv kernel gradient (split over the pixels) and bias gradient (split over row
blocks) otherwise add their blocks' partial sums with float atomics, in whatever order
the blocks finish. Deterministic mode writes the partial sums apart and adds them in a
fixed order (csrc/include/fusednn/determinism.h). It is on by default: it replaces the
atomic additions by as many plain stores plus one read of them. The CPU kernels are
deterministic either way.
"""
from __future__ import annotations

import numpy as np

from .. import _C


def set_deterministic(enabled: bool) -> None:
    """Turns deterministic mode for the GPU reductions on (the default) or off."""
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"set_deterministic: expected True or False, got "
                        f"{type(enabled).__name__} {enabled!r}")
    _C.set_deterministic(bool(enabled))


def is_deterministic() -> bool:
    """Whether the GPU reductions sum in a fixed order (set_deterministic)."""
    return _C.get_deterministic()
