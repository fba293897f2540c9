"""The Softmax layer and activation keyword arguments against Keras 3's own tests
(keras/src/layers/activations/softmax_test.py, keras/src/activations/activations_test.py):
their literal expected values, and the masked backward against finite differences."""
import numpy as np
import pytest

from fusednn import activations, constraints, layers, optimizers

from gradcheck import check_layer_gradients

ROWS = np.array([[1.0, 2.0, 1.0], [1.0, 2.0, 1.0]])


def test_softmax_correctness():
    # Keras: SoftmaxTest.test_softmax_correctness and test_softmax_correctness_with_axis.
    expected = [[0.21194157, 0.5761169, 0.21194157]] * 2
    np.testing.assert_allclose(layers.Softmax().forward(ROWS), expected, rtol=1e-6)
    np.testing.assert_allclose(layers.Softmax(axis=1).forward(ROWS), expected, rtol=1e-6)


def test_softmax_correctness_with_mask_over_two_axes():
    # Keras: SoftmaxTest.test_softmax_correctness_with_mask (axis=(1, 0)).
    mask = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    y = layers.Softmax(axis=(1, 0)).forward(ROWS, mask=mask)
    np.testing.assert_allclose(y, [[0.21194154, 0.0, 0.21194154], [0.0, 0.57611686, 0.0]],
                               rtol=1e-6)


def test_softmax_masked_values_are_zero_including_fully_masked():
    # Keras: SoftmaxTest.test_softmax_masked_values_are_zero_including_fully_masked.
    x = np.array([[1.0, 2.0, 5.0, 1.0], [1.0, 1.0, 1.0, 1.0], [3.0, 1.0, 2.0, 4.0]], np.float32)
    mask = np.array([[True, True, False, False], [False] * 4, [True] * 4])
    expected = [[0.268941, 0.731059, 0.0, 0.0], [0.0] * 4,
                [0.236883, 0.032059, 0.087144, 0.643914]]
    np.testing.assert_allclose(layers.Softmax().forward(x, mask=mask), expected, atol=1e-6)


@pytest.mark.parametrize("mask", [np.array([[1.0, 0.0, 1.0]]), np.array([1.0, 0.0, 1.0])])
def test_softmax_mask_broadcastable(mask):
    # Keras: SoftmaxTest.test_softmax_mask_broadcastable and ..._fewer_dims (right-aligned).
    x = np.array([[1.0, 2.0, 1.0], [3.0, 4.0, 5.0]])
    y = layers.Softmax(dtype="float64").forward(x, mask=mask)
    np.testing.assert_array_equal(y[:, 1], [0.0, 0.0])
    e = np.exp(x[:, [0, 2]])
    np.testing.assert_allclose(y[:, [0, 2]], e / e.sum(axis=1, keepdims=True), rtol=1e-12)


def test_softmax_non_boolean_mask_keeps_values_above_one_half():
    # Keras's Softmax.call: a non-boolean mask keeps the positions where mask > 0.5.
    x = np.array([[1.0, 2.0, 3.0]])
    y = layers.Softmax(dtype="float64").forward(x, mask=np.array([[0.6, 0.5, 1.0]]))
    e = np.exp([1.0, 3.0])
    np.testing.assert_allclose(y, [[e[0] / e.sum(), 0.0, e[1] / e.sum()]], rtol=1e-12)


def test_softmax_mask_shape_mismatch():
    # Keras: SoftmaxTest.test_softmax_mask_shape_mismatch (a mask larger than the input).
    with pytest.raises(ValueError, match="broadcastable"):
        layers.Softmax().forward(np.array([[1.0, 2.0, 1.0]]),
                                 mask=np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))


def test_softmax_mask_too_many_dims():
    # Keras: SoftmaxTest.test_softmax_mask_too_many_dims.
    with pytest.raises(ValueError, match="must not have more axes"):
        layers.Softmax().forward(np.array([[1.0, 2.0, 1.0]]), mask=np.array([[[1.0, 0.0, 1.0]]]))


def test_time_step_mask_zeroes_masked_steps():
    # A deliberate difference: Keras 3.15.1 raises ValueError for Masking -> Softmax (the
    # (N, T) mask is not right-aligned broadcastable to (N, T, C)); fusednn lets the
    # time-step mask cover the trailing axis, as a Keras 2 mask did.
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    mask = np.array([[True, False, True], [True, True, False]])
    y = layers.Softmax(dtype="float64").forward(x, mask=mask)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=-1, keepdims=True) * mask[..., None],
                               rtol=1e-12)


@pytest.mark.parametrize("axis, mask_shape", [(-1, (3, 4, 5)), (1, (3, 4)), ((1, 2), (3, 4, 5)),
                                              (-1, (4, 5)), (1, (3, 1, 5))])
