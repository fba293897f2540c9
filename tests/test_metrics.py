"""fusednn.metrics against Keras 3: the literals of Keras's own tests
(keras/src/metrics/*_test.py, v3.15.1), scikit-learn on random data, and Keras 3 itself
(torch backend, when installed) on random data with and without sample weights.

Tolerances: the metrics accumulate in float64; Keras in float32, so comparisons with
Keras allow float32 rounding of sums of ~100 terms (rtol 1e-5). Keras's literals are
given to 3 decimals in its tests (their own tolerance 1e-3 is kept).
"""
import os

import numpy as np
import pytest
from sklearn import metrics as sk

from fusednn import losses
from fusednn import metrics

# ----- Keras's test literals -------------------------------------------------------------

# confusion_metrics_test.py (FalsePositives / TruePositives ...)
_Y_TRUE_5 = np.array(((0, 1, 0, 1, 0), (0, 0, 1, 1, 1), (1, 1, 1, 1, 0), (0, 0, 0, 0, 1)))
_Y_PRED_5 = np.array(((0, 0, 1, 1, 0), (1, 1, 1, 1, 1), (0, 1, 0, 1, 0), (1, 1, 1, 1, 1)))
_Y_PRED_T = np.array(((0.9, 0.2, 0.8, 0.1), (0.2, 0.9, 0.7, 0.6), (0.1, 0.2, 0.4, 0.3),
                      (0, 1, 0.7, 0.3)))
_Y_TRUE_T = np.array(((0, 1, 1, 0), (1, 0, 0, 0), (0, 0, 0, 0), (1, 1, 1, 1)))


def test_confusion_counts_keras_literals():
    assert metrics.FalsePositives()(_Y_TRUE_5, _Y_PRED_5) == 7.0
    assert metrics.FalsePositives()(_Y_TRUE_5, _Y_PRED_5,
                                    sample_weight=np.array((1.0, 1.5, 2.0, 2.5))) == 14.0
    assert metrics.TruePositives()(_Y_TRUE_5, _Y_PRED_5) == 7.0
    assert metrics.TruePositives()(_Y_TRUE_5, _Y_PRED_5,
                                   sample_weight=np.array((1.0, 1.5, 2.0, 2.5))) == 12.0
    assert metrics.FalseNegatives()(_Y_TRUE_5, _Y_PRED_5) == 3.0
    assert metrics.TrueNegatives()(_Y_TRUE_5, _Y_PRED_5) == 3.0
    thresholds = [0.15, 0.5, 0.85]
    fp = metrics.FalsePositives(thresholds=thresholds)
    np.testing.assert_array_equal(fp(_Y_TRUE_T, _Y_PRED_T), [7.0, 4.0, 2.0])
    weights = ((1.0, 2.0, 3.0, 5.0), (7.0, 11.0, 13.0, 17.0), (19.0, 23.0, 29.0, 31.0),
               (5.0, 15.0, 10.0, 0))
    np.testing.assert_array_equal(metrics.FalsePositives(thresholds=thresholds)(
        _Y_TRUE_T, _Y_PRED_T, sample_weight=weights), [125.0, 42.0, 12.0])
    np.testing.assert_array_equal(metrics.FalseNegatives(thresholds=thresholds)(
        _Y_TRUE_T, _Y_PRED_T, sample_weight=((3.0,), (5.0,), (7.0,), (4.0,))),
        [4.0, 16.0, 23.0])
    np.testing.assert_array_equal(metrics.TrueNegatives(thresholds=thresholds)(
        _Y_TRUE_T, _Y_PRED_T, sample_weight=((0.0, 2.0, 3.0, 5.0),)), [5.0, 15.0, 23.0])
    np.testing.assert_array_equal(metrics.TruePositives(thresholds=thresholds)(
        _Y_TRUE_T, _Y_PRED_T, sample_weight=37.0), [222.0, 111.0, 37.0])


def test_confusion_config_and_variables_like_keras():
    fp = metrics.FalsePositives(name="my_fp", thresholds=[0.4, 0.9])
    assert fp.name == "my_fp" and len(fp.variables) == 1 and fp.thresholds == [0.4, 0.9]
    again = metrics.FalsePositives.from_config(fp.get_config())
    assert again.name == "my_fp" and again.thresholds == [0.4, 0.9]
    p = metrics.Precision(name="my_precision", thresholds=[0.4, 0.9], top_k=15, class_id=12)
    assert len(p.variables) == 2
    again = metrics.Precision.from_config(p.get_config())
    assert (again.thresholds, again.top_k, again.class_id) == ([0.4, 0.9], 15, 12)
    with pytest.raises(ValueError, match=r"thresholds must be numbers in \[0, 1\]"):
        metrics.FalsePositives(thresholds=[-1, 0.5, 2])


