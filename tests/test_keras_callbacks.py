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


# ----- keras/src/callbacks/model_checkpoint_test.py ----------------------------------------

NUM_CLASSES, INPUT_DIM, NUM_HIDDEN, BATCH_SIZE = 3, 3, 5, 5


def _checkpoint_data():
    """Keras's test_utils.get_test_data stand-in: 30 + 30 samples of 3 classes around
    class-dependent centres, one-hot targets (the tests check only which files exist)."""
    rng = np.random.default_rng(42)
    labels = rng.integers(0, NUM_CLASSES, size=60)
    x = (rng.normal(size=(60, INPUT_DIM)) + labels[:, None]).astype(np.float32)
    y = fd.utils.to_categorical(labels, NUM_CLASSES)
    return (x[:30], y[:30]), (x[30:], y[30:])


def _checkpoint_model(metrics=None):
    model = fd.Sequential([layers.Input((INPUT_DIM,)),
                           layers.Dense(NUM_HIDDEN, activation="relu"),
                           layers.Dense(NUM_CLASSES, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="sgd",
                  metrics=metrics or [fd.metrics.CategoricalAccuracy(name="acc")])
    return model


def _fit_with(model, cbk, batch_size=BATCH_SIZE, epochs=1):
    (x, y), (x_val, y_val) = _checkpoint_data()
    model.fit(x, y, batch_size=batch_size, validation_data=(x_val, y_val), callbacks=[cbk],
              epochs=epochs, verbose=0)


@pytest.mark.parametrize("monitor, mode, save_best_only", [
    ("val_loss", "auto", False), ("val_loss", "min", False),  # Cases 1, 2
    ("val_acc", "max", False), ("val_acc", "max", True)])     # Cases 3, 4
def test_model_checkpoint_options_write_the_file(tmp_path, monitor, mode, save_best_only):
    # Keras: test_model_checkpoint_options, cases 1-4 (in a subdir that must be created).
    filepath = tmp_path / "subdir" / "checkpoint.keras"
    _fit_with(_checkpoint_model(), callbacks.ModelCheckpoint(
        filepath, monitor=monitor, save_best_only=save_best_only, mode=mode))
    assert filepath.exists()


def test_model_checkpoint_unavailable_metric_warns_and_saves(tmp_path):
    # Keras: case 5.
    filepath = tmp_path / "checkpoint.keras"
    with pytest.warns(UserWarning, match="Can save best model only with unknown available"):
        _fit_with(_checkpoint_model(), callbacks.ModelCheckpoint(
            filepath, monitor="unknown", save_best_only=True, mode="min"))
    assert filepath.exists()


def test_model_checkpoint_unknown_mode_warns(tmp_path):
    # Keras: case 6.
    with pytest.warns(RuntimeWarning, match="ModelCheckpoint mode 'unknown' is unknown"):
        callbacks.ModelCheckpoint(tmp_path / "c.keras", monitor="val_acc", save_best_only=True,
                                  mode="unknown")


@pytest.mark.parametrize("name, weights_only", [("checkpoint.epoch{epoch:02d}.keras", False),
                                                ("checkpoint.epoch{epoch:02d}.weights.h5", True)])
def test_model_checkpoint_integer_save_freq(tmp_path, name, weights_only):
    # Keras: cases 8a and 8b: 30 samples in batches of 6 are 5 batches an epoch, so
    # save_freq=15 saves at the end of epochs 3, 6 and 9.
    filepath = str(tmp_path / name)
    _fit_with(_checkpoint_model(), callbacks.ModelCheckpoint(
        filepath, monitor="val_acc", mode="max", save_freq=15,
        save_weights_only=weights_only), batch_size=6, epochs=10)
    assert [os.path.exists(filepath.format(epoch=e)) for e in range(1, 11)] == \
        [e in (3, 6, 9) for e in range(1, 11)]


def test_model_checkpoint_save_freq_argument(tmp_path):
    # Keras: case 9.
    filepath = tmp_path / "c.weights.h5"
    with pytest.raises(ValueError, match="Unrecognized save_freq"):
        callbacks.ModelCheckpoint(filepath, save_weights_only=True,
                                  save_freq="invalid_save_freq")
    for save_freq in ("epoch", 3):
        callbacks.ModelCheckpoint(filepath, save_weights_only=True, save_freq=save_freq)


@pytest.mark.parametrize("name, weights_only", [
    ("checkpoint.epoch{epoch:02d}batch{batch:02d}.keras", False),
    ("checkpoint.epoch{epoch:02d}batch{batch:02d}.weights.h5", True)])
def test_model_checkpoint_batch_in_filename(tmp_path, capsys, name, weights_only):
    # Keras: cases 10a and 10b (two batches of 15 an epoch, save_freq=1, verbose=1).
    filepath = str(tmp_path / name)
    (x, y), (x_val, y_val) = _checkpoint_data()
    _checkpoint_model().fit(x, y, batch_size=15, validation_data=(x_val, y_val), epochs=5,
                            verbose=1, callbacks=[callbacks.ModelCheckpoint(
                                filepath, monitor="val_loss", save_freq=1,
                                save_weights_only=weights_only)])
    capsys.readouterr()
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(filepath.format(epoch=e, batch=b)) for e in range(1, 6) for b in (1, 2))


@pytest.mark.parametrize("monitor, mode, threshold, saved", [
    ("val_acc", "max", -0.01, True),   # case 11: any accuracy beats -0.01
    ("val_loss", "auto", None, True),  # case 12: no threshold
    ("val_loss", "min", 0, False),     # case 13: a cross-entropy never gets below 0
    ("val_loss", "auto", 0, False),    # case 14: the same, "auto" minimises a loss
    ("val_auc", "auto", 1, False)])    # case 15: "auto" maximises AUC, which never beats 1
def test_model_checkpoint_initial_value_threshold(tmp_path, monitor, mode, threshold, saved):
    # Keras: test_model_checkpoint_options, cases 11-15.
    filepath = tmp_path / "checkpoint.keras"
    metrics = [fd.metrics.AUC()] if monitor == "val_auc" else None
    _fit_with(_checkpoint_model(metrics), callbacks.ModelCheckpoint(
        filepath, monitor=monitor, save_best_only=True, initial_value_threshold=threshold,
        mode=mode))
    assert filepath.exists() == saved


@pytest.mark.parametrize("name, weights_only", [("checkpoint.weights", True),
                                                ("checkpoint.safetensors", False)])
def test_model_checkpoint_filepath_suffix_errors(tmp_path, name, weights_only):
    # Keras: ModelCheckpoint.__init__'s checks (".weights.h5" for weights, ".keras" or
    # ".h5" for a model).
    with pytest.raises(ValueError, match="must end in"):
        callbacks.ModelCheckpoint(tmp_path / name, save_weights_only=weights_only)


def test_model_checkpoint_unknown_auto_direction_is_an_error(tmp_path):
    # Keras: MonitorCallback's ValueError for a monitor whose direction "auto" cannot tell.
    with pytest.raises(ValueError, match="ModelCheckpoint callback received monitor=unknown"):
        _fit_with(_checkpoint_model(), callbacks.ModelCheckpoint(tmp_path / "c.keras",
                                                                 monitor="unknown"))


def test_model_checkpoint_loading(tmp_path):
    # Keras: test_model_checkpoint_loading (a functional model; the saved model and the saved
    # weights equal the trained ones).
    def get_model():
        inputs = layers.Input(shape=(INPUT_DIM,), batch_size=5)
        hidden = layers.Dense(NUM_HIDDEN, activation="relu")(inputs)
        outputs = layers.Dense(NUM_CLASSES, activation="softmax")(hidden)
        model = fd.Model(inputs, outputs)
        model.compile(loss="categorical_crossentropy", optimizer="sgd",
                      metrics=[fd.metrics.CategoricalAccuracy(name="acc")])
        return model

    model = get_model()
    filepath = tmp_path / "checkpoint.model.keras"
    _fit_with(model, callbacks.ModelCheckpoint(filepath, monitor="val_loss",
                                               save_best_only=True, mode="auto"))
    for ref, loaded in zip(model.get_weights(), fd.models.load_model(filepath).get_weights(),
                           strict=True):
        np.testing.assert_array_equal(loaded, ref)  # saved bit for bit

    model = get_model()
    filepath = tmp_path / "checkpoint.weights.h5"
    _fit_with(model, callbacks.ModelCheckpoint(filepath, monitor="val_loss",
                                               save_best_only=True, save_weights_only=True))
    new_model = get_model()
    new_model.load_weights(filepath)
    for ref, loaded in zip(model.get_weights(), new_model.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, ref)


# ----- keras/src/callbacks/callback_test.py --------------------------------------------------

def test_model_state_is_current_on_batch_end():
    # Keras: CallbackTest.test_model_state_is_current_on_epoch_end: at the end of batch b the
    # model has run b + 1 steps. Keras counts them with a variable its subclassed model's
    # call() increments; fusednn models have no such call, so the optimizer's step counter
    # (updated in the same step) stands in.
    seen = []

    class StepCounter(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, int(self.model.optimizer.iterations)))

    rng = np.random.default_rng(0)
    _one_unit_model().fit(rng.random((8, 1)), rng.random((8, 1)), batch_size=2, verbose=0,
                          callbacks=[StepCounter()])
    assert seen == [(batch, batch + 1) for batch in range(4)]
