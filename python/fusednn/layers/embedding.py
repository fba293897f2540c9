"""Embedding (integer ids -> vectors) and Masking (skip padded time steps).

Both produce the time-step mask (N, T) that a following recurrent layer uses to
skip padding: their `compute_mask` gives it, after forward `layer.output_mask`
holds it (None when there is none), and Sequential passes it to the next layer
that supports masking.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend, constraints, initializers, regularizers
from .base import InputSpec, Layer
from .core import _checked, _positive_int
from .registry import register


@register
class Embedding(Layer):
    """Looks up rows of `embeddings` (input_dim, output_dim): ids (N, ...) -> (N, ..., output_dim).

    Ids are integers in [0, input_dim); float ids are cast to int (truncated) as Keras
    does; an id out of range raises before the lookup. mask_zero=True treats id 0 as padding:
    output_mask is `ids != 0` (so the vocabulary needs input_dim = real ids + 1).
    The ids are not differentiable: backward adds the embeddings' gradient (rows
    scatter-added, a repeated id gets the sum) and returns None.
    Default initializer: uniform in [-0.05, 0.05] (Keras's "uniform"); `weights=` (an
    (input_dim, output_dim) matrix, or a list holding it) sets the embeddings at once,
    as Keras 3 accepts for pretrained vectors.
    """

    # Keras sets supports_masking = mask_zero: the layer makes a mask, it consumes none.
    supports_masking = False

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, mask_zero=False, input_length=None, weights=None,
                 embeddings_constraint=None, **kwargs):
        if input_length is not None and "input_shape" not in kwargs:
            kwargs["input_shape"] = (input_length,)  # Keras 2's way to declare the length
        super().__init__(**kwargs)
        self.input_dim = _positive_int(self, "input_dim", input_dim)
        self.output_dim = _positive_int(self, "output_dim", output_dim)
        self.embeddings_initializer = _checked(
            self, "embeddings_initializer", initializers.get,
            "random_uniform" if embeddings_initializer == "uniform" else embeddings_initializer)
        self.embeddings_regularizer = _checked(self, "embeddings_regularizer", regularizers.get,
                                               embeddings_regularizer)
        self.embeddings_constraint = _checked(self, "embeddings_constraint", constraints.get,
                                              embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self.embeddings = None
        if weights is not None:
            self.build_for((None, None))
            self.set_weights(weights if isinstance(weights, (list, tuple)) else [weights])

    def build(self, input_shape):
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer,
                                          self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _prepare_input(self, ids):
        """Integer ids (int64) on the layer's device, checked to lie in [0, input_dim)."""
        if not backend.is_cuda_array(ids):
            ids = np.asarray(ids)
        if backend.device_of(ids) != self.device:
            raise TypeError(f"{self._label()}: ids are on {backend.device_of(ids)} but the "
                            f"embeddings are on {self.device}")
        xp = backend.get_array_module(ids)
        kind = ids.dtype.kind
        if kind not in "biuf":
            raise TypeError(f"{self._label()}: expected integer ids, got dtype {ids.dtype}")
        if kind == "f":
            ids = ids.astype(xp.int64)  # Keras casts float ids to int (truncating)
        if ids.size:
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= self.input_dim:
                bad = low if low < 0 else high
                raise IndexError(f"{self._label()}: id {bad} is out of range for input_dim="
                                 f"{self.input_dim} (ids must lie in [0, {self.input_dim}))")
        return ids.astype(xp.int64, copy=False)

    def compute_mask(self, ids, mask=None):
        return (ids != 0) if self.mask_zero else None

    def call(self, ids, training):
        y = self.embeddings.value[ids]
        return y, (ids if training else None)

    def call_backward(self, dy, ids):
        if self.trainable and self.embeddings.trainable:
            xp = backend.get_array_module(dy)
            grad = xp.zeros_like(self.embeddings.value)
            rows = dy.reshape(-1, self.output_dim)
            if xp is np:
                np.add.at(grad, ids.reshape(-1), rows)
            else:
                import cupyx  # only reached with CuPy arrays

                cupyx.scatter_add(grad, ids.reshape(-1), rows)
            self._accumulate(self.embeddings, grad)
        return None

    @classmethod
    def from_config(cls, config: dict):
        # Keras: a config whose input_dim or output_dim is not an int raises TypeError (the
        # constructor's ValueError is for arguments a user types).
        for key in ("input_dim", "output_dim"):
            value = config.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"Embedding.from_config: `{key}` must be a positive integer, "
                                f"got {value!r}")
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, output_dim=self.output_dim,
                      embeddings_initializer=initializers.serialize(self.embeddings_initializer),
                      embeddings_regularizer=regularizers.serialize(self.embeddings_regularizer),
                      embeddings_constraint=constraints.serialize(self.embeddings_constraint),
                      mask_zero=self.mask_zero)
        return config


@register
class Masking(Layer):
    """Marks time steps whose features all equal `mask_value` as padding.

    Input (N, T, ...); output = input with those steps zeroed, output_mask (N, T) =
    any(x != mask_value) over the feature axes. Place it before a recurrent layer.
    """

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, numbers.Real):
            raise ValueError(f"{self._label()}: expected mask_value to be a number, "
                             f"got {mask_value!r}")
        self.mask_value = float(mask_value)
        # No weights: built when created, as Keras's Masking; the rank is checked per input.
        self.input_spec = InputSpec(min_ndim=3)


    def _kept_steps(self, x):
        """(N, T) True where some feature differs from mask_value."""
        return (x != self.mask_value).any(axis=tuple(range(2, x.ndim)))

    def compute_mask(self, x, mask=None):
        """The steps kept; an incoming mask is replaced by it (Keras)."""
        return self._kept_steps(x)

    def call(self, x, training):
        feature_axes = tuple(range(2, x.ndim))
        keep = self._kept_steps(x)
        scale = keep.astype(x.dtype).reshape(keep.shape + (1,) * len(feature_axes))
        return x * scale, (scale if training else None)

    def call_backward(self, dy, scale):
        return dy * scale

    def get_config(self):
        config = super().get_config()
        config["mask_value"] = self.mask_value
        return config
