"""EarlyStopping, ReduceLROnPlateau, LearningRateScheduler, TerminateOnNaN and
BackupAndRestore against Keras 3's behaviour (keras/src/callbacks/early_stopping.py's
docstring example and early_stopping_test.py, reduce_lr_on_plateau_test.py,
learning_rate_scheduler_test.py, terminate_on_nan_test.py, backup_and_restore_test.py,
model_checkpoint_test.py): how "auto" decides, best before training, the logs key, the
TypeError for a learning-rate schedule, the scheduler's rates, log line and history, the
stop (or RuntimeError) after a non-finite loss, resuming from a backup, which checkpoints
are written when. Keras's checkpoint cases write .h5 names; fusednn writes safetensors under
any accepted name, so the same file names are used and loaded back with fusednn."""
import os
import warnings

import numpy as np
import pytest

import fusednn as fd
from fusednn import callbacks, layers, optimizers


def _model(optimizer="sgd"):
    model = fd.Sequential([layers.Dense(10, input_shape=(20,))])
    model.compile(optimizer, loss="mse")
    return model


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the loss diverges, as in Keras
def test_early_stopping_docstring_example_runs_four_epochs():
    # Keras: EarlyStopping's docstring; SGD on inputs up to 99 diverges, so the loss rises
    # from the second epoch and patience 3 stops after epoch 4.
    model = _model(optimizers.SGD())
    history = model.fit(np.arange(100).reshape(5, 20).astype(np.float32), np.zeros((5, 10)),
                        epochs=10, batch_size=1, verbose=0,
                        callbacks=[callbacks.EarlyStopping(monitor="loss", patience=3)])
    assert len(history.history["loss"]) == 4


def test_early_stopping_unknown_monitor_with_auto_mode_is_an_error():
    # Keras: a monitor whose direction is unknown raises ValueError asking for mode.
    x = np.zeros((4, 20), np.float32)
    with pytest.raises(ValueError, match="mode='max'"):
        _model().fit(x, np.zeros((4, 10)), epochs=1, verbose=0,
                     callbacks=[callbacks.EarlyStopping(monitor="unknown")])
    # An explicit mode needs no direction (the missing metric only warns, as in Keras).
    with pytest.warns(RuntimeWarning, match="not available"):
        _model().fit(x, np.zeros((4, 10)), epochs=1, verbose=0,
                     callbacks=[callbacks.EarlyStopping(monitor="unknown", mode="min")])


@pytest.mark.parametrize("monitor, direction", [("val_loss", "min"), ("accuracy", "max"),
                                                ("val_sparse_categorical_accuracy", "max"),
                                                ("val_mae", "min")])
def test_early_stopping_auto_direction(monitor, direction):
    stopper = callbacks.EarlyStopping(monitor=monitor, patience=0)
    stopper.on_train_begin()
    first, worse = (1.0, 2.0) if direction == "min" else (2.0, 1.0)
    stopper.model = type("M", (), {"stop_training": False})()
    stopper.on_epoch_end(0, {monitor: first})
    stopper.on_epoch_end(1, {monitor: worse})
    assert stopper.model.stop_training


def test_best_is_none_until_the_first_epoch():
    # Keras 3 starts both callbacks with best = None (any first value improves).
    stopper = callbacks.EarlyStopping(monitor="loss")
    reducer = callbacks.ReduceLROnPlateau(monitor="loss")
    assert stopper.best is None and reducer.best is None
    model = _model()
    model.fit(np.zeros((4, 20), np.float32), np.zeros((4, 10)), epochs=1, verbose=0,
              callbacks=[stopper, reducer])
    assert stopper.best == pytest.approx(0.0) and reducer.best == pytest.approx(0.0)


def test_reduce_lr_on_plateau_logs_learning_rate_and_refuses_a_schedule():
    # Keras 3 logs "learning_rate"; an optimizer built on a schedule raises TypeError when
    # the callback tries to set a number.
    x, y = np.ones((4, 20), np.float32), np.ones((4, 10))
    history = _model(optimizers.SGD(0.01)).fit(
        x, y, epochs=2, verbose=0,
        callbacks=[callbacks.ReduceLROnPlateau(monitor="loss", patience=100)])
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.01])
    schedule = optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5)
    reducer = callbacks.ReduceLROnPlateau(monitor="constant", mode="min", patience=0)
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        _model(optimizers.SGD(schedule)).fit(
            x, y, epochs=3, verbose=0,
            callbacks=[_Constant(), reducer])


class _Constant(callbacks.Callback):
    """Logs a monitor that never improves, so ReduceLROnPlateau reduces at once."""

    def on_epoch_end(self, epoch, logs=None):
        logs["constant"] = 1.0


# ----- keras/src/callbacks/learning_rate_scheduler_test.py -------------------------------

