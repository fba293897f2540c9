"""Loss classes against the literal values of Keras 3's keras/src/losses/losses_test.py
(v3.15.1): the tests of MeanAbsoluteError, MeanAbsolutePercentageError,
MeanSquaredLogarithmicError, Hinge, SquaredHinge, CategoricalHinge, CosineSimilarity,
Huber, LogCosh, KLDivergence, Poisson, BinaryCrossentropy, CategoricalCrossentropy,
SparseCategoricalCrossentropy (segmentation included) and BinaryFocalCrossentropy
(MeanSquaredError and ignore_class are in test_keras_losses.py). Left out: the dtype
(bfloat16 policy) cases, which fusednn does not have; CategoricalFocalCrossentropy, CTC,
Dice, Tversky, Circle and CategoricalGeneralizedCrossEntropy, which fusednn does not have;
SparseCategoricalCrossentropy(axis=...), ditto. Keras compares with assertAlmostEqual at 3
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


# ----- MeanSquaredLogarithmicErrorTest, HingeTest, SquaredHingeTest, CategoricalHingeTest ---

HINGE_TRUE = np.array([[0.0, 1.0], [0.0, 0.0]])
HINGE_PRED = np.array([[0.6, 0.4], [0.4, 0.6]])

LITERALS = [
    ("msle-unweighted", losses.MeanSquaredLogarithmicError(), Y_TRUE, Y_PRED, None, 1.4370),
    ("msle-scalar", losses.MeanSquaredLogarithmicError(), Y_TRUE, Y_PRED, 2.3, 3.3051),
    ("msle-sample", losses.MeanSquaredLogarithmicError(), Y_TRUE, Y_PRED, SAMPLE_WEIGHT,
     3.7856),
    ("msle-timestep", losses.MeanSquaredLogarithmicError(), TS_TRUE, TS_PRED.astype(int),
     TS_WEIGHT, 2.647374),
    ("msle-zero", losses.MeanSquaredLogarithmicError(), Y_TRUE, Y_PRED, 0, 0.0),
    ("msle-mean-with-sample-weight",
     losses.MeanSquaredLogarithmicError(reduction="mean_with_sample_weight"), Y_TRUE, Y_PRED,
     SAMPLE_WEIGHT, 1.646),
]
for _cls, _values in [(losses.Hinge, ([1.3, 2.6, [1.1, 1.5]], [0.55, 1.1, [1.1, 0.0]])),
                      (losses.SquaredHinge, ([1.86, 3.72, [1.46, 2.26]],
                                             [0.73, 1.46, [1.46, 0.0]])),
                      (losses.CategoricalHinge, ([1.4, 2.8, [1.2, 1.6]],
                                                 [0.6, 1.2, [1.2, 0.0]]))]:
    for _weight, _expected in zip((None, [1, 0]), _values):  # test_unweighted, test_weighted
        for _reduction, _value in zip(("sum_over_batch_size", "sum", None), _expected):
            LITERALS.append((f"{_cls.__name__}-{_reduction}-{_weight}", _cls(reduction=_reduction),
                             HINGE_TRUE, HINGE_PRED, _weight, _value))
    LITERALS.append((f"{_cls.__name__}-zero", _cls(), HINGE_TRUE, HINGE_PRED, 0.0, 0.0))

# ----- BinaryFocalCrossentropyTest -----------------------------------------------------------

FOCAL_TRUE = np.asarray([1, 0, 1, 0]).reshape([2, 2])
FOCAL_PRED = np.asarray([0.9, 0.8, 0.7, 0.2], dtype=np.float32).reshape([2, 2])
FOCAL_LOGIT_TRUE = np.array([[1, 1, 0], [0, 1, 0]], dtype="float32")
FOCAL_LOGITS = np.array([[1.5, -2.7, 2.9], [-3.8, 1.2, -4.5]])
FOCAL_WEIGHT = np.array([1.2, 3.4]).reshape((2, 1))
LITERALS += [
    ("bfce-all-correct", losses.BinaryFocalCrossentropy(gamma=1.5), ONE_HOT.astype(np.float32),
     ONE_HOT.astype(np.float32), None, 0.0),
    ("bfce-all-correct-logits", losses.BinaryFocalCrossentropy(gamma=2.0, from_logits=True),
     ONE_HOT.astype(np.float32), 200.0 * ONE_HOT - 100.0, None, 0.0),
    ("bfce-unweighted", losses.BinaryFocalCrossentropy(gamma=2.0), FOCAL_TRUE, FOCAL_PRED,
     None, 0.268),
    ("bfce-unweighted-logits", losses.BinaryFocalCrossentropy(gamma=3.0, from_logits=True),
     FOCAL_LOGIT_TRUE, FOCAL_LOGITS, None, 0.799),
    ("bfce-scalar", losses.BinaryFocalCrossentropy(gamma=2.0), FOCAL_TRUE, FOCAL_PRED, 1.23,
     0.3296),
    ("bfce-scalar-logits", losses.BinaryFocalCrossentropy(gamma=3.0, from_logits=True),
     FOCAL_LOGIT_TRUE, FOCAL_LOGITS, 3.21, 2.565),
    ("bfce-sample", losses.BinaryFocalCrossentropy(gamma=2.0), FOCAL_TRUE, FOCAL_PRED,
     FOCAL_WEIGHT, 0.34415),
    ("bfce-sample-logits", losses.BinaryFocalCrossentropy(gamma=3.0, from_logits=True),
     FOCAL_LOGIT_TRUE, FOCAL_LOGITS, FOCAL_WEIGHT, 0.95977),
    ("bfce-none", losses.BinaryFocalCrossentropy(gamma=2.0, reduction=None), FOCAL_TRUE,
     FOCAL_PRED, None, [0.515547, 0.020513]),
]


@pytest.mark.parametrize("loss, y_true, y_pred, sample_weight, expected",
                         [case[1:] for case in LITERALS], ids=[c[0] for c in LITERALS])
def test_literal_losses(loss, y_true, y_pred, sample_weight, expected):
    assert_keras_almost_equal(loss(y_true, y_pred, sample_weight=sample_weight), expected)


@pytest.mark.parametrize("cls", [losses.Hinge, losses.SquaredHinge, losses.CategoricalHinge])
def test_hinge_bad_reduction(cls):
    # Keras: HingeTest / SquaredHingeTest / CategoricalHingeTest.test_unweighted's last case.
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        cls(reduction="abc")


# ----- CosineSimilarityTest, HuberLossTest, LogCoshTest, KLDivergenceTest, PoissonTest ------
# Keras computes these expectations from each loss's formula in NumPy rather than writing
# numbers; the formulas below are the same definitions, evaluated in float64, so the float32
# loss is compared at Keras's 3 decimals.

def _cosine(y_true, y_pred, axis):
    def normalized(x):
        return x / np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))
    return np.sum(normalized(y_true) * normalized(y_pred), axis=axis)


def _huber(y_true, y_pred, delta=1.0):
    error = np.abs(y_pred - y_true)
    quadratic = np.minimum(error, delta)
    return 0.5 * quadratic ** 2 + delta * (error - quadratic)


def _logcosh(y_true, y_pred):
    error = y_pred - y_true
    return np.log((np.exp(error) + np.exp(-error)) / 2)


COS_TRUE = np.asarray([[1, 9, 2], [-5, -2, 6]], dtype=np.float32)
COS_PRED = np.asarray([[4, 8, 12], [8, 1, 3]], dtype=np.float32)
HUBER_PRED = np.array([[0.9, 0.2, 0.2], [0.8, 0.4, 0.6]])
HUBER_TRUE = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
KLD_PRED = np.asarray([0.4, 0.9, 0.12, 0.36, 0.3, 0.4], dtype=np.float32).reshape((2, 3))
KLD_TRUE = np.asarray([0.5, 0.8, 0.12, 0.7, 0.43, 0.8], dtype=np.float32).reshape((2, 3))
POISSON_PRED = np.asarray([1, 9, 2, 5, 2, 6], dtype=np.float32).reshape((2, 3))
POISSON_TRUE = np.asarray([4, 8, 12, 8, 1, 3], dtype=np.float32).reshape((2, 3))
ROW_WEIGHT = np.repeat([[1.2], [3.4]], 3, axis=1)
TS_WEIGHT_3D = TS_WEIGHT.reshape((2, 3, 1))

_cos = _cosine(COS_TRUE, COS_PRED, 1)
_ts_cos = _cosine(COS_TRUE.reshape(2, 3, 1), COS_PRED.reshape(2, 3, 1), 2)
_huber_losses = _huber(HUBER_TRUE, HUBER_PRED)
_logcosh_losses = _logcosh(COS_TRUE, COS_PRED)
_kld_losses = KLD_TRUE * np.log(KLD_TRUE.astype(np.float64) / KLD_PRED)
_poisson_losses = POISSON_PRED - POISSON_TRUE * np.log(POISSON_PRED.astype(np.float64))


def _weighted_cases(name, loss, y_true, y_pred, losses_per_value, divisor, row_weight):
    """Keras's test_unweighted, test_scalar_weighted (2.3), test_sample_weighted (1.2 for
    the first sample, 3.4 for the second, passed as `row_weight`) and test_zero_weighted of a
    loss whose expectation is sum(weight * per-value losses) / divisor."""
    return [(f"{name}-unweighted", loss, y_true, y_pred, None,
             np.sum(losses_per_value) / divisor),
            (f"{name}-scalar", loss, y_true, y_pred, 2.3,
             2.3 * np.sum(losses_per_value) / divisor),
            (f"{name}-sample", loss, y_true, y_pred, row_weight,
             np.sum(losses_per_value * ROW_WEIGHT) / divisor),
            (f"{name}-zero", loss, y_true, y_pred, 0, 0.0)]


FORMULAS = [
    ("cosine-unweighted", losses.CosineSimilarity(), COS_TRUE, COS_PRED, None, -np.mean(_cos)),
    ("cosine-scalar", losses.CosineSimilarity(), COS_TRUE, COS_PRED, 2.3,
     -np.mean(_cos * 2.3)),
    ("cosine-sample", losses.CosineSimilarity(), COS_TRUE, COS_PRED, np.asarray([1.2, 3.4]),
     -np.mean(_cos * [1.2, 3.4])),
    ("cosine-timestep", losses.CosineSimilarity(), COS_TRUE.reshape(2, 3, 1),
     COS_PRED.reshape(2, 3, 1), TS_WEIGHT, -np.mean(_ts_cos * TS_WEIGHT)),
    ("cosine-zero", losses.CosineSimilarity(), COS_TRUE, COS_PRED, 0, 0.0),
    ("cosine-axis", losses.CosineSimilarity(axis=1), COS_TRUE, COS_PRED, None, -np.mean(_cos)),
    ("huber-all-correct", losses.Huber(), HUBER_TRUE, HUBER_TRUE, None, 0.0),
    *_weighted_cases("huber", losses.Huber(), HUBER_TRUE, HUBER_PRED, _huber_losses, 6,
                     np.array([[1.2], [3.4]])),
    ("huber-timestep", losses.Huber(), HUBER_TRUE.reshape(2, 3, 1),
     HUBER_PRED.reshape(2, 3, 1), TS_WEIGHT_3D,
     np.sum(_huber_losses.reshape(2, 3, 1) * TS_WEIGHT_3D) / 6),
    ("huber-delta", losses.Huber(delta=0.8), HUBER_TRUE, HUBER_PRED, 2.3,
     2.3 * np.sum(_huber(HUBER_TRUE, HUBER_PRED, 0.8)) / 6),
    *_weighted_cases("logcosh", losses.LogCosh(), COS_TRUE, COS_PRED, _logcosh_losses, 6,
                     np.asarray([1.2, 3.4])),
    ("logcosh-timestep", losses.LogCosh(), TS_TRUE, TS_PRED.astype(int), TS_WEIGHT_3D,
     np.sum(_logcosh_losses.reshape(2, 3, 1) * TS_WEIGHT_3D) / 6),
    *_weighted_cases("kld", losses.KLDivergence(), KLD_TRUE, KLD_PRED, _kld_losses, 2,
                     np.asarray([1.2, 3.4], np.float32).reshape((2, 1))),
    ("kld-timestep", losses.KLDivergence(), KLD_TRUE.reshape(2, 3, 1),
     KLD_PRED.reshape(2, 3, 1), TS_WEIGHT, np.sum(_kld_losses * TS_WEIGHT) / 6),
    *_weighted_cases("poisson", losses.Poisson(), POISSON_TRUE, POISSON_PRED, _poisson_losses,
                     6, np.asarray([1.2, 3.4]).reshape((2, 1))),
    ("poisson-timestep", losses.Poisson(), POISSON_TRUE.reshape(2, 3, 1),
     POISSON_PRED.reshape(2, 3, 1), TS_WEIGHT, np.sum(_poisson_losses * TS_WEIGHT) / 6),
]


@pytest.mark.parametrize("loss, y_true, y_pred, sample_weight, expected",
                         [case[1:] for case in FORMULAS], ids=[c[0] for c in FORMULAS])
def test_formula_losses(loss, y_true, y_pred, sample_weight, expected):
    value = loss(y_true, y_pred, sample_weight=sample_weight)
    assert_keras_almost_equal(value, expected)
    # Keras's scalar-weighted cases also call the loss twice: the object keeps no state.
    assert_keras_almost_equal(loss(y_true, y_pred, sample_weight=sample_weight), value)


@pytest.mark.parametrize("loss, extra", [
    (losses.Huber(reduction="sum", name="huber"), {"delta": 1.0}),
    (losses.LogCosh(reduction="sum", name="logcosh_loss"), {}),
    (losses.CosineSimilarity(axis=2, reduction="sum", name="cosine_loss"), {"axis": 2}),
    (losses.KLDivergence(reduction="sum", name="kld"), {}),
    (losses.Poisson(reduction="sum", name="poisson"), {})])
def test_config_name_and_reduction(loss, extra):
    # Keras: test_config of these classes: name and reduction as given. Deliberate
    # difference: Keras 3.15.1's config of Huber and CosineSimilarity drops delta and axis,
    # so from_config builds a different loss; fusednn keeps them.
    assert loss.reduction == "sum"
    assert loss.get_config() == {"name": loss.name, "reduction": "sum", **extra}
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()


@pytest.mark.parametrize("cls, name", [(losses.MeanSquaredLogarithmicError, "mysloge"),
                                       (losses.BinaryFocalCrossentropy, "bfce")])
def test_config_round_trip(cls, name):
    # Keras: MeanSquaredLogarithmicErrorTest / BinaryFocalCrossentropyTest.test_config.
    config = cls(name=name).get_config()
    assert config["name"] == name and cls.from_config(config).get_config() == config


# ----- SparseCategoricalCrossentropyTest: segmentation -------------------------------------
# The class axis is last (Keras's axis=-1). fusednn's SparseCategoricalCrossentropy has no
# `axis` argument, so the *_different_axis cases (Keras runs them on torch only) are left out.

SEG_TRUE_2 = np.array([[0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 1]])
SEG_TRUE_3 = np.array([[0, 1, 2, 0], [1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 1]])


# (labels, the imperfect pixels and their predicted probabilities, the probabilities the
# true classes get there)
SEGMENTATION = [
    (SEG_TRUE_2, {(0, 3): [0.2, 0.8], (3, 3): [0.6, 0.4]}, [0.2, 0.4]),  # binary
    (SEG_TRUE_3, {(0, 3): [0.2, 0.0, 0.8], (1, 0): [0.7, 0.3, 0.0],
                  (3, 2): [0.5, 0.5, 0.0]}, [0.2, 0.3, 0.5]),  # multi_class
]


@pytest.mark.parametrize("labels, imperfect, true_class_probs", SEGMENTATION,
                         ids=["binary", "multi_class"])
def test_segmentation(labels, imperfect, true_class_probs):
    # Keras: test_binary_segmentation, test_multi_class_segmentation: a 4x4 image, 0 for
    # perfect predictions, else the mean over the 16 pixels of -log(p of the true class).
    # Tolerance: assertAllClose's rtol and atol of 1e-6 (the loss is computed in float32).
    scce = losses.SparseCategoricalCrossentropy()
    y_pred = np.eye(labels.max() + 1)[labels]
    np.testing.assert_allclose(scce(labels, y_pred), 0.0, atol=1e-6)
    for pixel, probs in imperfect.items():
        y_pred[pixel] = probs
    expected = -np.sum(np.log(true_class_probs)) / 16.0
    np.testing.assert_allclose(scce(labels, y_pred), expected, rtol=1e-6, atol=1e-6)
