"""Callbacks for Sequential.fit, with Keras's names, arguments and behaviour.

A callback receives `set_model(model)` and `set_params(params)` before training
and then the hooks below. `logs` is a dict of Python floats: during an epoch the
running means of "loss" and the metrics, at the end of an epoch also "val_..."
entries. Setting `model.stop_training = True` ends training after the current
batch.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings

import numpy as np

from . import _rng, io
from .fit_progress import FitProgress


class Callback:
    """Base class: every hook does nothing."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass


class CallbackList:
    """Calls every hook on every callback in order (used by fit)."""

    def __init__(self, callbacks, model, params: dict):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be fusednn.callbacks.Callback instances, "
                                f"got {cb!r}")
            cb.set_model(model)
            cb.set_params(params)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)


class History(Callback):
    """Records the epoch logs: `history` {"loss": [...], "val_loss": [...]}, `epoch` [0, 1, ...].

    fit adds one automatically and returns it (also as `model.history`).
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        self.model.history = self


# ----- progress output ------------------------------------------------------------

def _format_value(value) -> str:
    if isinstance(value, (float, int, np.floating, np.integer)):
        value = float(value)
        return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"
    return str(value)


def _format_time(seconds: float, unit: str) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def _dynamic_display() -> bool:
    """Whether the terminal redraws a line in place (a TTY or a Jupyter kernel)."""
    stream = sys.stdout
    return (hasattr(stream, "isatty") and stream.isatty()) or "ipykernel" in sys.modules


class Progbar:
    """Keras's progress bar over `target` steps.

    verbose=1: "12/32 [=======>......] - ETA: 1s - loss: 0.2000" redrawn in place
    with \\r on a TTY; elsewhere (CI logs, pipes) only the final line
    "32/32 [==============================] - 0s 3ms/step - loss: 0.1234".
    verbose=2: only "32/32 - 0s - loss: 0.1234 - 0s/epoch - 3ms/step" at the end.
    target=None (the number of steps is unknown, e.g. a generator without steps) shows
    Keras's counter "     12/Unknown - 1s 20ms/step - loss: 0.2000" instead of a bar.
    `values` are (name, value) pairs already averaged by the caller.
    """

    def __init__(self, target: int, width: int = 30, verbose: int = 1, interval: float = 0.05,
                 unit_name: str = "step"):
        self.target = None if target is None else int(target)
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self._dynamic = _dynamic_display()
        self._start = time.time()
        self._last_update = 0.0
        self._previous_width = 0

    def _bar(self, current: int) -> str:
        if self.target is None:
            return f"{current:7d}/Unknown"
        digits = len(str(self.target))
        bar = f"{current:>{digits}d}/{self.target} ["
        width = int(self.width * current / self.target) if self.target else self.width
        if width > 0:
            bar += "=" * (width - 1) + (">" if current < self.target else "=")
        return bar + "." * (self.width - width) + "]"

    def update(self, current: int, values=(), finalize: bool = False) -> None:
        now = time.time()
        if not finalize and (self.verbose != 1 or not self._dynamic
                             or now - self._last_update < self.interval):
            return  # only a TTY shows intermediate states, at most every `interval` seconds
        self._last_update = now
        elapsed = now - self._start
        per_step = elapsed / current if current else 0.0
        metrics = "".join(f" - {name}: {_format_value(value)}" for name, value in values)
        if self.verbose == 1:
            if finalize or self.target is None:
                line = (f"{self._bar(current)} - {elapsed:.0f}s "
                        f"{_format_time(per_step, self.unit_name)}{metrics}")
            else:
                eta = _format_eta(per_step * (self.target - current))
                line = f"{self._bar(current)} - ETA: {eta}{metrics}"
            padding = " " * max(0, self._previous_width - len(line))
            self._previous_width = len(line)
            prefix = "\r" if self._dynamic else ""
            sys.stdout.write(prefix + line + padding + ("\n" if finalize else ""))
            sys.stdout.flush()
        elif self.verbose == 2:
            counter = f"{current}/{'Unknown' if self.target is None else self.target}"
            sys.stdout.write(f"{counter} - {elapsed:.0f}s{metrics} - "
                             f"{_format_time(elapsed, 'epoch')} - "
                             f"{_format_time(per_step, self.unit_name)}\n")
            sys.stdout.flush()


def _format_eta(seconds: float) -> str:
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


class ProgbarLogger(Callback):
    """fit's progress output (added when verbose != 0): "Epoch 3/10", then a Progbar per epoch.

    With an unknown number of steps (params["steps"] None) the first epoch shows a
    counter and, as in Keras, the later ones a bar over the steps the first one had.
    """

    def __init__(self):
        super().__init__()
        self._progbar = None
        self._seen = 0
        self._target = None

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self._target = params["steps"]

    def on_epoch_begin(self, epoch, logs=None):
        verbose, epochs = self.params["verbose"], self.params["epochs"]
        if verbose and epochs > 1:
            print(f"Epoch {epoch + 1}/{epochs}")
        self._progbar = Progbar(self._target, verbose=verbose)
        self._seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._progbar.update(self._seen, list((logs or {}).items()))

    def on_epoch_end(self, epoch, logs=None):
        if self._target is None:
            self._target = self._progbar.target = self._seen
        self._progbar.update(self._seen, list((logs or {}).items()), finalize=True)


# ----- monitoring helpers ----------------------------------------------------------

def _checked_mode(callback_name: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{callback_name} mode {mode!r} is unknown, falling back to 'auto'",
                      RuntimeWarning, stacklevel=3)
        return "auto"
    return mode


# Keras 3 decides "auto" from the metric's direction: losses go down; these go up.
_RISING_METRICS = ("acc", "accuracy", "auc", "precision", "recall", "true_positives",
                   "true_negatives", "cosine_similarity", "r2_score")
_FALLING_METRICS = ("loss", "mse", "mae", "mape", "msle", "mean_squared_error",
                    "mean_absolute_error", "mean_absolute_percentage_error",
                    "mean_squared_logarithmic_error", "root_mean_squared_error",
                    "false_positives", "false_negatives", "hinge", "logcosh", "poisson",
                    "kl_divergence", "crossentropy")


def _acc_rule_mode(callback_name: str, monitor: str, mode: str) -> str:
    """'min' or 'max' by the rule of Keras's ReduceLROnPlateau and ModelCheckpoint:
    "auto" maximises a monitor whose name contains "acc", minimises any other."""
    mode = _checked_mode(callback_name, mode)
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _early_stopping_mode(monitor: str, mode: str) -> str:
    """'min' or 'max' for EarlyStopping: with 'auto', the metric's direction, and Keras's
    ValueError for a metric whose direction is unknown."""
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name.endswith(_FALLING_METRICS):
        return "min"
    if name.endswith(_RISING_METRICS):
        return "max"
    raise ValueError(f"EarlyStopping callback received monitor={monitor} but fusednn (like "
                     "Keras) cannot determine whether that metric should be maximized or "
                     "minimized. Pass mode='max' to stop on the highest value, or mode='min' "
                     "to stop on the lowest.")


def _monitored_value(callback_name: str, monitor: str, logs):
    """logs[monitor] as a float, or None with Keras's warning when it is missing."""
    logs = logs or {}
    value = logs.get(monitor)
    if value is None:
        warnings.warn(f"{callback_name} is conditioned on metric `{monitor}` which is not "
                      f"available. Available metrics are: {','.join(logs)}",
                      RuntimeWarning, stacklevel=3)
        return None
    return float(value)


