"""Keras 3's mean-of-a-function metric classes (accuracies, MSE/MAE, RMSE)."""
from __future__ import annotations

import math

import numpy as np

from . import functions
from .base import Mean, MeanMetricWrapper, host, same_rank


class BinaryAccuracy(MeanMetricWrapper):
    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(functions.binary_accuracy, name, dtype, threshold=threshold)


class CategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(functions.categorical_accuracy, name, dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(functions.sparse_categorical_accuracy, name, dtype)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(functions.top_k_categorical_accuracy, name, dtype, k=k)


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
        super().__init__(functions.sparse_top_k_categorical_accuracy, name, dtype, k=k)


class MeanSquaredError(MeanMetricWrapper):
    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(functions.mean_squared_error, name, dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(functions.mean_absolute_error, name, dtype)


class RootMeanSquaredError(Mean):
    """sqrt of the (weighted) mean of the squared errors over every update."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        what = f"RootMeanSquaredError '{self.name}'"
        y_true, y_pred = same_rank(host(y_true, what + " y_true"), host(y_pred, what + " y_pred"))
        super().update_state(np.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self) -> float:
        return math.sqrt(super().result())
