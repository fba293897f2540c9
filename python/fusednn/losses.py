"""Losses under Keras 3's names, defaults, formulas and reductions.

A loss is called as `loss(y_true, y_pred) -> float` and gives its gradient with
`loss.value_and_grad(y_true, y_pred) -> (float, dy_pred)`, where `dy_pred` is the
gradient of that value with respect to `y_pred` (same shape, dtype and device).

Reduction, as Keras: each loss first makes per-sample values (most average the
last axis, cross-entropies and KLDivergence sum it, CosineSimilarity and
BinaryFocalCrossentropy reduce their `axis`), then `reduction` combines them:
"sum_over_batch_size" (the default; "mean" is the same) averages them, so that
for the elementwise losses the value is the mean over all elements; "sum" adds
them; "none" makes calling the loss return them (an array) and value_and_grad
refuse, as there is no single value to differentiate.

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


# ----- Keras 3's per-sample losses with a reduction --------------------------------
# Keras's reduce_values: "sum_over_batch_size" (and its synonyms "mean" and, without
# sample weights, "mean_with_sample_weight") divide the sum of the per-sample values
# by their count, "sum" keeps the sum, "none" / None return the per-sample values.
_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")
_REDUCTIONS = _MEAN_REDUCTIONS + ("sum", "none", None)


class _ReducedLoss(Loss):
    """A loss defined as Keras 3 defines it: per-sample values, then `reduction`.

    Subclasses implement `_per_sample(y_true, y_pred, with_grad)` on y_true
    already matched to y_pred's shape, returning (values, d sum(values) / d y_pred
    or None). With reduction "none" calling the loss returns the per-sample values
    (an array), and value_and_grad is refused: there is no single value to
    differentiate.
    """

    def __init__(self, reduction="sum_over_batch_size", name=None):
        super().__init__(name=name)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: Invalid value for argument `reduction`: "
                             f"expected one of {', '.join(map(repr, _REDUCTIONS))}, got "
                             f"{reduction!r}")
        self.reduction = reduction

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss (a float), or the per-sample values with reduction "none".

        sample_weight (Keras's): weights broadcast against the per-sample values (a
        trailing axis of size 1 matched by rank); "sum_over_batch_size" divides the
        weighted sum by the number of values, "mean_with_sample_weight" by the sum of
        the weights, "sum" keeps it."""
        if sample_weight is None:
            if self.reduction in ("none", None):
                return self._values(y_true, y_pred)
            return super().__call__(y_true, y_pred)
        values = self._values(y_true, y_pred)
        weights = self._weights_like(sample_weight, values)
        weighted = values * weights
        if self.reduction in ("none", None):
            return weighted
        if self.reduction == "sum":
            return float(weighted.sum())
        if self.reduction == "mean_with_sample_weight":
            total = float(weights.sum())
            return float(weighted.sum()) / total if total else 0.0
        return float(weighted.sum()) / values.size

    def _weights_like(self, sample_weight, values):
        """sample_weight on the values' device and dtype, broadcast to their shape."""
        xp = backend.get_array_module(values)
        weights = xp.asarray(backend.to_device(backend.to_numpy(sample_weight).astype(
            values.dtype), backend.device_of(values)))
        # Keras squeezes or expands a trailing axis of size 1 so that the ranks match.
        if weights.ndim == values.ndim + 1 and weights.shape[-1] == 1:
            weights = weights[..., 0]
        while weights.ndim < values.ndim:
            weights = weights[..., None]
        try:
            return xp.broadcast_to(weights, values.shape)
        except ValueError:
            raise ValueError(f"{self._label()}: sample_weight of shape {tuple(weights.shape)} "
                             f"does not broadcast to the per-sample losses of shape "
                             f"{tuple(values.shape)}") from None

    def value_and_grad(self, y_true, y_pred):
        self._check_reduced()
        return super().value_and_grad(y_true, y_pred)

    def _check_reduced(self):
        if self.reduction in ("none", None):
            raise ValueError(f"{self._label()}: reduction={self.reduction!r} gives one value per "
                             f"sample, which has no single gradient; use 'sum_over_batch_size' "
                             f"or 'sum' to train")

    def _matched(self, y_true, y_pred):
        y_pred = self._prediction(y_pred)
        return self._matching_target(y_true, y_pred), y_pred

    def _values(self, y_true, y_pred):
        """The per-sample values (reduction "none")."""
        return self._per_sample(*self._matched(y_true, y_pred), with_grad=False)[0]

    def _evaluate(self, y_true, y_pred, with_grad):
        values, grad = self._per_sample(*self._matched(y_true, y_pred), with_grad)
        scale = self._scale(values.size)
        return values.sum() * scale, (grad * scale if with_grad else None)

    def _scale(self, count):
        """The factor from the sum of `count` per-sample values to the reduced loss."""
        return 1.0 / count if self.reduction in _MEAN_REDUCTIONS else 1.0

    def get_config(self) -> dict:
        return {**super().get_config(), "reduction": self.reduction}