def test_precision_recall_keras_literals():
    assert metrics.Precision()(np.array([0, 1, 1, 0]), np.array([1, 0, 1, 0])) == 0.5
    assert metrics.Recall()(np.array([0, 1, 1, 0]), np.array([1, 0, 1, 0])) == 0.5
    # Nothing predicted positive / no positive label: 0, not NaN (divide_no_nan).
    assert metrics.Precision()([1, 1], [0.0, 0.0]) == 0.0
    assert metrics.Recall()([0, 0], [1.0, 1.0]) == 0.0
    # top_k=3 keeps 0.5, 0.5, 0.4 (ties by position): tp = 1 (class 3), fp = 2.
    assert metrics.Precision(top_k=3)([[0, 0, 1, 1, 0]], [[0.2, 0.1, 0.5, 0, 0.2]]) \
        == pytest.approx(1 / 3)


# AUC, confusion_metrics_test.py's AUCTest: thresholds [0 - 1e-7, 0.5, 1 + 1e-7].
_AUC_TRUE = np.array([0, 0, 1, 1])
_AUC_PRED = np.array([0, 0.5, 0.3, 0.9])
_AUC_WEIGHTS = [1, 2, 3, 4]


@pytest.mark.parametrize("kwargs, weighted, expected", [
    ({}, False, 0.75 * 1 + 0.25 * 0),
    ({"thresholds": [0.5], "num_thresholds": 2}, False, 0.75),
    ({}, True, 0.7855),
    ({"summation_method": "majoring"}, True, 1.0),
    ({"summation_method": "minoring"}, True, 0.571),
    ({"curve": "PR", "summation_method": "majoring"}, True, 1 * 0.429 + 1 * 0.571),
    ({"curve": "PR", "summation_method": "minoring"}, True, 0.7 * 0.429),
    ({"curve": "PR"}, True, 2.416 / 7 + 4 / 7),
])
def test_auc_keras_literals(kwargs, weighted, expected):
    auc = metrics.AUC(**{"num_thresholds": 3, **kwargs})
    result = auc(_AUC_TRUE, _AUC_PRED, sample_weight=_AUC_WEIGHTS if weighted else None)
    assert result == pytest.approx(expected, abs=1e-3)


def test_auc_thresholds_from_logits_and_negative_weights():
    auc = metrics.AUC(num_thresholds=2, thresholds=[0.5])
    assert auc.num_thresholds == 3
    np.testing.assert_allclose(auc.thresholds, [0.0, 0.5, 1.0], atol=1e-6)
    # float32 as Keras's test: 0.5 + 1e-12 rounds to 0.5, whose logit is exactly 0.
    logits = -np.log(1.0 / (_AUC_PRED.astype(np.float32) + np.float32(1e-12)) - 1.0)
    assert metrics.AUC(num_thresholds=3, from_logits=True)(_AUC_TRUE, logits) \
        == pytest.approx(0.75, abs=1e-3)
    # Negative weights make max(tp + fn, 0) zero: the PR interpolation gives 0, not NaN.
    assert metrics.AUC(num_thresholds=3, curve="PR")(
        _AUC_TRUE, _AUC_PRED, sample_weight=[-1, -2, -3, -4]) == 0.0
    with pytest.raises(ValueError, match="curve"):
        metrics.AUC(curve="PRGAIN")
    with pytest.raises(NotImplementedError, match="multi_label"):
        metrics.AUC(multi_label=True)


# accuracy_metrics_test.py
def test_accuracies_keras_literals():
    acc = metrics.BinaryAccuracy()
    acc.update_state(np.array([[1], [1], [0], [0]]), np.array([[0.98], [1], [0], [0.6]]),
                     sample_weight=np.array([1, 0, 0, 1]))
    assert acc.result() == pytest.approx(0.5)
    assert metrics.BinaryAccuracy()(np.array([1, 1, 0, 0]), np.array([[0.98], [1], [0], [0.6]])) \
        == pytest.approx(0.75)
    assert metrics.BinaryAccuracy()(np.array([[1, 1], [0, 0]]), np.array([[0.98, 1], [0, 0.6]]),
                                    sample_weight=np.array([[1, 0]])) == pytest.approx(1.0)
    assert metrics.BinaryAccuracy(threshold=0.7)(
        np.array([[1], [1], [0], [0]]), np.array([[0.98], [0.5], [0.1], [0.2]])) == 0.75
    cat = metrics.CategoricalAccuracy()
    assert cat(np.array([[0, 0, 1], [0, 1, 0]]), np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0]]),
               sample_weight=np.array([0.7, 0.3])) == pytest.approx(0.3)
    sparse = metrics.SparseCategoricalAccuracy()
    assert sparse(np.array([[2], [1]]), np.array([[0.1, 0.6, 0.3], [0.05, 0.95, 0]]),
                  sample_weight=np.array([0.7, 0.3])) == pytest.approx(0.3)
    top_k = metrics.TopKCategoricalAccuracy(k=1)
    assert top_k(np.array([[0, 0, 1], [0, 1, 0]]), np.array([[0.1, 0.9, 0.8],
                                                              [0.05, 0.95, 0]])) == 0.5
    sparse_top = metrics.SparseTopKCategoricalAccuracy(k=1)
    assert sparse_top(np.array([2, 1]), np.array([[0.1, 0.9, 0.8], [0.05, 0.95, 0]])) == 0.5


