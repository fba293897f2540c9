"""Fused optimizer updates: one kernel call updates every tensor of a model.

Each function takes parallel lists with one entry per parameter tensor
(params[i], grads[i] and the state arrays of tensor i share one shape P_i),
all on one device (NumPy: CPU kernels, CuPy: CUDA kernels) and of one dtype
(float32 or float64 on the CPU, float32 on the GPU). Parameters and state are
updated in place, so they must be C-contiguous and writeable: no copy is ever
made of them (a copy would swallow the update). Non-contiguous gradients are
copied to contiguous arrays. Formulas are Keras's, with decoupled weight decay.
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from .. import _C, backend, shared_cores
from . import cuda_launch


def adam_update(params, grads, ms, vs, *, learning_rate, beta_1, beta_2, epsilon, step,
                weight_decay=0.0):
    """Adam (AdamW when weight_decay > 0) at step `step` (t >= 1), in place, Keras form:

        alpha = learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m += (1 - beta_1) * (g - m);   v += (1 - beta_2) * (g^2 - v)
        p -= learning_rate * weight_decay * p
        p -= alpha * m / (sqrt(v) + epsilon)

    params, grads, ms, vs: lists of arrays, entry i of shape P_i in all four.
    """
    op = "adam_update"
    lr, b1, b2, eps, t, wd = _adam_family_hyperparameters(op, learning_rate, beta_1, beta_2,
                                                          epsilon, step, weight_decay)
    _run(op, {"params": params, "grads": grads, "ms": ms, "vs": vs}, ("params", "ms", "vs"),
         lr, b1, b2, eps, t, wd)


def sgd_update(params, grads, moments, *, learning_rate, momentum=0.0, nesterov=False,
               weight_decay=0.0):
    """SGD, in place, Keras form:

        p -= learning_rate * weight_decay * p
        m = momentum * m - learning_rate * g
        p += momentum * m - learning_rate * g   if nesterov else   p += m

    and without moments (momentum == 0): p -= learning_rate * g.
    params, grads, moments: lists of arrays, entry i of shape P_i; moments is None
    for plain SGD and required when momentum > 0.
    """
    op = "sgd_update"
    lr = _real(op, "learning_rate", learning_rate, low=0.0)
    mom = _real(op, "momentum", momentum, low=0.0, high=1.0, high_inclusive=True)
    wd = _real(op, "weight_decay", weight_decay, low=0.0, high_inclusive=True, high=math.inf)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"{op}: nesterov must be True or False, got {nesterov!r}")
    if moments is None and mom > 0.0:
        raise ValueError(f"{op}: momentum = {mom} needs a list of moment buffers, got moments=None")
    hyperparameters = (lr, mom, bool(nesterov), wd)
    if moments is None:   # the kernel's moments argument is None, after the two lists
        _run(op, {"params": params, "grads": grads}, ("params",), None, *hyperparameters)
    else:
        _run(op, {"params": params, "grads": grads, "moments": moments}, ("params", "moments"),
             *hyperparameters)


def nadam_update(params, grads, ms, vs, *, learning_rate, beta_1, beta_2, epsilon, step,
                 u_product, weight_decay=0.0):
    """Nadam at step `step` (t >= 1), in place, Keras 3 form; returns the new u_product.

    With the momentum cache u_s = beta_1 (1 - 0.5 * 0.96^s) and U_t = u_1 ... u_t
    (`u_product` is U_{t-1}: 1.0 before the first step; the return value is U_t):

        m += (1 - beta_1) * (g - m);   v += (1 - beta_2) * (g^2 - v)
        p -= learning_rate * weight_decay * p
        m_hat = u_{t+1} m / (1 - U_t u_{t+1}) + (1 - u_t) g / (1 - U_t)
        p -= learning_rate * m_hat / (sqrt(v / (1 - beta_2^t)) + epsilon)

    The coefficients are computed once, in csrc/include/fusednn/optimizers.h.
    """
    op = "nadam_update"
    lr, b1, b2, eps, t, wd = _adam_family_hyperparameters(op, learning_rate, beta_1, beta_2,
                                                          epsilon, step, weight_decay)
    previous = _real(op, "u_product", u_product, low=0.0, high=1.0, high_inclusive=True)
    u_product = _run(op, {"params": params, "grads": grads, "ms": ms, "vs": vs},
                     ("params", "ms", "vs"), lr, b1, b2, eps, t, previous, wd)
    if u_product is None:   # nothing to update; the kernel's entry still advances U
        u_product = _C.nadam_update_cpu([], [], [], [], lr, b1, b2, eps, t, previous, wd)
    return u_product


def adamax_update(params, grads, ms, us, *, learning_rate, beta_1, beta_2, epsilon, step,
                  weight_decay=0.0):
    """Adamax at step `step` (t >= 1), in place, Keras 3 form (u: the infinity norm):

        m += (1 - beta_1) * (g - m);   u = max(beta_2 * u, |g|)
        p -= learning_rate * weight_decay * p
        p -= learning_rate / (1 - beta_1^t) * m / (u + epsilon)
    """
    op = "adamax_update"
    lr, b1, b2, eps, t, wd = _adam_family_hyperparameters(op, learning_rate, beta_1, beta_2,
                                                          epsilon, step, weight_decay)
    _run(op, {"params": params, "grads": grads, "ms": ms, "us": us}, ("params", "ms", "us"),
         lr, b1, b2, eps, t, wd)


def lion_update(params, grads, ms, *, learning_rate, beta_1, beta_2, weight_decay=0.0):
    """Lion, in place, Keras 3 form (sign(0) = 0):

        p -= learning_rate * weight_decay * p
        p -= learning_rate * sign(beta_1 * m + (1 - beta_1) * g)
        m = beta_2 * m + (1 - beta_2) * g
    """
    op = "lion_update"
    lr = _real(op, "learning_rate", learning_rate, low=0.0)
    b1 = _real(op, "beta_1", beta_1, low=0.0, high=1.0, high_inclusive=True)
    b2 = _real(op, "beta_2", beta_2, low=0.0, high=1.0, high_inclusive=True)
    wd = _real(op, "weight_decay", weight_decay, low=0.0, high_inclusive=True, high=math.inf)
    _run(op, {"params": params, "grads": grads, "ms": ms}, ("params", "ms"), lr, b1, b2, wd)


def _adam_family_hyperparameters(op, learning_rate, beta_1, beta_2, epsilon, step, weight_decay):
    """(learning_rate, beta_1, beta_2, epsilon, step, weight_decay), checked."""
    return (_real(op, "learning_rate", learning_rate, low=0.0),
            _real(op, "beta_1", beta_1, low=0.0, high=1.0),
            _real(op, "beta_2", beta_2, low=0.0, high=1.0),
            _real(op, "epsilon", epsilon, low=0.0, high_inclusive=True, high=math.inf),
            _step(op, step),
            _real(op, "weight_decay", weight_decay, low=0.0, high_inclusive=True, high=math.inf))


def _run(op, named, state, *hyperparameters):
    """Checks the lists (`_checked_lists`), then runs `_C.<op>_cpu` on NumPy arrays or
    `_C.<op>_cuda` on CuPy arrays with the lists and the hyperparameters; returns the
    kernel's result, or None (and runs nothing) when the lists are empty."""
    lists = _checked_lists(op, named, state=state)
    if lists is None:
        return None
    xp, arrays = lists
    if xp is np:
        return shared_cores.run(getattr(_C, f"{op}_cpu"), *arrays, *hyperparameters)
    return cuda_launch.launch(getattr(_C, f"{op}_cuda"), arrays[0][0], *arrays, *hyperparameters)


