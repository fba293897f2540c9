"""Merging layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

Each is called on a list of inputs (batch first) and returns one output, with Keras 3's
names, arguments and shape rules:
- the element-wise layers broadcast as Keras does: an input of lower rank gains size-1
  axes right after the batch axis, then sizes of 1 stretch; the batch sizes must agree.
  As Keras 3.15: the output's mask is the OR of the inputs' masks when every input has
  one, None otherwise. Add, Subtract and Average use every value, masked or not;
  Multiply counts a masked position as 1 (and zeroes the output where every input is
  masked, when all have masks), Maximum and Minimum leave masked positions out (where
  every input is masked, the first input's value).
- Concatenate joins along `axis`; the other axes (size-1 ones excepted, as Keras) must
  agree. Its mask is Keras's: each input's mask (all True for an unmasked input) spread
  over the input's features, joined, then any() over the last axis; None when no input
  has a mask.
- Dot takes two inputs and sums the products along one axis of each (Keras's
  batch_dot); normalize=True L2-normalizes both along those axes first (cosine
  similarity). It takes masks and makes none (as Keras's Dot).
backward returns one gradient per input, each summed over the axes broadcasting
stretched, so it has its input's shape. Keras's lower-case functions (add, concatenate,
dot, ...) make the layer and call it on the inputs.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend
from .base import Layer
from .registry import register


def _check_input_list(layer: Layer, input_shape, exactly: int | None = None) -> list:
    """The list of input shapes, or Keras's error for a merge layer not called on a list."""
    if not isinstance(input_shape, list):
        raise ValueError(f"{layer._label()}: a merge layer should be called on a list of "
                         f"inputs, got one input of shape {tuple(input_shape)}")
    if exactly is not None and len(input_shape) != exactly:
        raise ValueError(f"{layer._label()}: expected a list of exactly {exactly} inputs, got "
                         f"{len(input_shape)} (shapes {input_shape})")
    return input_shape


def _check_masks(layer: Layer, x, mask) -> None:
    """Keras's checks of compute_mask's arguments on a merging layer."""
    if not isinstance(mask, (list, tuple)):
        raise ValueError(f"{layer._label()}: `mask` should be a list, got "
                         f"{type(mask).__name__}")
    if not isinstance(x, (list, tuple)):
        raise ValueError(f"{layer._label()}: `inputs` should be a list, got "
                         f"{type(x).__name__}")
    if len(mask) != len(x):
        raise ValueError(f"{layer._label()}: the lists `inputs` and `mask` should have the same "
                         f"length, got {len(x)} inputs and {len(mask)} masks")


def _batch_size(layer: Layer, shapes) -> int | None:
    sizes = {shape[0] for shape in shapes} - {None}
    if len(sizes) > 1:
        raise ValueError(f"{layer._label()}: cannot merge tensors with different batch sizes, "
                         f"got input shapes {shapes}")
    return sizes.pop() if sizes else None


def _broadcast(layer: Layer, shape1, shape2) -> tuple:
    """Keras's element-wise output shape of two per-sample shapes, aligned at the end."""
    if len(shape1) < len(shape2):
        shape1, shape2 = shape2, shape1
    if not shape2:
        return tuple(shape1)
    out = list(shape1[:len(shape1) - len(shape2)])
    for i, j in zip(shape1[len(shape1) - len(shape2):], shape2):
        if i is None or j is None:
            out.append(None)
        elif i == 1 or j == 1:
            out.append(j if i == 1 else i)
        elif i != j:
            raise ValueError(f"{layer._label()}: inputs have incompatible shapes: "
                             f"{tuple(shape1)} and {tuple(shape2)} (batch axis left out) do "
                             "not broadcast")
        else:
            out.append(i)
    return tuple(out)


