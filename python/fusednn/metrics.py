"""Metrics reported by compile/fit/evaluate, under Keras's names.

A metric function takes a batch, `fn(y_true, y_pred) -> float`, on NumPy or
CuPy arrays (both on one device) and returns the batch mean as a Python float.
`fit` and `evaluate` average those batch values weighted by batch size
(`Mean`), which equals the mean over all samples, as Keras reports it.

"accuracy" / "acc" is resolved from the loss, as Keras does:
sparse categorical cross-entropy -> sparse_categorical_accuracy,
categorical cross-entropy -> categorical_accuracy, binary cross-entropy ->
binary_accuracy. With any other loss the shapes decide on each batch: a
prediction with one value per sample is binary, integer labels with one axis
fewer than the prediction (or a trailing axis of 1) are sparse, else categorical.
"""
from __future__ import annotations

from . import backend, losses, ops
from .registry import Registry

# The metric functions by Keras name ("accuracy" / "acc" are resolved in `get`, from the loss).
_METRICS = Registry("metric", module="fusednn.metrics")
register = _METRICS.register


def _arrays(y_true, y_pred):
    """Both as arrays of one device; Python lists become NumPy."""
    xp = backend.get_array_module(y_true, y_pred)
    return xp, xp.asarray(y_true), xp.asarray(y_pred)


def _check_batch(name, y_true, y_pred):
    if y_true.shape[:1] != y_pred.shape[:1]:
        raise ValueError(f"metric {name}: y_true and y_pred must have the same batch size, "
                         f"got shapes {tuple(y_true.shape)} and {tuple(y_pred.shape)}")


def _mean(xp, values) -> float:
    return float(xp.mean(values.astype(xp.float64))) if values.size else 0.0


@register
def binary_accuracy(y_true, y_pred, threshold: float = 0.5) -> float:
    """Fraction of entries where (y_pred > threshold) equals y_true (0/1); shapes (N, ...)."""
    xp, y_true, y_pred = _arrays(y_true, y_pred)
    _check_batch("binary_accuracy", y_true, y_pred)
    if y_true.shape != y_pred.shape and y_true.size == y_pred.size:
        y_true = y_true.reshape(y_pred.shape)  # (N,) labels against (N, 1) predictions
    if y_true.shape != y_pred.shape:
        raise ValueError(f"metric binary_accuracy: expected y_true of shape {tuple(y_pred.shape)}"
                         f" (like y_pred), got {tuple(y_true.shape)}")
    predicted = (y_pred > threshold).astype(y_true.dtype)
    return _mean(xp, predicted == y_true)


@register
def categorical_accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose argmax matches; y_true one-hot (N, ..., C) like y_pred."""
    xp, y_true, y_pred = _arrays(y_true, y_pred)
    _check_batch("categorical_accuracy", y_true, y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"metric categorical_accuracy: expected one-hot y_true of shape "
                         f"{tuple(y_pred.shape)} (like y_pred), got {tuple(y_true.shape)}; "
                         "use sparse_categorical_accuracy for integer labels")
    return _mean(xp, xp.argmax(y_true, axis=-1) == xp.argmax(y_pred, axis=-1))


@register
def sparse_categorical_accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose argmax is the label; y_true (N, ...) ints, y_pred (N, ..., C)."""
    xp, y_true, y_pred = _arrays(y_true, y_pred)
    _check_batch("sparse_categorical_accuracy", y_true, y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]  # labels given as (N, 1)
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"metric sparse_categorical_accuracy: expected integer labels of shape "
                         f"{tuple(y_pred.shape[:-1])} for predictions {tuple(y_pred.shape)}, got "
                         f"{tuple(y_true.shape)}")
    return _mean(xp, xp.argmax(y_pred, axis=-1) == y_true)


def accuracy(y_true, y_pred) -> float:
    """Accuracy chosen from the shapes (see the module docstring)."""
    _, y_true_arr, y_pred_arr = _arrays(y_true, y_pred)
    return _accuracy_for_shapes(y_true_arr, y_pred_arr)(y_true_arr, y_pred_arr)


