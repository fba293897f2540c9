"""Losses under Keras 3's names, defaults and formulas; every loss is the mean over the batch.

A loss is called as `loss(y_true, y_pred) -> float` and gives its gradient with
`loss.value_and_grad(y_true, y_pred) -> (float, dy_pred)`, where `dy_pred` is the
gradient of that mean with respect to `y_pred` (same shape, dtype and device).

Reduction (Keras's "sum_over_batch_size"): each loss first makes per-sample
values (elementwise losses average the last axis, cross-entropies sum it), then
averages them; for the elementwise losses this is the mean over all elements.

Arrays: `y_pred` keeps float32 / float64; other real dtypes are cast to float32.
`y_true` is cast to `y_pred`'s dtype and must live on the same device (NumPy or
CuPy); mixing devices is a TypeError. Shapes follow Keras's rank rule: when the
ranks differ by one and the longer shape ends in 1, that axis is dropped (so
y_true (N,) fits y_pred (N, 1)); after that the shapes must be equal.

Cross-entropy on logits runs on the fused kernels in `fusednn.ops`. With
`from_logits=False` the categorical losses take probabilities as Keras does
(normalise each row to sum 1, clip to [1e-7, 1 - 1e-7], take logs); in a model
whose last layer is a softmax they also offer `value_and_grad_from_logits`, the
same loss computed from the softmax's logits on the fused kernel (what Keras
does internally: faster, and stable where probabilities underflow).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import backend, ops
from .registry import Registry

# Keras's backend.epsilon(): the clip applied to probabilities before logs.
_EPSILON = 1e-7


class Loss:
    """Base class. Subclasses implement `_evaluate(y_true, y_pred, with_grad)`.

    `_evaluate` returns (mean loss as a 0-d array or float, gradient of the mean
    w.r.t. y_pred or None when `with_grad` is False).
    """

    default_name = "loss"

    def __init__(self, name=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string, got {name!r}")
        self.name = name or self.default_name

    def __call__(self, y_true, y_pred) -> float:
        value, _ = self._evaluate(y_true, y_pred, with_grad=False)
        return float(value)

    def value_and_grad(self, y_true, y_pred):
        """(mean loss, d loss / d y_pred) with the gradient shaped like y_pred."""
        value, grad = self._evaluate(y_true, y_pred, with_grad=True)
        return float(value), grad

    def check_targets(self, y_true, y_pred) -> None:
        """Raises what value_and_grad(y_true, y_pred) would raise for these targets, without
        computing the loss (y_pred lends only its shape, dtype and device): a training step
        checks its labels before the forward, so bad labels fail before any kernel runs.
        Losses whose targets need no check beyond the loss itself keep this no-op."""

    def call(self, y_true, y_pred):
        """Keras 3's way to write a loss: the per-sample losses (or their mean) of y_true and
        y_pred, written with fusednn.ops; the base class averages them and differentiates
        them with the tape (see `LossFunctionWrapper`). Built-in losses implement
        `_evaluate` with their gradient written out instead."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred) "
                                  "with fusednn.ops, or _evaluate(y_true, y_pred, with_grad)")

    def _evaluate(self, y_true, y_pred, with_grad):
        return _evaluate_call(self, y_true, y_pred, with_grad)

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"

    # ----- input checks shared by the subclasses ------------------------
    def _label(self) -> str:
        return type(self).__name__

    def _prediction(self, y_pred):
        """y_pred as a float32/float64 array with a batch axis and at least one element."""
        dtype = getattr(y_pred, "dtype", None)
        dtype = dtype if dtype in (np.float32, np.float64) else np.float32
        scalar = np.ndim(y_pred) == 0   # checked first: the cast makes scalars 1-D
        y_pred = backend.as_float_array(y_pred, dtype, f"{self._label()} y_pred")
        if scalar or y_pred.size == 0:
            raise ValueError(f"{self._label()}: y_pred must be a non-empty batch (rank >= 1, "
                             f"batch first), got shape {tuple(y_pred.shape)}")
        return y_pred

    def _target(self, y_true, y_pred):
        """y_true on y_pred's device (else TypeError), cast to y_pred's dtype."""
        if backend.device_of(y_true) != backend.device_of(y_pred):
            raise TypeError(f"{self._label()}: y_true is on {backend.device_of(y_true)} "
                            f"({type(y_true).__module__}.{type(y_true).__name__}) but y_pred is "
                            f"on {backend.device_of(y_pred)}; move both to one device with "
                            f"fusednn.backend.to_device")
        return backend.as_float_array(y_true, y_pred.dtype, f"{self._label()} y_true")

    def _matching_target(self, y_true, y_pred):
        """y_true cast and reshaped to y_pred's shape by Keras's rank rule, else ValueError."""
        y_true = self._target(y_true, y_pred)
        true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
        if true_shape == pred_shape:
            return y_true
        # Keras squeezes or expands a trailing axis of size 1 when ranks differ by one.
        if (len(true_shape) == len(pred_shape) + 1 and true_shape[-1] == 1
                and true_shape[:-1] == pred_shape) or \
           (len(pred_shape) == len(true_shape) + 1 and pred_shape[-1] == 1
                and pred_shape[:-1] == true_shape):
            return y_true.reshape(pred_shape)
        raise ValueError(f"{self._label()}: y_true and y_pred must have the same shape (or differ "
                         f"by a trailing axis of size 1), got y_true {true_shape} and "
                         f"y_pred {pred_shape}")


