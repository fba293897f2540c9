"""Activation functions under Keras's names, each a forward and a backward.

`get(identifier)` returns an `ActivationFunction`: `.forward(x) -> y`,
`.backward(x, y, dy) -> dx` (the gradient w.r.t. `x` given the forward's input,
its output and the upstream gradient, all of one shape) and `.name`. They are
elementwise except softmax / log_softmax, which act along one axis (the last
by default). Arrays may be NumPy or CuPy; results keep the input's dtype.

The module-level objects (`fusednn.activations.relu`, ...) are callable, so
`Dense(8, activation=activations.relu)` works as in Keras. Formulas and
defaults follow Keras 3: leaky_relu's negative_slope is 0.2, gelu is exact
(erf) unless approximate=True, hard_sigmoid is relu6(x + 3) / 6, and selu
uses the constants of Klambauer et al. (2017).
"""
from __future__ import annotations

import math
import numbers

from . import backend
from .registry import Registry

_SQRT_HALF = math.sqrt(0.5)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_ONE_OVER_SQRT_PI = 1.0 / math.sqrt(math.pi)
_ONE_OVER_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# ----- erf / erfc ---------------------------------------------------------
# NumPy has no erf, so it is built from two expansions that need no tables:
#   |z| < 2.5:  erf(z) = 2/sqrt(pi) exp(-z^2) z sum_n (2 z^2)^n / (1*3*...*(2n+1))
#               (all terms positive, so no cancellation);
#   |z| >= 2.5: erfc(z) = exp(-z^2)/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...))))
#               (Laplace's continued fraction, evaluated bottom-up).
# Term counts were chosen against math.erf/math.erfc on a dense grid: absolute
# error <= 1e-15 in float64 and <= 5e-7 (float32 rounding) in float32.
_ERF_SPLIT = 2.5
_SERIES_TERMS = {"float64": 36, "float32": 22}
_FRACTION_TERMS = {"float64": 26, "float32": 12}


def _erf_series(z, terms):
    """erf(z) for |z| < 2.5 (Horner form of the positive series)."""
    xp = backend.get_array_module(z)
    t = 2.0 * z * z
    s = xp.ones_like(z)
    for n in range(terms, 0, -1):
        s = 1.0 + s * t / (2 * n + 1)
    return _TWO_OVER_SQRT_PI * z * s * xp.exp(-(z * z))


def _erfc_fraction(z, terms):
    """erfc(z) for z >= 2.5 (continued fraction)."""
    f = z.copy()
    for k in range(terms, 0, -1):
        f = z + (0.5 * k) / f
    return _ONE_OVER_SQRT_PI * backend.get_array_module(z).exp(-(z * z)) / f


def _terms(z):
    key = "float32" if z.dtype.itemsize <= 4 else "float64"
    return _SERIES_TERMS[key], _FRACTION_TERMS[key]


def erf(z):
    """The error function, elementwise, for NumPy or CuPy floating arrays."""
    xp = backend.get_array_module(z)
    z = xp.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(xp.float64)
    series_terms, fraction_terms = _terms(z)
    out = xp.empty_like(z)
    small = xp.abs(z) < _ERF_SPLIT
    out[small] = _erf_series(z[small], series_terms)
    large = ~small
    big = z[large]
    out[large] = xp.sign(big) * (1.0 - _erfc_fraction(xp.abs(big), fraction_terms))
    return out


def erfc(z):
    """1 - erf(z), computed without cancellation for large positive z."""
    xp = backend.get_array_module(z)
    z = xp.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(xp.float64)
    series_terms, fraction_terms = _terms(z)
    out = xp.empty_like(z)
    small = xp.abs(z) < _ERF_SPLIT
    out[small] = 1.0 - _erf_series(z[small], series_terms)
    positive = z >= _ERF_SPLIT
    out[positive] = _erfc_fraction(z[positive], fraction_terms)
    negative = z <= -_ERF_SPLIT
    out[negative] = 2.0 - _erfc_fraction(-z[negative], fraction_terms)
    return out


def _stable_sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp is only taken of -|x|."""
    xp = backend.get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _stable_softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))."""
    xp = backend.get_array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