def test_masked_softmax_backward_matches_finite_differences(axis, mask_shape):
    rng = np.random.default_rng(2)
    mask = rng.random(mask_shape) > 0.3
    mask[0] = False  # a fully masked sample: zero output, zero gradient
    check_layer_gradients(layers.Softmax(axis=axis, dtype="float64"), rng.normal(size=(3, 4, 5)),
                          training=True, mask=mask)


def test_masked_softmax_leaves_the_cross_entropy_fusion():
    # The fused loss takes softmax(logits); a fully masked row outputs zeros instead, so a
    # masked forward is not fused.
    layer = layers.Softmax()
    layer.forward(np.ones((2, 3), np.float32), training=True)
    assert layer.outputs_softmax
    layer.forward(np.ones((2, 3), np.float32), training=True, mask=np.ones((2, 3), bool))
    assert not layer.outputs_softmax


def test_activation_functions_take_keras_keyword_arguments():
    # Keras 3's functions: softmax(x, axis=...), relu(x, negative_slope, max_value, threshold),
    # gelu(x, approximate=...), leaky_relu(x, negative_slope=...); references in NumPy.
    x = np.linspace(-3.0, 8.0, 12).reshape(3, 4)
    e = np.exp(x - x.max(axis=0))
    np.testing.assert_allclose(activations.softmax(x, axis=0), e / e.sum(axis=0), rtol=1e-12)
    relu = np.where(x >= 6.0, 6.0, np.where(x > 1.0, x, 0.1 * (x - 1.0)))  # Keras: x > threshold
    np.testing.assert_allclose(
        activations.relu(x, negative_slope=0.1, max_value=6.0, threshold=1.0), relu, rtol=1e-12)
    tanh_gelu = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(activations.gelu(x, approximate=True), tanh_gelu, rtol=1e-12)
    np.testing.assert_allclose(activations.leaky_relu(x, negative_slope=0.5),
                               np.where(x > 0, x, 0.5 * x), rtol=1e-12)
    # The shared default instances keep their parameters.
    assert activations.relu.get_config()["max_value"] is None
    with pytest.raises(TypeError):
        activations.relu(x, slope=2.0)


def test_relu_layer_has_keras_attributes():
    # Keras: ReLUTest reads layer.max_value, negative_slope and threshold.
    layer = layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5)
    assert (layer.max_value, layer.negative_slope, layer.threshold) == (6.0, 0.1, 0.5)
    x = np.array([[-1.0, 0.5, 2.0, 7.0]])
    np.testing.assert_allclose(layer.forward(x), [[-0.15, 0.0, 2.0, 6.0]], rtol=1e-6)


def test_prelu():
    # Keras: PReLUTest.test_prelu (alpha_regularizer "L1", alpha_constraint "MaxNorm",
    # shared_axes 1 on (2, 3, 4): alpha (1, 4)); the config keeps the three.
    layer = layers.PReLU(alpha_initializer="zeros", alpha_regularizer="L1",
                         alpha_constraint="MaxNorm", shared_axes=1)
    assert layer.forward(np.ones((2, 3, 4), np.float32)).shape == (2, 3, 4)
    assert layer.alpha.value.shape == (1, 4)
    assert isinstance(layer.alpha.constraint, constraints.MaxNorm)
    config = layer.get_config()
    assert config["alpha_constraint"]["class_name"] == "MaxNorm"
    assert isinstance(layers.PReLU.from_config(config).alpha_constraint, constraints.MaxNorm)


def test_prelu_correctness():
    # Keras: PReLUTest.test_prelu_correctness (alpha assigned after build).
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 10, 5, 3))
    layer = layers.PReLU(alpha_initializer="glorot_uniform", alpha_regularizer="l1",
                         alpha_constraint="non_neg", shared_axes=(1, 2), dtype="float64")
    layer.build(x.shape)
    alpha = rng.random((1, 1, 3))
    layer.set_weights([alpha])
    np.testing.assert_allclose(layer.forward(x), (x > 0) * x + (x <= 0) * alpha * x, rtol=1e-12)


def test_prelu_alpha_constraint_applies_after_each_step():
    # Keras applies a weight's constraint after each optimizer update: non_neg clips the
    # negative alphas SGD makes (lr 1, d loss / d alpha = min(x, 0) summed = -2 per alpha).
    layer = layers.PReLU(alpha_constraint="non_neg", dtype="float64")
    x = -np.ones((2, 3))
    layer.forward(x, training=True)
    layer.backward(-np.ones((2, 3)))  # d alpha = sum(-1 * -1) = +2, so SGD moves alpha to -2
    optimizers.SGD(learning_rate=1.0).step(layer)
    np.testing.assert_array_equal(layer.alpha.value, np.zeros((3,)))
