"""Loss classes against the literal values of Keras 3's keras/src/losses/losses_test.py
(v3.15.1): MeanAbsoluteErrorTest, MeanAbsolutePercentageErrorTest, BinaryCrossentropyTest,
CategoricalCrossentropyTest and SparseCategoricalCrossentropyTest (MeanSquaredError and
ignore_class are in test_keras_losses.py). Keras compares with assertAlmostEqual at 3
decimals (|difference| < 1.5e-3) unless the test says otherwise; so do these."""
import numpy as np
import pytest

from fusednn import losses

Y_TRUE = np.array([[1, 9, 2], [-5, -2, 6]])
Y_PRED = np.array([[4, 8, 12], [8, 1, 3]], dtype=np.float32)
TS_TRUE = np.asarray([1, 9, 2, -5, -2, 6]).reshape(2, 3, 1)
TS_PRED = np.asarray([4, 8, 12, 8, 1, 3]).reshape(2, 3, 1).astype(np.float32)
TS_WEIGHT = np.array([3, 6, 5, 0, 4, 2]).reshape((2, 3))
SAMPLE_WEIGHT = np.array([[1.2], [3.4]])


def assert_keras_almost_equal(actual, desired, decimal=3):
    np.testing.assert_almost_equal(np.asarray(actual), desired, decimal=decimal)


# (id, loss, y_true, y_pred, sample_weight, Keras's expected value)
REGRESSION = [
    ("mae-all-correct", losses.MeanAbsoluteError(), np.array([[4, 8, 12], [8, 1, 3]]),
     np.array([[4, 8, 12], [8, 1, 3]], np.float32), None, 0.0),
    ("mae-unweighted", losses.MeanAbsoluteError(), Y_TRUE, Y_PRED, None, 5.5),
    ("mae-scalar", losses.MeanAbsoluteError(), Y_TRUE, Y_PRED, 2.3, 12.65),
    ("mae-sample", losses.MeanAbsoluteError(), Y_TRUE, Y_PRED, SAMPLE_WEIGHT, 81.4 / 6),
    ("mae-timestep", losses.MeanAbsoluteError(), TS_TRUE, TS_PRED, TS_WEIGHT, 13.833333),
    ("mae-zero", losses.MeanAbsoluteError(), Y_TRUE, Y_PRED, 0, 0.0),
    ("mae-none", losses.MeanAbsoluteError(reduction=None), Y_TRUE, Y_PRED, 2.3,
     [10.7333, 14.5666]),
    ("mae-sum", losses.MeanAbsoluteError(reduction="sum"), Y_TRUE, Y_PRED, 2.3, 25.29999),
    ("mae-mean-with-sample-weight", losses.MeanAbsoluteError(
        reduction="mean_with_sample_weight"), Y_TRUE, Y_PRED, SAMPLE_WEIGHT,
     (14 / 3 * 1.2 + 19 / 3 * 3.4) / (1.2 + 3.4)),
    ("mape-all-correct", losses.MeanAbsolutePercentageError(),
     np.array([[4, 8, 12], [8, 1, 3]]), np.array([[4, 8, 12], [8, 1, 3]], np.float32),
     None, 0.0),
    ("mape-unweighted", losses.MeanAbsolutePercentageError(), Y_TRUE, Y_PRED, None, 211.8518),
    ("mape-scalar", losses.MeanAbsolutePercentageError(), Y_TRUE, Y_PRED, 2.3, 487.259),
    ("mape-sample", losses.MeanAbsolutePercentageError(), Y_TRUE, Y_PRED, SAMPLE_WEIGHT,
     422.8888),
    ("mape-timestep", losses.MeanAbsolutePercentageError(), TS_TRUE, TS_PRED, TS_WEIGHT,
     694.4444),
    ("mape-zero", losses.MeanAbsolutePercentageError(), Y_TRUE, Y_PRED, 0, 0.0),
    ("mape-none", losses.MeanAbsolutePercentageError(reduction=None), Y_TRUE, Y_PRED, 2.3,
     [621.8518, 352.6666]),
    ("mape-mean-with-sample-weight", losses.MeanAbsolutePercentageError(
        reduction="mean_with_sample_weight"), Y_TRUE, Y_PRED, SAMPLE_WEIGHT, 183.865),
]