# ----- activation functions -----------------------------------------------
class ActivationFunction:
    """Base class: forward(x) -> y and backward(x, y, dy) -> dx, named like Keras."""

    name = "activation"

    def forward(self, x):
        raise NotImplementedError

    def backward(self, x, y, dy):
        raise NotImplementedError

    def __call__(self, x, **parameters):
        """y for x, as Keras's functions: `softmax(x, axis=1)`, `relu(x, max_value=6)` apply
        the function with those parameters instead of this instance's."""
        if parameters:
            return type(self)(**{**self.get_config(), **parameters}).forward(x)
        return self.forward(x)

    def get_config(self) -> dict:
        """Parameters that differ between instances (empty for fixed functions)."""
        return {}

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"<activation {self.name}({params})>"


_ACTIVATIONS = Registry("activation", base=ActivationFunction, module="fusednn.activations")


def register(cls=None, *, aliases=()):
    """Adds an ActivationFunction subclass under its Keras `name` (and `aliases`), which
    get and deserialize accept and serialize writes. A decorator: @register or
    @register(aliases=(...))."""
    def add(cls):
        return _ACTIVATIONS.register(cls, name=cls.name, aliases=aliases)
    return add if cls is None else add(cls)


@register
class Linear(ActivationFunction):
    name = "linear"

    def forward(self, x):
        return x

    def backward(self, x, y, dy):
        return dy


@register
class ReLU(ActivationFunction):
    """Keras relu: x above `threshold` (clipped to [0, max_value] when max_value is
    given), negative_slope * (x - threshold) below it."""

    name = "relu"

    def __init__(self, negative_slope=0.0, max_value=None, threshold=0.0):
        if max_value is not None and max_value < 0:
            raise ValueError(f"relu: max_value must be None or >= 0, got {max_value!r}")
        if negative_slope < 0:
            raise ValueError(f"relu: negative_slope must be >= 0, got {negative_slope!r}")
        if threshold < 0:
            raise ValueError(f"relu: threshold must be >= 0, got {threshold!r}")
        self.negative_slope = float(negative_slope)
        self.max_value = None if max_value is None else float(max_value)
        self.threshold = float(threshold)

    def forward(self, x):
        xp = backend.get_array_module(x)
        if self.threshold == 0.0 and self.max_value is None and self.negative_slope == 0.0:
            return xp.maximum(x, 0)
        positive = xp.where(x > self.threshold, x, 0)
        if self.max_value is not None:
            positive = xp.clip(positive, 0, self.max_value)
        return positive - self.negative_slope * xp.maximum(self.threshold - x, 0)

    def backward(self, x, y, dy):
        xp = backend.get_array_module(x)
        passes = x > self.threshold
        if self.max_value is not None:
            passes &= (x > 0) & (x < self.max_value)
        slope = xp.where(passes, 1.0, 0.0) + xp.where(x < self.threshold, self.negative_slope, 0.0)
        return dy * slope.astype(dy.dtype, copy=False)

    def get_config(self):
        return {"negative_slope": self.negative_slope, "max_value": self.max_value,
                "threshold": self.threshold}


@register
class ReLU6(ReLU):
    name = "relu6"

    def __init__(self):
        super().__init__(max_value=6.0)

    def get_config(self):
        return {}


@register
class LeakyReLU(ActivationFunction):
    name = "leaky_relu"

    def __init__(self, negative_slope=0.2):
        if negative_slope < 0:
            raise ValueError(f"leaky_relu: negative_slope must be >= 0, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return backend.get_array_module(x).where(x > 0, x, self.negative_slope * x)

    def backward(self, x, y, dy):
        return backend.get_array_module(x).where(x > 0, dy, self.negative_slope * dy)

    def get_config(self):
        return {"negative_slope": self.negative_slope}


@register
class ELU(ActivationFunction):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    name = "elu"

    def __init__(self, alpha=1.0):
        self.alpha = float(alpha)

    def forward(self, x):
        xp = backend.get_array_module(x)
        # expm1 of min(x, 0): accurate near 0 and never overflows on the unused branch.
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))

    def backward(self, x, y, dy):
        xp = backend.get_array_module(x)
        return dy * xp.where(x > 0, 1.0, self.alpha * xp.exp(xp.minimum(x, 0))).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"alpha": self.alpha}


