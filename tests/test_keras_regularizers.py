"""fd.regularizers against Keras 3's keras/src/regularizers/regularizers_test.py (v3.15.1):
penalties of L1, L2 and L1L2 against the formulas Keras's test writes (float32 sums of 16
terms: rtol 1e-6 as Keras's assertAllClose), get(), config round trips, and the argument
checks of its ValidateFloatArgTest through the constructors. OrthogonalRegularizer is left
out (fusednn has none)."""
import math

import numpy as np
import pytest

from fusednn import regularizers

VALUE = np.random.default_rng(0).random((4, 4)).astype(np.float32)


@pytest.mark.parametrize("regularizer, expected", [
    (regularizers.L1(0.1), 0.1 * np.sum(np.abs(VALUE))),
    (regularizers.L2(0.1), 0.1 * np.sum(np.square(VALUE))),
    (regularizers.L1L2(l1=0.1, l2=0.2), 0.1 * np.sum(np.abs(VALUE)) + 0.2 * np.sum(VALUE ** 2)),
    (regularizers.L1(0.0), 0.0), (regularizers.L2(0.0), 0.0),
    (regularizers.L1L2(l1=0.0, l2=0.0), 0.0),
    (regularizers.L1L2(l1=0.1, l2=0.0), 0.1 * np.sum(np.abs(VALUE))),
    (regularizers.L1L2(l1=0.0, l2=0.1), 0.1 * np.sum(np.square(VALUE))),
])
def test_penalties(regularizer, expected):
    # Keras: test_l1, test_l2, test_l1_l2, test_l1_zero_coefficient, test_l2_zero_coefficient,
    # test_l1l2_zero_coefficients, test_l1l2_only_l1, test_l1l2_only_l2.
    np.testing.assert_allclose(float(regularizer(VALUE)), expected, rtol=1e-6)


@pytest.mark.parametrize("regularizer", [regularizers.L1(0.1), regularizers.L2(0.1),
                                         regularizers.L1L2(l1=0.1, l2=0.2)])
def test_zero_weights(regularizer):
    assert float(regularizer(np.zeros((4, 4), np.float32))) == 0.0


def test_l1_with_negative_weights():
    ones = np.ones((4, 4), np.float32)
    assert float(regularizers.L1(0.1)(ones)) == float(regularizers.L1(0.1)(-ones))


def test_l1_and_l2_for_large_and_small_weights():
    # Keras: test_l2_is_larger_than_l1_for_large_weights / _smaller_..._for_small_weights.
    large, small = np.full((4, 4), 10.0, np.float32), np.full((4, 4), 0.1, np.float32)
    assert float(regularizers.L2(1.0)(large)) > float(regularizers.L1(1.0)(large))
    assert float(regularizers.L2(1.0)(small)) < float(regularizers.L1(1.0)(small))


def test_get_method():
    assert isinstance(regularizers.get("l1l2"), regularizers.L1L2)
    assert isinstance(regularizers.get("l1"), regularizers.L1)
    assert isinstance(regularizers.get("l2"), regularizers.L2)
    assert regularizers.get(None) is None
    with pytest.raises(ValueError):
        regularizers.get("typo")


@pytest.mark.parametrize("regularizer", [regularizers.L1(0.1), regularizers.L2(0.1),
                                         regularizers.L1L2(l1=0.01, l2=0.02)])
def test_config(regularizer):
    # Keras: test_config, test_l1l2_get_config (from_config gives an equal config).
    config = regularizer.get_config()
    assert type(regularizer).from_config(config).get_config() == config


@pytest.mark.parametrize("bad", ["not_a_number", math.nan, math.inf, -math.inf, -1, -0.001,
                                 [0.1]])
@pytest.mark.parametrize("make", [regularizers.L1, regularizers.L2,
                                  lambda value: regularizers.L1L2(l1=value)])
def test_factor_must_be_a_non_negative_float(make, bad):
    # Keras: ValidateFloatArgTest (each regularizer validates its factors with it).
    with pytest.raises(ValueError, match="non-negative float"):
        make(bad)


def test_none_factor_is_the_default():
    # Keras's constructors map None to the default before validating: L1/L2 0.01, L1L2 0.
    assert regularizers.L1(None).get_config() == {"l1": 0.01}
    assert regularizers.L2(None).get_config() == {"l2": 0.01}
    assert regularizers.L1L2(l1=None, l2=None).get_config() == {"l1": 0.0, "l2": 0.0}


@pytest.mark.parametrize("good", [0, 0.0, 1, 1.0, 1e-10, 1e6])
def test_factor_accepts_non_negative_numbers(good):
    assert regularizers.L1(good).get_config()["l1"] == pytest.approx(float(good))