def _real(op, name, value, *, low, high=math.inf, high_inclusive=False):
    """A finite float in [low, high) (or [low, high] with high_inclusive)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    value = float(value)
    above = value > high if high_inclusive else value >= high
    if not math.isfinite(value) or value < low or above:
        interval = f"[{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"{op}: {name} must be finite and in {interval}, got {value}")
    return value


def _step(op, step):
    if isinstance(step, (bool, np.bool_)):
        raise TypeError(f"{op}: step must be an integer >= 1, got {step!r}")
    try:
        t = operator.index(step)
    except TypeError:
        raise TypeError(f"{op}: step must be an integer >= 1, got {step!r}") from None
    if t < 1:
        raise ValueError(f"{op}: step must be an integer >= 1 (the count of updates including "
                         f"this one), got {t}")
    return t


def _checked_lists(op, named, state):
    """Validates the parallel lists; returns (xp, [list per name]) or None when empty.

    `state` names the lists updated in place (contiguous and writeable, never copied);
    the others (gradients) are made contiguous when they are not.
    """
    for name, seq in named.items():
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{op}: {name} must be a list of arrays, got {type(seq).__name__}")
    lengths = {name: len(seq) for name, seq in named.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{op}: the lists must have one entry per parameter, got lengths {lengths}")
    if lengths["params"] == 0:
        return None
    cp = backend.cupy_module()
    array_types = (np.ndarray,) if cp is None else (np.ndarray, cp.ndarray)
    for name, seq in named.items():
        for i, a in enumerate(seq):
            if not isinstance(a, array_types):
                raise TypeError(f"{op}: {name}[{i}] must be a NumPy or CuPy array, "
                                f"got {type(a).__name__}")
    try:
        xp = backend.get_array_module(*(a for seq in named.values() for a in seq))
    except TypeError as e:
        raise TypeError(f"{op}: {e}") from None
    dtype = named["params"][0].dtype
    allowed = ("float32", "float64") if xp is np else ("float32",)
    if dtype.name not in allowed:
        where = "NumPy" if xp is np else "CuPy"
        raise TypeError(f"{op}: {where} parameters must be {' or '.join(allowed)}, "
                        f"got params[0] of dtype {dtype}")
    backend.check_cuda_kernels(op, xp)
    if xp is not np:
        device = named["params"][0].device.id
    out = []
    for name, seq in named.items():
        checked = []
        for i, a in enumerate(seq):
            where = f"{op}: {name}[{i}]"
            if a.dtype != dtype:
                raise TypeError(f"{where} has dtype {a.dtype}, expected {dtype} like params[0]")
            if a.shape != named["params"][i].shape:
                raise ValueError(f"{where} has shape {tuple(a.shape)}, expected "
                                 f"{tuple(named['params'][i].shape)} like params[{i}]")
            if xp is not np and a.device.id != device:
                raise TypeError(f"{where} is on GPU {a.device.id}, params[0] on GPU {device}")
            if name in state:
                if not a.flags.c_contiguous:
                    raise ValueError(f"{where} must be C-contiguous: it is updated in place, "
                                     f"and a contiguous copy would lose the update; got shape "
                                     f"{tuple(a.shape)} with strides {tuple(a.strides)}")
                if not getattr(a.flags, "writeable", True):
                    raise ValueError(f"{where} is read-only; it is updated in place")
            else:
                a = xp.ascontiguousarray(a)
            checked.append(a)
        out.append(checked)
    return xp, out
