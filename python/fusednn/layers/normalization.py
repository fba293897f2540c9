"""BatchNormalization (Keras semantics).

Input of any rank >= 2 with the normalised feature axis `axis` (C channels,
-1 by default: the channels of (N, H, W, C) or the features of (N, F));
statistics are taken over every other axis (M elements per channel).

- training: y = gamma * (x - mean) / sqrt(var + epsilon) + beta with the batch
  mean and biased variance per channel, and the moving statistics updated as
  moving = moving * momentum + batch * (1 - momentum) (Keras's convention:
  momentum is the weight of the old value; PyTorch's momentum is 1 - this, and
  PyTorch stores the unbiased variance, Keras and this layer the biased one).
- inference, and also training of a frozen layer (trainable=False, as in
  Keras, so that fine-tuning keeps the learned statistics): the moving
  statistics instead, not updated.
Weights in Keras order: gamma (if scale), beta (if center), moving_mean,
moving_variance, each (C,); the moving statistics are non-trainable.

Written as NumPy / CuPy expressions (a few memory-bound passes over x): the
op is not one of the kernel families of this library.
"""
from __future__ import annotations

import numbers

from .. import backend, constraints, initializers, regularizers
from .base import InputSpec, Layer
from .core import _checked
from .registry import register


@register
class BatchNormalization(Layer):
    """Normalises each channel along `axis` with batch statistics (training) or
    moving statistics (inference), then scales by gamma and shifts by beta.

    With a mask (one axis fewer than the input: (N, T) for (N, T, C); each of its axes 1
    or the input's, as Keras broadcasts it), the batch statistics are Keras's masked
    moments: taken over the unmasked positions only, while every position, masked or not,
    is normalised with them; the mask passes on."""

    supports_masking = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
            raise TypeError(f"{self._label()}: expected axis to be an int, got {axis!r}")
        if not _is_real(momentum) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{self._label()}: expected momentum to be a number in [0, 1], "
                             f"got {momentum!r}")
        if not _is_real(epsilon) or not epsilon > 0:
            raise ValueError(f"{self._label()}: expected epsilon to be a number > 0, "
                             f"got {epsilon!r}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = _checked(self, "beta_initializer", initializers.get,
                                         beta_initializer)
        self.gamma_initializer = _checked(self, "gamma_initializer", initializers.get,
                                          gamma_initializer)
        self.moving_mean_initializer = _checked(self, "moving_mean_initializer",
                                                initializers.get, moving_mean_initializer)
        self.moving_variance_initializer = _checked(self, "moving_variance_initializer",
                                                    initializers.get, moving_variance_initializer)
        self.beta_regularizer = _checked(self, "beta_regularizer", regularizers.get,
                                         beta_regularizer)
        self.gamma_regularizer = _checked(self, "gamma_regularizer", regularizers.get,
                                          gamma_regularizer)
        self.beta_constraint = _checked(self, "beta_constraint", constraints.get, beta_constraint)
        self.gamma_constraint = _checked(self, "gamma_constraint", constraints.get,
                                         gamma_constraint)
        self.input_spec = InputSpec(min_ndim=2)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def _resolved_axis(self, ndim: int) -> int:
        if not -ndim <= self.axis < ndim:
            raise ValueError(f"{self._label()}: axis {self.axis} is out of range for an input "
                             f"of rank {ndim}")
        return self.axis % ndim

    def build(self, input_shape):
        axis = self._resolved_axis(len(input_shape))
        channels = input_shape[axis]
        if axis == 0 or channels is None:
            raise ValueError(f"{self._label()}: the normalised axis {self.axis} must be a "
                             f"feature axis of known size, got input shape {tuple(input_shape)}")
        shape = (channels,)
        if self.scale:
            self.gamma = self.add_weight("gamma", shape, self.gamma_initializer,
                                         self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight("beta", shape, self.beta_initializer,
                                        self.beta_regularizer, constraint=self.beta_constraint)
        self.moving_mean = self.add_weight("moving_mean", shape, self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight("moving_variance", shape,
                                               self.moving_variance_initializer, trainable=False)
        self.input_spec = InputSpec(ndim=len(input_shape), axes={axis: channels})

    def _layout(self, ndim):
        """(axes reduced over, shape that broadcasts a (C,) vector against the input)."""
        axis = self._resolved_axis(ndim)
        reduce_axes = tuple(a for a in range(ndim) if a != axis)
        broadcast = tuple(-1 if a == axis else 1 for a in range(ndim))
        return reduce_axes, broadcast

    def call(self, x, training, mask=None):
        xp = backend.get_array_module(x)
        reduce_axes, broadcast = self._layout(x.ndim)
        use_batch_stats = training and self.trainable
        weights = None
        if use_batch_stats:
            mean, variance, weights, centered = _moments(x, mask, reduce_axes, broadcast)
            self._update_moving(self.moving_mean, mean)
            self._update_moving(self.moving_variance, variance)
        else:
            centered = x - self.moving_mean.value.reshape(broadcast)
            variance = self.moving_variance.value
        inverse_std = 1.0 / xp.sqrt(variance + self.epsilon)
        normalized = centered * inverse_std.reshape(broadcast)
        y = normalized * self.gamma.value.reshape(broadcast) if self.scale else normalized.copy()
        if self.center:
            y += self.beta.value.reshape(broadcast)
        cache = (normalized, inverse_std, use_batch_stats, weights) if training else None
        return y, cache

    def _checked_mask(self, mask, x):
        if mask is None:
            return None
        mask = self._mask_array(mask, x)
        if mask.ndim != x.ndim - 1 or not all(m in (1, n) for m, n in zip(mask.shape, x.shape)):
            raise ValueError(f"{self._label()}: expected a mask with one axis fewer than the "
                             f"input {tuple(x.shape)}, each axis 1 or the input's size; got a "
                             f"mask of shape {tuple(mask.shape)}")
        return mask != 0  # Keras counts every nonzero position

    def _update_moving(self, var, batch_value):
        var.value *= self.momentum
        var.value += (1.0 - self.momentum) * batch_value

    def call_backward(self, dy, cache):
        normalized, inverse_std, used_batch_stats, weights = cache
        reduce_axes, broadcast = self._layout(dy.ndim)
        scale = inverse_std * self.gamma.value if self.scale else inverse_std
        if not used_batch_stats:
            # Moving statistics are constants: the layer is an affine map per channel
            # (and frozen, so there are no parameter gradients to add).
            return dy * scale.reshape(broadcast)
        dy_sum = dy.sum(axis=reduce_axes)
        dy_normalized_sum = (dy * normalized).sum(axis=reduce_axes)
        if self.center:
            self._accumulate(self.beta, dy_sum)
        if self.scale:
            self._accumulate(self.gamma, dy_normalized_sum)
        if weights is None:
            # The batch mean and variance depend on every x of the channel (M values):
            # dx = gamma / std * (dy - mean(dy) - normalized * mean(dy * normalized)).
            count = dy.size // dy_sum.size
            return (dy - (dy_sum / count).reshape(broadcast)
                    - normalized * (dy_normalized_sum / count).reshape(broadcast)
                    ) * scale.reshape(broadcast)
        # Masked moments: mean and variance depend only on the unmasked x (weight w,
        # S = sum(w) + 1e-7 per channel), and sum(w * normalized) is not exactly 0
        # (the 1e-7), so: dx = gamma / std * (dy - w / S * (sum(dy)
        #   + normalized * sum(dy * normalized) - sum(dy * normalized) * sum(w * normalized) / S)).
        total = weights.sum(axis=reduce_axes, keepdims=True) + _MASK_EPSILON
        weighted_normalized_sum = (weights * normalized).sum(axis=reduce_axes, keepdims=True)
        dy_sum = dy_sum.reshape(broadcast)
        dy_normalized_sum = dy_normalized_sum.reshape(broadcast)
        return (dy - weights / total * (
            dy_sum + normalized * dy_normalized_sum
            - dy_normalized_sum * weighted_normalized_sum / total)) * scale.reshape(broadcast)

    def get_config(self):
        config = super().get_config()
        config.update(
            axis=self.axis,
            momentum=self.momentum,
            epsilon=self.epsilon,
            center=self.center,
            scale=self.scale,
            beta_initializer=initializers.serialize(self.beta_initializer),
            gamma_initializer=initializers.serialize(self.gamma_initializer),
            moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
            moving_variance_initializer=initializers.serialize(self.moving_variance_initializer),
            beta_regularizer=regularizers.serialize(self.beta_regularizer),
            gamma_regularizer=regularizers.serialize(self.gamma_regularizer),
            beta_constraint=constraints.serialize(self.beta_constraint),
            gamma_constraint=constraints.serialize(self.gamma_constraint),
        )
        return config


# Keras adds its backend epsilon (1e-7) to the count of unmasked positions, so a fully
# masked batch gives mean 0 and variance 0 instead of 0/0.
_MASK_EPSILON = 1e-7


def _moments(x, mask, reduce_axes, broadcast):
    """Per-channel batch mean and biased variance, the mask's weights broadcastable
    against x (None without a mask), and x - mean (which normalising reuses): Keras's
    masked moments, over unmasked positions."""
    if mask is None:
        mean = x.mean(axis=reduce_axes)
        centered = x - mean.reshape(broadcast)
        return mean, (centered * centered).mean(axis=reduce_axes), None, centered
    # As Keras: the mask gains a trailing axis, broadcasts to the input's shape (a (1, T, 1)
    # mask of a (1, T, H, C) input covers every H); a view, so no input-sized copy.
    weights = backend.get_array_module(x).broadcast_to(mask.astype(x.dtype)[..., None], x.shape)
    total = weights.sum(axis=reduce_axes, keepdims=True) + _MASK_EPSILON
    mean = (weights * x).sum(axis=reduce_axes, keepdims=True) / total
    centered = x - mean
    variance = (weights * centered * centered).sum(axis=reduce_axes, keepdims=True) / total
    return mean.reshape(-1), variance.reshape(-1), weights, centered


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
