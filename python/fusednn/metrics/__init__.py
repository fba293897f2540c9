"""Metrics with Keras 3's names and state (fusednn.metrics).

A metric is a `Metric` object: `update_state(y_true, y_pred, sample_weight=None)` adds a
batch, `result()` reports over everything added since `reset_state()`; calling it does
both. compile(metrics=[...]) takes Metric objects, Keras names ("auc", "precision",
"mse", "accuracy" ...), serialized dicts, or functions fn(y_true, y_pred) returning one
value per sample, which `MeanMetricWrapper` averages (a scalar counts as one value).
fit and evaluate reset every compiled metric when an epoch or an evaluation starts and
log result().

Modules: base (Metric, Mean, Sum, MeanMetricWrapper), functions (the per-sample metric
functions), wrappers (accuracies, MSE, MAE, RMSE), confusion (TruePositives ...
Precision, Recall), auc (AUC).
"""
from __future__ import annotations

from .. import losses
from ..naming import snake_case
from ..registry import Registry
from .auc import AUC
from .base import Mean, MeanMetricWrapper, Metric, Sum
from .confusion import (FalseNegatives, FalsePositives, Precision, Recall, TrueNegatives,
                        TruePositives)
from .functions import (accuracy, binary_accuracy, categorical_accuracy, mean_absolute_error,
                        mean_squared_error, sparse_categorical_accuracy,
                        sparse_top_k_categorical_accuracy, top_k_categorical_accuracy)
from .wrappers import (BinaryAccuracy, CategoricalAccuracy, MeanAbsoluteError,
                       MeanSquaredError, RootMeanSquaredError, SparseCategoricalAccuracy,
                       SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy)

# Metric classes by class name and its snake_case (Keras's ALL_OBJECTS_DICT), plus
# Keras's short aliases. A user's Metric subclass registered here can be saved and loaded.
_METRICS = Registry("metric", base=Metric, module="fusednn.metrics")
register = _METRICS.register
_ALIASES = {MeanSquaredError: ("mse",), MeanAbsoluteError: ("mae",)}
for _cls in (Mean, Sum, AUC, TruePositives, FalsePositives, TrueNegatives, FalseNegatives,
             Precision, Recall, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
             TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError,
             MeanAbsoluteError, RootMeanSquaredError):
    register(_cls, aliases=(snake_case(_cls.__name__),)
             + _ALIASES.get(_cls, ()))

# The functions a user may pass by object (compile(metrics=[fd.metrics.binary_accuracy])),
# saved under their names.
_FUNCTIONS = {fn.__name__: fn for fn in (
    binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
    top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, mean_squared_error,
    mean_absolute_error)}

# Loss classes -> the accuracy Keras pairs with them.
_ACCURACY_FOR_LOSS = {
    "SparseCategoricalCrossentropy": sparse_categorical_accuracy,
    "CategoricalCrossentropy": categorical_accuracy,
    "BinaryCrossentropy": binary_accuracy,
}


def accuracy_for_loss(loss):
    """The accuracy function behind "accuracy" for a Loss or loss name (None: by shapes)."""
    if loss is None:
        return accuracy
    if isinstance(loss, str):
        loss = losses.get(loss)
    return _ACCURACY_FOR_LOSS.get(type(loss).__name__, accuracy)


def get(identifier, loss=None) -> Metric:
    """A Metric from a Metric (as is), a Keras name (a new object; "accuracy" / "acc"
    follow `loss`, a Loss or its name), a serialized dict, or a callable(y_true, y_pred)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return MeanMetricWrapper(accuracy_for_loss(loss), name=identifier)
        if identifier not in _METRICS:
            raise ValueError(f"unknown metric {identifier!r}; expected one of "
                             f"{', '.join(sorted(_METRICS.names() + ['accuracy', 'acc']))}")
        return _METRICS.lookup(identifier)()
    if isinstance(identifier, dict):
        return _METRICS.deserialize(identifier)
    if callable(identifier):
        # A Loss object keeps its Keras name ("mean_squared_error"); a function its own.
        name = getattr(identifier, "name", None)
        if not isinstance(name, str):
            name = getattr(identifier, "__name__", type(identifier).__name__)
        return MeanMetricWrapper(identifier, name=name)
    raise TypeError(f"metric must be a name, a Metric, a serialized dict or a "
                    f"callable(y_true, y_pred), got {identifier!r}")


def serialize(identifier):
    """What a saved model stores for a compiled metric: a name as given, a built-in (or
    registered) Metric as {"class_name", "config"}, one of this module's functions by name.
    Anything else cannot be restored and raises ValueError."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, Metric):
        return _METRICS.serialize(identifier)
    name = getattr(identifier, "__name__", None)
    if _FUNCTIONS.get(name) is identifier:
        return name
    raise ValueError(f"metric {getattr(identifier, 'name', name) or identifier!r} is a custom "
                     "function and cannot be saved; compile the loaded model again with it")


__all__ = ["AUC", "BinaryAccuracy", "CategoricalAccuracy", "FalseNegatives", "FalsePositives",
           "Mean", "MeanAbsoluteError", "MeanMetricWrapper", "MeanSquaredError", "Metric",
           "Precision", "Recall", "RootMeanSquaredError", "SparseCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "Sum", "TopKCategoricalAccuracy", "TrueNegatives",
           "TruePositives", "accuracy", "binary_accuracy", "categorical_accuracy", "get",
           "mean_absolute_error", "mean_squared_error", "register", "serialize",
           "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy",
           "top_k_categorical_accuracy"]