class _MeanOverAxisLoss(_ReducedLoss):
    """Keras's `mean(f(y_true, y_pred), axis=-1)` of an elementwise f, given by
    `_elementwise(y_true, y_pred, with_grad) -> (f, df / dy_pred or None)`."""

    def _per_sample(self, y_true, y_pred, with_grad):
        values, grad = self._elementwise(y_true, y_pred, with_grad)
        count = y_pred.shape[-1]
        return values.mean(axis=-1), (grad * (1.0 / count) if with_grad else None)


@register(aliases=("mse", "mean_squared_error"))
class MeanSquaredError(_MeanOverAxisLoss):
    """mean((y_pred - y_true)^2, axis=-1); y_true and y_pred (N, ...)."""

    default_name = "mean_squared_error"

    def _elementwise(self, y_true, y_pred, with_grad):
        diff = y_pred - y_true
        return diff * diff, (2.0 * diff if with_grad else None)


@register(aliases=("mae", "mean_absolute_error"))
class MeanAbsoluteError(_MeanOverAxisLoss):
    """mean(|y_pred - y_true|, axis=-1); the gradient at a zero error is 0."""

    default_name = "mean_absolute_error"

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        diff = y_pred - y_true
        return xp.abs(diff), (xp.sign(diff) if with_grad else None)


@register
class Huber(_MeanOverAxisLoss):
    """Mean over the last axis of 0.5 e^2 where |e| <= delta, delta |e| - 0.5 delta^2
    elsewhere (e = y_pred - y_true)."""

    default_name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) \
                or not math.isfinite(delta) or delta <= 0:
            raise ValueError(f"Huber: delta must be a finite number > 0, got {delta!r}")
        self.delta = float(delta)

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        error = y_pred - y_true
        abs_error = xp.abs(error)
        quadratic = abs_error <= self.delta
        values = xp.where(quadratic, 0.5 * error * error,
                          self.delta * abs_error - 0.5 * self.delta * self.delta)
        grad = xp.where(quadratic, error, self.delta * xp.sign(error)) if with_grad else None
        return values, grad

    def get_config(self) -> dict:
        return {**super().get_config(), "delta": self.delta}


def _check_label_smoothing(owner: str, label_smoothing) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{owner}: label_smoothing must be a number in [0, 1], "
                         f"got {label_smoothing!r}")
    return float(label_smoothing)


