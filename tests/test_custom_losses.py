"""Losses and metrics written by users as functions over fusednn.ops, in compile and alone."""
from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numeric_gradient

import fusednn as fd
from fusednn import layers, losses, ops


def user_mse(y_true, y_pred):
    return ops.mean(ops.square(y_pred - y_true), axis=-1)


def wasserstein(y_true, y_pred):
    return ops.mean(y_true * y_pred)


def _model(seed=0):
    fd.utils.set_random_seed(seed)
    model = fd.Sequential([layers.Dense(8, activation="tanh", input_shape=(5,)), layers.Dense(3)])
    return model


def _data(n=32):
    rng = np.random.default_rng(4)
    return rng.normal(size=(n, 5)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)


def test_user_mse_trains_like_the_built_in_mse():
    x, y = _data()
    trained = []
    for loss in (user_mse, "mse"):
        model = _model()
        model.compile(optimizer=fd.optimizers.SGD(0.1), loss=loss)
        history = [model.train_on_batch(x, y) for _ in range(5)]
        trained.append((history, model.get_weights()))
    (ours, our_weights), (builtin, builtin_weights) = trained
    # The same gradient 2 (p - t) / size, through a different order of float32 operations
    # (mean over the last axis, then over the batch): equal to a few float32 ulps.
    np.testing.assert_allclose(ours, builtin, rtol=1e-6)
    for got, want in zip(our_weights, builtin_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert ours[-1] < ours[0]


def test_function_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    loss = losses.get(lambda t, p: ops.logsumexp(p, axis=-1) - ops.sum(t * p, axis=-1))
    value, grad = loss.value_and_grad(y_true, y_pred)
    expected = numeric_gradient(lambda: loss(y_true, y_pred), y_pred)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-9)
    # Keras's reduction: the mean over the batch of the per-sample values.
    per_sample = np.log(np.exp(y_pred).sum(-1)) - (y_true * y_pred).sum(-1)
    assert value == pytest.approx(per_sample.mean(), rel=1e-12)


def test_wasserstein_with_labels_of_one_column():
    y_pred = np.array([[0.5], [-1.0], [2.0], [0.25]], np.float32)
    y_true = np.array([-1.0, -1.0, 1.0, 1.0])  # (N,) against (N, 1): Keras matches the ranks
    value, grad = losses.get(wasserstein).value_and_grad(y_true, y_pred)
    assert value == pytest.approx((-0.5 + 1.0 + 2.0 + 0.25) / 4)
    np.testing.assert_array_equal(grad, (y_true / 4).reshape(4, 1).astype(np.float32))


class UserHinge(losses.Loss):
    """A Keras 3 style Loss subclass: `call` with fusednn.ops."""

    def call(self, y_true, y_pred):
        return ops.mean(ops.relu(1.0 - y_true * y_pred), axis=-1)


def test_loss_subclass_with_call():
    rng = np.random.default_rng(2)
    y_true = rng.choice([-1.0, 1.0], size=(6, 2))
    y_pred = rng.normal(size=(6, 2))
    y_pred[np.abs(1 - y_true * y_pred) < 0.05] = 0.3  # away from the kink
    loss = UserHinge(name="hinge")
    value, grad = loss.value_and_grad(y_true, y_pred)
    assert value == pytest.approx(np.maximum(1 - y_true * y_pred, 0).mean(), rel=1e-12)
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(y_true, y_pred), y_pred),
                               rtol=1e-6, atol=1e-9)


def test_function_metric_in_compile_is_the_batch_mean():
    x, y = _data(16)

    def mean_abs_error(y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred), axis=-1)  # per sample, as Keras's metrics

    model = _model()
    model.compile(optimizer="sgd", loss="mse", metrics=[mean_abs_error])
    result = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    expected = np.abs(model.predict(x).astype(np.float64) - y).mean()
    assert result["mean_abs_error"] == pytest.approx(expected, rel=1e-6)


def test_a_function_loss_that_leaves_the_tape_is_a_clear_error():
    model = _model()
    model.compile(optimizer="sgd", loss=lambda t, p: np.mean((p - t) ** 2))
    with pytest.raises(TypeError, match="numpy.mean cannot be differentiated by fusednn's tape"):
        model.train_on_batch(*_data(4))


def test_saving_a_model_compiled_with_a_function_loss_is_a_clear_error(tmp_path):
    model = _model()
    model.compile(optimizer="sgd", loss=wasserstein)
    model.build((None, 5))
    with pytest.raises(ValueError, match="loss 'wasserstein' is the user function"):
        model.save(tmp_path / "m.keras")
