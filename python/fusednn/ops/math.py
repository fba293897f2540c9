"""Keras 3 `keras.ops` math over NumPy and CuPy arrays, differentiable by the tape (ops/tape.py).

Each op computes its value on the plain arrays (with the arrays' own module, so it runs
where they live) and, when an argument is Traced, records the vector-Jacobian product for
that argument. Broadcasting follows NumPy; a gradient is summed back to its input's shape
(`_unbroadcast`). Plain arrays in give plain arrays out. Where the derivative has a kink
the choice is the one TensorFlow makes (|x|' = sign(x) = 0 at 0; maximum's gradient goes to
the first argument on ties; clip passes the gradient on the closed interval; max/min split
it equally among tied maxima). Comparisons and sign are piecewise constant: their results
are plain arrays, which carry no gradient.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from . import gemm
from .tape import Traced, record, value_of


# ----- helpers ------------------------------------------------------------------
def _plain(x):
    """x's value: an array, or a Python number kept as is (NumPy's weak scalars keep a
    float32 array float32 under NEP 50; a 0-d float64 array would promote it)."""
    value = value_of(x)
    if isinstance(value, numbers.Number) or hasattr(value, "shape"):
        return value
    return np.asarray(value)


def _xp(*values):
    return backend.get_array_module(*[v for v in values if hasattr(v, "shape")])


def _shape(value) -> tuple:
    return tuple(value.shape) if hasattr(value, "shape") else ()


def _unbroadcast(grad, shape):
    """grad summed over the axes broadcasting added or stretched, to `shape`."""
    if _shape(grad) == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    stretched = tuple(lead + i for i, size in enumerate(shape)
                      if size == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=tuple(range(lead)) + stretched).reshape(shape)


def _binary(value, x1, x2, vjp1, vjp2):
    s1, s2 = _shape(_plain(x1)), _shape(_plain(x2))
    return record(value, (x1, lambda g: _unbroadcast(vjp1(g), s1)),
                  (x2, lambda g: _unbroadcast(vjp2(g), s2)))


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(int(a) % ndim if ndim else int(a) for a in axes)


def _keep(grad, shape, axis, keepdims):
    """A reduction's output gradient reshaped so it broadcasts against the input `shape`."""
    if keepdims:
        return grad
    kept = list(shape)
    for a in _axes(axis, len(shape)):
        kept[a] = 1
    return grad.reshape(kept)


# ----- elementwise arithmetic -----------------------------------------------------
def add(x1, x2):
    a, b = _plain(x1), _plain(x2)
    return _binary(a + b, x1, x2, lambda g: g, lambda g: g)


def subtract(x1, x2):
    a, b = _plain(x1), _plain(x2)
    return _binary(a - b, x1, x2, lambda g: g, lambda g: -g)


def multiply(x1, x2):
    a, b = _plain(x1), _plain(x2)
    return _binary(a * b, x1, x2, lambda g: g * b, lambda g: g * a)


def divide(x1, x2):
    a, b = _plain(x1), _plain(x2)
    return _binary(a / b, x1, x2, lambda g: g / b, lambda g: -g * a / (b * b))


true_divide = divide


def power(x1, x2):
    a, b = _plain(x1), _plain(x2)
    y = a ** b
    xp = _xp(a, b, y)
    # d/db a^b = a^b log a, taken as 0 where a <= 0 (where it is undefined or a^b is 0).
    return _binary(y, x1, x2, lambda g: g * b * a ** (b - 1),
                   lambda g: g * xp.where(a > 0, y * xp.log(xp.where(a > 0, a, 1)), 0))


def negative(x):
    return record(-_plain(x), (x, lambda g: -g))


def maximum(x1, x2):
    a, b = _plain(x1), _plain(x2)
    xp = _xp(a, b)
    first = a >= b
    return _binary(xp.maximum(a, b), x1, x2, lambda g: g * first, lambda g: g * ~first)


def minimum(x1, x2):
    a, b = _plain(x1), _plain(x2)
    xp = _xp(a, b)
    first = a <= b
    return _binary(xp.minimum(a, b), x1, x2, lambda g: g * first, lambda g: g * ~first)


