"""Keras 3's stateful metric: `update_state` accumulates over batches, `result` reports,
`reset_state` starts again; calling the object updates with the batch and returns the
result (Keras 3's `Metric.__call__`).

The state lives on the host in float64 whatever `dtype` says (Keras keeps it in
`dtype`, float32 by default): a metric's sums over an epoch of 10^6 samples keep ~16
digits rather than ~7, and reading a CuPy batch costs one device-to-host copy of y_true
and y_pred per update, small next to the training step that produced them.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..naming import snake_case


def host(value, what: str) -> np.ndarray:
    """value (NumPy, CuPy, list or scalar) as a float64 NumPy array."""
    try:
        return np.asarray(backend.to_numpy(value) if backend.is_cuda_array(value) else value,
                          dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: expected numbers (an array, list or scalar), got "
                        f"{type(value).__name__}") from None


def same_rank(values: np.ndarray, weights: np.ndarray):
    """Keras's squeeze_or_expand_to_same_rank: a trailing axis of size 1 is dropped from
    the higher-rank side, or the lower one gets trailing axes, so the two broadcast."""
    if weights.ndim == values.ndim + 1 and weights.shape[-1] == 1:
        return values, weights[..., 0]
    if values.ndim == weights.ndim + 1 and values.shape[-1] == 1:
        return values[..., 0], weights
    return values, weights


def samplewise(what: str, values: np.ndarray, sample_weight, reduce):
    """Keras's reduce_to_samplewise_values: (values reduced to one per sample with
    `reduce` and multiplied by their weights, the weights reduced alike or None)."""
    weights = None
    if sample_weight is not None:
        weights = host(sample_weight, what + " sample_weight")
        values, weights = same_rank(values, weights)
        if values.ndim > weights.ndim:
            values = reduce(values, axis=tuple(range(weights.ndim, values.ndim)))
        try:
            weights = np.broadcast_to(weights, values.shape)
        except ValueError:
            raise ValueError(f"{what}: sample_weight of shape {weights.shape} does not "
                             f"broadcast to the values of shape {values.shape}") from None
        values = values * weights
        if values.ndim > 1:
            weights = reduce(weights, axis=tuple(range(1, values.ndim)))
    if values.ndim > 1:
        values = reduce(values, axis=tuple(range(1, values.ndim)))
    return values, weights


class Metric:
    """Keras 3's Metric: subclasses define `update_state`, `result` and `reset_state`,
    and name their state attributes (floats or float64 arrays) in `_state`, which
    `variables` reports and a mid-epoch backup saves and restores."""

    _state: tuple = ()

    def __init__(self, name=None, dtype=None):
        self.name = name or snake_case(type(self).__name__)
        self.dtype = dtype or "float32"
        self.reset_state()

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define update_state")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must define result")

    def reset_state(self) -> None:
        """Zeros every state attribute named in `_state` that exists (Keras zeros all its
        variables; a subclass that keeps state elsewhere overrides this)."""
        for state in self._state:
            value = getattr(self, state, None)
            if value is not None:
                setattr(self, state, 0.0 if np.ndim(value) == 0 else np.zeros(np.shape(value)))

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    @property
    def variables(self) -> list:
        """The state, in `_state` order, as NumPy arrays (copies)."""
        return [np.array(getattr(self, state), dtype=np.float64) for state in self._state]

    def _set_variables(self, values) -> None:
        """Loads state saved from `variables` (arrays or nested lists), checking shapes."""
        current = self.variables
        arrays = [np.asarray(value, dtype=np.float64) for value in values] \
            if isinstance(values, (list, tuple)) else None
        if arrays is None or [a.shape for a in arrays] != [c.shape for c in current]:
            raise ValueError(f"{type(self).__name__} '{self.name}': expected state of shapes "
                             f"{[c.shape for c in current]}, got {values!r:.200}")
        for state, array in zip(self._state, arrays):
            setattr(self, state, float(array) if array.ndim == 0 else array)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class Mean(Metric):
    """The weighted mean of the values given: sum(w * v) / sum(w) over all updates
    (values of rank > 1 are first averaged to one per sample, as Keras)."""

    _state = ("total", "count")

    def reset_state(self) -> None:
        self.total, self.count = 0.0, 0.0

    def update_state(self, values, sample_weight=None) -> None:
        if isinstance(values, float) and isinstance(sample_weight, (int, float, type(None))):
            # The loss trackers' case, once per training step: the general path below
            # took 25 us for it, this one 0.6 us (shared machine at load 10, indicative).
            weight = 1.0 if sample_weight is None else float(sample_weight)
            self.total += values * weight
            self.count += weight
            return
        what = f"{type(self).__name__} '{self.name}'"
        values, weights = samplewise(what, host(values, what), sample_weight, np.mean)
        self.total += float(np.sum(values))
        if weights is not None:
            self.count += float(np.sum(weights))
        else:
            self.count += float(values.shape[0]) if values.ndim else 1.0

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0  # Keras's divide_no_nan


class Sum(Metric):
    """The weighted sum of all values given."""

    _state = ("total",)

    def reset_state(self) -> None:
        self.total = 0.0

    def update_state(self, values, sample_weight=None) -> None:
        what = f"Sum '{self.name}'"
        values, _ = samplewise(what, host(values, what), sample_weight, np.sum)
        self.total += float(np.sum(values))

    def result(self) -> float:
        return self.total


class MeanMetricWrapper(Mean):
    """The running mean of fn(y_true, y_pred, **kwargs): what a metric function becomes.

    fn returns one value per sample (as Keras's metric functions) or anything of rank >= 1
    that `Mean` reduces per sample; a scalar counts as one value (Keras does the same)."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        self._fn, self._fn_kwargs = fn, kwargs
        super().__init__(name=name or getattr(fn, "__name__", None), dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), **self._fn_kwargs}

