"""Keras 3's training-step API on fd.Model: train_step / test_step / predict_step called
once per batch by fit / evaluate / predict, compute_loss, compute_metrics, model.metrics
(reset every epoch), and compiled stateful metrics whose logs equal the standalone
metric over the same data."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import callbacks, layers, losses, metrics, models, optimizers


def _data(rng, n=96):
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, :1] + 0.3 * rng.normal(size=(n, 1)) > 0).astype(np.float32)
    return x, y


def _binary_model(seed=3):
    fd.utils.set_random_seed(seed)
    return models.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                              layers.Dense(1, activation="sigmoid")])


class _Hooks(callbacks.Callback):
    """Calls the functions given for the named callback methods."""

    def __init__(self, **hooks):
        super().__init__()
        for name, function in hooks.items():
            setattr(self, name, function)


# ----- compiled stateful metrics in fit / evaluate -----------------------------------------

def test_fit_and_evaluate_logs_equal_the_standalone_metrics(rng):
    x, y = _data(rng)
    model = _binary_model()
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=["auc", metrics.Precision(name="prec"),
                           metrics.TruePositives(name="tp"), "accuracy"])
    standalone = {"auc": metrics.AUC(), "prec": metrics.Precision(),
                  "tp": metrics.TruePositives(), "accuracy": metrics.BinaryAccuracy()}
    expected = []

    def before_batch(step, logs):
        # The predictions this batch's step sees (no dropout: training mode is inference).
        batch = slice(16 * step, 16 * (step + 1))
        for metric in standalone.values():
            metric.update_state(y[batch], model.predict(x[batch]))

    def at_epoch_end(epoch, logs):
        expected.append({name: metric.result() for name, metric in standalone.items()})
        for metric in standalone.values():
            metric.reset_state()

    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                        callbacks=[_Hooks(on_train_batch_begin=before_batch,
                                          on_epoch_end=at_epoch_end)])
    for name in standalone:
        # The same float32 predictions, float64 counts in both: equal but for the order
        # of float64 sums (1e-12 relative).
        assert history.history[name] == pytest.approx([e[name] for e in expected],
                                                      rel=1e-12), name
    # tp is a count: epoch 2 holds only its own batches, so the metrics were reset.
    assert history.history["tp"][1] <= np.sum(y)
    p = model.predict(x)
    results = model.evaluate(x, y, batch_size=10, verbose=0, return_dict=True)
    assert results["auc"] == pytest.approx(metrics.AUC()(y, p), rel=1e-12)
    assert results["prec"] == pytest.approx(metrics.Precision()(y, p), rel=1e-12)
    assert results["tp"] == pytest.approx(metrics.TruePositives()(y, p), rel=1e-12)
    assert results["loss"] == pytest.approx(losses.BinaryCrossentropy()(y, p), rel=1e-5)


def test_weighted_metrics_get_the_sample_weights(rng):
    x, y = _data(rng)
    w = rng.random(len(x))
    model = _binary_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["auc"],
                  weighted_metrics=["auc", metrics.Recall(name="recall")])
    results = model.evaluate(x, y, sample_weight=w, batch_size=32, verbose=0,
                             return_dict=True)
    p = model.predict(x)
    assert list(results) == ["loss", "auc", "weighted_auc", "recall"]
    assert results["auc"] == pytest.approx(metrics.AUC()(y, p), rel=1e-12)
    assert results["weighted_auc"] == pytest.approx(metrics.AUC()(y, p, sample_weight=w),
                                                    rel=1e-12)
    assert results["recall"] == pytest.approx(metrics.Recall()(y, p, sample_weight=w),
                                              rel=1e-12)


def test_model_metrics_order_and_names(rng):
    model = _binary_model()
    assert model.metrics == []
    model.compile(optimizer="sgd", loss="mse", metrics=["mae", metrics.AUC(name="a")],
                  weighted_metrics=["mae"])
    assert [m.name for m in model.metrics] == ["loss", "mae", "a", "weighted_mae"]
    assert model.metrics_names == ["loss", "mae", "a", "weighted_mae"]
    assert isinstance(model.metrics[0], metrics.Mean)


def test_saved_models_keep_metric_classes_with_their_config(tmp_path, rng):
    model = _binary_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[metrics.AUC(num_thresholds=50, curve="PR", name="pr"), "precision"])
    model.save(tmp_path / "m.safetensors")
    loaded = fd.load_model(tmp_path / "m.safetensors")
    pr = loaded.metrics[1]
    assert type(pr) is metrics.AUC and (pr.num_thresholds, pr.curve, pr.name) == (50, "PR", "pr")
    assert type(loaded.metrics[2]) is metrics.Precision
    x, y = _data(rng)
    assert loaded.evaluate(x, y, verbose=0, return_dict=True)["pr"] == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)["pr"], rel=1e-12)


# ----- overriding the steps -------------------------------------------------------------

class ManualStep(models.Sequential):
    """train_step written with the layer protocol and its own Mean tracker (the shape of
    keras-io's custom-training-step examples)."""

    def __init__(self, layer_list):
        super().__init__(layer_list)
        self.tracker = metrics.Mean(name="my_loss")
        self.batches_seen = []

    def train_step(self, data):
        self.batches_seen.append(len(data))
        x, y = data[:2]
        self.zero_grad()
        y_pred = self.forward(x, training=True)
        value, grad = self.loss.value_and_grad(y, y_pred)
        self.backward(grad)
        self.optimizer.step(self)
        self.tracker.update_state(value)
        return {"my_loss": self.tracker.result()}


def _twins(rng):
    built = []
    for cls in (models.Sequential, ManualStep):
        fd.utils.set_random_seed(11)
        built.append(cls([layers.Dense(8, activation="tanh", input_shape=(4,)),
                          layers.Dense(1)]))
    return built


def test_an_overridden_train_step_trains_like_the_default_one(rng):
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], np.float32)).astype(np.float32)
    default, manual = _twins(rng)
    for model in (default, manual):
        model.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    fd.utils.set_random_seed(5)
    expected = default.fit(x, y, batch_size=16, epochs=3, verbose=0)
    seen = []
    fd.utils.set_random_seed(5)  # the same shuffles
    history = manual.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[
        _Hooks(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))])
    # The same float32 operations in the same order: the same weights, bit for bit.
    for a, b in zip(default.get_weights(), manual.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Equal batches: the mean of the batch losses is the default step's sample mean
    # (float64 sums in two orders: 1e-12 relative).
    assert history.history["my_loss"] == pytest.approx(expected.history["loss"], rel=1e-12)
    assert list(history.history) == ["my_loss"] and seen == [
        {"my_loss": v} for v in history.history["my_loss"]]
    assert manual.batches_seen == [2] * 12  # (x, y): no sample weights given
    assert manual.metrics[-1] is manual.tracker  # attribute metrics come last
    manual.fit(x, y, sample_weight=np.ones(64), batch_size=32, epochs=1, verbose=0)
    assert manual.batches_seen[-2:] == [3, 3]  # (x, y, sample_weight)


def test_the_tracker_is_reset_every_epoch(rng):
    _, manual = _twins(rng)
    manual.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.normal(size=(32, 1)).astype(np.float32)
    manual.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert manual.tracker.count == 4  # the second epoch's four batches only


def test_an_overridden_step_shows_a_progress_bar(rng, capsys):
    _, manual = _twins(rng)
    manual.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(16, 4)).astype(np.float32)
    manual.fit(x, x[:, :1], batch_size=8, epochs=1, verbose=1)
    assert "my_loss:" in capsys.readouterr().out