_LOSSES = Registry("loss", base=Loss, module="fusednn.losses")
register = _LOSSES.register


@register(aliases=("mse", "mean_squared_error"))
class MeanSquaredError(Loss):
    """mean((y_pred - y_true)^2) over all elements; y_true and y_pred (N, ...)."""

    default_name = "mean_squared_error"

    def _evaluate(self, y_true, y_pred, with_grad):
        y_pred = self._prediction(y_pred)
        xp = backend.get_array_module(y_pred)
        diff = y_pred - self._matching_target(y_true, y_pred)
        value = xp.mean(diff * diff)
        grad = diff * (2.0 / diff.size) if with_grad else None
        return value, grad


@register(aliases=("mae", "mean_absolute_error"))
class MeanAbsoluteError(Loss):
    """mean(|y_pred - y_true|) over all elements; the gradient at a zero error is 0."""

    default_name = "mean_absolute_error"

    def _evaluate(self, y_true, y_pred, with_grad):
        y_pred = self._prediction(y_pred)
        xp = backend.get_array_module(y_pred)
        diff = y_pred - self._matching_target(y_true, y_pred)
        value = xp.mean(xp.abs(diff))
        grad = xp.sign(diff) * (1.0 / diff.size) if with_grad else None
        return value, grad


@register
class Huber(Loss):
    """Mean of 0.5 e^2 where |e| <= delta, delta |e| - 0.5 delta^2 elsewhere (e = y_pred - y_true)."""

    default_name = "huber_loss"

    def __init__(self, delta=1.0, name=None):
        super().__init__(name=name)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) \
                or not math.isfinite(delta) or delta <= 0:
            raise ValueError(f"Huber: delta must be a finite number > 0, got {delta!r}")
        self.delta = float(delta)

    def _evaluate(self, y_true, y_pred, with_grad):
        y_pred = self._prediction(y_pred)
        xp = backend.get_array_module(y_pred)
        error = y_pred - self._matching_target(y_true, y_pred)
        abs_error = xp.abs(error)
        quadratic = abs_error <= self.delta
        value = xp.mean(xp.where(quadratic, 0.5 * error * error,
                                 self.delta * abs_error - 0.5 * self.delta * self.delta))
        grad = None
        if with_grad:
            grad = xp.where(quadratic, error, self.delta * xp.sign(error)) * (1.0 / error.size)
        return value, grad

    def get_config(self) -> dict:
        return {**super().get_config(), "delta": self.delta}


def _check_label_smoothing(owner: str, label_smoothing) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{owner}: label_smoothing must be a number in [0, 1], "
                         f"got {label_smoothing!r}")
    return float(label_smoothing)


