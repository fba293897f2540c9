"""Initializers: each Keras variance formula checked statistically on large draws,
bounds of the uniform and truncated distributions, orthogonality, seeds, lookup
and serialisation."""
import math

import numpy as np
import pytest

from fusednn import _rng, initializers

# (name, fan -> expected variance) straight from the Keras docs:
# Glorot 2 / (fan_in + fan_out), He 2 / fan_in, LeCun 1 / fan_in.
VARIANCE_FORMULAS = {
    "glorot_uniform": lambda fi, fo: 2.0 / (fi + fo),
    "glorot_normal": lambda fi, fo: 2.0 / (fi + fo),
    "he_uniform": lambda fi, fo: 2.0 / fi,
    "he_normal": lambda fi, fo: 2.0 / fi,
    "lecun_uniform": lambda fi, fo: 1.0 / fi,
    "lecun_normal": lambda fi, fo: 1.0 / fi,
}
# (shape, fan_in, fan_out): a Dense kernel and a Conv2D kernel (KH, KW, Cin, Cout).
SHAPES = [((300, 200), 300, 200), ((3, 3, 40, 60), 360, 540)]


def _std_of_unit_normal_truncated_at_2():
    # Var of N(0,1) conditioned on |z| <= 2: 1 - 2 * 2 * pdf(2) / (2 * cdf(2) - 1).
    pdf = math.exp(-2.0) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    return math.sqrt(1 - 4 * pdf / mass)


def _assert_mean_and_variance(w, variance):
    """Sample mean and variance within 5 standard errors of their expectations."""
    x = w.ravel().astype(np.float64)
    n = x.size
    assert abs(x.mean()) <= 5 * math.sqrt(variance / n), (x.mean(), variance)
    centred = x - x.mean()
    sample_var = np.mean(centred ** 2)
    # Standard error of the sample variance from the sample's own fourth moment.
    se = math.sqrt(max(np.mean(centred ** 4) - sample_var ** 2, 0.0) / n)
    assert abs(sample_var - variance) <= 5 * se, (sample_var, variance, se)
    # And the bound is tight enough to mean something: a 10% error would be caught.
    assert 5 * se < 0.1 * variance


@pytest.mark.parametrize("name", sorted(VARIANCE_FORMULAS))
@pytest.mark.parametrize("shape,fan_in,fan_out", SHAPES)
def test_variance_scaling_family_matches_keras_formula(name, shape, fan_in, fan_out):
    w = initializers.get(name)(shape, "float32")
    assert w.shape == shape and w.dtype == np.float32
    variance = VARIANCE_FORMULAS[name](fan_in, fan_out)
    _assert_mean_and_variance(w, variance)
    if name.endswith("uniform"):
        limit = math.sqrt(3 * variance)
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * limit  # the whole range is used
    else:
        # Truncated at two standard deviations of the underlying normal.
        limit = 2 * math.sqrt(variance) / _std_of_unit_normal_truncated_at_2()
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > 0.95 * limit


def test_truncation_constant_is_the_truncated_normal_std():
    assert _std_of_unit_normal_truncated_at_2() == pytest.approx(0.87962566103423978, rel=1e-12)


def test_plain_random_initializers_keras_defaults():
    shape = (400, 250)
    _assert_mean_and_variance(initializers.get("random_uniform")(shape), 0.1 ** 2 / 12)
    _assert_mean_and_variance(initializers.get("random_normal")(shape), 0.05 ** 2)
    truncated = initializers.get("truncated_normal")(shape, "float64")
    _assert_mean_and_variance(truncated, (0.05 * _std_of_unit_normal_truncated_at_2()) ** 2)
    assert np.abs(truncated).max() <= 0.1
    shifted = initializers.RandomNormal(mean=3.0, stddev=0.5)(shape, "float64")
    _assert_mean_and_variance(shifted - 3.0, 0.25)


