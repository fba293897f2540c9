"""A small reverse-mode tape over NumPy and CuPy arrays (what `fusednn.ops.value_and_grad`,
custom losses and the Lambda layer differentiate with).

A `Traced` value is an array together with how it was computed: each op in
fusednn.ops.math that receives a Traced argument returns a Traced result that
remembers its inputs and, for each, the vector-Jacobian product (vjp) that maps the
result's gradient to that input's. `gradients` walks this graph backwards once, in
reverse topological order, summing the gradient reaching each value. Ops given only
plain arrays record nothing and return plain arrays, so code that is not being
differentiated pays nothing for the tape.

Traced values are created by `trace` (done for you by value_and_grad, by custom losses
and by Lambda); nothing is global, so two differentiations never share state.

A subclassed model's training forward (models/subclassed.py) also records whole layer
calls: within `recording_layer_calls(recorder)`, calling a layer (`layer(x)`) goes to
the recorder, which runs the layer's forward and records its backward as the vjp.
"""
from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from .. import backend


class Traced:
    """An array (`value`) recorded for differentiation. Use fusednn.ops functions and the
    arithmetic operators on it; anything else (NumPy functions, float(), np.asarray) is a
    TypeError naming what was called, since the tape could not differentiate through it."""

    # NumPy and CuPy arrays hand binary operators with a Traced operand to its reflected
    # methods (NumPy through __array_ufunc__ below, CuPy through the priority).
    __array_priority__ = 1000
    __slots__ = ("value", "parents")

    def __init__(self, value, parents=()):
        self.value = value
        self.parents = parents  # ((input Traced, vjp: output grad -> input grad), ...)

    shape = property(lambda self: tuple(self.value.shape))
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: self.value.ndim)
    size = property(lambda self: self.value.size)

    def __len__(self):
        return len(self.value)

    def __repr__(self):
        return f"<Traced shape={self.shape} dtype={self.dtype}>"

    # Operators, and the ops that stand in for NumPy ufuncs (by name), are attached by
    # fusednn.ops.math, which holds every op's derivative.
    _ufunc_ops: dict = {}

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        op = self._ufunc_ops.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if op is None:
            raise _not_differentiable(f"numpy.{ufunc.__name__}" +
                                      ("" if method == "__call__" else f".{method}"))
        return op(*inputs)

    def __array_function__(self, func, types, args, kwargs):
        raise _not_differentiable(f"numpy.{func.__name__}")

    def __array__(self, *args, **kwargs):
        raise _not_differentiable("numpy.asarray (or another conversion to a plain array)")

    def __float__(self):
        raise _not_differentiable("float()")

    def __bool__(self):
        raise _not_differentiable("bool() (an if on a traced value)")


def _not_differentiable(what: str) -> TypeError:
    return TypeError(f"{what} cannot be differentiated by fusednn's tape: inside a function "
                     f"being differentiated (a custom loss, a Lambda layer, a subclassed "
                     f"model's call, fusednn.ops.value_and_grad) use the fusednn.ops "
                     f"functions and the arithmetic operators on traced values")


def value_of(x):
    """The plain array (or Python number) behind x."""
    return x.value if isinstance(x, Traced) else x


def trace(value) -> Traced:
    """Starts recording on a float array: the ops applied to the result can be differentiated."""
    if isinstance(value, Traced):
        return value
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind != "f":
        raise TypeError(f"fusednn.ops: only floating-point arrays can be differentiated, got "
                        f"{type(value).__name__} of dtype {getattr(value, 'dtype', None)}")
    return Traced(value)


def record(value, *inputs_and_vjps):
    """The result of an op: `value` itself when no input is Traced, else a Traced that
    remembers each Traced input with its vjp. `inputs_and_vjps`: (input, vjp) pairs."""
    parents = tuple((x, vjp) for x, vjp in inputs_and_vjps if isinstance(x, Traced))
    return Traced(value, parents) if parents else value


