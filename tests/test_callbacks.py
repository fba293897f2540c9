"""Callbacks driven by Sequential.fit. Where a callback reacts to a monitored value, the
values are scripted (a callback placed before it writes them into the epoch logs), so
each test knows exactly when the callback must act."""
import math
import os

import numpy as np
import pytest

import fusednn.callbacks as callbacks
import fusednn.models as models
import fusednn.utils as utils
from fusednn import layers, optimizers


class ScriptedMonitor(callbacks.Callback):
    """Overwrites logs[key] at each epoch end with the next scripted value."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


class WeightsLog(callbacks.Callback):
    """Copies of the weights at every epoch end (after the epoch's updates)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


class LearningRateLog(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_epoch_end(self, epoch, logs=None):
        self.rates.append(self.model.optimizer.learning_rate)


def _model(lr=0.05):
    utils.set_random_seed(0)
    model = models.Sequential([layers.Dense(3, activation="tanh", input_shape=(4,)),
                               layers.Dense(2)])
    model.compile(optimizer=optimizers.SGD(lr), loss="mse")
    return model


def _data(n=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, :2] * 2 - 1).astype(np.float32)


def _fit(model, cbs, epochs, **kwargs):
    x, y = _data()
    return model.fit(x, y, batch_size=4, epochs=epochs, callbacks=cbs, verbose=0, **kwargs)


def _assert_same(weights_a, weights_b):
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


# ----- EarlyStopping -------------------------------------------------------------

def test_early_stopping_waits_patience_epochs_without_improvement():
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    history = _fit(_model(), [ScriptedMonitor("val_loss", [1.0, 0.5, 0.6, 0.55, 0.4, 0.3]),
                              stopper], epochs=6)
    # Best at epoch 1; epochs 2 and 3 do not improve -> stop after epoch 3.
    assert history.epoch == [0, 1, 2, 3]
    assert stopper.stopped_epoch == 3 and stopper.best == 0.5 and stopper.best_epoch == 1


def test_early_stopping_min_delta_mode_max_and_baseline():
    stopper = callbacks.EarlyStopping(monitor="val_accuracy", min_delta=0.05, patience=0)
    assert stopper.mode == "auto"  # kept as given (Keras); it maximises accuracies
    history = _fit(_model(), [ScriptedMonitor("val_accuracy", [0.5, 0.6, 0.62, 0.9]), stopper],
                   epochs=4)
    assert history.epoch == [0, 1, 2]  # 0.62 is not 0.05 better than 0.6

    stopper = callbacks.EarlyStopping(monitor="loss_like", mode="min", baseline=0.1, patience=2)
    history = _fit(_model(), [ScriptedMonitor("loss_like", [0.5, 0.4, 0.3, 0.2]), stopper],
                   epochs=4)
    assert history.epoch == [0, 1]  # improving but never beating the baseline


def test_early_stopping_restores_the_best_weights_when_it_stops():
    log = WeightsLog()
    model = _model()
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    _fit(model, [ScriptedMonitor("val_loss", [1.0, 0.2, 0.7, 0.9]), log, stopper], epochs=4)
    assert stopper.stopped_epoch == 2 and len(log.weights) == 3
    _assert_same(model.get_weights(), log.weights[1])


def test_early_stopping_restores_the_best_weights_when_training_ends_without_stopping():
    log = WeightsLog()
    model = _model()
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    _fit(model, [ScriptedMonitor("val_loss", [1.0, 0.2, 0.7]), log, stopper], epochs=3)
    assert stopper.stopped_epoch == 0
    _assert_same(model.get_weights(), log.weights[1])
    with pytest.raises(AssertionError):  # the last epoch's weights were different
        _assert_same(log.weights[2], log.weights[1])


def test_early_stopping_start_from_epoch_and_missing_monitor_warns():
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=0, start_from_epoch=2)
    history = _fit(_model(), [ScriptedMonitor("val_loss", [0.1, 0.5, 0.6, 0.7, 0.8]), stopper],
                   epochs=5)
    assert history.epoch == [0, 1, 2, 3]  # epochs 0, 1 ignored; 2 sets the best; 3 is worse
    with pytest.warns(RuntimeWarning, match=r"`val_loss` which is not available.*loss"):
        history = _fit(_model(), [callbacks.EarlyStopping(monitor="val_loss")], epochs=2)
    assert history.epoch == [0, 1]


# ----- ModelCheckpoint ---------------------------------------------------------------

def test_model_checkpoint_formats_file_names_per_epoch(tmp_path):
    model = _model()
    x, y = _data()
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.keras")
    log = WeightsLog()
    model.fit(x, y, batch_size=4, epochs=3, validation_split=0.25, verbose=0,
              callbacks=[log, callbacks.ModelCheckpoint(pattern)])
    history = model.history.history
    names = sorted(os.listdir(tmp_path))
    assert names == [f"ckpt-{e + 1:02d}-{history['val_loss'][e]:.2f}.keras" for e in range(3)]
    restored = models.load_model(tmp_path / names[1])
    _assert_same(restored.get_weights(), log.weights[1])
    assert restored.optimizer is not None  # a full model, compiled


