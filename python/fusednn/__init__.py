"""fusednn: deep learning on hand-written CUDA kernels and C++ CPU fallbacks,
behind a Keras-style API."""
from . import _C, backend, initializers, regularizers
from .backend import has_cuda

__version__ = _C.build_info()["version"]