@pytest.mark.parametrize("loss, y_true, y_pred, sample_weight, expected",
                         [case[1:] for case in REGRESSION], ids=[c[0] for c in REGRESSION])
def test_regression_losses(loss, y_true, y_pred, sample_weight, expected):
    assert_keras_almost_equal(loss(y_true, y_pred, sample_weight=sample_weight), expected)


@pytest.mark.parametrize("cls, name", [(losses.MeanAbsoluteError, "myname"),
                                       (losses.MeanAbsolutePercentageError, "mymape"),
                                       (losses.CategoricalCrossentropy, "cce"),
                                       (losses.SparseCategoricalCrossentropy, "scce")])
def test_config(cls, name):
    # Keras: test_config (run_class_serialization_test: from_config(get_config()) equal).
    loss = cls(name=name)
    config = loss.get_config()
    assert config["name"] == name
    assert cls.from_config(config).get_config() == config


ONE_HOT = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
PROBS = np.array([[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]], np.float32)
LOGITS = np.array([[8.0, 1.0, 1.0], [0.0, 9.0, 1.0], [2.0, 3.0, 5.0]])
CCE_WEIGHT = np.array([[1.2], [3.4], [5.6]])
BCE_TRUE = np.array([1, 0, 1, 0]).reshape([2, 2])
BCE_PRED = np.array([1, 1, 1, 0], np.float32).reshape([2, 2])
BCE_LOGIT_TRUE = np.array([[1, 0, 1], [0, 1, 1]])
BCE_LOGITS = np.array([[10.0, -10.0, 10.0], [10.0, 10.0, -10.0]])