def _reverse_topological(outputs):
    order, seen = [], set()
    for output in outputs:
        stack = [(output, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((parent, False) for parent, _ in node.parents if id(parent) not in seen)
    return reversed(order)


def gradients(outputs, inputs, output_gradients):
    """Gradients of sum_i <output_gradients[i], outputs[i]> w.r.t. each of `inputs`
    (Traced values made by `trace`), shaped and typed like them, as fresh C-contiguous
    arrays (a vjp may give a broadcast view; the layers' kernels take contiguous buffers
    and may write into them); zeros for an input the outputs do not depend on. An output
    that is not Traced contributes nothing."""
    pending = {}
    for output, grad in zip(outputs, output_gradients):
        if isinstance(output, Traced):
            pending[id(output)] = grad if id(output) not in pending else pending[id(output)] + grad
    wanted = {id(x) for x in inputs}
    done = {}
    for node in _reverse_topological([o for o in outputs if isinstance(o, Traced)]):
        grad = pending.pop(id(node), None)
        if grad is None:
            continue
        if id(node) in wanted:
            done[id(node)] = grad
        for parent, vjp in node.parents:
            contribution = vjp(grad)
            key = id(parent)
            pending[key] = contribution if key not in pending else pending[key] + contribution
    result = []
    for x in inputs:
        xp = backend.get_array_module(x.value)
        grad = done.get(id(x))
        result.append(xp.zeros_like(x.value) if grad is None else xp.ascontiguousarray(
            xp.asarray(grad).reshape(x.value.shape), dtype=x.value.dtype))
    return result


def value_and_grad(fn, argnums=0):
    """JAX's `jax.value_and_grad`, over the fusednn.ops functions (Keras 3 has no
    backend-neutral one): `value_and_grad(fn)(*args)` returns (fn(*args), gradient of it
    w.r.t. args[argnums]); with a tuple `argnums`, a tuple of gradients. fn must return
    a single value (an array of size 1) computed from its arguments with fusednn.ops;
    the differentiated arguments must be float NumPy or CuPy arrays.
    """
    many = isinstance(argnums, (tuple, list))
    positions = tuple(argnums) if many else (argnums,)
    if not positions or not all(isinstance(p, int) and not isinstance(p, bool)
                                for p in positions):
        raise TypeError(f"value_and_grad: argnums must be an int or a non-empty tuple of ints, "
                        f"got {argnums!r}")

    def wrapped(*args, **kwargs):
        for p in positions:
            if not -len(args) <= p < len(args):
                raise ValueError(f"value_and_grad: argnums {p} is out of range for "
                                 f"{len(args)} positional argument(s)")
        args = list(args)
        traced = []
        for p in positions:
            args[p] = trace(args[p])
            traced.append(args[p])
        out = fn(*args, **kwargs)
        value = value_of(out)
        if getattr(value, "size", 1) != 1:
            raise ValueError(f"value_and_grad: {getattr(fn, '__name__', 'fn')} must return a "
                             f"single value (size 1), got shape {tuple(value.shape)}; reduce it "
                             f"with fusednn.ops.mean or sum")
        xp = backend.get_array_module(value) if hasattr(value, "shape") else np
        seed = xp.ones_like(value) if hasattr(value, "shape") else 1.0
        grads = gradients([out], traced, [seed])
        return value, (tuple(grads) if many else grads[0])

    return wrapped


# ----- layer calls (a subclassed model's training forward, models/subclassed.py) ---------
# Per thread and per asyncio task (a ContextVar), so concurrent forwards never mix.
_layer_call_recorder = contextvars.ContextVar("fusednn_layer_call_recorder", default=None)


@contextlib.contextmanager
def recording_layer_calls(recorder):
    """Within it, `layer(*args, **kwargs)` returns recorder(layer, args, kwargs); None
    restores plain calls (for the forward of the layer being recorded)."""
    token = _layer_call_recorder.set(recorder)
    try:
        yield
    finally:
        _layer_call_recorder.reset(token)


def layer_call_recorder():
    """The recorder of the enclosing `recording_layer_calls`, or None."""
    return _layer_call_recorder.get()
