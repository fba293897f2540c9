"""fusednn: deep learning on hand-written CUDA kernels and C++ CPU fallbacks,
behind a Keras-style API.

    import fusednn as fd
    model = fd.Sequential([fd.layers.Dense(10, activation="softmax", input_shape=(64,))])
"""
from . import _C, backend, errors
from . import activations, constraints, initializers, regularizers, ops
from . import layers, losses, optimizers, metrics, callbacks, models, utils, convert, export
from . import distribute
from ._info import info
from .backend import has_cuda
from .layers import Input
from .models import Model, Sequential, load_model
from .utils import get_num_threads, set_num_threads

__version__ = _C.build_info()["version"]

__all__ = [
    "Input", "Model", "Sequential", "activations", "backend", "callbacks", "constraints",
    "convert", "distribute", "errors", "export", "get_num_threads", "has_cuda", "info",
    "initializers", "layers", "load_model", "losses", "metrics", "models", "ops", "optimizers",
    "regularizers", "set_num_threads", "utils",
]
