"""fd.initializers against Keras 3's keras/src/initializers/constant_initializers_test.py and
random_initializers_test.py (v3.15.1): values and shapes, the statistics Keras checks (std
within 0.1 on 500 draws, as Keras's atol), seeds, orthogonality, get() and the argument
errors. Left out: SeedGenerator seeds, STFT, `axes=` of VarianceScaling, distribution
layouts (fusednn has none of them)."""
import numpy as np
import pytest

from fusednn import initializers


def _round_trip(initializer):
    """Keras's run_class_serialization_test: from_config(get_config()) has the same config."""
    config = initializer.get_config()
    assert type(initializer).from_config(config).get_config() == config


@pytest.mark.parametrize("initializer, expected", [
    (initializers.Zeros(), np.zeros((3, 3))), (initializers.Ones(), np.ones((3, 3))),
    (initializers.Constant(value=6.0), np.full((3, 3), 6.0)),
    (initializers.Identity(gain=2), np.eye(3) * 2),
])
def test_constant_initializers(initializer, expected):
    # Keras: test_zeros_initializer, test_ones_initializer, test_constant_initializer,
    # test_identity_initializer.
    values = initializer(shape=(3, 3))
    assert values.shape == (3, 3)
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    _round_trip(initializer)


def test_identity_compatible_class_name():
    assert isinstance(initializers.get("IdentityInitializer"), initializers.Identity)


def test_random_normal():
    # Keras: test_random_normal (std of 500 draws within 0.1 of 1; a fixed seed repeats,
    # also after from_config; no seed differs after from_config).
    initializer = initializers.RandomNormal(mean=0.0, stddev=1.0, seed=1234)
    values = initializer(shape=(25, 20))
    assert (initializer.mean, initializer.stddev, initializer.seed) == (0.0, 1.0, 1234)
    assert values.shape == (25, 20)
    np.testing.assert_allclose(np.std(values), 1.0, atol=1e-1)
    _round_trip(initializer)
    seeded = initializers.RandomNormal(mean=0.0, stddev=1.0, seed=1337)
    np.testing.assert_array_equal(seeded(shape=(25, 20)), seeded(shape=(25, 20)))
    np.testing.assert_array_equal(
        initializers.RandomNormal.from_config(seeded.get_config())(shape=(25, 20)),
        seeded(shape=(25, 20)))
    unseeded = initializers.RandomNormal(mean=0.0, stddev=1.0, seed=None)
    assert not np.allclose(unseeded(shape=(25, 20)), initializers.RandomNormal.from_config(
        unseeded.get_config())(shape=(25, 20)))


def test_random_uniform():
    initializer = initializers.RandomUniform(minval=-1.0, maxval=1.0, seed=1234)
    values = initializer(shape=(5, 5))
    assert (initializer.minval, initializer.maxval, initializer.seed) == (-1.0, 1.0, 1234)
    assert values.shape == (5, 5)
    assert values.min() >= -1.0 and values.max() < 1.0
    _round_trip(initializer)


@pytest.mark.parametrize("mode, fan", [("fan_in", 25), ("fan_out", 20)])
def test_variance_scaling(mode, fan):
    # Keras: test_variance_scaling (std within 0.1 of sqrt(scale / fan), truncated normal).
    initializer = initializers.VarianceScaling(scale=2.0, seed=1234, mode=mode)
    values = initializer(shape=(25, 20))
    assert (initializer.scale, initializer.seed) == (2.0, 1234)
    assert values.shape == (25, 20)
    np.testing.assert_allclose(np.std(values), np.sqrt(2.0 / fan), atol=1e-1)
    _round_trip(initializer)


def test_orthogonal():
    # Keras: test_orthogonal (columns of norm gain, orthogonal to each other: 3 decimals).
    initializer = initializers.Orthogonal(gain=2.0, seed=1234)
    array = initializer(shape=(5, 5))
    assert (initializer.seed, initializer.gain) == (1234, 2.0)
    for column in array.T:
        np.testing.assert_almost_equal(np.linalg.norm(column), 2.0, decimal=3)
    for i in range(5):
        for j in range(i + 1, 5):
            np.testing.assert_almost_equal(np.dot(array[:, i], array[:, j]), 0.0, decimal=3)
    _round_trip(initializer)
    assert isinstance(initializers.get("OrthogonalInitializer"), initializers.Orthogonal)


def test_get_method():
    assert isinstance(initializers.get("glorot_normal"), initializers.GlorotNormal)
    assert initializers.get(None) is None
    with pytest.raises(ValueError):
        initializers.get("typo")


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(scale=-1.0, mode="fan_in"), "scale"),
    (dict(scale=2.0, mode="invalid_mode"), "mode"),
    (dict(scale=2.0, mode="fan_in", distribution="invalid_dist"), "distribution"),
])
def test_variance_scaling_invalid_arguments(kwargs, pattern):
    # Keras: test_variance_scaling_invalid_scale / _mode / _distribution.
    with pytest.raises(ValueError, match=pattern):
        initializers.VarianceScaling(seed=1234, **kwargs)


def test_get_method_with_array():
    # Keras: test_get_method_with_tensor (a NumPy array gives itself; another shape fails).
    array = np.random.default_rng(0).uniform(size=(5, 5)).astype(np.float32)
    initializer = initializers.get(array)
    np.testing.assert_array_equal(initializer(shape=(5, 5)), array)
    with pytest.raises(ValueError, match="Expected `shape` to be"):
        initializer(shape=(10, 10))
