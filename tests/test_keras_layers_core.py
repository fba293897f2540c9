"""Core-layer behaviour from Keras 3's tests (keras/src/layers/core/dense_test.py,
keras/src/layers/reshaping/repeat_vector_test.py, keras/src/layers/rnn/
time_distributed_test.py): assignable activations, Keras's exception types."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import activations, layers


def test_dense_activation_is_assignable_like_keras():
    # Keras users set `layer.activation = None` (e.g. to read logits); None means linear.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    dense = layers.Dense(2, activation="softmax")
    probabilities = dense.forward(x)
    assert dense.outputs_softmax
    dense.activation = None
    logits = dense.forward(x)
    np.testing.assert_allclose(probabilities, activations.softmax(logits), rtol=1e-6)
    assert not dense.outputs_softmax and dense.get_config()["activation"] == "linear"
    with pytest.raises(ValueError, match="Dense .*invalid activation"):
        dense.activation = "no_such_activation"


def test_conv_activation_is_assignable_like_keras():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
    conv = layers.Conv2D(3, 3, activation="relu")
    conv.forward(x)
    conv.activation = "tanh"
    y = conv.forward(x, training=True)
    conv.activation = None
    np.testing.assert_allclose(y, np.tanh(conv.forward(x)), rtol=1e-6)
    # The backward uses the activation of the forward it follows.
    dx = conv.backward(np.ones_like(y))
    assert dx.shape == x.shape


@pytest.mark.parametrize("n", ["3", 2.5, None])
def test_repeat_vector_rejects_a_non_integer_with_type_error(n):
    # Keras: RepeatVector raises TypeError for an n that is not an integer.
    with pytest.raises(TypeError, match="expected n to be a positive integer"):
        layers.RepeatVector(n)


def test_repeat_vector_rejects_zero_with_value_error():
    with pytest.raises(ValueError, match="expected n to be a positive integer"):
        layers.RepeatVector(0)


def test_time_distributed_mask_must_lead_with_batch_and_time():
    # Keras: TimeDistributed wants a mask of shape (N, T, ...).
    td = layers.TimeDistributed(layers.Dense(3))
    x = np.ones((2, 4, 5), np.float32)
    assert td.forward(x, mask=np.ones((2, 4), bool)).shape == (2, 4, 3)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        td.forward(x, mask=np.ones((2, 3), bool))


def test_embedding_casts_float_ids_like_keras():
    # Keras: Embedding casts non-integer inputs to int (truncating toward zero).
    emb = layers.Embedding(10, 3)
    ids = np.array([[1, 2], [9, 0]])
    np.testing.assert_array_equal(emb.forward(ids.astype(np.float32)), emb.forward(ids))
    np.testing.assert_array_equal(emb.forward(np.array([[1.7, 2.2]])), emb.forward([[1, 2]]))


def test_embedding_weights_argument():
    # Keras 3: Embedding(..., weights=matrix) starts from pretrained vectors.
    matrix = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    for weights in (matrix, [matrix]):
        emb = layers.Embedding(4, 3, weights=weights)
        np.testing.assert_array_equal(emb.forward(np.array([[3, 0]])), matrix[[[3, 0]]])
    with pytest.raises(ValueError):
        layers.Embedding(5, 3, weights=matrix)


@pytest.mark.parametrize("make", [lambda: layers.Activation("relu"), layers.Flatten,
                                  layers.ReLU, lambda: layers.LeakyReLU(0.2), layers.ELU])
def test_weightless_layers_are_built_when_created(make):
    # Keras: run_layer_test(..., assert_built_after_instantiation=True) for these layers.
    layer = make()
    assert layer.built and layer.weights == []
    model = fd.Sequential([layers.InputLayer(shape=(3, 2)), layer])
    model.build((None, 3, 2))
    assert layer.output_shape == layer.compute_output_shape((None, 3, 2))
    assert layer.input_shape == (None, 3, 2)
