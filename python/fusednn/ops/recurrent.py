"""Fused recurrent sequence ops: LSTM, GRU and simple RNN over a whole sequence,
forward and backward (C++ kernels on NumPy arrays, CUDA kernels on CuPy arrays).

Shapes: N batch, T time steps (>= 1), F input features (>= 1), U units (>= 1).
x (N, T, F); states h0, c0 (N, U); outputs y (N, T, U), h_T, c_T (N, U).
Weights in Keras layouts and gate orders:
  LSTM       kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U,), gates (i, f, c, o)
  GRU        kernel (F, 3U), recurrent_kernel (U, 3U), gates (z, r, h);
             bias (2, 3U) = [input bias; recurrent bias] when reset_after, else (3U,);
             h' = z*h + (1-z)*hh (Keras convention)
  SimpleRNN  kernel (F, U), recurrent_kernel (U, U), bias (U,), h' = act(x W + h R + b)

mask (N, T) (bool or integer, nonzero = valid step) or None: at a masked step the
state is carried over unchanged and y repeats the previous output (zeros before
the first valid step of a row), as in Keras; masked steps get no gradient.
recurrent_mask (N, U) or None: recurrent dropout, h * recurrent_mask feeds the
recurrent matrix product (the state update uses h itself).

Forward ops return the cache (None unless training=True): an opaque dict for
the backward, holding one buffer that the kernels lay out (its arrays are
described in csrc/include/fusednn/recurrent.h) and references to the inputs
x, c0, kernel, recurrent_kernel and the masks (do not modify those in place
between forward and backward). Backward ops take the gradient dy of every
step's output (zeros where unused) and of the final states (None means zero)
and return the gradients of the inputs and the weights.

Forward ops take algorithm='auto' | 'per_step' | 'persistent' (CuPy arrays
only; the CPU kernels take 'auto'): on the GPU, 'per_step' runs a recurrent
GEMM and one fused pointwise kernel per step, 'persistent' one cooperative
kernel that keeps the recurrent weights in shared memory across all steps
(LSTM, GRU with reset_after, SimpleRNN; a RuntimeError where it cannot run),
'auto' the persistent kernel where it fits and each thread's work per step is small
(a conservative rule, csrc/cuda/recurrent_persistent.cuh). recurrent_algorithm(cache) says
which ran ('cpu' on the CPU).

Rules at this boundary:
- x must be float32 or float64 (NumPy) or float32 (CuPy); every other float
  argument (states, weights, recurrent_mask, dy, dh_T, dc_T) must have the dtype
  of x: a TypeError names the mismatch (no silent change of precision).
- mask may be bool or any integer dtype.
- Every array must live where x lives (NumPy or CuPy on one GPU): TypeError.
- Non-contiguous inputs are copied to C-contiguous arrays; lists become NumPy arrays.
- go_backwards and input dropout are the layer's business (flip / multiply x).
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np

from .. import _C, backend, shared_cores
from . import cuda_launch

__all__ = [
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "recurrent_algorithm",
    "simple_rnn_backward",
    "simple_rnn_forward",
]

_ACTIVATIONS = ("tanh", "relu")
_ALGORITHMS = ("auto", "per_step", "persistent")


# ---------------------------------------------------------------------------
# LSTM

def lstm_forward(x, h0, c0, kernel, recurrent_kernel, bias, *, mask=None, recurrent_mask=None,
                 training=False, algorithm="auto"):
    """LSTM over a sequence.

    x (N, T, F), h0 and c0 (N, U), kernel (F, 4U), recurrent_kernel (U, 4U), bias (4U,).
    Returns (y, h_T, c_T, cache): y (N, T, U) the output of every step, h_T and c_T
    (N, U) the final states, cache for lstm_backward (None unless training).
    """
    p = _Problem("lstm_forward", _Cell("lstm"), x, kernel, recurrent_kernel, h0=h0, c0=c0,
                 mask=mask, recurrent_mask=recurrent_mask, algorithm=algorithm)
    p.expect_bias(bias, (4 * p.U,), "(4U,)")
    y, h_T, c_T, cache = p.run_forward(training)
    return y, h_T, c_T, cache


def lstm_backward(dy, dh_T, dc_T, cache, *, input_grad=True):
    """Gradients of an LSTM sequence from the cache of lstm_forward(training=True).

    dy (N, T, U) gradient w.r.t. y; dh_T, dc_T (N, U) or None (zero).
    Returns (dx, dh0, dc0, dkernel, drecurrent_kernel, dbias) in the shapes of
    x, h0, c0, kernel, recurrent_kernel, bias; dx is None with input_grad=False
    (not computed: a model's first layer).
    """
    dx, dh0, dc0, dkernel, drecurrent_kernel, dbias = _backward("lstm_backward", "lstm", cache,
                                                                dy, dh_T, dc_T, input_grad)
    return dx, dh0, dc0, dkernel, drecurrent_kernel, dbias


# ---------------------------------------------------------------------------
# GRU

def gru_forward(x, h0, kernel, recurrent_kernel, bias, *, reset_after=True, mask=None,
                recurrent_mask=None, training=False, algorithm="auto"):
    """GRU over a sequence.

    x (N, T, F), h0 (N, U), kernel (F, 3U), recurrent_kernel (U, 3U),
    bias (2, 3U) when reset_after else (3U,).
    Returns (y, h_T, cache): y (N, T, U), h_T (N, U), cache for gru_backward
    (None unless training).
    """
    op = "gru_forward"
    reset_after = _checked_flag(op, "reset_after", reset_after)
    p = _Problem(op, _Cell("gru", reset_after=reset_after), x, kernel, recurrent_kernel, h0=h0,
                 mask=mask, recurrent_mask=recurrent_mask, algorithm=algorithm)
    if reset_after:
        p.expect_bias(bias, (2, 3 * p.U), "(2, 3U)")
    else:
        p.expect_bias(bias, (3 * p.U,), "(3U,)")
    y, h_T, _, cache = p.run_forward(training)
    return y, h_T, cache


def gru_backward(dy, dh_T, cache, *, input_grad=True):
    """Gradients of a GRU sequence from the cache of gru_forward(training=True).

    dy (N, T, U), dh_T (N, U) or None. Returns (dx, dh0, dkernel,
    drecurrent_kernel, dbias) in the shapes of x, h0, kernel, recurrent_kernel, bias
    (dx None with input_grad=False).
    """
    dx, dh0, _, dkernel, drecurrent_kernel, dbias = _backward("gru_backward", "gru", cache, dy,
                                                              dh_T, input_grad=input_grad)
    return dx, dh0, dkernel, drecurrent_kernel, dbias


# ---------------------------------------------------------------------------
# SimpleRNN

def simple_rnn_forward(x, h0, kernel, recurrent_kernel, bias, *, activation="tanh", mask=None,
                       recurrent_mask=None, training=False, algorithm="auto"):
    """Simple RNN over a sequence, h' = activation(x W + h R + b), activation 'tanh' or 'relu'.

    x (N, T, F), h0 (N, U), kernel (F, U), recurrent_kernel (U, U), bias (U,).
    Returns (y, h_T, cache).
    """
    op = "simple_rnn_forward"
    activation = _checked_activation(op, activation)
    p = _Problem(op, _Cell("simple_rnn", activation=activation), x, kernel, recurrent_kernel,
                 h0=h0, mask=mask, recurrent_mask=recurrent_mask, algorithm=algorithm)
    p.expect_bias(bias, (p.U,), "(U,)")
    y, h_T, _, cache = p.run_forward(training)
    return y, h_T, cache


def simple_rnn_backward(dy, dh_T, cache, *, input_grad=True):
    """Gradients of a simple RNN sequence from the cache of simple_rnn_forward(training=True).

    dy (N, T, U), dh_T (N, U) or None. Returns (dx, dh0, dkernel,
    drecurrent_kernel, dbias) (dx None with input_grad=False).
    """
    dx, dh0, _, dkernel, drecurrent_kernel, dbias = _backward(
        "simple_rnn_backward", "simple_rnn", cache, dy, dh_T, input_grad=input_grad)
    return dx, dh0, dkernel, drecurrent_kernel, dbias


def recurrent_algorithm(cache):
    """How a training forward ran: 'cpu', or on the GPU 'per_step' (a recurrent GEMM
    and a pointwise kernel per step) or 'persistent' (one cooperative kernel keeping
    the recurrent weights on chip across steps)."""
    if not isinstance(cache, dict) or "algorithm" not in cache:
        raise TypeError("recurrent_algorithm: expected the cache dict of a recurrent forward op, "
                        f"got {type(cache).__name__}")
    return cache["algorithm"]


# ---------------------------------------------------------------------------
# Validation and dispatch

class _Cell:
    """Which recurrence runs, as the kernels' bindings take it."""

    _GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}

    def __init__(self, name, *, reset_after=True, activation="tanh"):
        self.name = name
        self.gates = self._GATES[name]
        self.args = (name, reset_after, activation)


