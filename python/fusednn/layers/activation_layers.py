"""Activation layers with parameters: ReLU, LeakyReLU, PReLU (learned slopes), ELU, Softmax.

All keep the input's shape (N, ...). PReLU's alpha has the shape of one sample,
with size 1 on the `shared_axes` (1-based, not counting the batch axis, as in Keras).
"""
from __future__ import annotations

import numpy as np

from .. import activations, backend, constraints, initializers, regularizers
from .base import InputSpec, Layer
from .core import _checked, _FunctionLayer, _is_number, _SoftmaxFusion
from .registry import register


@register
class ReLU(_FunctionLayer):
    """Keras ReLU: max_value if x >= max_value, x if threshold <= x < max_value,
    negative_slope * (x - threshold) otherwise."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and (not _is_number(max_value) or max_value < 0):
            raise ValueError(f"{self._label()}: expected max_value to be None or a number >= 0, "
                             f"got {max_value!r}")
        if not _is_number(negative_slope) or negative_slope < 0:
            raise ValueError(f"{self._label()}: expected negative_slope to be a number >= 0, "
                             f"got {negative_slope!r}")
        if not _is_number(threshold) or threshold < 0:
            raise ValueError(f"{self._label()}: expected threshold to be a number >= 0, "
                             f"got {threshold!r}")
        self.function = activations.ReLU(negative_slope=negative_slope, max_value=max_value,
                                         threshold=threshold)

    # Keras's attributes, read from the function so there is one copy of each.
    max_value = property(lambda self: self.function.max_value)
    negative_slope = property(lambda self: self.function.negative_slope)
    threshold = property(lambda self: self.function.threshold)

    def get_config(self):
        config = super().get_config()
        config.update(max_value=self.max_value, negative_slope=self.negative_slope,
                      threshold=self.threshold)
        return config


@register
class LeakyReLU(_FunctionLayer):
    """x for x > 0, negative_slope * x otherwise (Keras default 0.3; Keras 2's alpha= accepted)."""

    def __init__(self, negative_slope=0.3, alpha=None, **kwargs):
        super().__init__(**kwargs)
        if alpha is not None:
            negative_slope = alpha
        if not _is_number(negative_slope) or negative_slope < 0:
            raise ValueError(f"{self._label()}: expected negative_slope (alpha) to be a number "
                             f">= 0, got {negative_slope!r}")
        self.function = activations.LeakyReLU(negative_slope)

    @property
    def negative_slope(self) -> float:
        return self.function.negative_slope

    def get_config(self):
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config


@register
class ELU(_FunctionLayer):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if not _is_number(alpha):
            raise ValueError(f"{self._label()}: expected alpha to be a number, got {alpha!r}")
        self.function = activations.ELU(alpha)

    @property
    def alpha(self) -> float:
        return self.function.alpha

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config


@register
class Softmax(_SoftmaxFusion, _FunctionLayer):
    """Softmax along `axis` (an int, default the last, or a list of axes); with the last
    axis and no mask it takes part in the softmax cross-entropy fusion (`outputs_softmax`).

    mask: as Keras 3.15, it broadcasts against the input right-aligned (each of its axes 1
    or the input's size, never more axes than the input); a non-boolean mask keeps the
    positions > 0.5. Masked positions enter the softmax as -1e9 (so the others share the
    probability) and output 0, a fully masked row included. One deliberate difference: a
    time-step mask that Masking passes along ((N, T) for (N, T, C), not right-aligned
    broadcastable) covers the trailing axes, a masked step outputting zeros, where Keras
    3.15 raises ValueError."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        try:
            self.function = activations.Softmax(axis=axis)
        except TypeError as error:
            raise ValueError(f"{self._label()}: expected axis to be an int or a list of ints, "
                             f"got {axis!r}") from error
        self.axis = self.function.axis
        self._over_last_axis = self.axis == -1
        self._masked = False

    @property
    def outputs_softmax(self) -> bool:
        # A masked output is not softmax(logits) where a whole row is masked (zeros).
        return self._over_last_axis and not self._masked

    def build(self, input_shape):
        rank = len(input_shape)
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        if not all(-rank <= a < rank for a in axes):
            raise ValueError(f"{self._label()}: axis {self.axis} is out of range for an input of "
                             f"rank {rank} (shape {tuple(input_shape)})")
        self._over_last_axis = len(axes) == 1 and axes[0] % rank == rank - 1
        self.input_spec = InputSpec(ndim=rank)

    def call(self, x, training, mask=None):
        self._masked = mask is not None
        if mask is None:
            return super().call(x, training)
        xp = backend.get_array_module(x)
        keep = self._aligned_mask(mask, x.shape)
        logits = xp.where(keep, x, x.dtype.type(-1e9))  # Keras's large negative number
        probabilities = self.function.forward(logits)
        return (xp.where(keep, probabilities, 0),
                (logits, probabilities, keep) if training else None)

    def _checked_mask(self, mask, x):
        if mask is None:
            return None
        mask = self._mask_array(mask, x)
        self._aligned_mask(mask, x.shape)  # a mask that does not fit fails before any work
        return mask if mask.dtype == bool else mask > 0.5  # Keras's rule for number masks

    def _aligned_mask(self, mask, input_shape):
        """The mask shaped to broadcast against the input (see the class docstring)."""
        if mask.ndim > len(input_shape):
            raise ValueError(f"{self._label()}: the mask must be broadcastable to the input and "
                             f"must not have more axes; got input shape {tuple(input_shape)}, "
                             f"mask shape {tuple(mask.shape)}")
        if all(m in (1, i) for m, i in zip(mask.shape[::-1], input_shape[::-1])):
            return mask
        if tuple(mask.shape) == tuple(input_shape[:mask.ndim]):  # a time-step mask
            return mask.reshape(mask.shape + (1,) * (len(input_shape) - mask.ndim))
        raise ValueError(f"{self._label()}: the mask must be broadcastable to the input (each "
                         f"mask axis 1 or the input's size, right-aligned); got input shape "
                         f"{tuple(input_shape)}, mask shape {tuple(mask.shape)}")

    def call_backward(self, dy, cache):
        if len(cache) == 2:
            return super().call_backward(dy, cache)
        logits, probabilities, keep = cache
        # Masked positions are constants in the forward (-1e9): no gradient reaches them.
        return self.function.backward(logits, probabilities, dy * keep) * keep

    def _logits(self, cache):
        return cache[0]

    def _backward_through_logits(self, dlogits, cache):
        return dlogits

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.function.get_config()["axis"]
        return config


@register
class PReLU(Layer):
    """x for x > 0, alpha * x otherwise, with alpha learned per position of a sample.

    Input (N, d1, ..., dk); alpha (d1, ..., dk) with 1 on each axis in `shared_axes`
    (1-based, e.g. shared_axes=[1, 2] shares one slope per channel of (N, H, W, C)).
    """

    supports_masking = True  # elementwise: a time-step mask passes on, as in Keras

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = _checked(self, "alpha_initializer", initializers.get,
                                          alpha_initializer)
        self.alpha_regularizer = _checked(self, "alpha_regularizer", regularizers.get,
                                          alpha_regularizer)
        self.alpha_constraint = _checked(self, "alpha_constraint", constraints.get,
                                         alpha_constraint)
        if shared_axes is None:
            axes = ()
        elif isinstance(shared_axes, (int, np.integer)) and not isinstance(shared_axes, bool):
            axes = (int(shared_axes),)
        elif isinstance(shared_axes, (list, tuple)):
            axes = tuple(shared_axes)
        else:
            axes = None
        if axes is None or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                                   and a >= 1 for a in axes):
            raise ValueError(f"{self._label()}: expected shared_axes to be None, an int or a list "
                             f"of ints >= 1 (axes after the batch axis), got {shared_axes!r}")
        self.shared_axes = None if shared_axes is None else sorted({int(a) for a in axes})
        self.alpha = None

    def build(self, input_shape):
        rank = len(input_shape)
        shared = self.shared_axes or []
        if any(a >= rank for a in shared):
            raise ValueError(f"{self._label()}: shared_axes {shared} must be between 1 and "
                             f"{rank - 1} for an input of shape {tuple(input_shape)}")
        param_shape = [1 if axis in shared else size
                       for axis, size in enumerate(input_shape) if axis > 0]
        if any(d is None for d in param_shape):
            raise ValueError(f"{self._label()}: every axis not in shared_axes must have a known "
                             f"size to create alpha, got input shape {tuple(input_shape)}")
        self.alpha = self.add_weight("alpha", param_shape, self.alpha_initializer,
                                     self.alpha_regularizer, constraint=self.alpha_constraint)
        self.input_spec = InputSpec(ndim=rank, axes={axis: input_shape[axis]
                                                     for axis in range(1, rank)
                                                     if axis not in shared})

    def call(self, x, training):
        xp = backend.get_array_module(x)
        y = xp.where(x > 0, x, self.alpha.value * x)
        return y, (x if training else None)

    def call_backward(self, dy, x):
        xp = backend.get_array_module(x)
        alpha = self.alpha.value
        if self.trainable:
            # d y / d alpha = min(x, 0), summed over the batch and the shared axes.
            reduce_axes = (0,) + tuple(self.shared_axes or ())
            grad = (dy * xp.minimum(x, 0)).sum(axis=reduce_axes, keepdims=True)
            self._accumulate(self.alpha, grad.reshape(alpha.shape))
        return xp.where(x > 0, dy, alpha * dy)

    def get_config(self):
        config = super().get_config()
        config.update(alpha_initializer=initializers.serialize(self.alpha_initializer),
                      alpha_regularizer=regularizers.serialize(self.alpha_regularizer),
                      alpha_constraint=constraints.serialize(self.alpha_constraint),
                      shared_axes=self.shared_axes)
        return config
