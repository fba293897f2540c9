"""Keras 3's metric functions: fn(y_true, y_pred) -> one value per sample (a float64
NumPy array of shape (N,) or (N, ...)), which `MeanMetricWrapper` averages over samples
and batches. They read NumPy, CuPy or lists (see base.host).

"accuracy" / "acc" is resolved from the loss, as Keras does:
sparse categorical cross-entropy -> sparse_categorical_accuracy,
categorical cross-entropy -> categorical_accuracy, binary cross-entropy ->
binary_accuracy. With any other loss the shapes decide on each batch: a
prediction with one value per sample is binary, integer labels with one axis
fewer than the prediction (or a trailing axis of 1) are sparse, else categorical.
"""
from __future__ import annotations

import numpy as np

from .base import host


def _pair(name, y_true, y_pred):
    y_true, y_pred = host(y_true, f"metric {name} y_true"), host(y_pred, f"metric {name} y_pred")
    if y_true.shape[:1] != y_pred.shape[:1]:
        raise ValueError(f"metric {name}: y_true and y_pred must have the same batch size, "
                         f"got shapes {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def _like_pred(name, y_true, y_pred, hint=""):
    """y_true reshaped to y_pred's shape when only a trailing axis of 1 differs."""
    if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
        y_true = y_true.reshape(y_pred.shape)  # (N,) labels against (N, 1) predictions
    if y_true.shape != y_pred.shape:
        raise ValueError(f"metric {name}: expected y_true of shape {y_pred.shape} (like "
                         f"y_pred), got {y_true.shape}{hint}")
    return y_true


def _sparse_labels(name, y_true, y_pred):
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]  # labels given as (N, 1)
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"metric {name}: expected integer labels of shape "
                         f"{y_pred.shape[:-1]} for predictions {y_pred.shape}, got "
                         f"{y_true.shape}")
    return y_true


def binary_accuracy(y_true, y_pred, threshold: float = 0.5) -> np.ndarray:
    """(y_pred > threshold) == y_true per entry; shapes (N, ...)."""
    y_true, y_pred = _pair("binary_accuracy", y_true, y_pred)
    y_true = _like_pred("binary_accuracy", y_true, y_pred)
    return (y_true == (y_pred > threshold)).astype(np.float64)


def categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """argmax(y_true) == argmax(y_pred) per sample; y_true one-hot (N, ..., C) like y_pred."""
    y_true, y_pred = _pair("categorical_accuracy", y_true, y_pred)
    y_true = _like_pred("categorical_accuracy", y_true, y_pred,
                        "; use sparse_categorical_accuracy for integer labels")
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """argmax(y_pred) == label per sample; y_true (N, ...) ints, y_pred (N, ..., C)."""
    y_true, y_pred = _pair("sparse_categorical_accuracy", y_true, y_pred)
    y_true = _sparse_labels("sparse_categorical_accuracy", y_true, y_pred)
    return (np.argmax(y_pred, axis=-1) == y_true).astype(np.float64)


def _in_top_k(labels, y_pred, k: int) -> np.ndarray:
    """Keras's in_top_k: the label's score is >= the k-th largest score (ties at the
    boundary count as in, as TensorFlow's in_top_k and Keras's torch backend)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top-k accuracy: k must be an int >= 1, got {k!r}")
    labels = labels.astype(np.int64)
    classes = y_pred.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"top-k accuracy: labels must be in [0, {classes}), got values in "
                         f"[{labels.min()}, {labels.max()}]")
    target = np.take_along_axis(y_pred, labels[..., None], axis=-1)
    return (np.sum(y_pred > target, axis=-1) < k).astype(np.float64)


def top_k_categorical_accuracy(y_true, y_pred, k: int = 5) -> np.ndarray:
    """argmax(y_true) among the k largest predictions, per sample (one-hot y_true)."""
    y_true, y_pred = _pair("top_k_categorical_accuracy", y_true, y_pred)
    y_true = _like_pred("top_k_categorical_accuracy", y_true, y_pred)
    return _in_top_k(np.argmax(y_true, axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k: int = 5) -> np.ndarray:
    """The label among the k largest predictions, per sample (integer y_true)."""
    y_true, y_pred = _pair("sparse_top_k_categorical_accuracy", y_true, y_pred)
    return _in_top_k(_sparse_labels("sparse_top_k_categorical_accuracy", y_true, y_pred),
                     y_pred, k)


def accuracy(y_true, y_pred) -> np.ndarray:
    """Accuracy chosen from the shapes (see the module docstring)."""
    y_true, y_pred = _pair("accuracy", y_true, y_pred)
    return accuracy_for_shapes(y_true, y_pred)(y_true, y_pred)


def accuracy_for_shapes(y_true, y_pred):
    if y_pred.ndim >= 1 and y_pred.shape[-1] == 1 or y_pred.ndim == 1:
        return binary_accuracy
    sparse = (y_true.ndim < y_pred.ndim
              or (y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1 and y_pred.shape[-1] > 1))
    return sparse_categorical_accuracy if sparse else categorical_accuracy


def mean_squared_error(y_true, y_pred) -> np.ndarray:
    """mean((y_true - y_pred)^2) over the last axis."""
    y_true, y_pred = _pair("mean_squared_error", y_true, y_pred)
    diff = y_pred - _like_pred("mean_squared_error", y_true, y_pred)
    return np.mean(diff * diff, axis=-1)


def mean_absolute_error(y_true, y_pred) -> np.ndarray:
    """mean(|y_true - y_pred|) over the last axis."""
    y_true, y_pred = _pair("mean_absolute_error", y_true, y_pred)
    return np.mean(np.abs(y_pred - _like_pred("mean_absolute_error", y_true, y_pred)), axis=-1)