class _Problem:
    """The validated, contiguous inputs of one forward call and its sizes."""

    def __init__(self, op, cell, x, kernel, recurrent_kernel, *, h0, c0=None,
                 mask=None, recurrent_mask=None, algorithm="auto"):
        self.op = op
        self.cell = cell
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"{op}: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
        self.algorithm = algorithm
        gate_count = cell.gates
        named = dict(x=x, h0=h0, c0=c0, kernel=kernel, recurrent_kernel=recurrent_kernel,
                     mask=mask, recurrent_mask=recurrent_mask)
        self.xp = xp = _array_module(op, **named)
        if xp is np and algorithm != "auto":
            raise ValueError(f"{op}: algorithm {algorithm!r} is for CuPy arrays; "
                             "the CPU kernels take only 'auto'")
        self.x = _checked_input(op, xp, x)
        self.dtype = self.x.dtype
        self.N, self.T, self.F = self.x.shape
        rk = _as_array(xp, recurrent_kernel, op, "recurrent_kernel")
        gates = "U" if gate_count == 1 else f"{gate_count}U"
        if rk.ndim != 2 or rk.shape[0] < 1 or rk.shape[1] != gate_count * rk.shape[0]:
            raise ValueError(f"{op}: recurrent_kernel must have shape (U, {gates}) with U >= 1, "
                             f"got {tuple(rk.shape)}")
        self.U = U = rk.shape[0]
        self.recurrent_kernel = _checked_float(op, "recurrent_kernel", rk, xp, self.dtype,
                                               (U, gate_count * U), f"(U, {gates})")
        self.kernel = _checked_float(op, "kernel", kernel, xp, self.dtype,
                                     (self.F, gate_count * U), f"(F, {gates})")
        self.h0 = _checked_float(op, "h0", h0, xp, self.dtype, (self.N, U), "(N, U)")
        self.c0 = (_checked_float(op, "c0", c0, xp, self.dtype, (self.N, U), "(N, U)")
                   if cell.name == "lstm" else None)
        self.mask = _checked_mask(op, xp, mask, (self.N, self.T))
        self.recurrent_mask = _checked_float(op, "recurrent_mask", recurrent_mask, xp,
                                             self.dtype, (self.N, U), "(N, U)", optional=True)
        self.bias = None

    def expect_bias(self, bias, shape, letters):
        self.bias = _checked_float(self.op, "bias", bias, self.xp, self.dtype, shape, letters)

    def run_forward(self, training):
        """Runs the CPU or CUDA kernel. Returns (y, h_T, c_T or None, cache or None)."""
        xp, dtype, shape = self.xp, self.dtype, (self.N, self.T, self.F, self.U)
        N, T, U = self.N, self.T, self.U
        lstm = self.cell.name == "lstm"
        y = backend.empty(xp, (N, T, U), dtype)
        h_T = backend.empty(xp, (N, U), dtype)
        c_T = backend.empty(xp, (N, U), dtype) if lstm else None
        name, reset_after, _ = self.cell.args
        # The kernels lay the cache out; in inference it is their gates workspace.
        buffer = backend.empty(xp, (_cache_elements(name, reset_after, shape, training,
                                                    self.recurrent_mask is not None),), dtype)
        with _on_device(self.x):
            workspace = _workspace(xp, "forward", self.cell, shape, dtype)
            algorithm = _launch(
                xp, _C.recurrent_forward, *self.cell.args, self.x, self.h0, self.c0, self.kernel,
                self.recurrent_kernel, self.bias.reshape(-1), self.mask, self.recurrent_mask, y,
                h_T, c_T, buffer, training, workspace, self.algorithm)
        if not training:
            return y, h_T, c_T, None
        cache = dict(cell_type=name, cell=self.cell, algorithm=algorithm, xp=xp, dtype=dtype,
                     shape=shape, bias_shape=self.bias.shape, x=self.x, c0=self.c0,
                     kernel=self.kernel, recurrent_kernel=self.recurrent_kernel, mask=self.mask,
                     recurrent_mask=self.recurrent_mask, buffer=buffer)
        return y, h_T, c_T, cache