@register(aliases=("bce", "binary_crossentropy"))
class BinaryCrossentropy(Loss):
    """Mean of -(t log p + (1 - t) log(1 - p)) over all elements.

    from_logits=True: y_pred are logits and the loss is the stable form
    max(x, 0) - x t + log(1 + exp(-|x|)). from_logits=False: y_pred are
    probabilities, clipped to [1e-7, 1 - 1e-7] as Keras does (the gradient is 0
    where the clip is active). label_smoothing s moves targets to t (1 - s) + s / 2.
    """

    default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(name=name)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_label_smoothing("BinaryCrossentropy", label_smoothing)

    def _evaluate(self, y_true, y_pred, with_grad):
        y_pred = self._prediction(y_pred)
        xp = backend.get_array_module(y_pred)
        target = self._matching_target(y_true, y_pred)
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        scale = 1.0 / y_pred.size
        grad = None
        if self.from_logits:
            x = y_pred
            exp_neg_abs = xp.exp(-xp.abs(x))
            value = xp.mean(xp.maximum(x, 0.0) - x * target + xp.log1p(exp_neg_abs))
            if with_grad:
                # sigmoid(x) written so that neither branch overflows.
                sigmoid = xp.where(x >= 0, 1.0 / (1.0 + exp_neg_abs), exp_neg_abs / (1.0 + exp_neg_abs))
                grad = (sigmoid - target) * scale
        else:
            p = xp.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
            value = -xp.mean(target * xp.log(p) + (1.0 - target) * xp.log(1.0 - p))
            if with_grad:
                inside = (y_pred >= _EPSILON) & (y_pred <= 1.0 - _EPSILON)
                grad = xp.where(inside, (p - target) / (p * (1.0 - p)), 0.0) * scale
        return value, grad

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


def _probability_crossentropy(targets, probs, with_grad):
    """Keras's cross-entropy on probabilities, per row.

    targets, probs: (M, C). Each row of probs is divided by its sum, clipped to
    [1e-7, 1 - 1e-7], and the row loss is -sum_c t_c log q_c.
    Returns (losses (M,), d losses / d probs (M, C) or None).
    """
    xp = backend.get_array_module(probs)
    row_sums = probs.sum(axis=-1, keepdims=True)
    q = probs / row_sums
    clipped = xp.clip(q, _EPSILON, 1.0 - _EPSILON)
    losses = -(targets * xp.log(clipped)).sum(axis=-1)
    if not with_grad:
        return losses, None
    inside = (q >= _EPSILON) & (q <= 1.0 - _EPSILON)
    dq = xp.where(inside, -targets / clipped, 0.0)
    # Through the normalisation q = p / sum(p): dL/dp_j = (dL/dq_j - sum_i dL/dq_i q_i) / sum(p).
    dprobs = (dq - (dq * q).sum(axis=-1, keepdims=True)) / row_sums
    return losses, dprobs


class _SoftmaxCrossentropy(Loss):
    """Shared by the two categorical losses: the fused logits path and the probability path.

    y_pred (..., C) is seen as M rows of C classes. Subclasses provide
    `_targets(y_true, y_pred)` (validated targets for the M rows: (M, C)
    probabilities or (M,) int64 labels), `_dense_targets(targets, rows)` (those
    as (M, C) probabilities) and `_fused(targets, logits) -> (mean loss, dlogits)`
    (the fused kernel on (M, C) logits).
    """

    def __init__(self, from_logits=False, name=None):
        super().__init__(name=name)
        self.from_logits = bool(from_logits)

    def _prediction(self, y_pred):
        y_pred = super()._prediction(y_pred)
        if y_pred.ndim < 2:
            raise ValueError(f"{self._label()}: y_pred must have a batch axis and a class axis "
                             f"(N, C), got shape {tuple(y_pred.shape)}")
        return y_pred

    def _evaluate(self, y_true, y_pred, with_grad):
        y_pred = self._prediction(y_pred)
        targets = self._targets(y_true, y_pred)
        xp = backend.get_array_module(y_pred)
        rows = xp.ascontiguousarray(y_pred.reshape(-1, y_pred.shape[-1]))
        if self.from_logits:
            value, grad = self._fused(targets, rows)
        else:
            losses, grad = _probability_crossentropy(self._dense_targets(targets, rows), rows,
                                                     with_grad)
            value = xp.mean(losses)
            if grad is not None:
                grad = grad * (1.0 / rows.shape[0])
        return value, (grad.reshape(y_pred.shape) if with_grad else None)

    def check_targets(self, y_true, y_pred) -> None:
        self._targets(y_true, y_pred)

    @property
    def value_and_grad_from_logits(self):
        """`(y_true, logits) -> (float, dlogits)`: the loss of softmax(logits), on the fused kernel.

        Only for from_logits=False (y_pred are softmax outputs); with
        from_logits=True this attribute does not exist (hasattr is False), since
        the model's softmax output would then itself be the loss's logits.
        """
        if self.from_logits:
            raise AttributeError(f"{self._label()}: value_and_grad_from_logits exists only for "
                                 "from_logits=False (y_pred are softmax probabilities)")
        return self._value_and_grad_from_logits

    def _value_and_grad_from_logits(self, y_true, logits):
        logits = self._prediction(logits)
        targets = self._targets(y_true, logits)
        xp = backend.get_array_module(logits)
        rows = xp.ascontiguousarray(logits.reshape(-1, logits.shape[-1]))
        value, grad = self._fused(targets, rows)
        return float(value), grad.reshape(logits.shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits}


