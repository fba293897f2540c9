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

Forward ops return the cache (None unless training=True): a dict holding the
arrays the backward needs, owned by NumPy/CuPy, including references to the
inputs x, c0, kernel, recurrent_kernel and the masks (do not modify those in
place between forward and backward). Backward ops take the gradient dy of every
step's output (zeros where unused) and of the final states (None means zero)
and return the gradients of the inputs and the weights.

Forward ops take algorithm='auto' | 'per_step' | 'persistent' (CuPy arrays
only; the CPU kernels take 'auto'): on the GPU, 'per_step' runs a recurrent
GEMM and one fused pointwise kernel per step, 'persistent' one cooperative
kernel that keeps the recurrent weights in shared memory across all steps
(LSTM, GRU with reset_after, SimpleRNN; a RuntimeError where it cannot run),
'auto' the persistent kernel where it fits. recurrent_algorithm(cache) says
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

import numpy as np

from .. import _C, backend

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
    (N, U) the final states, cache a dict for lstm_backward (None unless training).
    """
    op = "lstm_forward"
    p = _Problem(op, 4, x, kernel, recurrent_kernel, h0=h0, c0=c0, mask=mask,
                 recurrent_mask=recurrent_mask, algorithm=algorithm)
    p.expect_bias(bias, (4 * p.U,))
    xp, N, T, U = p.xp, p.N, p.T, p.U
    y = xp.empty((N, T, U), dtype=p.dtype)
    h_T = xp.empty((N, U), dtype=p.dtype)
    c_T = xp.empty((N, U), dtype=p.dtype)
    gates = xp.empty((N, T, 4 * U), dtype=p.dtype)
    cell = xp.empty((N, T, U), dtype=p.dtype) if training else None
    h_in = xp.empty((N, T, U), dtype=p.dtype) if training else None
    args = (p.x, p.h0, p.c0, p.kernel, p.recurrent_kernel, p.bias, p.mask, p.recurrent_mask,
            y, h_T, c_T, gates, cell, h_in)
    algorithm = p.run_forward("lstm_forward", args)
    if not training:
        return y, h_T, c_T, None
    cache = p.cache("lstm", algorithm, gates=gates, cell=cell, h_in=h_in, c0=p.c0)
    return y, h_T, c_T, cache


def lstm_backward(dy, dh_T, dc_T, cache):
    """Gradients of an LSTM sequence from the cache of lstm_forward(training=True).

    dy (N, T, U) gradient w.r.t. y; dh_T, dc_T (N, U) or None (zero).
    Returns (dx, dh0, dc0, dkernel, drecurrent_kernel, dbias) in the shapes of
    x, h0, c0, kernel, recurrent_kernel, bias.
    """
    op = "lstm_backward"
    c = _checked_cache(op, cache, "lstm")
    _array_module(op, x=c["x"], dy=dy, dh_T=dh_T, dc_T=dc_T)
    xp, dtype = c["xp"], c["dtype"]
    N, T, F, U = c["shape"]
    dy = _checked_float(op, "dy", dy, xp, dtype, (N, T, U), "(N, T, U)")
    dh_T = _checked_float(op, "dh_T", dh_T, xp, dtype, (N, U), "(N, U)", optional=True)
    dc_T = _checked_float(op, "dc_T", dc_T, xp, dtype, (N, U), "(N, U)", optional=True)
    dx = xp.empty((N, T, F), dtype=dtype)
    dh0 = xp.empty((N, U), dtype=dtype)
    dc0 = xp.empty((N, U), dtype=dtype)
    dkernel = xp.empty((F, 4 * U), dtype=dtype)
    drecurrent_kernel = xp.empty((U, 4 * U), dtype=dtype)
    dbias = xp.empty((4 * U,), dtype=dtype)
    dgates = xp.empty((N, T, 4 * U), dtype=dtype)
    args = (c["x"], c["c0"], c["kernel"], c["recurrent_kernel"], c["mask"], c["recurrent_mask"],
            c["gates"], c["cell"], c["h_in"], dy, dh_T, dc_T, dx, dh0, dc0, dkernel,
            drecurrent_kernel, dbias, dgates)
    _run_backward(c, "lstm_backward", args)
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
    p = _Problem(op, 3, x, kernel, recurrent_kernel, h0=h0, mask=mask,
                 recurrent_mask=recurrent_mask, algorithm=algorithm)
    p.expect_bias(bias, (2, 3 * p.U) if reset_after else (3 * p.U,))
    xp, N, T, U = p.xp, p.N, p.T, p.U
    y = xp.empty((N, T, U), dtype=p.dtype)
    h_T = xp.empty((N, U), dtype=p.dtype)
    gates = xp.empty((N, T, 3 * U), dtype=p.dtype)
    h_in = h_prev = recurrent_h = None
    if training:
        h_in = xp.empty((N, T, U), dtype=p.dtype)
        recurrent_h = xp.empty((N, T, U), dtype=p.dtype)
        # Without a recurrent mask the state before each step is h_in itself.
        if p.recurrent_mask is not None:
            h_prev = xp.empty((N, T, U), dtype=p.dtype)
    args = (reset_after, p.x, p.h0, p.kernel, p.recurrent_kernel, p.bias.reshape(-1), p.mask,
            p.recurrent_mask, y, h_T, gates, h_in, h_prev, recurrent_h)
    algorithm = p.run_forward("gru_forward", args)
    if not training:
        return y, h_T, None
    cache = p.cache("gru", algorithm, gates=gates, h_in=h_in, h_prev=h_prev,
                    recurrent_h=recurrent_h, reset_after=reset_after)
    return y, h_T, cache


def gru_backward(dy, dh_T, cache):
    """Gradients of a GRU sequence from the cache of gru_forward(training=True).

    dy (N, T, U), dh_T (N, U) or None. Returns (dx, dh0, dkernel,
    drecurrent_kernel, dbias) in the shapes of x, h0, kernel, recurrent_kernel, bias.
    """
    op = "gru_backward"
    c = _checked_cache(op, cache, "gru")
    _array_module(op, x=c["x"], dy=dy, dh_T=dh_T)
    xp, dtype = c["xp"], c["dtype"]
    N, T, F, U = c["shape"]
    reset_after = c["reset_after"]
    dy = _checked_float(op, "dy", dy, xp, dtype, (N, T, U), "(N, T, U)")
    dh_T = _checked_float(op, "dh_T", dh_T, xp, dtype, (N, U), "(N, U)", optional=True)
    dx = xp.empty((N, T, F), dtype=dtype)
    dh0 = xp.empty((N, U), dtype=dtype)
    dkernel = xp.empty((F, 3 * U), dtype=dtype)
    drecurrent_kernel = xp.empty((U, 3 * U), dtype=dtype)
    dbias = xp.empty((2, 3 * U) if reset_after else (3 * U,), dtype=dtype)
    dgates = xp.empty((N, T, 3 * U), dtype=dtype)
    dgates_recurrent = xp.empty((N, T, 3 * U), dtype=dtype) if reset_after else None
    args = (reset_after, c["x"], c["kernel"], c["recurrent_kernel"], c["mask"],
            c["recurrent_mask"], c["gates"], c["h_in"], c["h_prev"], c["recurrent_h"], dy, dh_T,
            dx, dh0, dkernel, drecurrent_kernel, dbias.reshape(-1), dgates, dgates_recurrent)
    _run_backward(c, "gru_backward", args)
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
    p = _Problem(op, 1, x, kernel, recurrent_kernel, h0=h0, mask=mask,
                 recurrent_mask=recurrent_mask, algorithm=algorithm)
    p.expect_bias(bias, (p.U,))
    xp, N, T, U = p.xp, p.N, p.T, p.U
    y = xp.empty((N, T, U), dtype=p.dtype)
    h_T = xp.empty((N, U), dtype=p.dtype)
    gates = xp.empty((N, T, U), dtype=p.dtype)
    h_in = xp.empty((N, T, U), dtype=p.dtype) if training else None
    args = (activation, p.x, p.h0, p.kernel, p.recurrent_kernel, p.bias, p.mask,
            p.recurrent_mask, y, h_T, gates, h_in)
    algorithm = p.run_forward("simple_rnn_forward", args)
    if not training:
        return y, h_T, None
    cache = p.cache("simple_rnn", algorithm, gates=gates, h_in=h_in, activation=activation)
    return y, h_T, cache


def simple_rnn_backward(dy, dh_T, cache):
    """Gradients of a simple RNN sequence from the cache of simple_rnn_forward(training=True).

    dy (N, T, U), dh_T (N, U) or None. Returns (dx, dh0, dkernel,
    drecurrent_kernel, dbias).
    """
    op = "simple_rnn_backward"
    c = _checked_cache(op, cache, "simple_rnn")
    _array_module(op, x=c["x"], dy=dy, dh_T=dh_T)
    xp, dtype = c["xp"], c["dtype"]
    N, T, F, U = c["shape"]
    dy = _checked_float(op, "dy", dy, xp, dtype, (N, T, U), "(N, T, U)")
    dh_T = _checked_float(op, "dh_T", dh_T, xp, dtype, (N, U), "(N, U)", optional=True)
    dx = xp.empty((N, T, F), dtype=dtype)
    dh0 = xp.empty((N, U), dtype=dtype)
    dkernel = xp.empty((F, U), dtype=dtype)
    drecurrent_kernel = xp.empty((U, U), dtype=dtype)
    dbias = xp.empty((U,), dtype=dtype)
    dgates = xp.empty((N, T, U), dtype=dtype)
    args = (c["activation"], c["x"], c["kernel"], c["recurrent_kernel"], c["mask"],
            c["recurrent_mask"], c["gates"], c["h_in"], dy, dh_T, dx, dh0, dkernel,
            drecurrent_kernel, dbias, dgates)
    _run_backward(c, "simple_rnn_backward", args)
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

class _Problem:
    """The validated, contiguous inputs of one forward call and its sizes."""

    def __init__(self, op, gate_count, x, kernel, recurrent_kernel, *, h0, c0=None,
                 mask=None, recurrent_mask=None, algorithm="auto"):
        self.op = op
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"{op}: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
        self.algorithm = algorithm
        self.gate_count = gate_count
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
                   if gate_count == 4 else None)
        self.mask = _checked_mask(op, xp, mask, (self.N, self.T))
        self.recurrent_mask = _checked_float(op, "recurrent_mask", recurrent_mask, xp,
                                             self.dtype, (self.N, U), "(N, U)", optional=True)
        self.bias = None

    def expect_bias(self, bias, shape):
        if len(shape) == 2:
            what = "(2, 3U)"
        else:
            what = {1: "(U,)", 3: "(3U,)", 4: "(4U,)"}[self.gate_count]
        self.bias = _checked_float(self.op, "bias", bias, self.xp, self.dtype, shape, what)

    def run_forward(self, kernel_name, args):
        """Calls the CPU or CUDA kernel; returns the algorithm that ran."""
        if self.xp is np:
            getattr(_C, kernel_name + "_cpu")(*args)
            return "cpu"
        shape = (self.N, self.T, self.F, self.U)
        return _run_cuda(self.x, kernel_name, args, "forward", shape, (self.algorithm,))

    def cache(self, cell_type, algorithm, **arrays):
        return dict(cell_type=cell_type, algorithm=algorithm, xp=self.xp, dtype=self.dtype,
                    shape=(self.N, self.T, self.F, self.U), x=self.x, kernel=self.kernel,
                    recurrent_kernel=self.recurrent_kernel, mask=self.mask,
                    recurrent_mask=self.recurrent_mask, **arrays)


def _run_backward(cache, kernel_name, args):
    if cache["xp"] is np:
        getattr(_C, kernel_name + "_cpu")(*args)
    else:
        _run_cuda(cache["x"], kernel_name, args, "backward", cache["shape"], ())


def _run_cuda(x, kernel_name, args, direction, shape, options):
    """The CUDA kernel with a workspace from CuPy's pool, on CuPy's current stream."""
    xp = backend.cupy_module()
    with x.device:
        elements = _C.recurrent_cuda_workspace_elements(direction, *shape)
        workspace = xp.empty((max(elements, 1),), dtype=xp.float32)
        return getattr(_C, kernel_name + "_cuda")(*args, workspace, *options,
                                                  backend.current_stream_ptr())


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