def _scheduler_model(optimizer="sgd"):
    rng = np.random.default_rng(0)
    model = fd.Sequential([fd.layers.Input(shape=(3,)), fd.layers.Dense(5), fd.layers.Dense(2)])
    model.compile(loss="mse", optimizer=optimizer)
    x = rng.normal(size=(10, 3)).astype(np.float32)
    y = fd.utils.to_categorical(rng.integers(0, 2, size=10), 2)
    return model, x, y


def test_scheduler_updates_learning_rate():
    # Keras: LearningRateSchedulerTest.test_updates_learning_rate (epoch 0: 1 / (2 + 0)).
    model, x, y = _scheduler_model()
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[callbacks.LearningRateScheduler(lambda step: 1.0 / (2.0 + step))])
    assert float(model.optimizer.learning_rate) == 0.5


def test_scheduler_verbose_logging(capsys):
    # Keras: test_verbose_logging (Keras logs the line; fusednn prints it).
    model, x, y = _scheduler_model()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda step: 1.0 / (1.0 + step), verbose=1)])
    assert "LearningRateScheduler setting learning rate to 1.0" in capsys.readouterr().out


def test_schedule_dependent_on_previous_learning_rate():
    model, x, y = _scheduler_model(optimizers.Adam(0.03))
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[callbacks.LearningRateScheduler(lambda step, lr: lr / 2)])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.03 / 4.0, rel=1e-7)


def test_scheduler_throws_when_optimizer_has_schedule():
    schedule = optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    model, x, y = _scheduler_model(optimizers.Adam(schedule))
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        model.fit(x, y, epochs=2, verbose=0,
                  callbacks=[callbacks.LearningRateScheduler(lambda step, lr: lr / 2)])


def test_scheduler_learning_rate_in_history():
    model, x, y = _scheduler_model()
    history = model.fit(x, y, epochs=1, verbose=0,
                        callbacks=[callbacks.LearningRateScheduler(lambda step, lr: 0.5)])
    assert type(history.history["learning_rate"][0]) is float
    assert history.history["learning_rate"][0] == 0.5


# ----- keras/src/callbacks/terminate_on_nan_test.py ----------------------------------------

def test_terminate_on_nan():
    # Keras: TerminateOnNaNTest.test_TerminateOnNaN: Dense layers initialised to 1e5 blow
    # the loss up in the first epoch, which is then the only one.
    rng = np.random.default_rng(1337)
    x, x_val = rng.random((10, 3)), rng.random((10, 3))
    y = fd.utils.to_categorical(rng.choice(2, size=10), 2)
    y_val = fd.utils.to_categorical(rng.choice(2, size=10), 2)
    model = fd.Sequential([layers.Input(shape=(3,))])
    for _ in range(5):
        model.add(layers.Dense(2, activation="relu",
                               kernel_initializer=fd.initializers.Constant(value=1e5)))
    model.add(layers.Dense(2))
    model.compile(loss="mean_squared_error", optimizer="sgd")
    with np.errstate(over="ignore", invalid="ignore"):
        history = model.fit(x, y, batch_size=4, validation_data=(x_val, y_val), epochs=20,
                            callbacks=[callbacks.TerminateOnNaN()], verbose=0)
    loss = history.history["loss"]
    assert len(loss) == 1 and not np.isfinite(loss[0])


def test_terminate_on_nan_graceful_stop():
    # Keras: test_terminate_on_nan_graceful_stop (an infinite target: fewer than 4 epochs
    # of losses, no exception).
    model = _one_unit_model()
    with np.errstate(over="ignore", invalid="ignore"):
        history = model.fit(np.array([[1.0], [2.0]]), np.array([[np.inf], [np.inf]]), epochs=2,
                            batch_size=1, callbacks=[callbacks.TerminateOnNaN(raise_error=False)],
                            verbose=0)
    assert len(history.history["loss"]) < 4


def _one_unit_model():
    model = fd.Sequential([layers.Dense(1, input_shape=(1,))])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_terminate_on_nan_raise_error_raises_error():
    # Keras: test_terminate_on_nan_raise_error_raises_error.
    with np.errstate(over="ignore", invalid="ignore"), \
            pytest.raises(RuntimeError, match="NaN or Inf loss encountered"):
        _one_unit_model().fit(np.array([[1.0], [2.0]]), np.array([[np.inf], [np.inf]]),
                              epochs=1, batch_size=1, verbose=0,
                              callbacks=[callbacks.TerminateOnNaN(raise_error=True)])