def test_model_checkpoint_save_best_only_and_weights_only(tmp_path):
    model = _model()
    log = WeightsLog()
    path = tmp_path / "best.weights.h5"
    checkpoint = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True,
                                           save_weights_only=True)
    _fit(model, [ScriptedMonitor("val_loss", [0.9, 0.4, 0.6, 0.5]), log, checkpoint], epochs=4)
    assert os.listdir(tmp_path) == ["best.weights.h5"] and checkpoint.best == 0.4
    fresh = _model()
    fresh.load_weights(path)
    _assert_same(fresh.get_weights(), log.weights[1])
    # A weights file carries the config for reference but no compile settings.
    assert models.load_model(path).optimizer is None


def test_model_checkpoint_unknown_format_field_raises(tmp_path):
    with pytest.raises(KeyError, match="val_acc"):
        _fit(_model(), [callbacks.ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.keras"))],
             epochs=1)


# ----- TerminateOnNaN ----------------------------------------------------------------

def test_terminate_on_nan_stops_within_the_bad_batch(capsys):
    class BatchLog(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = []

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append((batch, logs["loss"]))

    model = _model()
    x, y = _data(20)
    y[9] = np.nan  # sample 9 sits in batch 2 (samples 8..11) without shuffling
    log = BatchLog()
    history = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN(), log])
    assert [b for b, _ in log.batches] == [0, 1, 2]
    assert all(math.isfinite(loss) for _, loss in log.batches[:2])
    assert math.isnan(log.batches[2][1])
    assert model.stop_training and history.epoch == [0]
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out


# ----- learning rate callbacks -------------------------------------------------------

def test_reduce_lr_on_plateau_changes_the_optimizer_learning_rate():
    model = _model(lr=0.1)
    rates = LearningRateLog()
    reducer = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2,
                                          cooldown=2, min_lr=0.02)
    history = _fit(model, [ScriptedMonitor("val_loss", [1.0] * 9), reducer, rates], epochs=9)
    # Epoch 0 sets the best; 1, 2 -> reduce (0.05); cooldown 2 skips epoch 3 (as in Keras, the
    # epoch where the cooldown runs out counts again); 4, 5 -> reduce (0.025); 7, 8 -> 0.0125
    # is floored at min_lr 0.02.
    assert rates.rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025,
                                                   0.025, 0.025])  # rate the epoch trained with
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_on_plateau_resets_patience_on_improvement():
    model = _model(lr=0.1)
    rates = LearningRateLog()
    reducer = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=2,
                                          min_delta=0.01)
    _fit(model, [ScriptedMonitor("val_loss", [1.0, 1.0, 0.5, 0.495, 0.499]), reducer, rates],
         epochs=5)
    assert rates.rates == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01])


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    model = _model(lr=0.1)
    rates = LearningRateLog()
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return lr * 0.5 if epoch > 0 else lr

    history = _fit(model, [callbacks.LearningRateScheduler(schedule), rates], epochs=3)
    assert seen == [(0, 0.1), (1, 0.1), (2, 0.05)]
    assert rates.rates == pytest.approx([0.1, 0.05, 0.025])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])

    model = _model()
    _fit(model, [callbacks.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))], epochs=2)
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="finite float"):
        _fit(_model(), [callbacks.LearningRateScheduler(lambda epoch, lr: "fast")], epochs=1)


def test_learning_rate_scheduler_really_changes_the_updates():
    # With the rate scheduled to 0 from epoch 1 on, the weights stop changing.
    model = _model()
    log = WeightsLog()
    _fit(model, [callbacks.LearningRateScheduler(lambda epoch, lr: 0.05 if epoch == 0 else 0.0),
                 log], epochs=3)
    _assert_same(log.weights[1], log.weights[0])
    _assert_same(log.weights[2], log.weights[0])


# ----- base class and hooks -----------------------------------------------------------

def test_hooks_are_called_in_order_with_logs():
    class Recorder(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.events = []

        def on_train_begin(self, logs=None):
            self.events.append("train_begin")

        def on_train_end(self, logs=None):
            self.events.append(("train_end", sorted(logs)))

        def on_epoch_begin(self, epoch, logs=None):
            self.events.append(("epoch_begin", epoch))

        def on_epoch_end(self, epoch, logs=None):
            self.events.append(("epoch_end", epoch, sorted(logs)))

        def on_train_batch_begin(self, batch, logs=None):
            self.events.append(("batch_begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            self.events.append(("batch_end", batch, sorted(logs)))

    recorder = Recorder()
    model = _model()
    x, y = _data(6)
    model.fit(x, y, batch_size=4, epochs=1, validation_split=0.5, callbacks=[recorder], verbose=0)
    assert recorder.model is model
    assert recorder.params == {"verbose": 0, "epochs": 1, "steps": 1}
    assert recorder.events == ["train_begin", ("epoch_begin", 0), ("batch_begin", 0),
                               ("batch_end", 0, ["loss"]),
                               ("epoch_end", 0, ["loss", "val_loss"]),
                               ("train_end", ["loss", "val_loss"])]
    with pytest.raises(TypeError, match="Callback"):
        _fit(_model(), [lambda epoch: None], epochs=1)
