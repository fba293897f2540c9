"""What makes Model.fit data-parallel: the callbacks fit runs in a job of several ranks.

fit asks fit_callbacks for its callback list. In one process that is the list itself;
in a job of several ranks it becomes
    [_AverageLogs] + the callbacks as this rank runs them + [_Agree]
_AverageLogs comes first so that every callback (the progress bar, History, EarlyStopping,
ReduceLROnPlateau, TerminateOnNaN) sees the loss and metrics averaged over the ranks, the
same numbers on every rank, and so decides the same. _Agree comes last: after the
callbacks that restore state (BackupAndRestore) it hands every rank root's weights and
optimizer state, and after the callbacks that decide it makes their decisions agree
(stop when any rank stops, root's learning rate), so that no rank is left waiting in a
collective for a rank that stopped. Only rank 0 prints and writes files: the others drop
the progress bar and ModelCheckpoint, run BackupAndRestore only to restore, and run every
other callback with its printing discarded.
"""
from __future__ import annotations

import contextlib
import os

from .. import callbacks as callbacks_module
from . import environment, overlap
from .optimizer import DistributedOptimizer
from .synchronize import broadcast_variables


def fit_callbacks(callbacks: list) -> list:
    """fit's callback list for this rank (the list as is in a single process)."""
    comm = environment.communicator()
    if comm.size == 1:
        return callbacks
    for cb in callbacks:
        # A backup inside an epoch holds rank 0's shard order, which is not the other ranks'.
        if isinstance(cb, callbacks_module.BackupAndRestore) and cb.save_freq != "epoch":
            raise ValueError(f"fusednn.distribute: BackupAndRestore(save_freq={cb.save_freq}) "
                             "saves inside an epoch, which a job of several ranks cannot "
                             "resume yet; use save_freq='epoch'")
    if comm.rank != 0:
        callbacks = [_as_non_root(cb) for cb in callbacks
                     if not isinstance(cb, (callbacks_module.ProgbarLogger,
                                            callbacks_module.ModelCheckpoint))]
    return [_AverageLogs()] + callbacks + [_Agree()]


def average_logs(logs: dict) -> None:
    """Replaces each value in `logs` with its mean over the ranks, in place: the mean of
    the values in rank order, so every rank computes the same float."""
    comm = environment.communicator()
    keys = sorted(logs)
    gathered = comm.allgather_object([float(logs[key]) for key in keys])
    for i, key in enumerate(keys):
        logs[key] = sum(values[i] for values in gathered) / comm.size


class _AverageLogs(callbacks_module.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if logs is not None:
            average_logs(logs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            average_logs(logs)


class _Agree(callbacks_module.Callback):
    def on_train_begin(self, logs=None):
        DistributedOptimizer(self.model.optimizer)
        broadcast_variables(self.model)
        broadcast_variables(self.model.optimizer)
        overlap.attach(self.model)

    def on_train_end(self, logs=None):
        overlap.detach(self.model)

    def _stop_together(self):
        stops = environment.communicator().allgather_object(bool(self.model.stop_training))
        self.model.stop_training = any(stops)

    def on_train_batch_end(self, batch, logs=None):
        self._stop_together()

    def on_epoch_end(self, epoch, logs=None):
        self._stop_together()
        optimizer = self.model.optimizer
        if optimizer.learning_rate_schedule is None:
            optimizer.learning_rate = environment.communicator().broadcast_object(
                optimizer.learning_rate)


def _as_non_root(callback):
    if isinstance(callback, callbacks_module.BackupAndRestore):
        return _RestoreOnly(callback)
    return _Silenced(callback)


class _Delegate(callbacks_module.Callback):
    """Runs another callback's hooks (a subclass says how)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)


class _Silenced(_Delegate):
    """Every hook of the inner callback, with what it prints discarded."""

    def _run(self, hook, *args):
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            getattr(self.inner, hook)(*args)

    def on_train_begin(self, logs=None): self._run("on_train_begin", logs)
    def on_train_end(self, logs=None): self._run("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._run("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._run("on_epoch_end", epoch, logs)
    def on_train_batch_begin(self, batch, logs=None):
        self._run("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._run("on_train_batch_end", batch, logs)


class _RestoreOnly(_Delegate):
    """BackupAndRestore on a rank other than 0: restores from root's backup (every rank
    must see its file) but never writes or deletes it."""

    def on_train_begin(self, logs=None):
        self.inner.on_train_begin(logs)