@register
class SELU(ActivationFunction):
    """scale * elu(x, alpha) with the self-normalising constants Keras uses."""

    name = "selu"
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def forward(self, x):
        xp = backend.get_array_module(x)
        return self.scale * xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))

    def backward(self, x, y, dy):
        xp = backend.get_array_module(x)
        slope = self.scale * xp.where(x > 0, 1.0, self.alpha * xp.exp(xp.minimum(x, 0)))
        return dy * slope.astype(dy.dtype, copy=False)


@register
class GELU(ActivationFunction):
    """x * Phi(x) with Phi the standard normal CDF (exact, via erfc), or Keras's tanh
    approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) when approximate=True."""

    name = "gelu"
    _TANH_SCALE = math.sqrt(2.0 / math.pi)

    def __init__(self, approximate=False):
        self.approximate = bool(approximate)

    def forward(self, x):
        if self.approximate:
            xp = backend.get_array_module(x)
            return 0.5 * x * (1.0 + xp.tanh(self._TANH_SCALE * (x + 0.044715 * x * x * x)))
        # Phi(x) = erfc(-x / sqrt 2) / 2 keeps full relative accuracy for very negative x.
        return 0.5 * x * erfc(-_SQRT_HALF * x)

    def backward(self, x, y, dy):
        xp = backend.get_array_module(x)
        if self.approximate:
            inner = self._TANH_SCALE * (x + 0.044715 * x * x * x)
            t = xp.tanh(inner)
            d_inner = self._TANH_SCALE * (1.0 + 3 * 0.044715 * x * x)
            return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner)
        cdf = 0.5 * erfc(-_SQRT_HALF * x)
        pdf = _ONE_OVER_SQRT_2PI * xp.exp(-0.5 * x * x)
        return dy * (cdf + x * pdf)

    def get_config(self):
        return {"approximate": self.approximate}


@register
class Sigmoid(ActivationFunction):
    name = "sigmoid"

    def forward(self, x):
        return _stable_sigmoid(x)

    def backward(self, x, y, dy):
        return dy * y * (1.0 - y)


@register
class Tanh(ActivationFunction):
    name = "tanh"

    def forward(self, x):
        return backend.get_array_module(x).tanh(x)

    def backward(self, x, y, dy):
        return dy * (1.0 - y * y)


@register
class HardSigmoid(ActivationFunction):
    """Keras 3: relu6(x + 3) / 6."""

    name = "hard_sigmoid"

    def forward(self, x):
        return backend.get_array_module(x).clip(x + 3.0, 0.0, 6.0) / 6.0

    def backward(self, x, y, dy):
        xp = backend.get_array_module(x)
        return xp.where((x > -3.0) & (x < 3.0), dy / 6.0, 0.0).astype(dy.dtype, copy=False)


@register(aliases=("hard_swish",))
class HardSilu(ActivationFunction):
    """x * hard_sigmoid(x) (Keras's hard_silu, alias hard_swish)."""

    name = "hard_silu"

    def forward(self, x):
        return x * backend.get_array_module(x).clip(x + 3.0, 0.0, 6.0) / 6.0

    def backward(self, x, y, dy):
        xp = backend.get_array_module(x)
        inside = (x > -3.0) & (x < 3.0)
        slope = xp.clip(x + 3.0, 0.0, 6.0) / 6.0 + xp.where(inside, x / 6.0, 0.0)
        return dy * slope


@register(aliases=("swish",))
class Silu(ActivationFunction):
    """x * sigmoid(x) (Keras's silu, alias swish)."""

    name = "silu"

    def forward(self, x):
        return x * _stable_sigmoid(x)

    def backward(self, x, y, dy):
        s = _stable_sigmoid(x)
        return dy * s * (1.0 + x * (1.0 - s))


@register
class Softplus(ActivationFunction):
    name = "softplus"

    def forward(self, x):
        return _stable_softplus(x)

    def backward(self, x, y, dy):
        return dy * _stable_sigmoid(x)