class _TrainEndTracker(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.train_end_called = False

    def on_train_end(self, logs=None):
        self.train_end_called = True


def test_raise_error_terminate_does_not_trigger_on_train_end():
    # Keras: test_raise_error_terminate_does_not_trigger_on_train_end.
    tracker = _TrainEndTracker()
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(RuntimeError):
        _one_unit_model().fit(np.array([[1.0]]), np.array([[np.inf]]), epochs=1, verbose=0,
                              callbacks=[tracker, callbacks.TerminateOnNaN(raise_error=True)])
    assert not tracker.train_end_called


def test_raise_error_terminate_preserves_backup(tmp_path):
    # Keras: test_raise_error_terminate_preserves_backup (the backup folder and a file in it
    # survive; Keras also disables the callback's on_train_end, which never runs anyway).
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    fake_file = backup_dir / "checkpoint.txt"
    fake_file.write_text("dummy checkpoint")
    backup = callbacks.BackupAndRestore(backup_dir=backup_dir)
    backup.on_train_end = lambda logs=None: None
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(RuntimeError):
        _one_unit_model().fit(np.array([[1.0]]), np.array([[np.inf]]), epochs=1, verbose=0,
                              callbacks=[backup, callbacks.TerminateOnNaN(raise_error=True)])
    assert backup_dir.exists() and fake_file.read_text() == "dummy checkpoint"


@pytest.mark.parametrize("raise_error", [False, True])
def test_normal_training_does_not_raise(raise_error):
    # Keras: test_normal_training_does_not_raise.
    history = _one_unit_model().fit(
        np.array([[1.0], [2.0]]), np.array([[1.0], [2.0]]), epochs=2, verbose=0,
        callbacks=[callbacks.TerminateOnNaN(raise_error=raise_error)])
    assert len(history.history["loss"]) == 2


def test_raise_error_terminate_stops_on_later_batch():
    # Keras: test_raise_error_terminate_stops_on_later_batch (the message names the batch;
    # fusednn shuffles, so the infinite target is in batch 0 or 1).
    with np.errstate(over="ignore", invalid="ignore"), \
            pytest.raises(RuntimeError, match="batch [01]"):
        _one_unit_model().fit(np.array([[1.0], [2.0]]), np.array([[1.0], [np.inf]]), epochs=1,
                              batch_size=1, verbose=0,
                              callbacks=[callbacks.TerminateOnNaN(raise_error=True)])


# ----- keras/src/callbacks/backup_and_restore_test.py --------------------------------------

class _InterruptAtEpoch(callbacks.Callback):
    """Keras's InterruptingCallback: raises at the end of the epoch_int-th epoch."""

    def __init__(self, epoch_int):
        super().__init__()
        self.epoch_count, self.epoch_int = 0, epoch_int

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_count += 1
        if self.epoch_count == self.epoch_int:
            raise RuntimeError("EpochInterruption")


def _backup_model():
    model = fd.Sequential([layers.Input((3,)), layers.Dense(1)])
    model.compile(loss="mse", optimizer="sgd", metrics=["mse"])
    rng = np.random.default_rng(0)
    return model, rng.random((10, 3)), rng.random((10, 1))


@pytest.mark.parametrize("save_freq", ["batch", 0.15])
def test_backup_save_freq_unknown_error(save_freq):
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.BackupAndRestore(backup_dir="backup_dir", save_freq=save_freq)


@pytest.mark.parametrize("backup_dir", ["", None])
def test_backup_dir_empty_or_none_error(backup_dir):
    # Keras: test_backup_dir_empty_error, test_backup_dir_none_error.
    with pytest.raises(ValueError, match="Empty `backup_dir`"):
        callbacks.BackupAndRestore(backup_dir=backup_dir, save_freq="epoch")


def test_backup_best_case_epoch(tmp_path):
    # Keras: test_best_case_epoch (without its counting CanaryLayer): interrupted after 2
    # epochs, a new fit of 5 epochs resumes at epoch 2 and runs 3 more.
    backup_dir = tmp_path / "subdir"
    model, x, y = _backup_model()
    cbk = callbacks.BackupAndRestore(backup_dir=backup_dir, save_freq="epoch")
    with pytest.raises(RuntimeError, match="EpochInterruption"):
        model.fit(x, y, batch_size=4, callbacks=[cbk, _InterruptAtEpoch(2)], epochs=6,
                  verbose=0)
    assert backup_dir.exists()
    history = model.fit(x, y, batch_size=4, callbacks=[cbk], epochs=5, verbose=0)
    assert history.epoch[-1] == 4 and len(history.history["loss"]) == 3


def test_backup_model_deleted_case_epoch(tmp_path):
    # Keras: test_model_deleted_case_epoch (a fit that ends removes the backup).
    backup_dir = tmp_path / "subdir"
    model, x, y = _backup_model()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0,
              callbacks=[callbacks.BackupAndRestore(backup_dir, save_freq="epoch")])
    assert not backup_dir.exists()
