"""Functional ops over the C++/CUDA kernels in fusednn._C.

Every op validates its inputs (shape, dtype, device) before any kernel runs and
dispatches on where the arrays live: NumPy on the CPU kernels, CuPy on the
CUDA kernels (fusednn.backend).
"""
from .conv import (conv1d, conv1d_backward, conv2d, conv2d_backward, conv2d_transpose,
                   conv2d_transpose_backward)
from .conv_pool import conv2d_max_pool2d, conv2d_max_pool2d_backward
from .gemm import batched_matmul, matmul
from .cross_entropy import softmax_cross_entropy, sparse_softmax_cross_entropy
from .dropout import dropout, dropout_mask
from .optimizer_updates import adam_update, adamax_update, lion_update, nadam_update, sgd_update
from .pooling import (avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward,
                      upsample_nearest2d, upsample_nearest2d_backward)
from .recurrent import (gru_backward, gru_forward, lstm_backward, lstm_forward,
                        recurrent_algorithm, simple_rnn_backward, simple_rnn_forward)

# Keras 3's keras.ops math, differentiable by the tape (ops/math.py, ops/tape.py). Its
# matmul replaces gemm's under the same name: plain 2-D operands still run the GEMM kernel.
from . import math as _math
from .tape import Traced, value_and_grad
globals().update({_name: getattr(_math, _name) for _name in _math.KERAS_OPS})

__all__ = [
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv2d_transpose",
    "conv2d_transpose_backward",
    "conv2d_max_pool2d",
    "conv2d_max_pool2d_backward",
    "dropout",
    "dropout_mask",
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "upsample_nearest2d",
    "upsample_nearest2d_backward",
    "adam_update",
    "adamax_update",
    "batched_matmul",
    "matmul",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "lion_update",
    "nadam_update",
    "recurrent_algorithm",
    "simple_rnn_backward",
    "simple_rnn_forward",
    "sgd_update",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
    "Traced",
    "value_and_grad",
    *(name for name in _math.KERAS_OPS if name != "matmul"),  # matmul is listed above
]