def test_variance_scaling_modes_and_untruncated_normal():
    shape = (100, 500)
    w = initializers.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal")(shape)
    _assert_mean_and_variance(w, 3.0 / 500)
    w = initializers.VarianceScaling(scale=0.5, mode="fan_avg", distribution="uniform")(shape)
    _assert_mean_and_variance(w, 0.5 / 300)
    with pytest.raises(ValueError, match="mode"):
        initializers.VarianceScaling(mode="fan_sideways")
    with pytest.raises(ValueError, match="scale"):
        initializers.VarianceScaling(scale=0.0)


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (3, 3, 4, 8), (16, 16)])
def test_orthogonal_columns_or_rows_are_orthonormal(shape):
    gain = 1.7
    w = initializers.Orthogonal(gain=gain)(shape, "float64")
    assert w.shape == shape
    m = w.reshape(-1, shape[-1]) / gain
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-12)
    with pytest.raises(ValueError, match="rank >= 2"):
        initializers.Orthogonal()((5,))


def test_constant_initializers_and_identity():
    assert np.all(initializers.get("zeros")((3, 2)) == 0)
    assert np.all(initializers.get("ones")((3,)) == 1)
    assert np.all(initializers.Constant(2.5)((2, 2), "float64") == 2.5)
    np.testing.assert_array_equal(initializers.Identity(gain=2.0)((2, 3)), [[2, 0, 0], [0, 2, 0]])
    with pytest.raises(ValueError, match="2-D"):
        initializers.Identity()((2, 2, 2))


def test_seeds_repeat_and_global_seed_repeats_unseeded_draws():
    for cls in (initializers.GlorotUniform, initializers.HeNormal, initializers.Orthogonal,
                initializers.RandomNormal, initializers.TruncatedNormal):
        a = cls(seed=7)((6, 5))
        np.testing.assert_array_equal(a, cls(seed=7)((6, 5)))
        assert not np.array_equal(a, cls(seed=8)((6, 5)))
    _rng.seed(123)
    first = [initializers.get("glorot_uniform")((4, 4)), initializers.get("he_normal")((4, 4))]
    _rng.seed(123)
    second = [initializers.get("glorot_uniform")((4, 4)), initializers.get("he_normal")((4, 4))]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], initializers.get("glorot_uniform")((4, 4)))


def test_get_accepts_names_class_names_dicts_and_callables():
    assert isinstance(initializers.get("he_normal"), initializers.HeNormal)
    assert isinstance(initializers.get("GlorotUniform"), initializers.GlorotUniform)
    custom = lambda shape, dtype: np.full(shape, 4.0, dtype)
    assert initializers.get(custom) is custom
    got = initializers.get({"class_name": "random_normal", "config": {"stddev": 0.2, "seed": 3}})
    assert isinstance(got, initializers.RandomNormal) and got.stddev == 0.2 and got.seed == 3
    with pytest.raises(ValueError, match=r"unknown initializer 'glorot_unifrom'.*he_normal"):
        initializers.get("glorot_unifrom")
    with pytest.raises(ValueError, match="unknown initializer class 'Nope'"):
        initializers.deserialize({"class_name": "Nope", "config": {}})
    with pytest.raises(TypeError):
        initializers.get(3)


@pytest.mark.parametrize("init", [
    initializers.Zeros(), initializers.Ones(), initializers.Constant(0.3),
    initializers.RandomUniform(-1.0, 2.0, seed=1), initializers.RandomNormal(0.5, 2.0),
    initializers.TruncatedNormal(stddev=0.1), initializers.GlorotUniform(seed=5),
    initializers.HeNormal(), initializers.LecunUniform(), initializers.Orthogonal(gain=0.5),
    initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=9), initializers.Identity(3.0),
])
def test_serialize_round_trips(init):
    import json
    config = json.loads(json.dumps(initializers.serialize(init)))
    back = initializers.deserialize(config)
    assert type(back) is type(init) and back.get_config() == init.get_config()


def test_serialize_refuses_custom_callables():
    with pytest.raises(ValueError, match="cannot be saved"):
        initializers.serialize(lambda shape, dtype: np.zeros(shape))