# reduction_metrics_test.py / regression_metrics_test.py
def test_mean_sum_and_regression_keras_literals():
    mean = metrics.Mean(name="my_mean")
    mean.update_state([1, 3, 5, 7])
    assert mean.result() == 4.0
    mean.reset_state()
    mean.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert mean.result() == 2.0 and mean.name == "my_mean"
    total = metrics.Sum()
    total.update_state([1, 3, 5, 7])
    assert total.result() == 16.0
    total.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert total.result() == 20.0
    # Rank-2 values are averaged per sample before weighting: ([1,2] -> 1.5) * 2 + 3.5 * 1.
    weighted = metrics.Mean()
    weighted.update_state(np.array([[1.0, 2.0], [3.0, 4.0]]), sample_weight=[2.0, 1.0])
    assert weighted.result() == pytest.approx((1.5 * 2 + 3.5) / 3)
    y_true = np.array([[0, 1, 0, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0], [0, 0, 0, 0, 1]])
    y_pred = np.array([[0, 0, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0], [1, 1, 1, 1, 1]])
    assert metrics.MeanSquaredError()(y_true, y_pred) == pytest.approx(0.5)
    assert metrics.MeanAbsoluteError()(y_true, y_pred) == pytest.approx(0.5)
    rmse = metrics.RootMeanSquaredError()
    assert rmse(np.array([2, 4, 6]), np.array([1, 3, 2])) == pytest.approx(np.sqrt(6))
    rmse.reset_state()
    assert rmse(np.array([2, 4, 6, 8]), np.array([1, 3, 2, 3]),
                sample_weight=np.array([0, 1, 0, 1])) == pytest.approx(np.sqrt(13))


def test_call_updates_and_reset_state_starts_again():
    auc = metrics.AUC()
    auc.update_state([0, 1], [0.2, 0.9])
    assert auc([1, 0], [0.1, 0.8]) == pytest.approx(0.5, abs=1e-2)  # both batches
    auc.reset_state()
    assert auc.result() == 0.0 and not any(v.any() for v in auc.variables)
    assert auc([0, 1], [0.2, 0.9]) == pytest.approx(1.0)


# ----- scikit-learn on random data -------------------------------------------------------

def test_auc_equals_sklearn_with_a_threshold_between_every_two_predictions(rng):
    # With a threshold between every two distinct predictions the ROC points are
    # sklearn's and both integrate by trapezoids: equal up to float64 rounding.
    y_true = rng.integers(0, 2, 300)
    y_pred = rng.random(300)
    weights = rng.random(300)
    distinct = np.unique(y_pred)
    midpoints = list((distinct[:-1] + distinct[1:]) / 2)
    auc = metrics.AUC(thresholds=midpoints)
    for start in range(0, 300, 64):  # several batches accumulate the same counts
        auc.update_state(y_true[start:start + 64], y_pred[start:start + 64],
                         sample_weight=weights[start:start + 64])
    assert auc.result() == pytest.approx(sk.roc_auc_score(y_true, y_pred,
                                                          sample_weight=weights), abs=1e-12)
    # 200 evenly spaced thresholds bin the predictions: within a few bins' area.
    coarse = metrics.AUC()(y_true, y_pred)
    assert coarse == pytest.approx(sk.roc_auc_score(y_true, y_pred), abs=5e-3)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_precision_recall_counts_equal_sklearn(rng, threshold):
    y_true = rng.integers(0, 2, 500)
    y_pred = rng.random(500)
    weights = rng.random(500)
    predicted = (y_pred > threshold).astype(int)
    for name, reference in (("Precision", sk.precision_score), ("Recall", sk.recall_score)):
        metric = getattr(metrics, name)(thresholds=threshold)
        metric.update_state(y_true[:250], y_pred[:250], sample_weight=weights[:250])
        metric.update_state(y_true[250:], y_pred[250:], sample_weight=weights[250:])
        assert metric.result() == pytest.approx(
            reference(y_true, predicted, sample_weight=weights), rel=1e-12)
    tn, fp, fn, tp = sk.confusion_matrix(y_true, predicted, sample_weight=weights).ravel()
    for name, expected in (("TruePositives", tp), ("FalsePositives", fp),
                           ("TrueNegatives", tn), ("FalseNegatives", fn)):
        assert getattr(metrics, name)(thresholds=threshold)(
            y_true, y_pred, sample_weight=weights) == pytest.approx(expected, rel=1e-12)