def _accuracy_for_shapes(y_true, y_pred):
    if y_pred.ndim >= 1 and y_pred.shape[-1] == 1 or y_pred.ndim == 1:
        return binary_accuracy
    sparse = (y_true.ndim < y_pred.ndim
              or (y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1 and y_pred.shape[-1] > 1))
    return sparse_categorical_accuracy if sparse else categorical_accuracy


@register(aliases=("mse",))
def mean_squared_error(y_true, y_pred) -> float:
    xp, y_true, y_pred = _arrays(y_true, y_pred)
    _check_batch("mean_squared_error", y_true, y_pred)
    diff = y_pred.astype(xp.float64) - y_true.astype(xp.float64).reshape(y_pred.shape)
    return _mean(xp, diff * diff)


@register(aliases=("mae",))
def mean_absolute_error(y_true, y_pred) -> float:
    xp, y_true, y_pred = _arrays(y_true, y_pred)
    _check_batch("mean_absolute_error", y_true, y_pred)
    diff = y_pred.astype(xp.float64) - y_true.astype(xp.float64).reshape(y_pred.shape)
    return _mean(xp, xp.abs(diff))


class Metric:
    """A named metric function; `name` is the key in fit/evaluate logs."""

    def __init__(self, fn, name: str):
        self.fn = fn
        self.name = name

    def __call__(self, y_true, y_pred) -> float:
        return float(self.fn(y_true, y_pred))

    def get_config(self) -> dict:
        return {"name": self.name}

    def __repr__(self):
        return f"<Metric {self.name}>"


class Mean:
    """Running mean of batch values weighted by batch size."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float, weight: int) -> None:
        self.total += float(value) * weight
        self.count += weight

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


# Loss classes -> the accuracy Keras pairs with them.
_ACCURACY_FOR_LOSS = {
    "SparseCategoricalCrossentropy": sparse_categorical_accuracy,
    "CategoricalCrossentropy": categorical_accuracy,
    "BinaryCrossentropy": binary_accuracy,
}


def _accuracy_for_loss(loss):
    if loss is None:
        return accuracy
    if isinstance(loss, str):
        loss = losses.get(loss)
    return _ACCURACY_FOR_LOSS.get(type(loss).__name__, accuracy)


def get(identifier, loss=None) -> Metric:
    """A Metric from a Keras name, a Metric, or a callable(y_true, y_pred) -> float.

    `loss` (a Loss or its name) picks the accuracy behind "accuracy" / "acc".
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            return Metric(_accuracy_for_loss(loss), identifier)
        if key not in _METRICS:
            known = sorted(_METRICS.names() + ["accuracy", "acc"])
            raise ValueError(f"unknown metric {identifier!r}; expected one of {', '.join(known)}")
        return Metric(_METRICS.lookup(key), identifier)
    if callable(identifier):
        # A Loss object keeps its Keras name ("mean_squared_error"); a function its own.
        name = getattr(identifier, "name", None)
        if not isinstance(name, str):
            name = getattr(identifier, "__name__", type(identifier).__name__)
        return Metric(_batch_mean(identifier), name)
    raise TypeError(f"metric must be a name, a Metric or a callable(y_true, y_pred), "
                    f"got {identifier!r}")


def _batch_mean(fn):
    """Keras's MeanMetricWrapper: a function's values (one per sample, as Keras metric
    functions return, or already their mean) averaged over the batch with fusednn.ops."""
    def batch_mean(y_true, y_pred):
        return ops.mean(fn(y_true, y_pred))
    return batch_mean


def serialize(metric: Metric) -> str:
    """The name a saved model stores; only built-in metrics can be restored."""
    key = metric.name.lower()
    if key not in ("accuracy", "acc") and key not in _METRICS:
        raise ValueError(f"metric {metric.name!r} is a custom function and cannot be saved; "
                         "compile the loaded model again with it")
    return metric.name