@register(aliases=("bce", "binary_crossentropy"))
class BinaryCrossentropy(_MeanOverAxisLoss):
    """Mean over the last axis of -(t log p + (1 - t) log(1 - p)).

    from_logits=True: y_pred are logits and the loss is the stable form
    max(x, 0) - x t + log(1 + exp(-|x|)). from_logits=False: y_pred are
    probabilities, clipped to [1e-7, 1 - 1e-7] as Keras does (the gradient is 0
    where the clip is active). label_smoothing s moves targets to t (1 - s) + s / 2.
    """

    default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_label_smoothing("BinaryCrossentropy", label_smoothing)

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        target = y_true
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        grad = None
        if self.from_logits:
            x = y_pred
            exp_neg_abs = xp.exp(-xp.abs(x))
            values = xp.maximum(x, 0.0) - x * target + xp.log1p(exp_neg_abs)
            if with_grad:
                # sigmoid(x) written so that neither branch overflows.
                sigmoid = xp.where(x >= 0, 1.0 / (1.0 + exp_neg_abs),
                                   exp_neg_abs / (1.0 + exp_neg_abs))
                grad = sigmoid - target
        else:
            p = xp.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
            values = -(target * xp.log(p) + (1.0 - target) * xp.log(1.0 - p))
            if with_grad:
                inside = (y_pred >= _EPSILON) & (y_pred <= 1.0 - _EPSILON)
                grad = xp.where(inside, (p - target) / (p * (1.0 - p)), 0.0)
        return values, grad

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


