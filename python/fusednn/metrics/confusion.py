"""Keras 3's confusion-matrix metrics: TruePositives, FalsePositives, TrueNegatives,
FalseNegatives, Precision, Recall (at one or several thresholds).

A prediction counts as positive at threshold t when y_pred > t; a label is positive when
nonzero. Sample weights broadcast to y_pred's shape and weight each entry's count. With
several labels per sample every entry counts on its own (Keras's multi_label=False).
"""
from __future__ import annotations

import numbers

import numpy as np

from .base import Metric, host, same_rank

# Keras's NEG_INF: what top_k filtering gives the predictions outside the top k.
NEG_INF = -1e10


def parse_thresholds(what: str, thresholds, default: float) -> list:
    """Keras's parse_init_thresholds: None -> [default]; a number or a list of numbers in
    [0, 1] (a number below 0 is allowed only as the default NEG_INF)."""
    if thresholds is None:
        return [default]
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) \
        else [thresholds]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not 0.0 <= value <= 1.0:
            raise ValueError(f"{what}: thresholds must be numbers in [0, 1], got {thresholds!r}")
    if not values:
        raise ValueError(f"{what}: thresholds must not be empty")
    return [float(v) for v in values]


def confusion_counts(what, y_true, y_pred, sample_weight, thresholds, top_k=None,
                     class_id=None) -> dict:
    """{"tp", "fp", "tn", "fn"}: float64 arrays with one weighted count per threshold."""
    y_true, y_pred = host(y_true, what + " y_true"), host(y_pred, what + " y_pred")
    y_pred, y_true = same_rank(y_pred, y_true)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{what}: y_true and y_pred must have the same shape, got "
                         f"{y_true.shape} and {y_pred.shape}")
    weights = np.ones_like(y_pred)
    if sample_weight is not None:
        w = host(sample_weight, what + " sample_weight")
        w = w[..., 0] if w.ndim == y_pred.ndim + 1 and w.shape[-1] == 1 else w
        w = w.reshape(w.shape + (1,) * max(0, y_pred.ndim - w.ndim))
        try:
            weights = np.broadcast_to(w, y_pred.shape)
        except ValueError:
            raise ValueError(f"{what}: sample_weight of shape {w.shape} does not broadcast "
                             f"to y_pred's shape {y_pred.shape}") from None
    if top_k is not None:
        y_pred = _keep_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim < 2 or not 0 <= class_id < y_pred.shape[-1]:
            raise ValueError(f"{what}: class_id={class_id} needs predictions with a last axis "
                             f"longer than it, got shape {y_pred.shape}")
        y_true, y_pred, weights = y_true[..., class_id], y_pred[..., class_id], \
            weights[..., class_id]
    positive = (y_true != 0).ravel()
    y_pred, weights = y_pred.ravel(), weights.ravel()
    order = np.argsort(y_pred, kind="stable")
    sorted_pred = y_pred[order]
    # Weight of the positive / negative entries among the first i in ascending order.
    pos_below = np.concatenate([[0.0], np.cumsum(np.where(positive, weights, 0.0)[order])])
    neg_below = np.concatenate([[0.0], np.cumsum(np.where(positive, 0.0, weights)[order])])
    below = np.searchsorted(sorted_pred, np.asarray(thresholds), side="right")  # pred <= t
    return {"tp": pos_below[-1] - pos_below[below], "fn": pos_below[below],
            "fp": neg_below[-1] - neg_below[below], "tn": neg_below[below]}


def _keep_top_k(y_pred, k):
    """Keras's _filter_top_k: each row's k largest stay, the others become NEG_INF (ties
    broken by position, as top_k's indices)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {k!r}")
    top = np.argsort(-y_pred, axis=-1, kind="stable")[..., :k]
    kept = np.full_like(y_pred, NEG_INF)
    np.put_along_axis(kept, top, np.take_along_axis(y_pred, top, axis=-1), axis=-1)
    return kept


def _no_nan_divide(a, b):
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


class _ThresholdCounts(Metric):
    """Weighted confusion counts at each threshold; result is the count (one threshold:
    a float, several: an array), or what `_from_counts` makes of them."""

    _default_threshold = 0.5

    def __init__(self, thresholds=None, name=None, dtype=None, top_k=None, class_id=None):
        self.init_thresholds, self.top_k, self.class_id = thresholds, top_k, class_id
        default = NEG_INF if top_k is not None else self._default_threshold
        self.thresholds = parse_thresholds(type(self).__name__, thresholds, default)
        super().__init__(name=name, dtype=dtype)

    def reset_state(self) -> None:
        for count in self._state:
            setattr(self, count, np.zeros(len(self.thresholds)))

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        counts = confusion_counts(f"{type(self).__name__} '{self.name}'", y_true, y_pred,
                                  sample_weight, self.thresholds, self.top_k, self.class_id)
        for count in self._state:
            setattr(self, count, getattr(self, count) + counts[count])

    def result(self):
        value = self._from_counts()
        return float(value[0]) if len(self.thresholds) == 1 else value

    def _from_counts(self):
        return getattr(self, self._state[0]).copy()

    def get_config(self) -> dict:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ThresholdCounts):
    _state = ("tp",)


class FalsePositives(_ThresholdCounts):
    _state = ("fp",)


class TrueNegatives(_ThresholdCounts):
    _state = ("tn",)


class FalseNegatives(_ThresholdCounts):
    _state = ("fn",)


class Precision(_ThresholdCounts):
    """tp / (tp + fp) (0 when nothing was predicted positive); top_k keeps each sample's k
    largest predictions, class_id looks at one class."""
    _state = ("tp", "fp")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(thresholds, name, dtype, top_k, class_id)

    def _from_counts(self):
        return _no_nan_divide(self.tp, self.tp + self.fp)

    def get_config(self) -> dict:
        return {**super().get_config(), "top_k": self.top_k, "class_id": self.class_id}


class Recall(Precision):
    """tp / (tp + fn) (0 when there was no positive label)."""
    _state = ("tp", "fn")

    def _from_counts(self):
        return _no_nan_divide(self.tp, self.tp + self.fn)
