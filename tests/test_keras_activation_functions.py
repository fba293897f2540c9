"""fd.activations against Keras 3's keras/src/activations/activations_test.py (v3.15.1):
softmax and log_softmax over one axis, a negative axis and tuples of axes (against a
NumPy softmax of each slice, as Keras's reference), relu's keyword-argument literals,
hard_sigmoid's saturation and get(). Keras compares with rtol 1e-5; so do these.
Functions fusednn does not have (celu, glu, sparsemax, hard_tanh, ...) are left out."""
import numpy as np
import pytest

from fusednn import activations

RNG = np.random.default_rng(0)


def _ref_softmax(values):
    e = np.exp(values - np.max(values))
    return e / np.sum(e)


def _ref_over(x, axes, reference):
    """reference applied to each slice of x spanning `axes` (the others index slices)."""
    axes = tuple(a % x.ndim for a in axes)
    moved = np.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim)))
    out = np.empty_like(moved)
    for index in np.ndindex(*moved.shape[:x.ndim - len(axes)]):
        out[index] = reference(moved[index])
    return np.moveaxis(out, tuple(range(x.ndim - len(axes), x.ndim)), axes)


@pytest.mark.parametrize("shape, axis", [
    ((1, 2, 5), -1), ((1, 2, 5), 1), ((2, 3, 5), (1, 2)), ((5,), -1), ((2, 3, 4, 5), (2, 3)),
    ((2, 3, 4, 5, 6), (2, 3, 4)), ((2, 5), -1), ((1, 2, 2, 3), -1)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_and_log_softmax_axes(shape, axis, name):
    # Keras: test_softmax, test_softmax_2d_axis_0, test_softmax_3d_axis_tuple,
    # test_softmax_1d, test_softmax_higher_dim(_multiple_axes), test_softmax_negative_axis,
    # test_temporal_softmax, and the log_softmax forms of each.
    x = RNG.random(shape)
    axes = axis if isinstance(axis, tuple) else (axis,)
    reference = _ref_softmax if name == "softmax" else (
        lambda v: np.log(_ref_softmax(v)))
    result = getattr(activations, name)(x, axis=axis)
    np.testing.assert_allclose(result, _ref_over(x, axes, reference), rtol=1e-5)


X = np.array([-10, -5, 0.0, 5, 10])


@pytest.mark.parametrize("kwargs, x, expected", [
    (dict(negative_slope=0.5), X, [-5.0, -2.5, 0.0, 5.0, 10.0]),
    (dict(max_value=5.0), X, [0.0, 0.0, 0.0, 5.0, 5.0]),
    (dict(threshold=5.0), X, [-0.0, -0.0, 0.0, 0.0, 10.0]),
    (dict(threshold=5.0, max_value=5.0), X, [0.0, 0.0, 0.0, 0.0, 5.0]),
    (dict(negative_slope=0.5, max_value=5.0, threshold=5.0), X, [-7.5, -5.0, -2.5, 0.0, 5.0]),
    (dict(max_value=6.0), np.array([-10, -5, 0.0, 5, 10, 12]), [0.0, 0.0, 0.0, 5.0, 6.0, 6.0]),
])
def test_relu_keyword_arguments(kwargs, x, expected):
    # Keras: test_relu_negative_slope, _max_value, _threshold,
    # _combined_threshold_and_max_value, _combined_all_parameters, _to_trigger_relu6,
    # _to_trigger_leaky.
    np.testing.assert_allclose(activations.relu(x, **kwargs), expected, rtol=1e-5)


def test_hard_sigmoid():
    # Keras: ActivationsTest.test_hard_sigmoid: relu6(x + 3) / 6, saturating at 1 above 3.
    for x in (RNG.uniform(0, 1, (1, 2, 5)), RNG.uniform(-10, 10, 5),
              RNG.uniform(-10, 10, (3, 3, 3))):
        expected = np.clip(x / 6.0 + 0.5, 0.0, 1.0)
        np.testing.assert_allclose(activations.hard_sigmoid(x), expected, rtol=1e-5)
    np.testing.assert_allclose(activations.hard_sigmoid(RNG.uniform(5, 10, (2, 5))),
                               np.ones((2, 5)), rtol=1e-5)


def test_get_method():
    # Keras: ActivationsTest.test_get_method.
    assert activations.get("relu") is activations.relu
    assert activations.get(None) is activations.linear
    with pytest.raises(ValueError):
        activations.get("typo")
