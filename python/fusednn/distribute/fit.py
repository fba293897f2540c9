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

BackupAndRestore(save_freq=N) saves inside an epoch, where each rank is at its own place
in its own shard. At each save every rank hands its running means to rank 0, which
writes the job's state instead of its own: the epoch's global order (so that every rank
recomputes its shard of it on resume, also where shards are uneven) and the running
means averaged over the ranks (every rank has run the same number of samples, so each
rank resuming from the average logs, after _AverageLogs, what the uninterrupted job would
have). Every rank restores the same file; _Agree turns the global order back into this
rank's shard as the resumed epoch begins.
"""
from __future__ import annotations

import contextlib
import copy as copy_module
import os

import numpy as np

from .. import callbacks as callbacks_module
from ..fit_progress import FitProgress
from . import environment, overlap, sharding
from .evaluation import states_over_ranks
from .optimizer import DistributedOptimizer
from .synchronize import broadcast_variables


def fit_callbacks(callbacks: list) -> list:
    """fit's callback list for this rank (the list as is in a single process)."""
    comm = environment.communicator()
    if comm.size == 1:
        return callbacks
    if comm.rank != 0:
        callbacks = [_as_non_root(cb) for cb in callbacks
                     if not isinstance(cb, (callbacks_module.ProgbarLogger,
                                            callbacks_module.ModelCheckpoint))]
    else:
        callbacks = [_RootBackup(cb) if _saves_inside_epochs(cb) else cb for cb in callbacks]
    return [_AverageLogs()] + callbacks + [_Agree()]


def _saves_inside_epochs(callback) -> bool:
    return isinstance(callback, callbacks_module.BackupAndRestore) \
        and callback.save_freq != "epoch"


def average_logs(logs: dict) -> None:
    """Replaces each value in `logs` with its mean over the ranks, in place: the mean of
    the values in rank order, so every rank computes the same float."""
    comm = environment.communicator()
    keys = sorted(logs)
    # A metric with several thresholds (Precision(thresholds=[...])) logs an array.
    gathered = comm.allgather_object([np.asarray(logs[key], dtype=np.float64)
                                      for key in keys])
    for i, key in enumerate(keys):
        mean = sum(values[i] for values in gathered) / comm.size
        logs[key] = float(mean) if mean.ndim == 0 else mean


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
        # A backup from inside an epoch (restored by now): the object fit resumes from.
        resume = self.model._resume_from
        self._resume = resume if resume is not None and resume.step else None

    def on_epoch_begin(self, epoch, logs=None):
        # fit has checked the backup against its data (a job's backup saves the global
        # order, or None without shuffling); this rank resumes in its shard of it.
        if self._resume is not None and self._resume.epoch == epoch:
            self._resume.order = sharding.resume_order(self._resume.order)
        self._resume = None

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


class _SaveSchedule(_Delegate):
    """Counts batches as BackupAndRestore does, so that every rank takes part in the
    collective of each save inside an epoch at the same batch."""

    def on_train_begin(self, logs=None):
        self._batches = 0
        self.inner.on_train_begin(logs)

    def _saves_now(self) -> bool:
        if self.inner.save_freq == "epoch":
            return False
        self._batches += 1
        if self._batches < self.inner.save_freq:
            return False
        self._batches = 0
        return True


class _RestoreOnly(_SaveSchedule):
    """BackupAndRestore on a rank other than 0: restores from root's backup (every rank
    must see its file) but never writes or deletes it; hands root its running means at
    each save inside an epoch."""

    def on_train_batch_end(self, batch, logs=None):
        if self._saves_now():
            _gather_means(self.model._fit_progress)


class _RootBackup(_SaveSchedule):
    """Rank 0's BackupAndRestore(save_freq=N): saves the job's state (see the module's
    docstring) where it would save its own."""

    def on_train_batch_end(self, batch, logs=None):
        if not self._saves_now():
            return self.inner.on_train_batch_end(batch, logs)
        mine = self.model._fit_progress
        loss_mean, metric_means = _gather_means(mine)
        self.model._fit_progress = FitProgress(mine.epoch, mine.step, mine.steps, mine.samples,
                                               sharding.global_order(), loss_mean,
                                               metric_means)
        try:
            self.inner.on_train_batch_end(batch, logs)
        finally:
            self.model._fit_progress = mine

    def on_epoch_end(self, epoch, logs=None):
        self.inner.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.inner.on_train_end(logs)


def _gather_means(progress) -> tuple:
    """The running metrics of fit's progress with their states averaged over the ranks
    (every rank runs this; every rank has run the same number of samples, so the average
    state is one rank's worth, which this rank's own updates then continue)."""
    metrics = [progress.loss_mean, *progress.metric_means.values()]
    averaged = []
    for metric, state in zip(metrics, states_over_ranks(metrics, average=True)):
        copy = copy_module.deepcopy(metric)
        copy._set_variables(state)
        averaged.append(copy)
    return averaged[0], dict(zip(progress.metric_means, averaged[1:]))