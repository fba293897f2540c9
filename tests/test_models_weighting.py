"""sample_weight, class_weight and weighted_metrics, against Keras 3's documented formulas.

Keras's loss reduction "sum_over_batch_size": loss = sum_i w_i l_i / N over the N samples
of a batch (the weighted sum divided by the number of samples, not by sum w), and the
gradient is that of this expression. `metrics` ignore the weights; `weighted_metrics`
are sum_i w_i m_i / sum_i w_i over all samples seen. References: NumPy in float64 by
hand (loss value and one SGD step) and PyTorch's autograd for the cross-entropy.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fusednn as fd
from fusednn import layers, models

LR = 0.1


def _dense(units, activation=None, inputs=3, loss="mse", **compile_kwargs):
    model = models.Sequential([layers.Dense(units, activation=activation, input_shape=(inputs,),
                                            dtype="float64")])
    model.compile(fd.optimizers.SGD(LR), loss, **compile_kwargs)
    return model


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Every check below is float64 arithmetic on a handful of values: the fused kernels and
# NumPy differ only in summation order, a few ulp of values of order 1, so 1e-12.
TOL = 1e-12


def test_weighted_mse_value_and_sgd_step_by_hand(rng):
    n = 5
    x, targets = rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
    weights = rng.random(n) * 3
    model = _dense(2)
    model.build((None, 3))
    kernel, bias = model.get_weights()
    loss = model.train_on_batch(x, targets, sample_weight=weights)

    error = x @ kernel + bias - targets
    per_sample = np.mean(error ** 2, axis=1)                       # Keras's per-sample MSE
    np.testing.assert_allclose(loss, np.sum(weights * per_sample) / n, rtol=TOL)
    dpred = weights[:, None] * 2 * error / (n * 2)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - LR * x.T @ dpred, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(new_bias, bias - LR * dpred.sum(axis=0), rtol=TOL, atol=TOL)


def test_weighted_softmax_crossentropy_by_hand_and_against_pytorch(rng):
    # The softmax output takes the fused logits path: the weights must reach it too.
    n = 6
    x, labels = rng.standard_normal((n, 3)), rng.integers(0, 4, n)
    weights = rng.random(n)
    weights[2] = 0.0
    model = _dense(4, activation="softmax", loss="sparse_categorical_crossentropy")
    model.build((None, 3))
    kernel, bias = model.get_weights()
    loss = model.train_on_batch(x, labels, sample_weight=weights)

    probs = _softmax(x @ kernel + bias)
    per_sample = -np.log(probs[np.arange(n), labels])
    np.testing.assert_allclose(loss, np.sum(weights * per_sample) / n, rtol=TOL)
    dlogits = weights[:, None] * (probs - np.eye(4)[labels]) / n
    np.testing.assert_allclose(model.get_weights()[0], kernel - LR * x.T @ dlogits,
                               rtol=TOL, atol=TOL)

    k = torch.tensor(kernel, requires_grad=True)
    b = torch.tensor(bias, requires_grad=True)
    torch_losses = torch.nn.functional.cross_entropy(torch.tensor(x) @ k + b,
                                                     torch.tensor(labels), reduction="none")
    torch_loss = (torch_losses * torch.tensor(weights)).sum() / n
    torch_loss.backward()
    np.testing.assert_allclose(loss, torch_loss.item(), rtol=TOL)
    np.testing.assert_allclose(model.get_weights()[1], bias - LR * b.grad.numpy(),
                               rtol=TOL, atol=TOL)


def test_unit_weights_change_nothing(rng):
    x, labels = rng.standard_normal((8, 3)), rng.integers(0, 2, 8)
    a = _dense(2, activation="softmax", loss="sparse_categorical_crossentropy")
    b = _dense(2, activation="softmax", loss="sparse_categorical_crossentropy")
    a.build((None, 3))
    b.build((None, 3))
    b.set_weights(a.get_weights())
    loss_a = a.train_on_batch(x, labels)
    loss_b = b.train_on_batch(x, labels, sample_weight=np.ones(8))
    # Unweighted: the fused kernel's mean; weighted: a float64 sum of per-sample losses / N.
    np.testing.assert_allclose(loss_b, loss_a, rtol=TOL)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=TOL, atol=TOL)


def test_evaluate_weights_loss_and_only_weighted_metrics(rng):
    n, batch = 12, 4
    x, labels = rng.standard_normal((n, 3)), rng.integers(0, 3, n)
    weights = rng.random(n)
    weights[:batch] = 0.0  # a batch of zero weights adds nothing to the weighted metric
    model = _dense(3, activation="softmax", loss="sparse_categorical_crossentropy",
                   metrics=["accuracy"], weighted_metrics=["accuracy"])
    model.build((None, 3))
    assert model.metrics_names == ["loss", "accuracy", "weighted_accuracy"]
    logs = model.evaluate(x, labels, batch_size=batch, sample_weight=weights, verbose=0,
                          return_dict=True)

    kernel, bias = model.get_weights()
    probs = _softmax(x @ kernel + bias)
    per_sample = -np.log(probs[np.arange(n), labels])
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # Equal batches: the batch-size-weighted mean of sum_b(w l) / 4 is sum(w l) / n.
    np.testing.assert_allclose(logs["loss"], np.sum(weights * per_sample) / n, rtol=TOL)
    assert logs["accuracy"] == pytest.approx(correct.mean(), rel=TOL)
    assert logs["weighted_accuracy"] == pytest.approx(np.sum(weights * correct) / weights.sum(),
                                                      rel=TOL)


def test_weighted_metric_alone_keeps_its_name():
    model = _dense(1, activation="sigmoid", loss="binary_crossentropy",
                   weighted_metrics=["accuracy"])
    assert model.metrics_names == ["loss", "accuracy"]


def test_class_weight_equals_the_sample_weights_of_the_classes(rng):
    n = 20
    x = rng.standard_normal((n, 3))
    labels = rng.integers(0, 3, n)
    class_weight = {0: 0.5, 2: 4.0}  # class 1 missing: weight 1, as in Keras
    sample_weight = np.array([class_weight.get(int(c), 1.0) for c in labels])
    for targets, loss in ((labels, "sparse_categorical_crossentropy"),
                          (labels[:, None], "sparse_categorical_crossentropy"),
                          (np.eye(3)[labels], "categorical_crossentropy")):
        histories, finals = [], []
        for kwargs in ({"class_weight": class_weight}, {"sample_weight": sample_weight}):
            fd.utils.set_random_seed(1)
            model = _dense(3, activation="softmax", loss=loss, weighted_metrics=["accuracy"])
            histories.append(model.fit(x, targets, batch_size=8, epochs=2, verbose=0,
                                       **kwargs).history)
            finals.append(model.get_weights())
        assert histories[0] == histories[1]
        for a, b in zip(*finals):
            np.testing.assert_array_equal(a, b)


def test_class_weight_from_a_generator_equals_arrays(rng):
    x, labels = rng.standard_normal((16, 3)), rng.integers(0, 2, 16)
    class_weight = {1: 3.0}
    results = []
    for data in ({"x": x, "y": labels, "batch_size": 8, "shuffle": False},
                 {"x": iter([(x[:8], labels[:8]), (x[8:], labels[8:])])}):
        fd.utils.set_random_seed(2)
        model = _dense(2, activation="softmax", loss="sparse_categorical_crossentropy")
        results.append((model.fit(**data, class_weight=class_weight, verbose=0).history,
                        model.get_weights()))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


def test_class_weight_shifts_the_decision_towards_a_rare_class():
    # 10% positives overlapping the negatives: unweighted training mostly predicts the
    # majority (recall 0.34 here); class_weight {1: 9} balances the classes (recall 0.83).
    rng = np.random.default_rng(11)
    n = 2000
    labels = (rng.random(n) < 0.1).astype(np.int64)
    x = rng.standard_normal((n, 3)) + labels[:, None] * 1.0
    recalls = []
    for class_weight in (None, {0: 1.0, 1: 9.0}):
        fd.utils.set_random_seed(4)
        model = _dense(2, activation="softmax", loss="sparse_categorical_crossentropy")
        model.fit(x, labels, batch_size=64, epochs=10, class_weight=class_weight, verbose=0)
        predicted = model.predict(x).argmax(axis=1)
        recalls.append(np.mean(predicted[labels == 1] == 1))
    assert recalls[1] > 0.7 and recalls[1] > recalls[0] + 0.3, recalls


def test_bad_weights_are_clear_errors(rng):
    x, labels = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    model = _dense(2, activation="softmax", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"sample_weight must hold one number per sample, "
                                         r"shape \(6,\), got float64 of shape \(5,\)"):
        model.fit(x, labels, sample_weight=np.ones(5), verbose=0)
    with pytest.raises(ValueError, match="sample_weight holds non-finite values"):
        model.train_on_batch(x, labels, sample_weight=np.full(6, np.nan))
    with pytest.raises(TypeError, match="class_weight must be a dict"):
        model.fit(x, labels, class_weight=[1.0, 2.0], verbose=0)
    with pytest.raises(ValueError, match="class_weight and sample_weight cannot be used at "
                                         "the same time"):
        model.fit(x, labels, class_weight={0: 1.0}, sample_weight=np.ones(6), verbose=0)
    with pytest.raises(ValueError, match="cannot be used at the same time"):
        model.fit(iter([(x, labels, np.ones(6))]), class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="sample_weight cannot be given when x is a generator"):
        model.fit(iter([(x, labels)]), sample_weight=np.ones(6), verbose=0)


def test_class_weight_leaves_the_validation_split_unweighted(rng):
    # Keras splits the arrays off before it turns class_weight into sample weights.
    x, labels = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    model = _dense(2, activation="softmax", loss="sparse_categorical_crossentropy")
    history = model.fit(x, labels, class_weight={1: 5.0}, validation_split=0.25, epochs=1,
                        batch_size=5, verbose=0)
    unweighted = model.evaluate(x[15:], labels[15:], batch_size=5, verbose=0)
    assert history.history["val_loss"] == [unweighted]


def _old_per_sample_path(loss, y_true, y_pred, weights):
    """The weighting before it was vectorized: the loss of each sample alone, weighted,
    reduced by hand as Keras reduces (the reference for the one-call path)."""
    single = type(loss).from_config({**loss.get_config(), "reduction": "sum_over_batch_size"})
    per_sample = np.array([single(y_true[i:i + 1], y_pred[i:i + 1])
                           for i in range(len(y_pred))])
    if loss.reduction == "sum":
        return np.sum(weights * per_sample)
    if loss.reduction == "mean_with_sample_weight":
        return np.sum(weights * per_sample) / np.sum(weights)
    return np.sum(weights * per_sample) / len(weights)


_EVERY_LOSS = [
    (fd.losses.MeanSquaredError, "regression"), (fd.losses.MeanAbsoluteError, "regression"),
    (fd.losses.Huber, "regression"), (fd.losses.LogCosh, "regression"),
    (fd.losses.CosineSimilarity, "regression"), (fd.losses.Poisson, "positive"),
    (fd.losses.MeanAbsolutePercentageError, "positive"),
    (fd.losses.MeanSquaredLogarithmicError, "positive"),
    (fd.losses.BinaryCrossentropy, "binary"), (fd.losses.BinaryFocalCrossentropy, "binary"),
    (fd.losses.Hinge, "binary"), (fd.losses.SquaredHinge, "binary"),
    (fd.losses.CategoricalCrossentropy, "onehot"), (fd.losses.KLDivergence, "onehot"),
    (fd.losses.CategoricalHinge, "onehot"), (fd.losses.SparseCategoricalCrossentropy, "sparse"),
]


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
@pytest.mark.parametrize("loss_class, kind", _EVERY_LOSS)
def test_one_call_weighting_equals_the_per_sample_path(rng, loss_class, kind, reduction):
    from fusednn.models import weighting
    n = 7
    y_pred = rng.random((n, 3)) * 0.8 + 0.1
    y_true = {"regression": rng.standard_normal((n, 3)), "positive": rng.random((n, 3)),
              "binary": rng.integers(0, 2, (n, 3)).astype(np.float64),
              "onehot": np.eye(3)[rng.integers(0, 3, n)],
              "sparse": rng.integers(0, 3, n)}[kind]
    if kind in ("onehot", "sparse"):
        y_pred = y_pred / y_pred.sum(axis=1, keepdims=True)
    weights = rng.random(n) * 2
    loss = loss_class(reduction=reduction)
    # float64 throughout; the two paths sum the same products in another order: 1e-12.
    assert weighting.weighted_loss(loss, y_true, y_pred, weights) == pytest.approx(
        _old_per_sample_path(loss, y_true, y_pred, weights), rel=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "mean_with_sample_weight"])
def test_sum_and_mean_with_sample_weight_value_and_step_by_hand(rng, reduction):
    n = 5
    x, targets = rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
    weights = rng.random(n) * 3
    model = _dense(2, loss=fd.losses.MeanSquaredError(reduction=reduction))
    model.build((None, 3))
    kernel, bias = model.get_weights()
    loss = model.train_on_batch(x, targets, sample_weight=weights)

    error = x @ kernel + bias - targets
    per_sample = np.mean(error ** 2, axis=1)
    divisor = 1.0 if reduction == "sum" else np.sum(weights)   # Keras's reduce_values
    np.testing.assert_allclose(loss, np.sum(weights * per_sample) / divisor, rtol=TOL)
    dpred = weights[:, None] * 2 * error / 2 / divisor          # d/dpred of that value
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - LR * x.T @ dpred, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(new_bias, bias - LR * dpred.sum(axis=0), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("reduction", ["sum", "mean_with_sample_weight"])
def test_fused_softmax_weighting_follows_the_reduction(rng, reduction):
    n = 6
    x, labels = rng.standard_normal((n, 3)), rng.integers(0, 4, n)
    weights = rng.random(n)
    model = _dense(4, activation="softmax",
                   loss=fd.losses.SparseCategoricalCrossentropy(reduction=reduction))
    model.build((None, 3))
    kernel, bias = model.get_weights()
    loss = model.train_on_batch(x, labels, sample_weight=weights)
    probs = _softmax(x @ kernel + bias)
    per_sample = -np.log(probs[np.arange(n), labels])
    divisor = 1.0 if reduction == "sum" else np.sum(weights)
    np.testing.assert_allclose(loss, np.sum(weights * per_sample) / divisor, rtol=TOL)
    dlogits = weights[:, None] * (probs - np.eye(4)[labels]) / divisor
    np.testing.assert_allclose(model.get_weights()[0], kernel - LR * x.T @ dlogits,
                               rtol=TOL, atol=TOL)
