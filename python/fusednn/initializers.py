"""Weight initializers under Keras's names.

An initializer is called as `init(shape, dtype) -> numpy.ndarray`. Fans follow
Keras: for a kernel of shape (..., fan_in_channels, fan_out_channels) the
receptive field is the product of the leading axes.
"""
from __future__ import annotations

import math

import numpy as np

from . import _rng
from .naming import snake_case
from .registry import Registry


def compute_fans(shape) -> tuple[float, float]:
    shape = tuple(shape)
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


class Initializer:
    def __init__(self, seed=None):
        self.seed = seed

    def _rng(self) -> np.random.Generator:
        return _rng.generator() if self.seed is None else np.random.default_rng(self.seed)

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        return np.asarray(self.sample(tuple(shape)), dtype=dtype)

    def sample(self, shape):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


_INITIALIZERS = Registry("initializer", module="fusednn.initializers")


def register(cls=None, *, aliases=()):
    """Adds an Initializer class under Keras's snake-case name ("glorot_uniform"), which
    serialize writes; its class name ("GlorotUniform") and `aliases` are accepted too.
    A decorator: @register or @register(aliases=(...))."""
    def add(cls):
        return _INITIALIZERS.register(cls, name=snake_case(cls.__name__),
                                      aliases=(cls.__name__, *aliases))
    return add if cls is None else add(cls)


@register
class Zeros(Initializer):
    def sample(self, shape):
        return np.zeros(shape)


@register
class Ones(Initializer):
    def sample(self, shape):
        return np.ones(shape)


@register
class Constant(Initializer):
    """`value` everywhere: a number, or (as in Keras) an array that broadcasts to the shape."""

    def __init__(self, value=0.0):
        super().__init__()
        array = np.asarray(value, dtype=np.float64)
        self.value = float(array) if array.ndim == 0 else array

    def sample(self, shape):
        try:
            return np.broadcast_to(self.value, shape).copy()
        except ValueError:
            raise ValueError(f"Constant: the value of shape {np.shape(self.value)} does not "
                             f"broadcast to the weight shape {shape}") from None

    def get_config(self):
        return {"value": self.value if isinstance(self.value, float) else self.value.tolist()}


@register
class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        if not maxval > minval:
            raise ValueError(f"RandomUniform: expected minval < maxval, got {minval}, {maxval}")
        self.minval, self.maxval = float(minval), float(maxval)

    def sample(self, shape):
        return self._rng().uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


@register
class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        if stddev < 0:
            raise ValueError(f"RandomNormal: expected stddev >= 0, got {stddev}")
        self.mean, self.stddev = float(mean), float(stddev)

    def sample(self, shape):
        return self._rng().normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


@register
class TruncatedNormal(Initializer):
    """Normal(mean, stddev) with draws beyond two standard deviations redrawn (Keras)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        if stddev < 0:
            raise ValueError(f"TruncatedNormal: expected stddev >= 0, got {stddev}")
        self.mean, self.stddev = float(mean), float(stddev)

    def sample(self, shape):
        return self.mean + self.stddev * _truncated_unit_normal(self._rng(), shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


def _truncated_unit_normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal draws with |z| > 2 redrawn until none is left."""
    out = rng.normal(0.0, 1.0, shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out


@register
class VarianceScaling(Initializer):
    """Keras's VarianceScaling: variance scale / fan, normal (truncated at 2 sd) or uniform."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if scale <= 0:
            raise ValueError(f"VarianceScaling: expected scale > 0, got {scale}")
        if mode not in self._MODES:
            raise ValueError(f"VarianceScaling: mode must be one of {self._MODES}, got {mode!r}")
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"VarianceScaling: distribution must be one of "
                             f"{self._DISTRIBUTIONS}, got {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def sample(self, shape):
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(variance), shape)
        # Truncated at two standard deviations; 0.8796... is the std of the truncated unit normal.
        std = math.sqrt(variance) / 0.87962566103423978
        return _truncated_unit_normal(rng, shape) * std

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


def _variance_scaling(cls_name, scale, mode, distribution):
    def __init__(self, seed=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed)

    def get_config(self):
        return {"seed": self.seed}

    return type(cls_name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config})


GlorotUniform = register(_variance_scaling("GlorotUniform", 1.0, "fan_avg", "uniform"))
GlorotNormal = register(_variance_scaling("GlorotNormal", 1.0, "fan_avg", "truncated_normal"))
HeUniform = register(_variance_scaling("HeUniform", 2.0, "fan_in", "uniform"))
HeNormal = register(_variance_scaling("HeNormal", 2.0, "fan_in", "truncated_normal"))
LecunUniform = register(_variance_scaling("LecunUniform", 1.0, "fan_in", "uniform"))
LecunNormal = register(_variance_scaling("LecunNormal", 1.0, "fan_in", "truncated_normal"))


@register(aliases=("OrthogonalInitializer",))  # Keras 3's class name; Orthogonal is its alias
class Orthogonal(Initializer):
    """Orthogonal matrix (QR of a Gaussian) reshaped to `shape`, times `gain`."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = float(gain)

    def sample(self, shape):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: needs a shape of rank >= 2, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self._rng().normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q[:rows, :cols].reshape(shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


@register(aliases=("IdentityInitializer",))  # Keras 3's class name; Identity is its alias
class Identity(Initializer):
    """gain * the identity matrix (rectangular allowed); 2-D shapes only, as in Keras."""

    def __init__(self, gain=1.0):
        super().__init__()
        self.gain = float(gain)

    def sample(self, shape):
        if len(shape) != 2:
            raise ValueError(f"Identity: needs a 2-D shape, got {shape}")
        return self.gain * np.eye(*shape)

    def get_config(self):
        return {"gain": self.gain}


def get(identifier) -> Initializer | None:
    """An initializer from a Keras name or class name, a serialized dict
    ({"class_name", "config"}), an Initializer, an array (giving itself), or any
    callable(shape, dtype); None for None, as Keras's get."""
    if identifier is None or callable(identifier):
        return identifier
    if isinstance(identifier, (str, dict)):
        return _INITIALIZERS.get(identifier)
    if isinstance(identifier, np.ndarray):
        return _exactly(identifier)
    raise TypeError(f"initializer must be a name, a serialized dict, an array or a "
                    f"callable(shape, dtype), got {identifier!r}")


def _exactly(array: np.ndarray):
    """Keras's get(tensor): an initializer that gives a copy of `array`, for its shape only."""
    def initializer(shape, dtype=None):
        if tuple(shape) != array.shape:
            raise ValueError(f"Expected `shape` to be {array.shape} for an initializer given as "
                             f"an array, got {tuple(shape)}")
        return np.array(array, dtype=dtype or array.dtype)
    return initializer


OrthogonalInitializer, IdentityInitializer = Orthogonal, Identity
serialize = _INITIALIZERS.serialize
deserialize = _INITIALIZERS.deserialize