@register
class Softsign(ActivationFunction):
    name = "softsign"

    def forward(self, x):
        return x / (1.0 + backend.get_array_module(x).abs(x))

    def backward(self, x, y, dy):
        d = 1.0 + backend.get_array_module(x).abs(x)
        return dy / (d * d)


@register
class Mish(ActivationFunction):
    """x * tanh(softplus(x))."""

    name = "mish"

    def forward(self, x):
        return x * backend.get_array_module(x).tanh(_stable_softplus(x))

    def backward(self, x, y, dy):
        t = backend.get_array_module(x).tanh(_stable_softplus(x))
        return dy * (t + x * (1.0 - t * t) * _stable_sigmoid(x))


@register
class Exponential(ActivationFunction):
    name = "exponential"

    def forward(self, x):
        return backend.get_array_module(x).exp(x)

    def backward(self, x, y, dy):
        return dy * y


@register
class Softmax(ActivationFunction):
    """exp(x) / sum(exp(x)) along `axis`, with the maximum subtracted first."""

    name = "softmax"

    def __init__(self, axis=-1):
        self.axis = _softmax_axis(axis)

    def forward(self, x):
        xp = backend.get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)

    def backward(self, x, y, dy):
        # Jacobian-vector product: dx_i = y_i (dy_i - sum_j dy_j y_j).
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))

    def get_config(self):
        return {"axis": list(self.axis) if isinstance(self.axis, tuple) else self.axis}


def _softmax_axis(axis):
    """An int, or a tuple of ints for a softmax over several axes (Keras accepts a list)."""
    def is_int(a):
        return isinstance(a, numbers.Integral) and not isinstance(a, bool)

    if is_int(axis):
        return int(axis)
    if isinstance(axis, (tuple, list)) and axis and all(is_int(a) for a in axis):
        return int(axis[0]) if len(axis) == 1 else tuple(int(a) for a in axis)
    raise TypeError(f"softmax: expected axis to be an int or a non-empty list of ints, "
                    f"got {axis!r}")


@register
class LogSoftmax(Softmax):
    """x - logsumexp(x) along `axis`."""

    name = "log_softmax"

    def forward(self, x):
        xp = backend.get_array_module(x)
        shifted = x - x.max(axis=self.axis, keepdims=True)
        return shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))

    def backward(self, x, y, dy):
        softmax = backend.get_array_module(y).exp(y)
        return dy - softmax * dy.sum(axis=self.axis, keepdims=True)


_defaults: dict[type, ActivationFunction] = {}  # one shared instance per class, for names


def get(identifier) -> ActivationFunction:
    """An activation from a Keras name, a serialized dict, an ActivationFunction, or None (linear).

    A name gives the activation's shared default instance (get("relu") is relu)."""
    if identifier is None:
        identifier = "linear"
    if isinstance(identifier, str):
        cls = _ACTIVATIONS.lookup(identifier)
        return _defaults.setdefault(cls, cls())
    if callable(identifier) and not isinstance(identifier, ActivationFunction):
        raise TypeError(f"activation {identifier!r} has no backward: pass a Keras name or an "
                        "instance of a fusednn.activations.ActivationFunction subclass that "
                        "defines forward(x) and backward(x, y, dy)")
    return _ACTIVATIONS.get(identifier)


def serialize(activation) -> str | dict:
    """Its name when it has Keras's default parameters, else {"class_name", "config"}."""
    activation = get(activation)
    config = _ACTIVATIONS.serialize(activation)
    if config["config"] == type(activation)().get_config():
        return config["class_name"]
    return config


def deserialize(config) -> ActivationFunction:
    return get(config) if config is None or isinstance(config, str) else \
        _ACTIVATIONS.deserialize(config)


linear = get("linear")
relu = get("relu")
relu6 = get("relu6")
leaky_relu = get("leaky_relu")
elu = get("elu")
selu = get("selu")
gelu = get("gelu")
sigmoid = get("sigmoid")
tanh = get("tanh")
hard_sigmoid = get("hard_sigmoid")
hard_silu = hard_swish = get("hard_silu")
silu = swish = get("silu")
softplus = get("softplus")
softsign = get("softsign")
mish = get("mish")
exponential = get("exponential")
softmax = get("softmax")
log_softmax = get("log_softmax")
