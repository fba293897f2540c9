"""Lambda: a layer from a function written with fusednn.ops, differentiated by the tape."""
from __future__ import annotations

import inspect

import numpy as np

from ..ops import tape
from .base import Layer
from .registry import register


@register
class Lambda(Layer):
    """Keras 3's Lambda: `function(x, **arguments)` as a layer without weights.

    The function is written with fusednn.ops (and arithmetic operators); its backward
    comes from the tape (fusednn.ops.tape), so anything it cannot differentiate is a
    TypeError naming the call. A function that names `mask` or `training` receives them.

    output_shape: the output's shape without the batch axis, or a function of the full
    input shape; when None it is found by running the function once on zeros of the
    input's shape (unknown sizes taken as 1).
    mask: a mask for the next layer, or a function (inputs, mask) -> mask; with a mask the
    layer supports masking, as in Keras.

    A Lambda holds code, which fusednn's safe save format cannot hold: get_config (and so
    `save` of a model holding one) raises a ValueError.
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"{self._label()}: function must be callable, got "
                            f"{type(function).__name__} {function!r}")
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"{self._label()}: arguments must be a dict of keyword arguments "
                            f"for the function, got {type(arguments).__name__}")
        if output_shape is not None and not callable(output_shape):
            try:
                output_shape = tuple(None if d is None else int(d) for d in output_shape)
            except (TypeError, ValueError):
                raise TypeError(f"{self._label()}: output_shape must be a tuple (without the "
                                f"batch axis) or a function, got {output_shape!r}") from None
        self.function = function
        self.arguments = dict(arguments or {})
        self._output_shape = output_shape
        self.mask = mask
        self.supports_masking = mask is not None
        parameters = inspect.signature(function).parameters
        self._function_takes = {name for name in ("mask", "training") if name in parameters}

    def get_config(self) -> dict:
        raise ValueError(f"{self._label()} holds the function {self.function!r}, which the safe "
                         f"save format cannot hold (it stores no code); rebuild the Lambda in "
                         f"code and load the other layers' weights with set_weights")

    def _apply(self, x, training, mask):
        extra = {"training": training, "mask": mask}
        return self.function(x, **self.arguments,
                             **{name: extra[name] for name in self._function_takes})

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if callable(self._output_shape):
            return tuple(self._output_shape(input_shape))
        if self._output_shape is not None:
            return input_shape[:1] + self._output_shape
        probe = np.zeros([1 if d is None else d for d in input_shape], self.dtype)
        shape = tuple(np.shape(tape.value_of(self._apply(probe, False, None))))
        return input_shape[:1] + shape[1:] if shape else shape

    def compute_mask(self, x, mask=None):
        if callable(self.mask):
            return self.mask(x, mask)
        return self.mask

    def call(self, x, training, mask=None):
        if not training:
            return tape.value_of(self._apply(x, training, mask)), None
        traced = tape.trace(x)
        y = self._apply(traced, training, mask)
        return tape.value_of(y), (traced, y)

    def call_backward(self, dy, cache):
        traced, y = cache
        return tape.gradients([y], [traced], [dy])[0]