def _backward(op, cell_type, cache, dy, dh_T, dc_T=None, input_grad=True):
    """The backward kernel from a training forward's cache. Returns (dx or None, dh0,
    dc0 or None, dkernel, drecurrent_kernel, dbias)."""
    if not isinstance(input_grad, bool):
        raise TypeError(f"{op}: expected input_grad to be True or False, got {input_grad!r}")
    c = _checked_cache(op, cache, cell_type)
    _array_module(op, x=c["x"], dy=dy, dh_T=dh_T, dc_T=dc_T)
    xp, dtype = c["xp"], c["dtype"]
    N, T, F, U = shape = c["shape"]
    G = c["cell"].gates * U
    dy = _checked_float(op, "dy", dy, xp, dtype, (N, T, U), "(N, T, U)")
    dh_T = _checked_float(op, "dh_T", dh_T, xp, dtype, (N, U), "(N, U)", optional=True)
    dc_T = _checked_float(op, "dc_T", dc_T, xp, dtype, (N, U), "(N, U)", optional=True)
    lstm = cell_type == "lstm"
    dx = backend.empty(xp, (N, T, F), dtype) if input_grad else None
    dh0 = backend.empty(xp, (N, U), dtype)
    dc0 = backend.empty(xp, (N, U), dtype) if lstm else None
    dkernel = backend.empty(xp, (F, G), dtype)
    drecurrent_kernel = backend.empty(xp, (U, G), dtype)
    dbias = xp.empty(c["bias_shape"], dtype=dtype)
    with _on_device(c["x"]):
        workspace = _workspace(xp, "backward", c["cell"], shape, dtype)
        _launch(xp, _C.recurrent_backward, *c["cell"].args, c["x"], c["c0"], c["kernel"],
                c["recurrent_kernel"], c["mask"], c["recurrent_mask"], c["buffer"], dy, dh_T,
                dc_T, dx, dh0, dc0, dkernel, drecurrent_kernel, dbias.reshape(-1), workspace)
    return dx, dh0, dc0, dkernel, drecurrent_kernel, dbias


