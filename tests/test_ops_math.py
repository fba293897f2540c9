"""fusednn.ops's Keras math and its tape: values against NumPy/PyTorch, gradients against
float64 central differences (tests/gradcheck.py: an analytic gradient agreeing to 1e-6
relative has the right formula, a wrong one is off by O(1)), broadcasting included."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gradcheck import numeric_gradient

import fusednn as fd
from fusednn import ops

RNG = np.random.default_rng(0)


def _away_from(value, shape, gap=0.2):
    """Random float64 values at least `gap` from `value` (kinks, poles, ties)."""
    x = RNG.uniform(gap, 2.0, shape) * RNG.choice([-1.0, 1.0], shape)
    return x + value


def _positive(shape):
    return RNG.uniform(0.5, 2.0, shape)


# (name, fn, arguments): fn over fusednn.ops, every float64 array argument is checked.
CASES = [
    ("add-broadcast", lambda a, b: a + b, (RNG.normal(size=(3, 4)), RNG.normal(size=(4,)))),
    ("radd-scalar", lambda a: 2.5 + a, (RNG.normal(size=(3,)),)),
    ("subtract-broadcast", lambda a, b: a - b, (RNG.normal(size=(3, 1)), RNG.normal(size=(1, 4)))),
    ("rsub-array", lambda a, b: b - a, (RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3)))),
    ("multiply-broadcast", lambda a, b: a * b, (RNG.normal(size=(2, 3, 4)), RNG.normal(size=(3, 1)))),
    ("divide", lambda a, b: a / b, (RNG.normal(size=(3, 4)), _positive((3, 4)))),
    ("rtruediv", lambda a: 1.0 / a, (_positive((5,)),)),
    ("power-array", lambda a, b: a ** b, (_positive((3, 4)), RNG.normal(size=(4,)))),
    ("power-number", lambda a: ops.power(a, 3), (RNG.normal(size=(3,)),)),
    ("rpow", lambda a: 2.0 ** a, (RNG.normal(size=(3,)),)),
    ("negative", lambda a: -a, (RNG.normal(size=(3,)),)),
    ("maximum", lambda a, b: ops.maximum(a, b), (_away_from(0, (3, 4)), np.zeros((3, 4)))),
    ("minimum-broadcast", lambda a, b: ops.minimum(a, b), (_away_from(0, (3, 4)), np.zeros(4))),
    ("where", lambda a, b: ops.where(a > 0, a, b * 2), (RNG.normal(size=(3, 4)), RNG.normal(size=(4,)))),
    ("clip", lambda a: ops.clip(a, -0.5, 0.5), (np.array([[-1.2, -0.3, 0.1], [0.4, 0.8, -0.7]]),)),
    ("square", ops.square, (RNG.normal(size=(3, 2)),)),
    ("sqrt", ops.sqrt, (_positive((3, 2)),)),
    ("abs", ops.abs, (_away_from(0, (3, 2)),)),
    ("exp", ops.exp, (RNG.normal(size=(3, 2)),)),
    ("log", ops.log, (_positive((3, 2)),)),
    ("log1p", ops.log1p, (_positive((3, 2)),)),
    ("sigmoid", ops.sigmoid, (RNG.normal(size=(3, 2)) * 5,)),
    ("softplus", ops.softplus, (RNG.normal(size=(3, 2)) * 5,)),
    ("tanh", ops.tanh, (RNG.normal(size=(3, 2)),)),
    ("relu", ops.relu, (_away_from(0, (3, 2)),)),
    ("sum-axis", lambda a: ops.sum(a, axis=1), (RNG.normal(size=(2, 3, 4)),)),
    ("sum-keepdims", lambda a: ops.sum(a, axis=(0, 2), keepdims=True), (RNG.normal(size=(2, 3, 4)),)),
    ("mean-all", ops.mean, (RNG.normal(size=(2, 3)),)),
    ("mean-axis", lambda a: ops.mean(a, axis=-1), (RNG.normal(size=(2, 3)),)),
    ("max-axis", lambda a: ops.max(a, axis=0), (RNG.permutation(12).reshape(3, 4) * 0.1,)),
    ("min-keepdims", lambda a: ops.min(a, axis=1, keepdims=True), (RNG.permutation(12).reshape(3, 4) * 0.1,)),
    ("logsumexp", lambda a: ops.logsumexp(a, axis=-1), (RNG.normal(size=(3, 4)) * 3,)),
    ("softmax", lambda a: ops.softmax(a, axis=0), (RNG.normal(size=(3, 4)),)),
    ("log_softmax", ops.log_softmax, (RNG.normal(size=(3, 4)) * 3,)),
    ("convert_to_tensor", lambda a: ops.convert_to_tensor(a, "float64") * a, (RNG.normal(size=(3,)),)),
    ("cast", lambda a: ops.cast(a, "float64") * a, (RNG.normal(size=(3,)),)),
    ("reshape", lambda a: ops.reshape(a, (4, 3)) * np.arange(12.0).reshape(4, 3), (RNG.normal(size=(3, 4)),)),
    ("expand_dims", lambda a: ops.expand_dims(a, 1) * np.arange(3.0)[:, None], (RNG.normal(size=(2, 3)),)),
    ("squeeze", lambda a: ops.squeeze(a, axis=1) * np.arange(3.0), (RNG.normal(size=(2, 1, 3)),)),
    ("transpose", lambda a: ops.transpose(a, (2, 0, 1)) * np.arange(3.0), (RNG.normal(size=(2, 3, 4)),)),
    ("matmul-2d", ops.matmul, (RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2)))),
    ("matmul-batched-broadcast", lambda a, b: a @ b, (RNG.normal(size=(2, 3, 4)), RNG.normal(size=(4, 5)))),
    ("matmul-vector", ops.matmul, (RNG.normal(size=(4,)), RNG.normal(size=(4, 3)))),
    ("concatenate", lambda a, b: ops.concatenate([a, b], axis=1) * np.arange(5.0),
     (RNG.normal(size=(2, 3)), RNG.normal(size=(2, 2)))),
    ("stack", lambda a, b: ops.stack([a, b], axis=-1) * np.arange(2.0), (RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3)))),
    ("getitem", lambda a: a[np.array([0, 2, 0]), 1:] * 3.0, (RNG.normal(size=(3, 4)),)),
    ("ndarray-times-traced", lambda a: np.arange(4.0) * a - np.ones(4), (RNG.normal(size=(3, 4)),)),
    ("numpy-ufunc", lambda a: np.exp(a) + np.maximum(a, 0.1), (_away_from(0.1, (3,)),)),
]


@pytest.mark.parametrize("name, fn, arguments", CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_finite_differences(name, fn, arguments):
    arguments = [a.copy() for a in arguments]
    out = fn(*arguments)
    weights = np.random.default_rng(1).normal(size=np.shape(out))

    def scalar(*args):
        return ops.sum(fn(*args) * weights)

    value, grads = ops.value_and_grad(scalar, argnums=tuple(range(len(arguments))))(*arguments)
    assert float(value) == pytest.approx(float(np.sum(out * weights)), rel=1e-12)
    for array, grad in zip(arguments, grads):
        expected = numeric_gradient(lambda: float(np.sum(fn(*arguments) * weights)), array)
        assert grad.shape == array.shape and grad.dtype == np.float64
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)


def test_values_match_pytorch():
    x = RNG.normal(size=(3, 5)) * 4
    t = torch.from_numpy(x)
    # Same float64 formulas up to rounding order: 1e-12 relative.
    for ours, theirs in [(ops.softplus(x), torch.nn.functional.softplus(t)),
                         (ops.sigmoid(x), torch.sigmoid(t)),
                         (ops.logsumexp(x, axis=1), torch.logsumexp(t, dim=1)),
                         (ops.softmax(x), torch.softmax(t, dim=-1)),
                         (ops.relu(x), torch.relu(t)),
                         (ops.log_softmax(x, axis=0), torch.log_softmax(t, dim=0))]:
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-15)
    big = np.array([1000.0, -1000.0])
    assert np.all(np.isfinite(ops.softplus(big))) and np.all(np.isfinite(ops.sigmoid(big)))
    assert float(ops.logsumexp(np.array([1000.0, 1000.0]))) == pytest.approx(1000 + np.log(2))


def test_plain_arrays_give_plain_arrays():
    x = np.ones((2, 3), np.float32)
    for y in (ops.mean(x, axis=0), ops.square(x) + 1, ops.softmax(x), ops.matmul(x, x.T)):
        assert type(y) is np.ndarray and y.dtype == np.float32
    assert type(ops.sum(x)) is np.float32


def test_float32_gradient_keeps_float32():
    x = RNG.normal(size=(3, 2)).astype(np.float32)
    target = RNG.normal(size=(3, 2))  # float64: the loss's arithmetic promotes
    _, grad = ops.value_and_grad(lambda p: ops.mean(ops.square(p - target)))(x)
    assert grad.dtype == np.float32
    _, through_float64 = ops.value_and_grad(lambda p: ops.sum(ops.cast(p, "float64")))(x)
    assert through_float64.dtype == np.float32
    np.testing.assert_allclose(grad, 2 * (x - target) / x.size, rtol=1e-6)


def test_max_splits_the_gradient_among_ties():
    _, grad = ops.value_and_grad(ops.max)(np.array([1.0, 3.0, 3.0]))
    np.testing.assert_array_equal(grad, [0.0, 0.5, 0.5])


def test_value_and_grad_unused_argument_and_reuse():
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    value, (gx, gy) = ops.value_and_grad(lambda a, b: ops.sum(a * a + a), argnums=(0, 1))(x, y)
    assert float(value) == 8.0
    np.testing.assert_array_equal(gx, 2 * x + 1)
    np.testing.assert_array_equal(gy, [0.0, 0.0])


def test_comparisons_and_sign_carry_no_gradient():
    x = np.array([-1.0, 2.0])

    def fn(a):
        constant = ops.sign(a) * (a > 0) * 3.0 + ops.cast(a, "int64") + ops.argmax(a)
        return ops.sum(constant + ops.ones_like(a) + ops.zeros_like(a) + a)

    value, grad = ops.value_and_grad(fn)(x)
    # sign*(a>0)*3 + int(a) + argmax + 1 + 0 + a, entry by entry: (0 - 1 + 1 + 1 - 1) + (3 + 2 + 1 + 1 + 2)
    assert float(value) == 9.0
    np.testing.assert_array_equal(grad, [1.0, 1.0])


def test_what_the_tape_cannot_differentiate_is_a_clear_error():
    x = np.ones(3)
    with pytest.raises(TypeError, match="numpy.mean cannot be differentiated"):
        ops.value_and_grad(lambda a: np.mean(a))(x)
    with pytest.raises(TypeError, match="numpy.sin cannot be differentiated"):
        ops.value_and_grad(lambda a: ops.sum(np.sin(a)))(x)
    with pytest.raises(TypeError, match=r"float\(\) cannot be differentiated"):
        ops.value_and_grad(lambda a: float(ops.sum(a)))(x)
    with pytest.raises(TypeError, match=r"bool\(\)"):
        ops.value_and_grad(lambda a: ops.sum(a) if ops.sum(a) else 0)(x)


def test_value_and_grad_bad_arguments():
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"must return a single value \(size 1\), got shape \(3,\)"):
        ops.value_and_grad(ops.square)(x)
    with pytest.raises(TypeError, match="only floating-point arrays can be differentiated"):
        ops.value_and_grad(ops.sum)(np.arange(3))
    with pytest.raises(ValueError, match="argnums 2 is out of range"):
        ops.value_and_grad(ops.sum, argnums=2)(x)
    with pytest.raises(TypeError, match="argnums must be an int"):
        ops.value_and_grad(ops.sum, argnums="0")


def test_kernel_matmul_is_unchanged():
    a = RNG.normal(size=(3, 4)).astype(np.float32)
    b = RNG.normal(size=(3, 5)).astype(np.float32)
    out = np.zeros((4, 5), np.float32)
    assert fd.ops.matmul(a, b, out, trans_a=True) is out
    np.testing.assert_allclose(out, a.T @ b, rtol=1e-5, atol=1e-5)


def test_gradients_are_fresh_writable_arrays():
    x = np.ones((3, 4), np.float32)
    _, grad = ops.value_and_grad(ops.mean)(x)  # the vjp of mean is a broadcast view
    assert grad.flags.c_contiguous and grad.flags.writeable and grad.dtype == np.float32
    grad += 1  # a layer's backward may work in place