def where(condition, x1, x2):
    """x1 where condition holds, else x2 (condition carries no gradient)."""
    cond = _plain(condition)
    a, b = _plain(x1), _plain(x2)
    xp = _xp(cond, a, b)
    cond = xp.asarray(cond).astype(bool)
    return _binary(xp.where(cond, a, b), x1, x2, lambda g: g * cond, lambda g: g * ~cond)


def clip(x, x_min, x_max):
    """x limited to [x_min, x_max] (numbers or arrays that carry no gradient)."""
    a, lo, hi = _plain(x), _plain(x_min), _plain(x_max)
    inside = (a >= lo) & (a <= hi)
    return record(_xp(a).clip(a, lo, hi), (x, lambda g: g * inside))


def _compare(name):
    def compare(x1, x2):
        a, b = _plain(x1), _plain(x2)
        return getattr(_xp(a, b), name)(a, b)
    compare.__name__ = name
    compare.__doc__ = f"numpy.{name} of the values: a boolean array without gradient."
    return compare


greater, greater_equal, less, less_equal, equal, not_equal = (
    _compare(n) for n in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"))


# ----- elementwise functions -------------------------------------------------------
def square(x):
    a = _plain(x)
    return record(a * a, (x, lambda g: 2 * g * a))


def sqrt(x):
    a = _plain(x)
    y = _xp(a).sqrt(a)
    return record(y, (x, lambda g: g / (2 * y)))


def abs(x):  # noqa: A001 - Keras's name
    a = _plain(x)
    xp = _xp(a)
    return record(xp.abs(a), (x, lambda g: g * xp.sign(a)))


absolute = abs


def sign(x):
    a = _plain(x)
    return _xp(a).sign(a)


def exp(x):
    a = _plain(x)
    y = _xp(a).exp(a)
    return record(y, (x, lambda g: g * y))


def log(x):
    a = _plain(x)
    return record(_xp(a).log(a), (x, lambda g: g / a))


def log1p(x):
    a = _plain(x)
    return record(_xp(a).log1p(a), (x, lambda g: g / (1 + a)))


def _sigmoid_of(xp, a):
    """1 / (1 + exp(-a)) without overflow on either side."""
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid(x):
    a = _plain(x)
    y = _sigmoid_of(_xp(a), a)
    return record(y, (x, lambda g: g * y * (1 - y)))


def softplus(x):
    """log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|))."""
    a = _plain(x)
    xp = _xp(a)
    y = xp.maximum(a, 0) + xp.log1p(xp.exp(-xp.abs(a)))
    return record(y, (x, lambda g: g * _sigmoid_of(xp, a)))


def tanh(x):
    a = _plain(x)
    y = _xp(a).tanh(a)
    return record(y, (x, lambda g: g * (1 - y * y)))


def relu(x):
    a = _plain(x)
    return record(_xp(a).maximum(a, 0), (x, lambda g: g * (a > 0)))


def cast(x, dtype):
    """x converted to `dtype`; to a non-float dtype the result carries no gradient."""
    a = _plain(x)
    xp = _xp(a)
    y = xp.asarray(a).astype(dtype)
    if y.dtype.kind != "f":
        return y
    return record(y, (x, lambda g: g.astype(xp.asarray(a).dtype)))


# ----- reductions -----------------------------------------------------------------
def sum(x, axis=None, keepdims=False):  # noqa: A001 - Keras's name
    a = _plain(x)
    xp = _xp(a)
    shape = _shape(a)
    y = xp.sum(a, axis=axis, keepdims=keepdims)
    return record(y, (x, lambda g: xp.broadcast_to(_keep(g, shape, axis, keepdims), shape)))


def mean(x, axis=None, keepdims=False):
    a = _plain(x)
    xp = _xp(a)
    shape = _shape(a)
    count = int(np.prod([shape[i] for i in _axes(axis, len(shape))]))
    y = xp.mean(a, axis=axis, keepdims=keepdims)
    return record(y, (x, lambda g: xp.broadcast_to(_keep(g, shape, axis, keepdims) / count,
                                                   shape)))


def _extreme(name):
    def reduce(x, axis=None, keepdims=False):
        a = _plain(x)
        xp = _xp(a)
        y = getattr(xp, name)(a, axis=axis, keepdims=keepdims)
        hit = a == _keep(y, _shape(a), axis, keepdims)
        ties = hit.sum(axis=axis, keepdims=True)
        return record(y, (x, lambda g: _keep(g, _shape(a), axis, keepdims) * hit / ties))
    reduce.__name__ = name
    reduce.__doc__ = (f"The {name}imum over `axis`; the gradient is shared equally by the "
                      "entries that attain it.")
    return reduce


max = _extreme("max")  # noqa: A001 - Keras's name
min = _extreme("min")  # noqa: A001 - Keras's name


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over `axis`, shifted by the maximum so it neither overflows nor
    underflows."""
    a = _plain(x)
    xp = _xp(a)
    shape = _shape(a)
    peak = xp.max(a, axis=axis, keepdims=True)
    peak = xp.where(xp.isfinite(peak), peak, 0)
    kept = xp.log(xp.sum(xp.exp(a - peak), axis=axis, keepdims=True)) + peak
    y = kept if keepdims else kept.reshape([s for i, s in enumerate(shape)
                                            if i not in _axes(axis, len(shape))])
    return record(y, (x, lambda g: _keep(g, shape, axis, keepdims) * xp.exp(a - kept)))


def softmax(x, axis=-1):
    a = _plain(x)
    xp = _xp(a)
    e = xp.exp(a - xp.max(a, axis=axis, keepdims=True))
    s = e / xp.sum(e, axis=axis, keepdims=True)
    return record(s, (x, lambda g: s * (g - xp.sum(g * s, axis=axis, keepdims=True))))


def log_softmax(x, axis=-1):
    """x - logsumexp(x) over `axis`, without forming the softmax's logarithm."""
    return subtract(x, logsumexp(x, axis=axis, keepdims=True))


def _without_gradient(name):
    def op(x, *args, **kwargs):
        a = _plain(x)
        return getattr(_xp(a), name)(a, *args, **kwargs)
    op.__name__ = name
    op.__doc__ = f"numpy.{name} of the value: an array without gradient."
    return op


argmax, argmin, zeros_like, ones_like = (
    _without_gradient(n) for n in ("argmax", "argmin", "zeros_like", "ones_like"))


def convert_to_tensor(x, dtype=None):
    """x as an array of its device (a traced value stays traced), cast to `dtype` if given."""
    if isinstance(x, Traced):
        return x if dtype is None else cast(x, dtype)
    a = _plain(x)
    return _xp(a).asarray(a, dtype=dtype)


# ----- shapes -----------------------------------------------------------------------
def reshape(x, newshape):
    a = _plain(x)
    shape = _shape(a)
    return record(a.reshape(newshape), (x, lambda g: g.reshape(shape)))


def expand_dims(x, axis):
    a = _plain(x)
    return record(_xp(a).expand_dims(a, axis), (x, lambda g: g.reshape(_shape(a))))


def squeeze(x, axis=None):
    a = _plain(x)
    return record(_xp(a).squeeze(a, axis=axis), (x, lambda g: g.reshape(_shape(a))))


def transpose(x, axes=None):
    a = _plain(x)
    xp = _xp(a)
    axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(axes)
    inverse = tuple(int(i) for i in np.argsort(axes))
    return record(xp.transpose(a, axes), (x, lambda g: xp.transpose(g, inverse)))


def concatenate(xs, axis=0):
    values = [_plain(x) for x in xs]
    xp = _xp(*values)
    y = xp.concatenate(values, axis=axis)
    ends = np.cumsum([v.shape[axis] for v in values]).tolist()
    return record(y, *((x, lambda g, i=i: xp.split(g, ends[:-1], axis=axis)[i])
                       for i, x in enumerate(xs)))


def stack(xs, axis=0):
    values = [_plain(x) for x in xs]
    xp = _xp(*values)
    y = xp.stack(values, axis=axis)
    return record(y, *((x, lambda g, i=i: xp.take(g, i, axis=axis)) for i, x in enumerate(xs)))


def _getitem(x, key):
    """x[key] (Traced.__getitem__): the gradient is scattered back, repeated indices summed."""
    a = _plain(x)
    xp = _xp(a)
    key = tuple(value_of(k) for k in key) if isinstance(key, tuple) else value_of(key)

    def vjp(g):
        grad = xp.zeros_like(a)
        if xp is np:
            np.add.at(grad, key, g)
        else:
            import cupyx
            cupyx.scatter_add(grad, key, g)
        return grad
    return record(a[key], (x, vjp))


def matmul(x1, x2, *args, **kwargs):
    """Keras's matmul (NumPy's rules, 1-D operands included), differentiable. Two plain 2-D
    operands, or the kernel op's extra arguments (out, trans_a, trans_b, alpha, beta),
    run fusednn's GEMM kernel (ops/gemm.py) as before."""
    if args or kwargs:
        return gemm.matmul(x1, x2, *args, **kwargs)
    if not isinstance(x1, Traced) and not isinstance(x2, Traced):
        a, b = _plain(x1), _plain(x2)
        if len(_shape(a)) == len(_shape(b)) == 2:
            return gemm.matmul(a, b)
        return _xp(a, b).matmul(a, b)
    if x1.ndim == 1:
        return squeeze(matmul(expand_dims(x1, 0), x2), -2)
    if x2.ndim == 1:
        return squeeze(matmul(x1, expand_dims(x2, -1)), -1)
    a, b = _plain(x1), _plain(x2)
    xp = _xp(a, b)
    return _binary(xp.matmul(a, b), x1, x2, lambda g: xp.matmul(g, xp.swapaxes(b, -1, -2)),
                   lambda g: xp.matmul(xp.swapaxes(a, -1, -2), g))


# ----- Traced's operators ------------------------------------------------------------
def _reflected(op):
    return lambda self, other: op(other, self)


for _name, _op in (("add", add), ("sub", subtract), ("mul", multiply), ("truediv", divide),
                   ("pow", power), ("matmul", matmul)):
    setattr(Traced, f"__{_name}__", _op)
    setattr(Traced, f"__r{_name}__", _reflected(_op))
for _name, _op in (("gt", greater), ("ge", greater_equal), ("lt", less), ("le", less_equal),
                   ("eq", equal), ("ne", not_equal)):
    setattr(Traced, f"__{_name}__", _op)
del _name, _op
Traced.__neg__ = negative
Traced.__pos__ = lambda self: self
Traced.__abs__ = abs
Traced.__getitem__ = _getitem
Traced.__hash__ = object.__hash__  # __eq__ compares values; identity stays the hash
Traced.T = property(transpose)
Traced.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 else shape)
Traced.sum = sum
Traced.mean = mean