def _launch(xp, kernel, *args):
    """kernel(*args, stream); on the CPU (stream 0) through shared_cores, which runs it on
    the cores other programs leave free. args[3] is x (after the cell's three arguments)."""
    if xp is np:
        return shared_cores.run(kernel, *args, 0)
    return cuda_launch.launch(kernel, args[3], *args)


def _workspace(xp, direction, cell, shape, dtype):
    """The kernels' workspace (on the GPU from CuPy's pool, on x's device)."""
    name, reset_after, _ = cell.args
    elements = _workspace_elements(direction, name, reset_after, shape, xp is not np)
    return backend.empty(xp, (max(elements, 1),), dtype)  # never empty, as before on the GPU


# The size queries, remembered: a layer calls with the same shapes at every
# step, and the two binding calls cost ~3 us, ~5% of a small LSTM forward
# (N=1, U=64, T=60, 1 thread: 71 -> 68 us, best of 15 x 50 calls, 3 runs at
# load average 16, so indicative only).
@functools.lru_cache(maxsize=256)
def _cache_elements(name, reset_after, shape, training, recurrent_masked):
    return _C.recurrent_cache_elements(name, reset_after, *shape, training, recurrent_masked)


@functools.lru_cache(maxsize=256)
def _workspace_elements(direction, name, reset_after, shape, on_gpu):
    return _C.recurrent_workspace_elements(direction, name, reset_after, *shape, on_gpu)


