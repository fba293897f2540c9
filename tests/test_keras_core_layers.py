"""Core, activation and dropout layers against Keras 3's tests (v3.15.1):
keras/src/layers/core/{dense,embedding,masking,input_layer,lambda_layer}_test.py,
keras/src/layers/activations/{activation,elu,leaky_relu,relu}_test.py and
keras/src/layers/regularization/dropout_test.py. Their literal values and shapes; LoRA,
quantization and sparse/ragged cases are left out (fusednn has none of them)."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import activations, constraints, layers

from keras_layer_check import run_layer_check

KERNEL = np.array([[1.0, -2.0], [3.0, -4.0]])


# ----- dense_test.py ---------------------------------------------------------------------

def test_dense_basics():
    # Keras: DenseTest.test_dense_basics (2-D without bias; 3-D with two regularizers).
    run_layer_check(layers.Dense, dict(units=4, activation="relu",
                                       kernel_initializer="random_uniform",
                                       bias_initializer="ones", use_bias=False),
                    (2, 3), (2, 4), expected_num_trainable_weights=1, supports_masking=True)
    layer = run_layer_check(layers.Dense, dict(units=5, activation="sigmoid",
                                               kernel_regularizer="l2", bias_regularizer="l2"),
                            (2, 3, 4), (2, 3, 5), expected_num_trainable_weights=2,
                            supports_masking=True)
    kernel, bias = layer.get_weights()
    # Keras's two losses: l2 = 0.01 * sum(w^2) for each of the two weights.
    np.testing.assert_allclose(layer.regularization_loss(),
                               0.01 * (np.sum(kernel ** 2) + np.sum(bias ** 2)), rtol=1e-5)


@pytest.mark.parametrize("units", [0, -3, 2.5, None, "64"])
def test_dense_invalid_units_raises(units):
    with pytest.raises(ValueError, match="positive integer"):
        layers.Dense(units)


def test_dense_correctness():
    # Keras: DenseTest.test_dense_correctness.
    layer = layers.Dense(units=2, activation="relu")
    layer.build((1, 2))
    layer.set_weights([KERNEL, np.array([5.0, -6.0])])
    np.testing.assert_allclose(layer.forward(np.array([[-1.0, 2.0]])), [[10.0, 0.0]])
    layer = layers.Dense(units=2, use_bias=False)
    layer.build((1, 2))
    layer.set_weights([KERNEL])
    assert layer.bias is None
    np.testing.assert_allclose(layer.forward(np.array([[-1.0, 2.0]])), [[5.0, -6.0]])


def test_dense_errors():
    # Keras: DenseTest.test_dense_errors (a second call on another feature size).
    layer = layers.Dense(units=2, activation="relu")
    layer(layers.Input(batch_shape=(1, 2)))
    with pytest.raises(ValueError, match="incompatible|expected"):
        layer(layers.Input(batch_shape=(1, 3)))


@pytest.mark.parametrize("activation, set_none, expected", [
    (None, False, [[5.0, -6.0]]), (None, True, [[5.0, -6.0]]), ("relu", False, [[5.0, 0.0]])])
def test_dense_activation_cases(activation, set_none, expected):
    # Keras: test_dense_no_activation, test_dense_without_activation_set,
    # test_dense_with_activation.
    layer = layers.Dense(units=2, use_bias=False, activation=activation)
    layer.build((1, 2))
    layer.set_weights([KERNEL])
    if set_none:
        layer.activation = None
    assert layer.bias is None
    np.testing.assert_allclose(layer.forward(np.array([[-1.0, 2.0]])), expected)


def test_dense_constraints():
    layer = layers.Dense(units=2, kernel_constraint="non_neg")
    layer.build((None, 2))
    assert isinstance(layer.kernel.constraint, constraints.NonNeg)
    layer = layers.Dense(units=2, bias_constraint="non_neg")
    layer.build((None, 2))
    assert isinstance(layer.bias.constraint, constraints.NonNeg)


# ----- embedding_test.py -----------------------------------------------------------------

def test_embedding_basics():
    # Keras: EmbeddingTest.test_embedding_basics.
    run_layer_check(layers.Embedding, {"input_dim": 4, "output_dim": 3}, (2,), (2, 3),
                    expected_num_trainable_weights=1, supports_masking=False, ids=4)
    run_layer_check(layers.Embedding, {"input_dim": 5, "output_dim": 4, "mask_zero": True},
                    (2, 3), (2, 3, 4), expected_num_trainable_weights=1,
                    supports_masking=True, ids=5)


def test_embedding_correctness_and_masks():
    # Keras: EmbeddingTest.test_correctness, test_masking, test_compute_mask_no_masking.
    layer = layers.Embedding(input_dim=3, output_dim=2)
    layer.build((None,))
    layer.set_weights([np.array([[0.0, 0.0], [2.0, 2.0], [3.0, 3.0]])])
    np.testing.assert_array_equal(layer.forward(np.array([2, 1, 0])),
                                  [[3.0, 3.0], [2.0, 2.0], [0.0, 0.0]])
    masking = layers.Embedding(input_dim=3, output_dim=2, mask_zero=True)
    np.testing.assert_array_equal(masking.compute_mask(np.array([2, 1, 0])), [True, True, False])
    assert layers.Embedding(3, 2, mask_zero=False).compute_mask(np.array([2, 1, 0])) is None


def test_embedding_constraints():
    layer = layers.Embedding(3, 2, embeddings_constraint="non_neg")
    layer.build((None, 2))
    assert isinstance(layer.embeddings.constraint, constraints.NonNeg)


@pytest.mark.parametrize("argument", ["input_dim", "output_dim"])
@pytest.mark.parametrize("bad", [3.7, 4.0, "3", None, True, False, -1, 0])
def test_invalid_dims(argument, bad):
    # Keras: EmbeddingTest.test_invalid_input_dim / test_invalid_output_dim (ValueError
    # from the constructor, TypeError from from_config with 3.7).
    given = {"input_dim": 10, "output_dim": 8, argument: bad}
    with pytest.raises(ValueError, match=f"{argument}.*positive integer"):
        layers.Embedding(**given)


@pytest.mark.parametrize("argument", ["input_dim", "output_dim"])
def test_invalid_dims_from_config(argument):
    with pytest.raises(TypeError, match=f"{argument}.*positive integer"):
        layers.Embedding.from_config({"input_dim": 10, "output_dim": 8, argument: 3.7})


def test_weights_constructor_arg():
    for weights in (np.ones((3, 4)), [np.ones((3, 4))]):
        layer = layers.Embedding(3, 4, weights=weights)
        np.testing.assert_array_equal(layer.embeddings.value, np.ones((3, 4)))


# ----- masking_test.py -------------------------------------------------------------------

def test_masking_basics():
    assert layers.Masking().built
    run_layer_check(layers.Masking, {"mask_value": 0.0}, (2, 3, 2), (2, 3, 2),
                    supports_masking=True)


def test_masking_correctness():
    # Keras: MaskingTest.test_masking_correctness: the mask, and the next layer gets it.
    x = np.array([[[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]], [[2.0, 2.0], [0.0, 0.0], [2.0, 1.0]]])
    expected_mask = [[False, True, False], [True, False, True]]
    np.testing.assert_array_equal(layers.Masking(mask_value=0.0).compute_mask(x), expected_mask)
    pooling = layers.GlobalAveragePooling1D()  # a layer that uses the mask it is given
    model = fd.Sequential([layers.Masking(mask_value=0.0), pooling])
    np.testing.assert_allclose(model.predict(x, verbose=0), [[1.0, 2.0], [2.0, 1.5]])


def test_masking_with_tensor(tmp_path):
    # Keras: MaskingTest.test_masking_with_tensor (Masking -> LSTM, saved and reloaded).
    model = fd.Sequential([layers.Masking(mask_value=0.0), layers.LSTM(1)])
    x = np.array([[[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]], [[2.0, 2.0], [2.0, 1.0], [0.0, 0.0]]])
    y = model.predict(x, verbose=0)
    model.save(tmp_path / "model.keras")
    np.testing.assert_allclose(fd.models.load_model(tmp_path / "model.keras").predict(
        x, verbose=0), y, rtol=1e-6)


# ----- input_layer_test.py ---------------------------------------------------------------

def test_input_basic():
    # Keras: InputLayerTest.test_input_basic (shape, batch_size, batch_shape, dtype).
    layer = layers.InputLayer(shape=(2, 3), batch_size=4, dtype="float32")
    assert layer.batch_shape == (4, 2, 3)
    assert tuple(layers.Input(shape=(2, 3), batch_size=4).shape) == (4, 2, 3)
    assert tuple(layers.Input(batch_shape=(None, 5)).shape) == (None, 5)


def test_input_errors():
    # Keras: test_input_error1..3 / test_invalid_arg_combinations: shape with batch_shape,
    # batch_size with batch_shape, neither given.
    with pytest.raises(ValueError):
        layers.InputLayer(shape=(2, 3), batch_shape=(4, 2, 3))
    with pytest.raises(ValueError):
        layers.InputLayer(batch_size=4, batch_shape=(4, 2, 3))
    with pytest.raises(ValueError):
        layers.InputLayer()


def test_input_shape_deprecated():
    with pytest.warns(UserWarning, match="input_shape is deprecated"):
        layer = layers.InputLayer(input_shape=(2, 3))
    assert layer.batch_shape == (None, 2, 3)


def test_numpy_shape():
    # Keras: InputLayerTest.test_numpy_shape (a NumPy array of sizes is a shape).
    assert tuple(layers.Input(shape=np.array([2, 3])).shape) == (None, 2, 3)


# ----- lambda_layer_test.py --------------------------------------------------------------

def test_lambda_correctness():
    # Keras: LambdaTest.test_correctness and test_correctness_lambda_shape.
    layer = layers.Lambda(lambda x: x ** 2)
    np.testing.assert_allclose(layer.forward(2 * np.ones((2, 3), np.float32)), 4 * np.ones((2, 3)))
    layer = layers.Lambda(lambda x: x ** 2, output_shape=(2, 3))
    np.testing.assert_allclose(layer.forward(2 * np.ones((2, 3), np.float32)), 4 * np.ones((2, 3)))


# ----- activations/{activation,elu,leaky_relu,relu}_test.py --------------------------------

def test_activation_basics():
    run_layer_check(layers.Activation, {"activation": "relu"}, (2, 3), (2, 3),
                    supports_masking=True)
    run_layer_check(layers.Activation, {"activation": activations.gelu}, (2, 2), (2, 2),
                    supports_masking=True)


def test_elu():
    # Keras: ELUTest.test_config, test_elu, test_correctness.
    run_layer_check(layers.ELU, {}, (2, 3, 4), (2, 3, 4), supports_masking=True)
    x = np.random.default_rng(0).random((2, 2, 5))
    for alpha in (1.0, 0.7):
        layer = layers.ELU(alpha=alpha, dtype="float64")
        expected = (x > 0) * x + (x <= 0) * alpha * (np.exp(x) - 1)
        np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)


def test_leaky_relu():
    # Keras: LeakyReLUTest.
    run_layer_check(layers.LeakyReLU, {"negative_slope": 1}, (2, 3, 4), (2, 3, 4),
                    supports_masking=True)
    y = layers.LeakyReLU(negative_slope=0.5).forward(np.array([-10, -5, 0.0, 5, 10]))
    np.testing.assert_allclose(y, [-5.0, -2.5, 0.0, 5.0, 10.0])
    with pytest.raises(ValueError, match="negative_slope"):
        layers.LeakyReLU(negative_slope=None)


def test_relu_basics_and_config():
    # Keras: ReLUTest.test_relu, test_get_config(_default_params), test_from_config,
    # test_compute_output_shape.
    run_layer_check(layers.ReLU, dict(max_value=10, negative_slope=1, threshold=0.5),
                    (2, 3, 4), (2, 3, 4), supports_masking=True)
    config = layers.ReLU(max_value=5.0, negative_slope=0.2, threshold=1.0).get_config()
    assert (config["max_value"], config["negative_slope"], config["threshold"]) == (5.0, 0.2, 1.0)
    restored = layers.ReLU.from_config(config)
    assert (restored.max_value, restored.negative_slope, restored.threshold) == (5.0, 0.2, 1.0)
    default = layers.ReLU().get_config()
    assert default["max_value"] is None
    assert (default["negative_slope"], default["threshold"]) == (0.0, 0.0)
    for shape in ((2, 3), (4, 5, 6), (1,)):
        assert layers.ReLU().compute_output_shape(shape) == shape


@pytest.mark.parametrize("kwargs, x, expected", [
    (dict(max_value=10, negative_slope=0.0, threshold=0), [-10, -5, 0.0, 5, 10],
     [0.0, 0.0, 0.0, 5.0, 10.0]),
    (dict(max_value=10, negative_slope=0.5, threshold=0), [-10, -5, 0.0, 5, 10],
     [-5.0, -2.5, 0.0, 5.0, 10.0]),
    (dict(max_value=8, negative_slope=0.0, threshold=5), [6.0, 7.0, 0.0, 5, 10],
     [6.0, 7.0, 0.0, 0.0, 8.0]),
    ({}, [-3.0, -1.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 1.0, 3.0]),
    (dict(max_value=None), [0.0, 100.0, 1000.0, 99999.0], [0.0, 100.0, 1000.0, 99999.0]),
])
def test_relu_correctness(kwargs, x, expected):
    # Keras: test_normal_relu_correctness, test_leaky_relu_correctness,
    # test_threshold_relu_correctness, test_default_relu_no_args,
    # test_relu_none_max_value_is_unlimited.
    np.testing.assert_allclose(layers.ReLU(**kwargs).forward(np.array(x)), expected)


def test_relu_multidimensional_input():
    np.testing.assert_array_equal(layers.ReLU().forward(np.zeros((3, 4))), np.zeros((3, 4)))
    np.testing.assert_array_equal(layers.ReLU().forward(np.array([[-1.0, 2.0], [3.0, -4.0]])),
                                  [[0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(layers.ReLU().forward(-np.ones((2, 3, 4))), np.zeros((2, 3, 4)))


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(max_value=-10, negative_slope=1, threshold=0.5), "max_value"),
    (dict(max_value=10, negative_slope=-10, threshold=0.5), "negative_slope"),
    (dict(max_value=10, negative_slope=1, threshold=-10), "threshold"),
    (dict(negative_slope=None), "negative_slope"),
    (dict(threshold=None), "threshold"),
])
def test_relu_invalid_usage(kwargs, pattern):
    # Keras: ReLUTest.test_invalid_usage, test_negative_slope_none_raises,
    # test_threshold_none_raises.
    with pytest.raises(ValueError, match=pattern):
        layers.ReLU(**kwargs)


# ----- regularization/dropout_test.py ----------------------------------------------------

def test_dropout_basics():
    assert layers.Dropout(0.2).built
    run_layer_check(layers.Dropout, {"rate": 0.2}, (2, 3), (2, 3), supports_masking=True)


def test_dropout_rescaling():
    # Keras: DropoutTest.test_dropout_rescaling: mean ~1 (atol 0.02 over 10000 draws:
    # the mean's standard deviation is 0.01), kept values scaled to 2.
    y = layers.Dropout(0.5, seed=1337).forward(np.ones((20, 500)), training=True)
    np.testing.assert_allclose(np.mean(y), 1.0, atol=0.02)
    np.testing.assert_allclose(np.max(y), 2.0)


@pytest.mark.parametrize("noise_shape", [(None, 1, None), (20, 1, 10)])
def test_dropout_partial_noise_shape(noise_shape):
    y = layers.Dropout(0.5, noise_shape=noise_shape).forward(np.ones((20, 5, 10)),
                                                               training=True)
    np.testing.assert_array_equal(y[:, 0, :], y[:, 1, :])


@pytest.mark.parametrize("rate", [-0.5, 1.5])
def test_dropout_rate_out_of_range(rate):
    with pytest.raises(ValueError, match="rate"):
        layers.Dropout(rate=rate)


@pytest.mark.parametrize("given, kept", [(None, None), ((20, 1, 10), (20, 1, 10)),
                                         ((None, 1, None), (None, 1, None)),
                                         ([20, 1, 10], (20, 1, 10))])
def test_validate_noise_shape(given, kept):
    assert layers.Dropout(0.5, noise_shape=given).noise_shape == kept


@pytest.mark.parametrize("noise_shape", ["Invalid", (20, 1.5, 10), (20, -1, 10), (20, 0, 10)])
def test_validate_noise_shape_errors(noise_shape):
    with pytest.raises(ValueError, match="noise_shape"):
        layers.Dropout(0.5, noise_shape=noise_shape)