# NumPy ufuncs applied to a Traced (e.g. ndarray * Traced) run these ops instead.
Traced._ufunc_ops = {
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide,
    "true_divide": divide, "power": power, "negative": negative, "maximum": maximum,
    "minimum": minimum, "matmul": matmul, "square": square, "sqrt": sqrt, "absolute": abs,
    "sign": sign, "exp": exp, "log": log, "log1p": log1p, "tanh": tanh,
    "greater": greater, "greater_equal": greater_equal, "less": less,
    "less_equal": less_equal, "equal": equal, "not_equal": not_equal,
}

# The names fusednn.ops exports from this module (Keras 3's keras.ops names).
KERAS_OPS = (
    "abs", "absolute", "add", "argmax", "argmin", "cast", "clip", "concatenate",
    "convert_to_tensor", "divide", "equal", "exp", "expand_dims", "greater", "greater_equal",
    "less", "less_equal", "log", "log1p", "log_softmax", "logsumexp", "matmul", "max",
    "maximum", "mean", "min", "minimum", "multiply", "negative", "not_equal", "ones_like",
    "power", "relu", "reshape", "sigmoid", "sign", "softmax", "softplus", "sqrt", "square",
    "squeeze", "stack", "subtract", "sum", "tanh", "transpose", "true_divide", "where",
    "zeros_like",
)