def test_accuracies_and_errors_equal_sklearn(rng):
    labels = rng.integers(0, 6, 200)
    scores = rng.random((200, 6))
    weights = rng.random(200)
    assert metrics.SparseCategoricalAccuracy()(labels, scores, sample_weight=weights) \
        == pytest.approx(sk.accuracy_score(labels, scores.argmax(1), sample_weight=weights))
    assert metrics.SparseTopKCategoricalAccuracy(k=3)(labels, scores) == pytest.approx(
        sk.top_k_accuracy_score(labels, scores, k=3))
    assert metrics.TopKCategoricalAccuracy(k=2)(np.eye(6)[labels], scores) == pytest.approx(
        sk.top_k_accuracy_score(labels, scores, k=2))
    y, p = rng.normal(size=(200, 1)), rng.normal(size=(200, 1))
    assert metrics.MeanSquaredError()(y, p, sample_weight=weights) == pytest.approx(
        sk.mean_squared_error(y, p, sample_weight=weights))
    assert metrics.MeanAbsoluteError()(y, p) == pytest.approx(sk.mean_absolute_error(y, p))
    assert metrics.RootMeanSquaredError()(y, p) == pytest.approx(
        np.sqrt(sk.mean_squared_error(y, p)))


# ----- Keras 3 itself on random data ----------------------------------------------------

def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