CROSSENTROPY = [
    ("bce-all-correct", losses.BinaryCrossentropy(), ONE_HOT.astype(np.float32),
     ONE_HOT.astype(np.float32), None, 0.0),
    ("bce-all-correct-logits", losses.BinaryCrossentropy(from_logits=True),
     ONE_HOT.astype(np.float32), 20.0 * ONE_HOT - 10.0, None, 0.0),
    ("bce-unweighted", losses.BinaryCrossentropy(), ONE_HOT.astype(np.float32),
     np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.1, 0.2, 0.7]], np.float32), None,
     0.20046903),
    ("bce-unweighted-saturated", losses.BinaryCrossentropy(), BCE_TRUE, BCE_PRED, None,
     3.98559),
    ("bce-unweighted-logits", losses.BinaryCrossentropy(from_logits=True), BCE_LOGIT_TRUE,
     BCE_LOGITS, None, 3.3333),
    ("bce-scalar", losses.BinaryCrossentropy(), BCE_TRUE, BCE_PRED, 2.3, 9.1668),
    ("bce-scalar-logits", losses.BinaryCrossentropy(from_logits=True), BCE_LOGIT_TRUE,
     BCE_LOGITS, 2.3, 7.666),
    ("bce-sample", losses.BinaryCrossentropy(), BCE_TRUE, BCE_PRED,
     np.array([1.2, 3.4]).reshape((2, 1)), 4.7827),
    ("bce-sample-logits", losses.BinaryCrossentropy(from_logits=True), BCE_LOGIT_TRUE,
     BCE_LOGITS, np.array([4, 3]), 10.0),
    ("bce-label-smoothing", losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
     np.array([[1, 0, 1]]), np.array([[10.0, -10.0, -10.0]]), None, (10.0 + 5.0 * 0.1) / 3.0),
    ("cce-all-correct", losses.CategoricalCrossentropy(), ONE_HOT,
     ONE_HOT.astype(np.float32), None, 0.0),
    ("cce-all-correct-logits", losses.CategoricalCrossentropy(from_logits=True), ONE_HOT,
     10.0 * ONE_HOT, None, 0.0),
    ("cce-unweighted", losses.CategoricalCrossentropy(), ONE_HOT, PROBS, None, 0.3239),
    ("cce-unweighted-logits", losses.CategoricalCrossentropy(from_logits=True), ONE_HOT,
     LOGITS, None, 0.0573),
    ("cce-scalar", losses.CategoricalCrossentropy(), ONE_HOT, PROBS, 2.3, 0.7449),
    ("cce-scalar-logits", losses.CategoricalCrossentropy(from_logits=True), ONE_HOT, LOGITS,
     2.3, 0.1317),
    ("cce-sample", losses.CategoricalCrossentropy(), ONE_HOT, PROBS, CCE_WEIGHT, 1.0696),
    ("cce-sample-logits", losses.CategoricalCrossentropy(from_logits=True), ONE_HOT, LOGITS,
     CCE_WEIGHT, 0.31829),
    ("cce-label-smoothing", losses.CategoricalCrossentropy(from_logits=True,
                                                           label_smoothing=0.1),
     np.array([[1, 0, 0]]), np.array([[100.0, -100.0, -100.0]]), None, 400.0 * 0.1 / 3.0),
    ("scce-all-correct", losses.SparseCategoricalCrossentropy(),
     np.array([[0], [1], [2]]), ONE_HOT.astype(np.float32), None, 0.0),
    ("scce-all-correct-logits", losses.SparseCategoricalCrossentropy(from_logits=True),
     np.array([[0], [1], [2]]), 10.0 * ONE_HOT, None, 0.0),
    ("scce-unweighted", losses.SparseCategoricalCrossentropy(), np.array([0, 1, 2]), PROBS,
     None, 0.3239),
    ("scce-unweighted-logits", losses.SparseCategoricalCrossentropy(from_logits=True),
     np.array([0, 1, 2]), LOGITS, None, 0.0573),
    ("scce-scalar", losses.SparseCategoricalCrossentropy(), np.array([[0], [1], [2]]), PROBS,
     2.3, 0.7449),
    ("scce-scalar-logits", losses.SparseCategoricalCrossentropy(from_logits=True),
     np.array([[0], [1], [2]]), LOGITS, 2.3, 0.1317),
    ("scce-sample", losses.SparseCategoricalCrossentropy(), np.array([[0], [1], [2]]), PROBS,
     CCE_WEIGHT, 1.0696),
    ("scce-sample-logits", losses.SparseCategoricalCrossentropy(from_logits=True),
     np.array([[0], [1], [2]]), LOGITS, CCE_WEIGHT, 0.31829),
]


@pytest.mark.parametrize("loss, y_true, y_pred, sample_weight, expected",
                         [case[1:] for case in CROSSENTROPY], ids=[c[0] for c in CROSSENTROPY])
def test_crossentropy_losses(loss, y_true, y_pred, sample_weight, expected):
    assert_keras_almost_equal(loss(y_true, y_pred, sample_weight=sample_weight), expected)


@pytest.mark.parametrize("loss, y_true, logits, expected, atol", [
    (losses.BinaryCrossentropy(from_logits=True, reduction=None), BCE_LOGIT_TRUE, BCE_LOGITS,
     [0.0, 6.666], 1e-3),
    (losses.CategoricalCrossentropy(from_logits=True, reduction=None), ONE_HOT, LOGITS,
     [0.001822, 0.000459, 0.169846], 1e-6),
    (losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None),
     np.array([[0], [1], [2]]), LOGITS, [0.001822, 0.000459, 0.169846], 1e-6),
])
def test_no_reduction(loss, y_true, logits, expected, atol):
    # Keras: test_no_reduction (assertAllClose: rtol 1e-6 and atol 1e-6, BCE's atol 1e-3).
    np.testing.assert_allclose(loss(y_true, logits), expected, rtol=1e-6, atol=atol)


@pytest.mark.parametrize("loss", [losses.BinaryCrossentropy(),
                                  losses.CategoricalCrossentropy()])
def test_shape_mismatch(loss):
    # Keras: BinaryCrossentropyTest / CategoricalCrossentropyTest.test_shape_mismatch.
    with pytest.raises(ValueError, match="shape"):
        loss(np.array([[0], [1], [2]]), PROBS)