class _Merge(Layer):
    """An element-wise merge: subclasses give `_merge(xs, keeps) -> (y, cache)` and
    `_merge_backward(dy, xs, cache) -> grads` on inputs already brought to one rank; keeps
    is None without masks, else per input None or a boolean array that broadcasts
    against it (False: masked)."""

    takes_input_list = True
    supports_masking = True
    exact_inputs: int | None = None

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        shapes = _check_input_list(self, input_shape, self.exact_inputs)
        batch = _batch_size(self, shapes)
        out = functools.reduce(lambda a, b: _broadcast(self, a, b), [s[1:] for s in shapes])
        return (batch,) + tuple(out)

    def call(self, x, training, mask=None):
        sizes = {len(item) for item in x}
        if len(sizes) > 1:  # the batch sizes may differ from the built (None) ones
            raise ValueError(f"{self._label()}: cannot merge tensors with different batch "
                             f"sizes, got inputs of shapes {[tuple(i.shape) for i in x]}")
        rank = max(item.ndim for item in x)

        def aligned(a, ndim):  # Keras's broadcasting: size-1 axes right after the batch axis
            return a.reshape(a.shape[:1] + (1,) * (rank - ndim) + a.shape[1:])

        xs = [aligned(item, item.ndim) for item in x]
        keeps = None if mask is None else [
            None if m is None else aligned(m.reshape(m.shape + (1,) * (item.ndim - m.ndim)),
                                           item.ndim)
            for m, item in zip(mask, x)]
        y, cache = self._merge(xs, keeps)
        return y, (xs, [tuple(item.shape) for item in x], cache)

    def call_backward(self, dy, cache):
        xs, shapes, own = cache
        grads = self._merge_backward(dy, xs, own)
        return [_sum_to(g, x.shape).reshape(shape) for g, x, shape in zip(grads, xs, shapes)]

    def compute_mask(self, x, mask=None):
        if mask is None:
            return None
        _check_masks(self, x, mask)
        if any(m is None for m in mask):
            return None
        return functools.reduce(backend.get_array_module(mask[0]).logical_or, mask)