_CASES = [
    ("AUC", {}, "binary"), ("AUC", {"curve": "PR"}, "binary"),
    ("AUC", {"curve": "PR", "summation_method": "minoring"}, "binary"),
    ("AUC", {"summation_method": "majoring", "num_thresholds": 7}, "binary"),
    ("AUC", {"thresholds": [0.3, 0.6]}, "binary"), ("AUC", {"from_logits": True}, "logits"),
    ("TruePositives", {}, "binary"), ("FalsePositives", {"thresholds": [0.2, 0.5, 0.9]}, "binary"),
    ("TrueNegatives", {}, "binary"), ("FalseNegatives", {}, "binary"),
    ("Precision", {}, "binary"), ("Precision", {"top_k": 2}, "onehot"),
    ("Precision", {"class_id": 1}, "binary"), ("Recall", {"thresholds": [0.1, 0.7]}, "binary"),
    ("Recall", {"top_k": 2, "class_id": 3}, "onehot"),
    ("BinaryAccuracy", {}, "binary"), ("BinaryAccuracy", {"threshold": 0.7}, "binary"),
    ("CategoricalAccuracy", {}, "onehot"), ("SparseCategoricalAccuracy", {}, "sparse"),
    ("TopKCategoricalAccuracy", {"k": 2}, "onehot"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse"),
    ("MeanSquaredError", {}, "binary"), ("MeanAbsoluteError", {}, "binary"),
    ("RootMeanSquaredError", {}, "binary"),
]


@pytest.mark.parametrize("name, kwargs, kind", _CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_every_class_equals_keras_over_two_batches(rng, name, kwargs, kind, weighted):
    keras = _keras()
    n = 50
    data = {"binary": (rng.integers(0, 2, (n, 3)), rng.random((n, 3))),
            "logits": (rng.integers(0, 2, (n, 3)), rng.normal(size=(n, 3)) * 2)}
    classes = rng.integers(0, 5, n)
    data["onehot"] = (np.eye(5)[classes], rng.random((n, 5)))
    data["sparse"] = (classes, rng.random((n, 5)))
    y_true, y_pred = (a.astype(np.float32) for a in data[kind])
    weights = rng.random(n).astype(np.float32) if weighted else None
    ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
    for batch in (slice(0, 20), slice(20, n)):
        w = None if weights is None else weights[batch]
        ours.update_state(y_true[batch], y_pred[batch], sample_weight=w)
        theirs.update_state(y_true[batch], y_pred[batch], sample_weight=w)
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("name", ["auc", "precision", "recall", "mse", "mae",
                                  "binary_accuracy", "true_positives", "false_negatives",
                                  "root_mean_squared_error", "top_k_categorical_accuracy",
                                  "sparse_top_k_categorical_accuracy", "AUC", "Recall"])
def test_names_mean_the_classes_keras_gives(name):
    keras = _keras()
    assert type(metrics.get(name)).__name__ == type(keras.metrics.get(name)).__name__


# ----- names, functions, accuracy from the loss ---------------------------------------

def test_metric_functions_give_one_value_per_sample(rng):
    probs = rng.random((12, 4))
    labels = rng.integers(0, 4, size=12)
    np.testing.assert_array_equal(metrics.sparse_categorical_accuracy(labels, probs),
                                  probs.argmax(1) == labels)
    np.testing.assert_array_equal(metrics.sparse_categorical_accuracy(labels[:, None], probs),
                                  probs.argmax(1) == labels)
    np.testing.assert_array_equal(metrics.categorical_accuracy(np.eye(4)[labels], probs),
                                  probs.argmax(1) == labels)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(metrics.mean_squared_error(a, b), np.mean((a - b) ** 2, 1))
    with pytest.raises(ValueError, match="sparse_categorical_accuracy"):
        metrics.categorical_accuracy(labels, probs)


def test_accuracy_is_resolved_from_the_loss_like_keras():
    fn = lambda loss: metrics.get("accuracy", loss=loss)._fn
    assert fn("sparse_categorical_crossentropy") is metrics.sparse_categorical_accuracy
    assert fn(losses.CategoricalCrossentropy()) is metrics.categorical_accuracy
    assert fn("binary_crossentropy") is metrics.binary_accuracy
    assert metrics.get("acc", loss="bce").name == "acc"
    assert fn("mse") is metrics.accuracy  # any other loss: the shapes decide per batch
    assert metrics.accuracy([[1.0], [0.0]], [[0.7], [0.6]]).mean() == 0.5            # binary
    assert metrics.accuracy([2, 0], [[0, 0, 1.0], [0, 1.0, 0]]).mean() == 0.5       # sparse
    assert metrics.accuracy([[0, 1.0], [1.0, 0]], [[0.2, 0.8], [0.1, 0.9]]).mean() == 0.5
    assert metrics.get(losses.MeanAbsoluteError()).name == "mean_absolute_error"
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.get("precision_at_recall")
    with pytest.raises(TypeError):
        metrics.get(3)


def test_a_function_returning_a_scalar_counts_once_per_batch_as_in_keras():
    wrapped = metrics.MeanMetricWrapper(lambda t, p: float(np.mean(t == p)), name="eq")
    wrapped.update_state(np.array([1, 1, 1]), np.array([1, 1, 1]))  # 1.0 over 3 samples
    wrapped.update_state(np.array([1]), np.array([0]))              # 0.0 over 1 sample
    assert wrapped.result() == 0.5 and wrapped.name == "eq"


def test_serialize_round_trips_built_in_classes():
    auc = metrics.AUC(num_thresholds=50, curve="PR", name="pr_auc")
    restored = metrics.get(metrics.serialize(auc))
    assert type(restored) is metrics.AUC and restored.get_config() == auc.get_config()
    assert metrics.serialize(metrics.binary_accuracy) == "binary_accuracy"
    with pytest.raises(ValueError, match="cannot be saved"):
        metrics.serialize(lambda t, p: t)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same shape"):
        metrics.Precision()([0, 1, 1], [0.5, 0.2])
    with pytest.raises(TypeError, match="expected numbers"):
        metrics.Mean()("abc")
    with pytest.raises(ValueError, match="does not broadcast"):
        metrics.Mean()(np.ones(3), sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="class_id"):
        metrics.Recall(class_id=4)(np.ones((2, 3)), np.ones((2, 3)))


def test_a_subclass_names_its_state_and_gets_reset_and_variables():
    class Count(metrics.Metric):
        _state = ("seen",)

        def __init__(self, name="count"):
            super().__init__(name=name)
            self.seen = 0.0

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.seen += len(y_true)

        def result(self):
            return self.seen

    count = Count()
    assert count([1, 2, 3], [1, 2, 3]) == 3.0
    assert [float(v) for v in count.variables] == [3.0]
    count.reset_state()
    assert count.result() == 0.0
    count._set_variables([5.0])
    assert count.result() == 5.0
    with pytest.raises(ValueError, match="expected state of shapes"):
        metrics.AUC()._set_variables([1.0, 2.0])