@register(aliases=("categorical_crossentropy",))
class CategoricalCrossentropy(_SoftmaxCrossentropy):
    """Mean over samples of -sum_c t_c log p_c; y_true one-hot / probabilities (N, C) like y_pred.

    from_logits=True: y_pred are logits (fused softmax cross-entropy kernel).
    from_logits=False: y_pred are probabilities, normalised and clipped as in Keras.
    label_smoothing s: targets become t (1 - s) + s / C. Leading axes beyond the
    batch, e.g. (N, T, C), count as separate samples in the mean.
    """

    default_name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None):
        super().__init__(from_logits=from_logits, name=name)
        self.label_smoothing = _check_label_smoothing("CategoricalCrossentropy", label_smoothing)

    def _targets(self, y_true, y_pred):
        targets = self._target(y_true, y_pred)
        if tuple(targets.shape) != tuple(y_pred.shape):
            raise ValueError(f"{self._label()}: y_true must have y_pred's shape (one-hot or "
                             f"probabilities per class), got y_true {tuple(targets.shape)} and "
                             f"y_pred {tuple(y_pred.shape)}; for integer class labels use "
                             f"SparseCategoricalCrossentropy")
        num_classes = targets.shape[-1]
        if self.label_smoothing:
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        xp = backend.get_array_module(targets)
        return xp.ascontiguousarray(targets.reshape(-1, num_classes))

    def _dense_targets(self, targets, rows):
        return targets

    def _fused(self, targets, logits):
        losses, dlogits = ops.softmax_cross_entropy(logits, targets,
                                                    grad_scale=1.0 / logits.shape[0])
        return losses.mean(), dlogits

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@register(aliases=("sparse_categorical_crossentropy",))
class SparseCategoricalCrossentropy(_SoftmaxCrossentropy):
    """Mean over samples of -log p[label]; y_true integer class indices.

    y_pred (N, C); y_true (N,) or (N, 1) of ints or integral floats (more
    generally y_pred.shape[:-1], optionally with a trailing 1). Non-integral or
    non-finite labels, or a wrong shape, are a ValueError; labels outside
    [0, C) an IndexError.
    """

    default_name = "sparse_categorical_crossentropy"

    def _targets(self, y_true, y_pred):
        """Labels as a flat (M,) int64 array, validated against y_pred (..., C)."""
        if backend.device_of(y_true) != backend.device_of(y_pred):
            raise TypeError(f"{self._label()}: y_true is on {backend.device_of(y_true)} but "
                            f"y_pred is on {backend.device_of(y_pred)}; move both to one device "
                            f"with fusednn.backend.to_device")
        xp = backend.get_array_module(y_pred)
        labels = xp.asarray(y_true)
        if labels.dtype.kind not in "biuf":
            raise TypeError(f"{self._label()}: y_true must hold integer class indices, got "
                            f"dtype {labels.dtype}")
        lead, num_classes = tuple(y_pred.shape[:-1]), y_pred.shape[-1]
        if tuple(labels.shape) == lead + (1,):
            labels = labels.reshape(lead)
        elif tuple(labels.shape) != lead:
            raise ValueError(f"{self._label()}: y_true must hold one class index per sample, "
                             f"shape {lead} or {lead + (1,)} for y_pred of shape "
                             f"{tuple(y_pred.shape)}, got y_true of shape {tuple(labels.shape)}")
        labels = labels.reshape(-1)
        if labels.dtype.kind == "f":
            integral = xp.isfinite(labels) & (labels == xp.floor(labels))
            if not bool(integral.all()):
                bad = labels[~integral][0]
                raise ValueError(f"{self._label()}: y_true must hold integer class indices, got "
                                 f"the non-integral value {float(bad)!r}")
        labels = labels.astype(xp.int64)
        out_of_range = (labels < 0) | (labels >= num_classes)
        if bool(out_of_range.any()):
            bad = int(labels[out_of_range][0])
            raise IndexError(f"{self._label()}: class index {bad} is out of range for y_pred with "
                             f"{num_classes} classes (valid: 0 to {num_classes - 1})")
        return xp.ascontiguousarray(labels)

    def _dense_targets(self, labels, rows):
        xp = backend.get_array_module(rows)
        one_hot = xp.zeros_like(rows)
        one_hot[xp.arange(rows.shape[0]), labels] = 1.0
        return one_hot

    def _fused(self, labels, logits):
        losses, dlogits = ops.sparse_softmax_cross_entropy(logits, labels,
                                                           grad_scale=1.0 / logits.shape[0])
        return losses.mean(), dlogits


