"""The lectures' worked examples for dense networks, as a user would type them."""
import numpy as np
import pytest

import fusednn as fd


def test_softmax_of_the_lecture_vector():
    scores = np.array([[0.5, 1.8, -2.3, 0.9, 0.3]], dtype=np.float32)
    expected = [0.14, 0.52, 0.01, 0.21, 0.12]  # the slide rounds to two decimals
    for probabilities in (fd.activations.get("softmax").forward(scores),
                          fd.layers.Softmax()(scores),
                          fd.layers.Activation("softmax")(scores)):
        np.testing.assert_allclose(probabilities[0], expected, atol=0.005)
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-6)


def test_gradient_clipping_as_the_lecture_describes():
    # "If the gradient value exceeds 0.5 or -0.5 it is clipped back to the threshold";
    # "if the vector norm exceeds 1.0 the vector is rescaled so that its norm equals 1.0".
    layer = fd.layers.Dense(2, use_bias=False, kernel_initializer="zeros", input_shape=(2,))
    layer.build_for((None, 2))
    gradient = np.array([[0.3, -2.0], [0.7, 0.1]], dtype=np.float32)

    layer.variables[0].grad[...] = gradient
    fd.optimizers.SGD(learning_rate=1.0, clipvalue=0.5).step(layer)
    np.testing.assert_allclose(layer.get_weights()[0], -np.clip(gradient, -0.5, 0.5), rtol=1e-6)

    layer.set_weights([np.zeros((2, 2), np.float32)])
    fd.optimizers.SGD(learning_rate=1.0, clipnorm=1.0).step(layer)
    update = -layer.get_weights()[0]
    assert np.linalg.norm(update) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(update, gradient / np.linalg.norm(gradient), rtol=1e-6)


def test_mini_batch_gradient_is_the_mean_of_per_example_gradients():
    # dJ/dW = (1/B) sum_k dJ_k/dW: a batch's gradient equals the mean of single-example ones.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    layer = fd.layers.Dense(1, dtype="float64", input_shape=(3,))
    mse = fd.losses.MeanSquaredError()

    def gradient(xb, yb):
        layer.zero_grad()
        _, dy = mse.value_and_grad(yb, layer.forward(xb, training=True))
        layer.backward(dy)
        return layer.get_gradients()

    batch = gradient(x, y)
    singles = [gradient(x[i:i + 1], y[i:i + 1]) for i in range(8)]
    for k in range(2):
        np.testing.assert_allclose(batch[k], np.mean([s[k] for s in singles], axis=0), rtol=1e-12)