class WithoutCompiledLoss(models.Sequential):
    def train_step(self, data):
        x, y = data
        self.zero_grad()
        value, grad = losses.MeanSquaredError().value_and_grad(y, self.forward(x, True))
        self.backward(grad)
        self.optimizer.step(self)
        return {"custom": np.float64(value)}

    def test_step(self, data):
        x, y = data
        return {"val_custom": float(losses.MeanSquaredError()(y, self.forward(x, False)))}

    def predict_step(self, data):
        return 2.0 * self.forward(data, training=False)  # x alone, as Keras passes it


def test_overridden_steps_need_no_compiled_loss(rng):
    model = WithoutCompiledLoss([layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd")
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=(8, 1)).astype(np.float32)
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert set(history.history) == {"custom"} and isinstance(history.history["custom"][0], float)
    result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    plain = model.forward(x, training=False)
    assert result == {"val_custom": pytest.approx(losses.MeanSquaredError()(y, plain))}
    np.testing.assert_array_equal(model.predict(x), 2.0 * plain)
    with pytest.raises(fd.errors.StateError, match="without a loss"):
        models.Sequential([layers.Dense(1, input_shape=(3,))]).compile(optimizer="sgd") \
            or _fit_plain(x, y)


def _fit_plain(x, y):
    model = models.Sequential([layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd")
    model.fit(x, y, verbose=0)


def test_a_step_must_return_a_dict(rng):
    class Bad(models.Sequential):
        def train_step(self, data):
            return 1.0
    model = Bad([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="must return a dict"):
        model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)


def test_compute_loss_and_compute_metrics(rng):
    x, y = _data(rng, n=20)
    model = models.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(4,),
                                            kernel_regularizer=fd.regularizers.L2(0.1))])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["auc"])
    p = model.predict(x)
    w = rng.random(20)
    expected = losses.BinaryCrossentropy()(y, p, sample_weight=w) + model.regularization_loss()
    assert model.compute_loss(x, y, p, sample_weight=w) == pytest.approx(expected, rel=1e-6)
    logs = model.compute_metrics(x, y, p)
    assert logs["auc"] == pytest.approx(metrics.AUC()(y, p))
    assert logs["loss"] == 0.0  # compute_metrics does not touch the loss tracker


def test_a_mid_epoch_backup_restores_the_stateful_metrics(tmp_path, rng):
    x, y = _data(rng, n=60)

    def run(extra_callbacks):
        model = _binary_model(seed=4)
        model.compile(optimizer="adam", loss="binary_crossentropy",
                      metrics=["auc", metrics.Precision(thresholds=[0.3, 0.6])])
        return model.fit(x, y, batch_size=10, epochs=3, verbose=0,
                         callbacks=extra_callbacks).history

    class StopInEpoch1(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model._fit_progress.epoch == 1 and batch == 3:
                raise KeyboardInterrupt  # after the backup of batches 0-3

    uninterrupted = run([])
    with pytest.raises(KeyboardInterrupt):
        run([callbacks.BackupAndRestore(tmp_path, save_freq=2), StopInEpoch1()])
    resumed = run([callbacks.BackupAndRestore(tmp_path, save_freq=2)])
    # Epochs 1 and 2 again, epoch 1 from its fifth batch with AUC's and Precision's counts
    # restored: the same float operations in the same order, so exactly equal.
    assert resumed["auc"] == uninterrupted["auc"][1:]
    assert resumed["loss"] == uninterrupted["loss"][1:]
    for got, expected in zip(resumed["precision"], uninterrupted["precision"][1:]):
        np.testing.assert_array_equal(got, expected)
