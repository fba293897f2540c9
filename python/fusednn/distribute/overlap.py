"""Averaging a model's gradients while its backward still runs (PyTorch DDP's overlap).

fit's model gets an OverlappedAveraging on its gradients_ready hooks
(models/gradients_ready.py). The trainable variables are cut into buckets in reverse
layer order, the order backward makes their gradients; as soon as backward has finished
every gradient of a bucket, that bucket is packed into one float buffer and its
non-blocking allreduce starts (MPI_Iallreduce; NCCL on a stream of its own), while
backward goes on with the earlier layers. finish(), called by the optimizer's step
through allreduce_gradients, waits for every bucket started, averages whatever is left
and writes the means back into the gradients.

Buckets start strictly in bucket order, on every rank the same: non-blocking collectives
must be started in the same order by all ranks of a communicator. A bucket that became
ready before an earlier one waits for it. Gradients that no hook reported (a fused GPU
step, a node whose backward was skipped) are averaged by finish(), so a missed report
costs overlap, never correctness; a report too early would be wrong, which is why a
layer is reported only after its last backward call of the pass.

One backward per step: a loop that accumulates over several backward passes before a
step (the GAN's discriminator) must not use this; it calls allreduce_gradients alone.
"""
from __future__ import annotations

import weakref

from . import buckets as buckets_module
from . import environment

_attached: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def attach(model) -> None:
    """Starts overlapping model's gradient averaging with its backward (fit's model)."""
    if getattr(model, "gradients_ready", None) is None:
        return   # a model class without the hooks: allreduce_gradients averages at the step
    if model not in _attached and environment.size() > 1:
        averaging = OverlappedAveraging(model, environment.communicator())
        model.gradients_ready.add(averaging.on_gradients_ready)
        _attached[model] = averaging


def detach(model) -> None:
    averaging = _attached.pop(model, None)
    if averaging is not None:
        model.gradients_ready.remove(averaging.on_gradients_ready)


def attached(model):
    """The model's OverlappedAveraging, or None."""
    try:
        return _attached.get(model)
    except TypeError:   # an iterable of Variables, not a model
        return None


class OverlappedAveraging:
    """The buckets of one model and the allreduces in flight in the current step."""

    def __init__(self, model, comm):
        self._model, self._comm = model, comm
        self._reset()

    def _reset(self) -> None:
        self._buckets = None    # planned at the first report of each step
        self._started = []      # (request, flat buffer, variables), in bucket order

    def _make_plan(self) -> None:
        """Buckets of the trainable variables, last layer's first; planned every step so
        that freezing a layer between steps is followed."""
        variables = list(reversed(self._model.trainable_variables))
        self._buckets = [[variables[i] for i in bucket] for bucket in buckets_module.buckets(
            [var.grad for var in variables])]
        self._bucket_of = {id(var): b for b, bucket in enumerate(self._buckets)
                           for var in bucket}
        self._waiting = [len(bucket) for bucket in self._buckets]
        self._reported = set()

    def on_gradients_ready(self, layer) -> None:
        if self._buckets is None:
            self._make_plan()
        for var in getattr(layer, "trainable_variables", ()):
            b = self._bucket_of.get(id(var))
            if b is not None and id(var) not in self._reported:
                self._reported.add(id(var))
                self._waiting[b] -= 1
        while len(self._started) < len(self._buckets) and self._waiting[len(self._started)] == 0:
            self._start(len(self._started))
        for request, _, _ in self._started:
            request.test()   # advances MPI's transfers (no progress thread in Open MPI)

    def _start(self, b: int) -> None:
        members = self._buckets[b]
        flat = buckets_module.pack([var.grad for var in members])
        self._started.append((self._comm.start_allreduce_sum(flat), flat, members))

    def finish(self) -> None:
        """Waits for the buckets started during backward, averages the others now (with
        the blocking allreduce: nothing is left to overlap them with, and Open MPI's
        blocking algorithms are tuned where its non-blocking ones are generic), writes
        the means back."""
        if self._buckets is None:
            self._make_plan()
        for request, flat, members in self._started:
            request.wait()
            self._write_mean(flat, members)
        for members in self._buckets[len(self._started):]:
            flat = buckets_module.pack([var.grad for var in members])
            self._comm.allreduce_sum(flat)
            self._write_mean(flat, members)
        self._reset()

    def _write_mean(self, flat, members) -> None:
        flat /= self._comm.size
        buckets_module.unpack(flat, [var.grad for var in members])