def _on_device(x):
    return contextlib.nullcontext() if isinstance(x, np.ndarray) else x.device


def _checked_cache(op, cache, cell_type):
    if not isinstance(cache, dict) or cache.get("cell_type") is None:
        raise TypeError(f"{op}: cache must be the dict returned by a forward op with "
                        f"training=True, got {type(cache).__name__}")
    if cache["cell_type"] != cell_type:
        raise ValueError(f"{op}: cache comes from a {cache['cell_type']} forward, "
                         f"expected a {cell_type} one")
    return cache


def _array_module(op, **arrays):
    try:
        xp = backend.get_array_module(*arrays.values())
    except TypeError as e:
        raise TypeError(f"{op}: {e}") from None
    backend.check_cuda_kernels(op, xp)
    if xp is not np:
        devices = {name: a.device.id for name, a in arrays.items() if a is not None}
        if len(set(devices.values())) > 1:
            raise TypeError(f"{op}: inputs are on different GPUs: {devices}")
    return xp


def _as_array(xp, a, op, name):
    if xp is np and not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{op}: {name} must be an array of numbers ({e})") from None
    return a


def _checked_input(op, xp, x):
    x = _as_array(xp, x, op, "x")
    if x.ndim != 3:
        raise ValueError(f"{op}: x must be 3-D (N, T, F), got shape {tuple(x.shape)}")
    if x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"{op}: x needs at least one time step and one feature (T, F >= 1), "
                         f"got shape {tuple(x.shape)}")
    allowed = ("float32", "float64") if xp is np else ("float32",)
    if x.dtype.name not in allowed:
        where = "NumPy" if xp is np else "CuPy"
        raise TypeError(f"{op}: {where} x must be {' or '.join(allowed)}, got dtype {x.dtype}")
    return xp.ascontiguousarray(x)


def _checked_float(op, name, a, xp, dtype, shape, letters, optional=False):
    if a is None:
        if optional:
            return None
        raise TypeError(f"{op}: {name} is required, got None")
    a = _as_array(xp, a, op, name)
    if a.dtype != dtype:
        raise TypeError(f"{op}: {name} must have the dtype of x ({dtype}), got {a.dtype}")
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {letters} = {tuple(shape)}, "
                         f"got {tuple(a.shape)}")
    return xp.ascontiguousarray(a)


def _checked_mask(op, xp, mask, shape):
    if mask is None:
        return None
    mask = _as_array(xp, mask, op, "mask")
    if mask.dtype.kind not in "biu":
        raise TypeError(f"{op}: mask must be a bool or integer array, got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{op}: mask must have shape (N, T) = {tuple(shape)}, "
                         f"got {tuple(mask.shape)}")
    return xp.ascontiguousarray(mask != 0).view(xp.uint8)


def _checked_flag(op, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be True or False, got {value!r}")
    return bool(value)


def _checked_activation(op, activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{op}: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    return activation