class LossFunctionWrapper(Loss):
    """A loss from a function fn(y_true, y_pred) written with fusednn.ops (Keras 3's
    LossFunctionWrapper; what `compile(loss=fn)` makes of a plain function). It holds code,
    so a model compiled with it cannot save its loss: compile the loaded model again."""

    def __init__(self, fn, name=None):
        if not callable(fn):
            raise TypeError(f"LossFunctionWrapper: expected a function fn(y_true, y_pred), "
                            f"got {type(fn).__name__} {fn!r}")
        super().__init__(name=name or getattr(fn, "__name__", None) or None)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def _evaluate_call(loss, y_true, y_pred, with_grad):
    """A `call`-based loss's (mean, gradient): y_true cast to y_pred's dtype, a trailing
    axis of 1 on either side matched to the other's rank (Keras's
    squeeze_or_expand_to_same_rank), then the mean of call's values (Keras's
    "sum_over_batch_size") differentiated w.r.t. y_pred by the tape."""
    y_pred = loss._prediction(y_pred)
    y_true = loss._target(y_true, y_pred)
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1 or \
            y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_true = y_true.reshape(tuple(y_true.shape[:-1]) if y_true.ndim > y_pred.ndim
                                else tuple(y_true.shape) + (1,))

    def mean_loss(prediction):
        return ops.mean(loss.call(y_true, prediction))

    if not with_grad:
        return ops.tape.value_of(mean_loss(y_pred)), None
    return ops.value_and_grad(mean_loss)(y_pred)


def get(identifier):
    """A Loss from a Loss (returned as is), a Keras name ('mse', 'categorical_crossentropy',
    'Huber', ...), a serialized dict, a function fn(y_true, y_pred) written with fusednn.ops
    (a LossFunctionWrapper), or None (returned as None)."""
    if identifier is None:
        return None
    if callable(identifier) and not isinstance(identifier, (Loss, type)):
        return LossFunctionWrapper(identifier)
    return _LOSSES.get(identifier)


def serialize(loss) -> dict:
    """{"class_name", "config"} of a registered loss; a user function cannot be saved."""
    if isinstance(loss, LossFunctionWrapper):
        raise ValueError(f"loss {loss.name!r} is the user function {loss.fn!r}, which cannot "
                         f"be saved (the safe format holds no code); save without it or "
                         f"compile the loaded model again with it")
    return _LOSSES.serialize(loss)


deserialize = _LOSSES.deserialize