class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved by more than min_delta for `patience` epochs.

    baseline: training also stops if the value does not beat it within `patience` epochs.
    restore_best_weights: at the end of training (stopped early or not) the model
    gets back the weights of the best epoch. Epochs before `start_from_epoch` are ignored.
    After training, `stopped_epoch` (0 if never stopped) and `best_epoch` are set.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if patience < 0 or start_from_epoch < 0:
            raise ValueError(f"EarlyStopping: patience and start_from_epoch must be >= 0, got "
                             f"{patience} and {start_from_epoch}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _checked_mode("EarlyStopping", mode)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)

        self.best = None
        self._direction = None  # 'min' or 'max', decided when training begins

    def _is_improvement(self, value: float, reference) -> bool:
        if reference is None:
            return True
        if self._direction == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self._direction = _early_stopping_mode(self.monitor, self.mode)
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored_value("EarlyStopping", self.monitor, logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # The wait restarts only when both the previous best and the baseline are beaten;
            # an improvement that stays short of the baseline still counts towards patience.
            if self.baseline is None or self._is_improvement(current, float(self.baseline)):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1:05d}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (or only its weights) at the end of every epoch.

    filepath may contain format fields filled from the epoch (1-based) and the
    logs, e.g. "ckpt-{epoch:02d}-{val_loss:.2f}.keras". save_best_only keeps
    writing only when `monitor` improves. Files are safetensors (see fusednn.io).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto"):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _acc_rule_mode("ModelCheckpoint", monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def _path(self, epoch: int, logs: dict) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise KeyError(f"ModelCheckpoint: filepath {self.filepath!r} refers to {e}, which is "
                           f"not in the logs (available: epoch, {', '.join(logs)})") from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = _monitored_value("ModelCheckpoint", self.monitor, logs)
            if current is None:
                return
            improved = current < self.best if self.mode == "min" else current > self.best
            if not improved:
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1:05d}: {self.monitor} did not improve from "
                          f"{self.best:.5f}")
                return
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1:05d}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {self._path(epoch, logs)}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1:05d}: saving model to {self._path(epoch, logs)}")
        path = self._path(epoch, logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stops training after the batch whose loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


def _learning_rate(model, callback_name: str) -> float:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError(f"{callback_name}: the model has no optimizer with a learning_rate; "
                         "compile it first")
    return float(optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiplies the optimizer's learning rate by `factor` after `patience` epochs of no progress.

    An improvement beats the best value by more than min_delta; after a reduction
    `cooldown` epochs pass before counting again; the rate never goes below min_lr.
    Adds "learning_rate" to the epoch logs, as Keras 3 does. An optimizer whose learning
    rate is a schedule cannot be reduced (TypeError, as in Keras).
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        if patience < 0 or cooldown < 0 or min_lr < 0:
            raise ValueError(f"ReduceLROnPlateau: patience, cooldown and min_lr must be >= 0, "
                             f"got {patience}, {cooldown}, {min_lr}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _acc_rule_mode("ReduceLROnPlateau", monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def _is_improvement(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        lr = _learning_rate(self.model, "ReduceLROnPlateau")
        current = _monitored_value("ReduceLROnPlateau", self.monitor, logs)
        if logs is not None:
            logs["learning_rate"] = lr
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                new_lr = max(lr * self.factor, self.min_lr)
                self.model.optimizer.learning_rate = new_lr
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1:05d}: ReduceLROnPlateau reducing learning rate to "
                          f"{new_lr}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of each epoch to schedule(epoch, lr).

    epoch is 0-based; a schedule taking only the epoch is accepted too. Adds
    "learning_rate" to the logs.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = _learning_rate(self.model, "LearningRateScheduler")
        try:
            new_lr = self.schedule(epoch, lr)
        except TypeError:  # the older one-argument form schedule(epoch)
            new_lr = self.schedule(epoch)
        is_number = isinstance(new_lr, (int, float, np.floating, np.integer)) \
            and not isinstance(new_lr, bool)
        if not is_number or not math.isfinite(float(new_lr)):
            raise ValueError(f"LearningRateScheduler: the schedule must return a finite float, "
                             f"got {new_lr!r} for epoch {epoch}")
        self.model.optimizer.learning_rate = float(new_lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1:05d}: LearningRateScheduler setting learning rate to "
                  f"{float(new_lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model, "LearningRateScheduler")


class BackupAndRestore(Callback):
    """Backs up the training state so that an interrupted fit resumes where it stopped.

    Keras's callback and arguments. At the end of every epoch (save_freq="epoch") or
    every `save_freq` batches (an int), it writes backup_dir/backup.safetensors in one
    atomic write (fusednn.io): the weights, the optimizer state (slots and iterations),
    the position in training (epoch, batch, the epoch's sample order and the running
    loss and metric means) and the states of fusednn's random generators (the global
    one behind shuffling, initializers and dropout, and the layers' own seeded ones).
    A later fit with this callback, on the same model, compile settings and data,
    restores all of it in on_train_begin and continues with the next batch, so on the
    CPU its losses equal those of a run that was never interrupted.

    delete_checkpoint=True removes the backup when fit returns (also when a callback
    stopped it early); an exception or a killed process leaves it for the next run.
    The folder is created when missing; nothing else in it is touched.
    """

    FILENAME = "backup.safetensors"
    _METADATA_KEY = "fusednn_backup"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        try:
            backup_dir = os.fspath(backup_dir)
        except TypeError:
            raise TypeError(f"BackupAndRestore: expected backup_dir to be a path, got "
                            f"{type(backup_dir).__name__} {backup_dir!r}") from None
        if not backup_dir:
            raise ValueError("BackupAndRestore: expected backup_dir to be a non-empty path, "
                             "got ''")
        if save_freq != "epoch" and (isinstance(save_freq, bool)
                                     or not isinstance(save_freq, (int, np.integer))
                                     or save_freq <= 0):
            raise ValueError(f"BackupAndRestore: expected save_freq to be 'epoch' or a positive "
                             f"int (batches), got {save_freq!r}")
        self.backup_dir = backup_dir
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._batches_since_save = 0

    @property
    def backup_path(self) -> str:
        return os.path.join(self.backup_dir, self.FILENAME)

    # ----- hooks ---------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._batches_since_save = 0
        if os.path.exists(self.backup_path):
            self._restore()

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._save(self.model._fit_progress)
            self._batches_since_save = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(FitProgress(epoch + 1, 0, 0, 0, None, None, {}))

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint:
            return
        try:
            os.remove(self.backup_path)
        except FileNotFoundError:
            pass
        try:
            os.rmdir(self.backup_dir)  # only when nothing else is in it
        except OSError:
            pass

    # ----- saving and restoring -------------------------------------------------
    def _save(self, progress) -> None:
        position = {"epoch": progress.epoch, "step": progress.step}
        if progress.step:
            position.update(
                steps=progress.steps, samples=progress.samples,
                order=None if progress.order is None else [int(i) for i in progress.order],
                # Each metric's state (a Mean's is [total, count]), loaded back by fit.
                loss_mean=_state_of(progress.loss_mean),
                metric_means={name: _state_of(metric)
                              for name, metric in progress.metric_means.items()})
        position["rng"] = _generator_states(self.model)
        os.makedirs(self.backup_dir, exist_ok=True)
        io.save_model(self.model, self.backup_path, include_optimizer=True,
                      metadata={self._METADATA_KEY: json.dumps(position)})

    def _restore(self) -> None:
        path = self.backup_path
        metadata = io.load_training_state(self.model, path)
        if self._METADATA_KEY not in metadata:
            raise ValueError(f"BackupAndRestore: {path} is not a backup written by "
                             "BackupAndRestore (its metadata has no training position)")
        try:
            position = json.loads(metadata[self._METADATA_KEY])
            _set_generator_states(self.model, position["rng"])
            step = int(position["step"])
            # The metrics' saved state, which fit loads into the model's metrics.
            loss_mean, metric_means = None, {}
            if step:
                loss_mean, metric_means = position["loss_mean"], dict(position["metric_means"])
            order = position.get("order")
            self.model._resume_from = FitProgress(
                int(position["epoch"]), step, position.get("steps", 0),
                position.get("samples", 0), None if order is None else np.asarray(order),
                loss_mean, metric_means)
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
            raise ValueError(f"BackupAndRestore: {path} holds an unreadable training position "
                             f"({type(e).__name__}: {e})") from None


def _state_of(metric) -> list:
    """A metric's variables as JSON lists (a Mean's: [total, count])."""
    return [variable.tolist() for variable in metric.variables]


def _seeded_layers(layer, prefix=""):
    """(path, layer) for every layer inside `layer` that keeps its own random generator."""
    for child in layer.sublayers:
        path = f"{prefix}{child.name}"
        if getattr(child, "_generator", None) is not None:
            yield path, child
        yield from _seeded_layers(child, path + "/")


def _generator_states(model) -> dict:
    return {"global": _rng.generator().bit_generator.state,
            "layers": {path: layer._generator.bit_generator.state
                       for path, layer in _seeded_layers(model)}}


def _set_generator_states(model, states: dict) -> None:
    layers = dict(_seeded_layers(model))
    if set(states["layers"]) != set(layers):
        raise ValueError(f"the backup has random generators for layers "
                         f"{sorted(states['layers'])}, the model for {sorted(layers)}")
    _rng.generator().bit_generator.state = states["global"]
    for path, state in states["layers"].items():
        layers[path]._generator.bit_generator.state = state
