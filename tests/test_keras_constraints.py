"""fd.constraints against Keras 3's keras/src/constraints/constraints_test.py (v3.15.1):
its literal MaxNorm case, the norm bounds on a (100, 100) example, get(), the base class,
and config round trips. (tests/test_constraints.py compares every constraint with values
printed from Keras, in layers and after optimizer steps.) Keras's assertAllClose:
rtol = atol = 1e-6."""
import numpy as np
import pytest

from fusednn import constraints

TOL = dict(rtol=1e-6, atol=1e-6)


def example_array():
    """Keras's get_example_array: uniform in [-50, 50) with a zero in a corner (our draws,
    not Keras's: the tests check bounds that hold for any such array)."""
    array = np.random.default_rng(3537).random((100, 100)) * 100.0 - 50.0
    array[0, 0] = 0.0
    return array


def test_max_norm():
    x = np.array([[0, 0, 0], [1.0, 0, 0], [3, 0, 0], [3, 3, 3]]).T
    target = np.array([[0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [2.0 / np.sqrt(3)] * 3]).T
    np.testing.assert_allclose(constraints.MaxNorm(2.0)(x), target, **TOL)


def test_non_neg_unit_norm_min_max_norm():
    # Keras: test_non_neg, test_unit_norm, test_min_max_norm.
    assert (constraints.NonNeg()(example_array()) >= 0.0).all()
    l2 = np.sqrt(np.sum(np.square(constraints.UnitNorm()(example_array())), axis=0))
    np.testing.assert_allclose(l2, 1.0, **TOL)
    bounded = constraints.MinMaxNorm(min_value=0.2, max_value=0.5)(example_array())
    l2 = np.sqrt(np.sum(np.square(bounded), axis=0))
    assert np.all(l2 >= 0.2) and np.all(l2 <= 0.5 + 1e-6)


def test_get_method():
    assert isinstance(constraints.get("unit_norm"), constraints.UnitNorm)
    assert constraints.get(None) is None
    with pytest.raises(ValueError):
        constraints.get("typo")


def test_default_constraint():
    # Keras: test_default_constraint_call, test_constraint_get_config, _from_config.
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(constraints.Constraint()(x), x)
    assert constraints.Constraint().get_config() == {}
    assert isinstance(constraints.Constraint.from_config({}), constraints.Constraint)


@pytest.mark.parametrize("constraint, config", [
    (constraints.MaxNorm(max_value=3.0, axis=1), {"max_value": 3.0, "axis": 1}),
    (constraints.UnitNorm(axis=1), {"axis": 1}),
    (constraints.MinMaxNorm(min_value=0.5, max_value=2.0, rate=0.7, axis=1),
     {"min_value": 0.5, "max_value": 2.0, "rate": 0.7, "axis": 1}),
    (constraints.NonNeg(), {}),
])
def test_get_config_and_round_trip(constraint, config):
    # Keras: test_max_norm_get_config, test_unit_norm_get_config,
    # test_min_max_norm_get_config, test_non_neg_get_config / _from_config /
    # _serialization_roundtrip.
    assert constraint.get_config() == config
    restored = type(constraint).from_config(config)
    np.testing.assert_allclose(restored(example_array()), constraint(example_array()), **TOL)


@pytest.mark.parametrize("x, expected", [(np.full((5, 5), -3.0), np.zeros((5, 5))),
                                         (np.full((5, 5), 3.0), np.full((5, 5), 3.0)),
                                         (np.zeros((5, 5)), np.zeros((5, 5)))])
def test_non_neg_values(x, expected):
    # Keras: test_non_neg_zeroes_negatives, _preserves_positives, _all_zeros_input.
    np.testing.assert_array_equal(constraints.NonNeg()(x), expected)