class _SoftmaxCrossentropy(_ReducedLoss):
    """Shared by the two categorical losses: the fused logits path and the probability path.

    y_pred (..., C) is seen as M rows of C classes, each row one sample of the
    reduction. Subclasses provide `_targets(y_true, y_pred)` (validated targets for
    the M rows: (M, C) probabilities or (M,) int64 labels), `_dense_targets(targets,
    rows)` (those as (M, C) probabilities) and `_fused(targets, logits, grad_scale)
    -> (row losses (M,), grad_scale * d sum(losses) / d logits)` (the fused kernel on
    (M, C) logits).
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.from_logits = bool(from_logits)

    def _prediction(self, y_pred):
        y_pred = super()._prediction(y_pred)
        if y_pred.ndim < 2:
            raise ValueError(f"{self._label()}: y_pred must have a batch axis and a class axis "
                             f"(N, C), got shape {tuple(y_pred.shape)}")
        return y_pred

    def _rows(self, y_true, y_pred):
        """(validated targets, the (M,) mask of rows that count or None for all, y_pred as
        contiguous (M, C) rows, y_pred)."""
        y_pred = self._prediction(y_pred)
        targets, mask = self._targets_and_mask(y_true, y_pred)
        xp = backend.get_array_module(y_pred)
        return targets, mask, xp.ascontiguousarray(y_pred.reshape(-1, y_pred.shape[-1])), y_pred

    def _targets_and_mask(self, y_true, y_pred):
        """The validated targets, and None: every row counts (SparseCategoricalCrossentropy
        with ignore_class masks some)."""
        return self._targets(y_true, y_pred), None

    def _masked_scale(self, mask, rows: int):
        """The reduction's factor; with a row mask, Keras's masked mean divides by the number
        of rows that count plus its epsilon (1e-7)."""
        if mask is None or self.reduction not in _MEAN_REDUCTIONS:
            return self._scale(rows)
        return 1.0 / (float(mask.sum()) + _EPSILON)

    @staticmethod
    def _apply_mask(mask, losses, grad):
        if mask is None:
            return losses, grad
        return losses * mask, (None if grad is None else grad * mask[:, None])

    def _values(self, y_true, y_pred):
        targets, mask, rows, y_pred = self._rows(y_true, y_pred)
        if self.from_logits:
            losses, _ = self._fused(targets, rows, 0.0)
        else:
            losses, _ = _probability_crossentropy(self._dense_targets(targets, rows), rows, False)
        losses, _ = self._apply_mask(mask, losses, None)
        return losses.reshape(y_pred.shape[:-1])

    def _evaluate(self, y_true, y_pred, with_grad):
        targets, mask, rows, y_pred = self._rows(y_true, y_pred)
        scale = self._masked_scale(mask, rows.shape[0])
        if self.from_logits:
            losses, grad = self._fused(targets, rows, scale)
        else:
            losses, grad = _probability_crossentropy(self._dense_targets(targets, rows), rows,
                                                     with_grad)
            if grad is not None:
                grad = grad * scale
        losses, grad = self._apply_mask(mask, losses, grad)
        return losses.sum() * scale, (grad.reshape(y_pred.shape) if with_grad else None)

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
        self._check_reduced()
        targets, mask, rows, logits = self._rows(y_true, logits)
        scale = self._masked_scale(mask, rows.shape[0])
        losses, grad = self._apply_mask(mask, *self._fused(targets, rows, scale))
        return float(losses.sum() * scale), grad.reshape(logits.shape)

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

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size",
                 name=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
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

    def _fused(self, targets, logits, grad_scale):
        return ops.softmax_cross_entropy(logits, targets, grad_scale=grad_scale)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@register(aliases=("sparse_categorical_crossentropy",))
class SparseCategoricalCrossentropy(_SoftmaxCrossentropy):
    """Mean over samples of -log p[label]; y_true integer class indices.

    y_pred (N, C); y_true (N,) or (N, 1) of ints or integral floats (more
    generally y_pred.shape[:-1], optionally with a trailing 1). Non-integral or
    non-finite labels, or a wrong shape, are a ValueError; labels outside
    [0, C) an IndexError. ignore_class (Keras 3, e.g. -1 or a segmentation's void
    class): samples with that label add nothing, and the mean is over the others
    (Keras's masked reduction: their number plus 1e-7).
    """

    default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name)
        if ignore_class is not None and (isinstance(ignore_class, bool)
                                         or not isinstance(ignore_class, numbers.Integral)):
            raise ValueError(f"SparseCategoricalCrossentropy: ignore_class must be None or an "
                             f"int, got {ignore_class!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _targets(self, y_true, y_pred):
        return self._targets_and_mask(y_true, y_pred)[0]

    def _targets_and_mask(self, y_true, y_pred):
        """Labels as a flat (M,) int64 array, validated against y_pred (..., C), and the
        mask of rows that count (None without ignore_class; ignored rows get label 0)."""
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
        mask = None
        if self.ignore_class is not None:
            mask = labels != self.ignore_class
            labels = xp.where(mask, labels, 0)
        out_of_range = (labels < 0) | (labels >= num_classes)
        if bool(out_of_range.any()):
            bad = int(labels[out_of_range][0])
            raise IndexError(f"{self._label()}: class index {bad} is out of range for y_pred with "
                             f"{num_classes} classes (valid: 0 to {num_classes - 1})")
        return xp.ascontiguousarray(labels), (None if mask is None else mask.astype(y_pred.dtype))

    def _dense_targets(self, labels, rows):
        xp = backend.get_array_module(rows)
        one_hot = xp.zeros_like(rows)
        one_hot[xp.arange(rows.shape[0]), labels] = 1.0
        return one_hot

    def _fused(self, labels, logits, grad_scale):
        return ops.sparse_softmax_cross_entropy(logits, labels, grad_scale=grad_scale)

    def get_config(self) -> dict:
        return {**super().get_config(), "ignore_class": self.ignore_class}



def _check_axis(owner, axis):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{owner}: axis must be an int, got {type(axis).__name__} {axis!r}")
    return int(axis)


def _axis_of(loss, axis, y_pred):
    """axis as a non-negative index of y_pred's axes, else ValueError."""
    if not -y_pred.ndim <= axis < y_pred.ndim:
        raise ValueError(f"{loss._label()}: axis {axis} is out of range for y_pred of shape "
                         f"{tuple(y_pred.shape)}")
    return axis % y_pred.ndim


def _hinge_labels(y_true):
    """Keras's convert_binary_labels_to_hinge: labels that are all 0 or 1 become -1 or 1."""
    xp = backend.get_array_module(y_true)
    is_binary = bool(xp.all((y_true == 0) | (y_true == 1)))
    return 2.0 * y_true - 1.0 if is_binary else y_true


@register(aliases=("hinge",))
class Hinge(_MeanOverAxisLoss):
    """mean(maximum(1 - y_true * y_pred, 0), axis=-1); y_true in {-1, 1} (labels that are
    all 0 or 1 are mapped to -1 or 1, as Keras does). At the kink the gradient is -y_true
    (a maximum passes its gradient to its first argument on ties, as TensorFlow's)."""

    default_name = "hinge"

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        t = _hinge_labels(y_true)
        margin = 1.0 - t * y_pred
        return xp.maximum(margin, 0.0), (xp.where(margin >= 0, -t, 0.0) if with_grad else None)


@register(aliases=("squared_hinge",))
class SquaredHinge(_MeanOverAxisLoss):
    """mean(square(maximum(1 - y_true * y_pred, 0)), axis=-1); labels as in Hinge."""

    default_name = "squared_hinge"

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        t = _hinge_labels(y_true)
        margin = xp.maximum(1.0 - t * y_pred, 0.0)
        return margin * margin, (-2.0 * t * margin if with_grad else None)


@register(aliases=("categorical_hinge",))
class CategoricalHinge(_ReducedLoss):
    """maximum(neg - pos + 1, 0) per sample, pos = sum(y_true * y_pred, axis=-1),
    neg = max((1 - y_true) * y_pred, axis=-1); y_true one-hot (N, C) like y_pred.
    Tied maxima share the gradient of neg equally (as TensorFlow's reduce_max)."""

    default_name = "categorical_hinge"

    def _per_sample(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        others = (1.0 - y_true) * y_pred
        neg = others.max(axis=-1, keepdims=True)
        pos = (y_true * y_pred).sum(axis=-1, keepdims=True)
        margin = neg - pos + 1.0
        values = xp.maximum(margin, 0.0)[..., 0]
        if not with_grad:
            return values, None
        at_max = (others == neg).astype(y_pred.dtype)
        dneg = at_max / at_max.sum(axis=-1, keepdims=True) * (1.0 - y_true)
        return values, xp.where(margin >= 0, dneg - y_true, 0.0)


@register(aliases=("kl_divergence", "kld"))
class KLDivergence(_ReducedLoss):
    """sum(t * log(t / p), axis=-1) with t = clip(y_true, 1e-7, 1), p = clip(y_pred, 1e-7, 1);
    the gradient is 0 where the clip of y_pred is active."""

    default_name = "kl_divergence"

    def _per_sample(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        t = xp.clip(y_true, _EPSILON, 1.0)
        p = xp.clip(y_pred, _EPSILON, 1.0)
        values = (t * xp.log(t / p)).sum(axis=-1)
        if not with_grad:
            return values, None
        inside = (y_pred >= _EPSILON) & (y_pred <= 1.0)
        return values, xp.where(inside, -t / p, 0.0)


@register(aliases=("poisson",))
class Poisson(_MeanOverAxisLoss):
    """mean(y_pred - y_true * log(y_pred + 1e-7), axis=-1); y_pred are rates (>= 0)."""

    default_name = "poisson"

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        shifted = y_pred + _EPSILON
        return (y_pred - y_true * xp.log(shifted),
                (1.0 - y_true / shifted) if with_grad else None)


@register(aliases=("log_cosh",))
class LogCosh(_MeanOverAxisLoss):
    """mean(log(cosh(y_pred - y_true)), axis=-1), computed as Keras does as
    x + softplus(-2x) - log(2), which does not overflow; the gradient is tanh(x)."""

    default_name = "log_cosh"

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        x = y_pred - y_true
        minus_2x = -2.0 * x
        softplus = xp.maximum(minus_2x, 0.0) + xp.log1p(xp.exp(-xp.abs(minus_2x)))
        return x + softplus - math.log(2.0), (xp.tanh(x) if with_grad else None)


@register(aliases=("cosine_similarity",))
class CosineSimilarity(_ReducedLoss):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred), axis) per sample, with Keras's
    l2_normalize(x) = x * min(rsqrt(sum(x^2, axis)), 1 / 1e-7): between -1 (same
    direction) and 1; a zero vector gives 0."""

    default_name = "cosine_similarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.axis = _check_axis("CosineSimilarity", axis)

    @staticmethod
    def _inverse_norm(x, axis):
        """min(rsqrt(sum(x^2)), 1 / eps) and whether the cap is active."""
        xp = backend.get_array_module(x)
        square_sum = (x * x).sum(axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):
            inverse = 1.0 / xp.sqrt(square_sum)
        capped = inverse >= 1.0 / _EPSILON
        return xp.where(capped, 1.0 / _EPSILON, inverse), capped

    def _per_sample(self, y_true, y_pred, with_grad):
        axis = _axis_of(self, self.axis, y_pred)
        xp = backend.get_array_module(y_pred)
        true_inverse, _ = self._inverse_norm(y_true, axis)
        pred_inverse, capped = self._inverse_norm(y_pred, axis)
        unit_true, unit_pred = y_true * true_inverse, y_pred * pred_inverse
        cosine = (unit_true * unit_pred).sum(axis=axis, keepdims=True)
        values = -xp.squeeze(cosine, axis=axis)
        if not with_grad:
            return values, None
        # d/dy of -(u . y) r with r = |y|^-1: -r (u - (u . y r) y r); with the cap, r is constant.
        return values, -pred_inverse * xp.where(capped, unit_true, unit_true - cosine * unit_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


@register(aliases=("mean_absolute_percentage_error", "mape"))
class MeanAbsolutePercentageError(_MeanOverAxisLoss):
    """100 * mean(|y_true - y_pred| / maximum(|y_true|, 1e-7), axis=-1)."""

    default_name = "mean_absolute_percentage_error"

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        scale = 100.0 / xp.maximum(xp.abs(y_true), _EPSILON)
        diff = y_pred - y_true
        return xp.abs(diff) * scale, (xp.sign(diff) * scale if with_grad else None)


@register(aliases=("mean_squared_logarithmic_error", "msle"))
class MeanSquaredLogarithmicError(_MeanOverAxisLoss):
    """mean(square(log(maximum(y_pred, 1e-7) + 1) - log(maximum(y_true, 1e-7) + 1)), axis=-1);
    the gradient is 0 where y_pred < 1e-7."""

    default_name = "mean_squared_logarithmic_error"

    def _elementwise(self, y_true, y_pred, with_grad):
        xp = backend.get_array_module(y_pred)
        shifted_pred = xp.maximum(y_pred, _EPSILON) + 1.0
        diff = xp.log(shifted_pred) - xp.log(xp.maximum(y_true, _EPSILON) + 1.0)
        if not with_grad:
            return diff * diff, None
        return diff * diff, xp.where(y_pred >= _EPSILON, 2.0 * diff / shifted_pred, 0.0)


@register(aliases=("binary_focal_crossentropy",))
class BinaryFocalCrossentropy(_ReducedLoss):
    """Keras 3's focal loss, mean over `axis` of w (1 - p_t)^gamma bce:

    t = y_true smoothed to t (1 - s) + s / 2; p = sigmoid(y_pred) with from_logits,
    else y_pred; bce = -(t log q + (1 - t) log(1 - q)) with q = clip(p, 1e-7, 1 - 1e-7)
    (no gradient through an active clip); p_t = t p + (1 - t)(1 - p); w = t alpha +
    (1 - t)(1 - alpha) with apply_class_balancing, else 1.
    """

    default_name = "binary_focal_crossentropy"

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                 label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        owner = "BinaryFocalCrossentropy"
        self.apply_class_balancing = bool(apply_class_balancing)
        self.alpha = _loss_real(owner, "alpha", alpha, lambda x: 0.0 <= x <= 1.0,
                                "a number in [0, 1]")
        self.gamma = _loss_real(owner, "gamma", gamma, lambda x: x >= 0.0, "a number >= 0")
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_label_smoothing(owner, label_smoothing)
        self.axis = _check_axis(owner, axis)

    def _per_sample(self, y_true, y_pred, with_grad):
        axis = _axis_of(self, self.axis, y_pred)
        xp = backend.get_array_module(y_pred)
        t = y_true
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            e = xp.exp(-xp.abs(y_pred))   # sigmoid without overflow on either side
            p = xp.where(y_pred >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        else:
            p = y_pred
        q = xp.clip(p, _EPSILON, 1.0 - _EPSILON)
        bce = -(t * xp.log(q) + (1.0 - t) * xp.log(1.0 - q))
        one_minus_p_t = 1.0 - (t * p + (1.0 - t) * (1.0 - p))
        focal = one_minus_p_t ** self.gamma
        weight = t * self.alpha + (1.0 - t) * (1.0 - self.alpha) if self.apply_class_balancing \
            else 1.0
        count = y_pred.shape[axis]
        values = (weight * focal * bce).mean(axis=axis)
        if not with_grad:
            return values, None
        inside = (p >= _EPSILON) & (p <= 1.0 - _EPSILON)
        dbce = xp.where(inside, (q - t) / (q * (1.0 - q)), 0.0)
        # d(1 - p_t)/dp = 1 - 2t; d(x^gamma)/dx = gamma x^(gamma - 1), 0 for gamma = 0.
        if self.gamma == 0.0:
            dfocal = 0.0
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                dfocal = self.gamma * one_minus_p_t ** (self.gamma - 1.0) * (1.0 - 2.0 * t)
        grad = weight * (dfocal * bce + focal * dbce)
        if self.from_logits:
            grad = grad * p * (1.0 - p)
        return values, grad * (1.0 / count)

    def get_config(self) -> dict:
        return {**super().get_config(), "apply_class_balancing": self.apply_class_balancing,
                "alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


def _loss_real(owner, name, value, condition, expected) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or not condition(float(value)):
        raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}")
    return float(value)


# ----- Keras's function forms: keras.losses.mean_squared_error(y_true, y_pred), ... -------
def _function_form(cls, name):
    """The function Keras exports beside `cls`: its per-sample values (reduction "none"),
    with the class's other arguments as keywords. compile(loss=fn) and get(fn) use `cls`."""
    def function(y_true, y_pred, **options):
        return cls(reduction="none", **options)(y_true, y_pred)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = (f"Keras's keras.losses.{name}: the per-sample values of "
                        f"{cls.__name__} (options: its arguments).")
    function.loss_class = cls
    return function


mean_squared_error = mse = _function_form(MeanSquaredError, "mean_squared_error")
mean_absolute_error = mae = _function_form(MeanAbsoluteError, "mean_absolute_error")
mean_absolute_percentage_error = mape = _function_form(MeanAbsolutePercentageError,
                                                       "mean_absolute_percentage_error")
mean_squared_logarithmic_error = msle = _function_form(MeanSquaredLogarithmicError,
                                                       "mean_squared_logarithmic_error")
huber = _function_form(Huber, "huber")
log_cosh = _function_form(LogCosh, "log_cosh")
binary_crossentropy = _function_form(BinaryCrossentropy, "binary_crossentropy")
binary_focal_crossentropy = _function_form(BinaryFocalCrossentropy, "binary_focal_crossentropy")
categorical_crossentropy = _function_form(CategoricalCrossentropy, "categorical_crossentropy")
sparse_categorical_crossentropy = _function_form(SparseCategoricalCrossentropy,
                                                 "sparse_categorical_crossentropy")
hinge = _function_form(Hinge, "hinge")
squared_hinge = _function_form(SquaredHinge, "squared_hinge")
categorical_hinge = _function_form(CategoricalHinge, "categorical_hinge")
kl_divergence = kld = _function_form(KLDivergence, "kl_divergence")
poisson = _function_form(Poisson, "poisson")
cosine_similarity = _function_form(CosineSimilarity, "cosine_similarity")


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
    if hasattr(identifier, "loss_class"):  # a function form: its class, as Keras's get
        return identifier.loss_class()
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
