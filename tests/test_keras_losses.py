"""Loss calls as Keras 3's tests make them (keras/src/losses/losses_test.py): sample_weight
on the call with every reduction, the function forms (keras.losses.mean_squared_error, ...),
and SparseCategoricalCrossentropy's ignore_class, with Keras's literal values."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import losses

Y_TRUE = np.array([[1, 9, 2], [-5, -2, 6]], np.float32)
Y_PRED = np.array([[4, 8, 12], [8, 1, 3]], np.float32)


def test_mean_squared_error_weighting():
    # Keras: MeanSquaredErrorTest (unweighted, scalar-weighted, sample-weighted, sum, none).
    mse = losses.MeanSquaredError()
    assert mse(Y_TRUE, Y_PRED) == pytest.approx(49.5, rel=1e-6)
    assert mse(Y_TRUE, Y_PRED, sample_weight=2.3) == pytest.approx(113.85, rel=1e-6)
    assert mse(Y_TRUE, Y_PRED, sample_weight=np.array([1.2, 3.4])) == pytest.approx(
        767.8 / 6, rel=1e-6)
    assert losses.MeanSquaredError(reduction="sum")(Y_TRUE, Y_PRED) == pytest.approx(99.0,
                                                                                     rel=1e-6)
    np.testing.assert_allclose(losses.MeanSquaredError(reduction="none")(Y_TRUE, Y_PRED),
                               [110 / 3, 187 / 3], rtol=1e-6)
    # mean_with_sample_weight divides by the sum of the weights.
    weights = np.array([1.2, 3.4])
    assert losses.MeanSquaredError(reduction="mean_with_sample_weight")(
        Y_TRUE, Y_PRED, sample_weight=weights) == pytest.approx(
            (110 / 3 * 1.2 + 187 / 3 * 3.4) / 4.6, rel=1e-6)
    with pytest.raises(ValueError, match="does not broadcast"):
        mse(Y_TRUE, Y_PRED, sample_weight=np.ones(3))


def test_function_forms_return_per_sample_values():
    # Keras: keras.losses.mean_squared_error(y_true, y_pred) is the per-sample mean.
    np.testing.assert_allclose(losses.mean_squared_error(Y_TRUE, Y_PRED), [110 / 3, 187 / 3],
                               rtol=1e-6)
    assert losses.mse is losses.mean_squared_error
    np.testing.assert_allclose(losses.huber(Y_TRUE, Y_PRED, delta=2.0),
                               losses.Huber(delta=2.0, reduction="none")(Y_TRUE, Y_PRED))
    labels = np.array([0, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(labels, probs),
                               -np.log([0.7, 0.8]), rtol=1e-6)


def test_compile_takes_a_function_form():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype(np.float32), rng.normal(size=(32, 1))

    def trained(loss):
        fd.utils.set_random_seed(1)
        model = fd.Sequential([fd.layers.Dense(1, input_shape=(4,))])
        model.compile("sgd", loss=loss)
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        return model.get_weights()

    for a, b in zip(trained(losses.mean_squared_error), trained("mse")):
        np.testing.assert_array_equal(a, b)


def test_sparse_categorical_crossentropy_ignore_class():
    # Keras: SparseCategoricalCrossentropyTest.test_ignore_class.
    y_true = np.array([[-1, 2]])
    logits = np.array([[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]])
    none = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1,
                                                reduction=None)
    np.testing.assert_allclose(none(y_true, logits), [[0.0, 1.480129]], rtol=1e-6)
    mean = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    value, grad = mean.value_and_grad(y_true, logits)
    assert value == pytest.approx(1.480129, rel=1e-6)  # one sample counts
    np.testing.assert_array_equal(grad[0, 0], 0.0)     # the ignored one has no gradient
    assert mean.get_config()["ignore_class"] == -1
    # On probabilities (the fused softmax path of a model) too.
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert losses.SparseCategoricalCrossentropy(ignore_class=-1)(y_true, probs) == \
        pytest.approx(1.480129, rel=1e-5)