def _sum_to(grad, shape):
    """grad (the output's shape) summed over the axes where `shape` has a stretched 1."""
    axes = tuple(i for i, (size, full) in enumerate(zip(shape, grad.shape))
                 if size == 1 and full != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


@register
class Add(_Merge):
    """The sum of the inputs."""

    def _merge(self, xs, keeps):
        return functools.reduce(lambda a, b: a + b, xs), None

    def _merge_backward(self, dy, xs, cache):
        return [dy] * len(xs)


@register
class Subtract(_Merge):
    """inputs[0] - inputs[1] (exactly two inputs)."""

    exact_inputs = 2

    def _merge(self, xs, keeps):
        return xs[0] - xs[1], None

    def _merge_backward(self, dy, xs, cache):
        return [dy, -dy]


@register
class Multiply(_Merge):
    """The element-wise product of the inputs."""

    def _merge(self, xs, keeps):
        if not keeps:
            return functools.reduce(lambda a, b: a * b, xs), (xs, keeps, None)
        xp = backend.get_array_module(xs[0])
        factors = [x if k is None else xp.where(k, x, x.dtype.type(1)) for x, k in zip(xs, keeps)]
        y = functools.reduce(lambda a, b: a * b, factors)
        union = None
        if all(k is not None for k in keeps):  # every input masked here: output 0, as Keras
            union = functools.reduce(xp.logical_or, keeps)
            y = xp.where(union, y, y.dtype.type(0))
        return y, (factors, keeps, union)

    def _merge_backward(self, dy, xs, cache):
        factors, keeps, union = cache
        if union is not None:
            dy = dy * union
        # The product of the other factors (no division: inputs may be zero); a masked
        # position was the constant 1, so no gradient reaches it.
        grads = [functools.reduce(lambda a, b: a * b, factors[:i] + factors[i + 1:], dy)
                 for i in range(len(factors))]
        return [g if not keeps or keeps[i] is None else g * keeps[i]
                for i, g in enumerate(grads)]


@register
class Average(_Merge):
    """The element-wise mean of the inputs."""

    def _merge(self, xs, keeps):
        return functools.reduce(lambda a, b: a + b, xs) / len(xs), None

    def _merge_backward(self, dy, xs, cache):
        return [dy / len(xs)] * len(xs)


class _Extremum(_Merge):
    """Element-wise max or min; the gradient goes to the first input holding the extremum.
    A masked position takes part as -inf (max) or +inf (min), so it never wins unless every
    input is masked there, when argmax/argmin pick the first input (Keras's value)."""

    pick = None  # argmax or argmin of the array module
    masked_rank = None  # the value a masked position competes with

    def _merge(self, xs, keeps):
        xp = backend.get_array_module(xs[0])
        stacked = xp.stack(xp.broadcast_arrays(*xs))
        ranked = stacked if not keeps else xp.stack(xp.broadcast_arrays(*[
            x if k is None else xp.where(k, x, x.dtype.type(self.masked_rank))
            for x, k in zip(xs, keeps)]))
        winner = getattr(xp, self.pick)(ranked, axis=0)
        return xp.take_along_axis(stacked, winner[None], axis=0)[0], winner

    def _merge_backward(self, dy, xs, winner):
        return [dy * (winner == i) for i in range(len(xs))]


@register
class Maximum(_Extremum):
    """The element-wise maximum of the inputs."""

    pick = "argmax"
    masked_rank = -np.inf


@register
class Minimum(_Extremum):
    """The element-wise minimum of the inputs."""

    pick = "argmin"
    masked_rank = np.inf


@register
class Concatenate(Layer):
    """Joins the inputs along `axis` (default -1, the features)."""

    takes_input_list = True
    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{self._label()}: expected axis to be an int, got {axis!r}")
        self.axis = int(axis)

    def _axis(self, rank: int) -> int:
        axis = self.axis % rank if -rank <= self.axis < rank else None
        if axis is None or axis == 0:
            raise ValueError(f"{self._label()}: axis={self.axis} is not a feature axis of "
                             f"inputs of rank {rank} (the batch axis 0 cannot be joined)")
        return axis

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        shapes = _check_input_list(self, input_shape)
        ranks = {len(shape) for shape in shapes}
        if len(ranks) > 1:
            raise ValueError(f"{self._label()}: expected inputs of one rank, got shapes "
                             f"{shapes}")
        rank = ranks.pop()
        axis = self._axis(rank)
        out = [_batch_size(self, shapes)]
        for i in range(1, rank):
            sizes = [shape[i] for shape in shapes]
            if i == axis:
                out.append(None if None in sizes else sum(sizes))
                continue
            known = set(sizes) - {None}
            if len(known) > 1:
                raise ValueError(f"{self._label()}: a Concatenate layer requires inputs with "
                                 f"matching shapes except for the concatenation axis "
                                 f"{self.axis}, got shapes {shapes}")
            out.append(known.pop() if known else None)
        return tuple(out)

    def call(self, x, training):
        self.compute_output_shape([tuple(item.shape) for item in x])  # the batch sizes too
        axis = self._axis(x[0].ndim)
        xp = backend.get_array_module(x[0])
        return xp.concatenate(x, axis=axis), (axis, [item.shape[axis] for item in x])

    def call_backward(self, dy, cache):
        axis, sizes = cache
        xp = backend.get_array_module(dy)
        return [xp.ascontiguousarray(part)
                for part in xp.split(dy, np.cumsum(sizes)[:-1].tolist(), axis=axis)]

    def compute_mask(self, x, mask=None):
        if mask is None:
            return None
        _check_masks(self, x, mask)
        if all(m is None for m in mask):
            return None
        xp = backend.get_array_module(x[0])
        spread = []
        for item, m in zip(x, mask):
            if m is None:
                m = xp.ones(item.shape, dtype=bool)
            m = m.reshape(m.shape + (1,) * (item.ndim - m.ndim))
            spread.append(xp.broadcast_to(m, item.shape))
        return xp.concatenate(spread, axis=self._axis(x[0].ndim)).any(axis=-1)

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config


# tf.math.l2_normalize's floor on the squared norm: a zero vector normalizes to zero.
_L2_EPSILON = 1e-12


@register
class Dot(Layer):
    """The dot product of two inputs along `axes` (one int for both, or one per input),
    sample by sample; normalize=True gives the cosine similarity. Inputs (N, ...A, K, ...)
    and (N, ...B, K, ...) give (N, ...A, ...B), or (N, 1) when nothing else is left."""

    takes_input_list = True
    supports_masking = True  # as Keras's Dot: masks are accepted, the output has none

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        given = list(axes) if isinstance(axes, (list, tuple)) else [axes]
        if len(given) not in (1, 2) or any(isinstance(a, bool) or not isinstance(
                a, (int, np.integer)) for a in given):
            raise TypeError(f"{self._label()}: expected axes to be an int or a tuple of two "
                            f"ints, got {axes!r}")
        self.axes = int(given[0]) if not isinstance(axes, (list, tuple)) \
            else tuple(int(a) for a in given) * (2 if len(given) == 1 else 1)
        self.normalize = bool(normalize)

    def _pair(self, shapes) -> tuple[int, int]:
        """The two axes, non-negative, checked to be feature axes of equal size."""
        pair = self.axes if isinstance(self.axes, tuple) else (self.axes, self.axes)
        axes = []
        for axis, shape in zip(pair, shapes):
            rank = len(shape)
            if not -rank <= axis < rank or axis % rank == 0:
                raise ValueError(f"{self._label()}: axis {axis} is not a feature axis of an "
                                 f"input of shape {tuple(shape)} (the batch axis 0 is not "
                                 "summed over)")
            axes.append(axis % rank)
        size1, size2 = shapes[0][axes[0]], shapes[1][axes[1]]
        if size1 is not None and size2 is not None and size1 != size2:
            raise ValueError(f"{self._label()}: incompatible input shapes: axis values {size1} "
                             f"(at axis {axes[0]}) != {size2} (at axis {axes[1]}); full input "
                             f"shapes {tuple(shapes[0])}, {tuple(shapes[1])}")
        return axes[0], axes[1]

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        shapes = _check_input_list(self, input_shape, exactly=2)
        axis1, axis2 = self._pair(shapes)
        batch = _batch_size(self, shapes)
        rest = [s for i, s in enumerate(shapes[0]) if i not in (0, axis1)] + \
               [s for i, s in enumerate(shapes[1]) if i not in (0, axis2)]
        return (batch,) + (tuple(rest) if rest else (1,))

    def call(self, x, training):
        shapes = [tuple(item.shape) for item in x]
        self.compute_output_shape(shapes)  # the batch sizes too
        axis1, axis2 = self._pair(shapes)
        xp = backend.get_array_module(x[0])
        a, b = xp.moveaxis(x[0], axis1, -1), xp.moveaxis(x[1], axis2, 1)
        norms = None
        if self.normalize:
            norms = (xp.sqrt(xp.maximum((a * a).sum(-1, keepdims=True), _L2_EPSILON)),
                     xp.sqrt(xp.maximum((b * b).sum(1, keepdims=True), _L2_EPSILON)))
            a, b = a / norms[0], b / norms[1]
        n, k = a.shape[0], a.shape[-1]
        left, right = a.shape[1:-1], b.shape[2:]
        y = xp.matmul(a.reshape(n, -1, k), b.reshape(n, k, -1))
        y = y.reshape((n,) + left + right) if left + right else y.reshape(n, 1)
        return y, (a, b, norms, axis1, axis2)

    def call_backward(self, dy, cache):
        a, b, norms, axis1, axis2 = cache
        xp = backend.get_array_module(dy)
        n, k = a.shape[0], a.shape[-1]
        a2, b2 = a.reshape(n, -1, k), b.reshape(n, k, -1)
        dy = dy.reshape(n, a2.shape[1], b2.shape[2])
        da = xp.matmul(dy, b2.transpose(0, 2, 1)).reshape(a.shape)
        db = xp.matmul(a2.transpose(0, 2, 1), dy).reshape(b.shape)
        if norms is not None:
            # d(v / |v|) = (dv - v_hat <v_hat, dv>) / |v| where |v| exceeds the floor
            # (sqrt(1e-12)); below it the norm is a constant and d = dv / floor.
            da = _normalize_backward(xp, da, a, norms[0], -1)
            db = _normalize_backward(xp, db, b, norms[1], 1)
        return [xp.ascontiguousarray(xp.moveaxis(da, -1, axis1)),
                xp.ascontiguousarray(xp.moveaxis(db, 1, axis2))]

    def compute_mask(self, x, mask=None):
        if mask is not None:
            _check_masks(self, x, mask)
        return None

    def get_config(self):
        config = super().get_config()
        config.update(axes=list(self.axes) if isinstance(self.axes, tuple) else self.axes,
                      normalize=self.normalize)
        return config


def _normalize_backward(xp, d_hat, v_hat, norm, axis):
    projected = d_hat - v_hat * (v_hat * d_hat).sum(axis, keepdims=True)
    floored = norm * norm <= _L2_EPSILON
    return xp.where(floored, d_hat, projected) / norm



def _calling(layer_class):
    """Keras's lower-case function for a merging layer: make it, call it on `inputs`."""
    def function(inputs, *args, **kwargs):
        return layer_class(*args, **kwargs)(inputs)

    function.__name__ = layer_class.__name__.lower()
    function.__doc__ = f"{layer_class.__name__}(*args, **kwargs)(inputs)."
    return function


add, subtract, multiply, average, maximum, minimum, concatenate, dot = (
    _calling(c) for c in (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot))
FUNCTIONS = ["add", "average", "concatenate", "dot", "maximum", "minimum", "multiply",
             "subtract"]
