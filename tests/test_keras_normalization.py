"""BatchNormalization against Keras 3's own tests
(keras/src/layers/normalization/batch_normalization_test.py, v3.15.1): the literal
expected values of those tests, and the masked backward against finite differences."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import layers

from gradcheck import check_layer_gradients


@pytest.mark.parametrize("mask_value", [0.0, 0.1, 1.0])
def test_bachnorm_ignore_masked_values(mask_value):
    # Keras: BatchNormalizationTest.test_bachnorm_ignore_masked_values. With momentum 0
    # the moving statistics are the last batch's masked moments: over the rows [1, 5]
    # and [2, 5] only, mean [1.5, 5] and biased variance [0.25, 0].
    padded = np.array([[[1, 5], [2, 5], [mask_value] * 2, [mask_value] * 2]] * 10, np.float32)
    model = fd.Sequential([layers.Masking(mask_value=mask_value, input_shape=(None, 2)),
                           layers.BatchNormalization(momentum=0.0)])
    model.compile("rmsprop", loss="mse")
    model.fit(padded, padded, batch_size=10, epochs=5, verbose=0)
    norm = model.layers[-1]
    np.testing.assert_allclose(norm.moving_mean.value, [1.5, 5.0], atol=1e-6)
    np.testing.assert_allclose(norm.moving_variance.value, [0.25, 0.0], atol=1e-6)


def test_input_fully_masked():
    # Keras: BatchNormalizationTest.test_input_fully_masked (no NaN from 0/0: Keras adds
    # 1e-7 to the count of unmasked positions).
    norm = layers.BatchNormalization(scale=False, center=False)
    y = norm.forward(np.zeros((4, 5), np.float32), training=True,
                     mask=np.zeros((4,), np.float32))
    np.testing.assert_array_equal(y, np.zeros((4, 5), np.float32))


def test_masked_statistics_equal_those_of_the_unmasked_rows():
    # Keras's _moments with a mask: the batch statistics of the unmasked positions,
    # applied to every position.
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(3, 5, 4))
    mask = rng.random((3, 5)) > 0.4
    norm = layers.BatchNormalization(momentum=0.0, center=False, scale=False, dtype="float64")
    y = norm.forward(x, training=True, mask=mask)
    kept = x[mask]
    count = mask.sum() + 1e-7
    mean = kept.sum(axis=0) / count
    variance = ((kept - mean) ** 2).sum(axis=0) / count
    np.testing.assert_allclose(norm.moving_mean.value, mean, rtol=1e-12)
    np.testing.assert_allclose(norm.moving_variance.value, variance, rtol=1e-12)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(variance + norm.epsilon), rtol=1e-12)


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 3, 3, 2)])
def test_masked_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    mask = rng.random(shape[:-1]) > 0.3
    norm = layers.BatchNormalization(dtype="float64")
    check_layer_gradients(norm, x, training=True, mask=mask)


def test_mask_must_have_one_axis_fewer_than_the_input():
    # Keras raises ValueError "The mask provided should be one dimension less than the
    # inputs"; fusednn names the shapes.
    norm = layers.BatchNormalization()
    with pytest.raises(ValueError, match="one axis fewer"):
        norm.forward(np.ones((2, 3, 4), np.float32), training=True, mask=np.ones((2,), bool))


def test_masked_broadcast_normalization():
    # Keras: BatchNormalizationTest.test_masked_broadcast_normalization: a (1, 2, 1) mask
    # of a (1, 2, 3, 4) input of ones broadcasts over the third axis; every position
    # counts, so mean 1, variance 0 and the output 0 (atol as Keras's, 1e-6).
    norm = layers.BatchNormalization(axis=-1, momentum=0.0, epsilon=1e-3)
    y = norm.forward(np.ones((1, 2, 3, 4), np.float32), training=True, mask=np.ones((1, 2, 1)))
    np.testing.assert_allclose(y, np.zeros((1, 2, 3, 4)), atol=1e-6)
    np.testing.assert_allclose(norm.moving_mean.value, np.ones(4), atol=1e-6)
    np.testing.assert_allclose(norm.moving_variance.value, np.zeros(4), atol=1e-6)


def test_broadcast_mask_statistics_and_backward():
    # A (N, 1) mask of (N, T, C): whole samples masked; the statistics are those of the
    # kept samples' every step (Keras's broadcast), the backward matches finite differences.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 3, 2))
    mask = np.array([[1.0], [0.0], [2.0], [1.0]])  # nonzero counts, as Keras's cast to bool
    norm = layers.BatchNormalization(momentum=0.0, dtype="float64")
    norm.forward(x, training=True, mask=mask)
    kept = x[[0, 2, 3]].reshape(-1, 2)
    np.testing.assert_allclose(norm.moving_mean.value, kept.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(norm.moving_variance.value, kept.var(axis=0), rtol=1e-6)
    check_layer_gradients(layers.BatchNormalization(dtype="float64"), x, training=True,
                          mask=mask)


def test_mask_axes_must_be_one_or_the_inputs():
    norm = layers.BatchNormalization()
    with pytest.raises(ValueError, match=r"each axis 1 or the input's size; got a mask of "
                                         r"shape \(2, 2\)"):
        norm.forward(np.ones((2, 3, 4), np.float32), training=True, mask=np.ones((2, 2)))
