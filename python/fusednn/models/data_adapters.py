"""The data fit, evaluate and predict read, as batches of (x, y, sample_weight).

Three sources, with Keras 3's rules:
    ArrayData      x, y (and sample_weight) arrays cut into batches of batch_size,
                   reshuffled every epoch (shuffle=True); class_weight becomes
                   sample_weight once
    IteratorData   a Python generator or iterator yielding (x, y), (x, y, sample_weight)
                   or x alone: without steps an epoch runs until it is exhausted; with
                   steps each epoch takes the next `steps` batches of the same iterator
    PyDatasetData  a fusednn.utils.PyDataset: batches 0 .. steps - 1 (steps = len(dataset)
                   unless given) every epoch, then dataset.on_epoch_end()
Every batch is checked (and class weights applied) here, before any kernel runs.
`ran_out` turns True when an iterator stopped before the batches asked for, the sign
for fit to stop training with Keras's warning.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _rng, backend, distribute
from ..py_dataset import PyDataset, batches_in_order
from .data import _as_batch_arrays, _check_data, _take_batch, map_arrays, num_samples


def check_steps(what: str, name: str, steps):
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps <= 0:
        raise ValueError(f"{what}: {name} must be a positive int or None, got {steps!r}")
    return int(steps)


def is_stream(x) -> bool:
    """Whether x is read batch by batch (a PyDataset, generator or iterator), not an array."""
    return isinstance(x, PyDataset) or hasattr(x, "__next__")


def check_sample_weight(what: str, sample_weight, samples: int):
    """sample_weight as a float64 NumPy vector of one finite weight per sample."""
    if sample_weight is None:
        return None
    weights = np.asarray(backend.to_numpy(sample_weight) if backend.is_cuda_array(sample_weight)
                         else sample_weight)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.ndim != 1 or len(weights) != samples or weights.dtype.kind not in "biuf":
        raise ValueError(f"{what}: sample_weight must hold one number per sample, shape "
                         f"({samples},), got {weights.dtype} of shape {tuple(weights.shape)}")
    weights = weights.astype(np.float64)
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{what}: sample_weight holds non-finite values")
    return weights


def check_class_weight(what: str, class_weight):
    if class_weight is None:
        return None
    if not isinstance(class_weight, dict) or not all(
            isinstance(k, numbers.Integral) and not isinstance(k, bool)
            and isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in class_weight.items()):
        raise TypeError(f"{what}: class_weight must be a dict {{class index (int): weight "
                        f"(finite number)}}, got {class_weight!r}")
    return {int(k): float(v) for k, v in class_weight.items()}


def class_weights_of(what: str, y, class_weight: dict) -> np.ndarray:
    """Keras's conversion: each sample weighs class_weight[its class] (1 for classes not
    in the dict); the class is y for labels (N,) or (N, 1), argmax for one-hot (N, C)."""
    if isinstance(y, (list, dict)):
        raise ValueError(f"{what}: class_weight is only supported for models with one output; "
                         "give sample_weight instead")
    labels = np.asarray(backend.to_numpy(y))
    if labels.ndim > 2:
        raise ValueError(f"{what}: class_weight needs targets of shape (N,), (N, 1) or one-hot "
                         f"(N, C), got shape {labels.shape}")
    if labels.ndim == 2:
        labels = labels[:, 0] if labels.shape[1] == 1 else np.argmax(labels, axis=1)
    labels = np.round(labels).astype(np.int64)
    return np.array([class_weight.get(int(label), 1.0) for label in labels], dtype=np.float64)


def _batch_parts(what: str, batch, with_targets: bool):
    """(x, y, sample_weight) from what a generator or PyDataset gave for one batch."""
    if isinstance(batch, (tuple, list)):
        if not 1 <= len(batch) <= 3:
            raise ValueError(f"{what}: a batch must be x, (x,), (x, y) or (x, y, sample_weight), "
                             f"got a {type(batch).__name__} of {len(batch)} items")
        x, y, weights = (tuple(batch) + (None, None))[:3]
    else:
        x, y, weights = batch, None, None
    if not with_targets:
        x = _as_batch_arrays(what, "x", x)[0]
        if num_samples(x) == 0:
            raise ValueError(f"{what}: a batch of x is empty (0 samples)")
        return x, None, None
    if y is None:
        raise ValueError(f"{what}: each batch must be (x, y) or (x, y, sample_weight), got "
                         f"{'x alone' if not isinstance(batch, (tuple, list)) else '(x,)'}")
    x, y = _check_data(what, x, y)
    return x, y, check_sample_weight(what, weights, num_samples(x))


class ArrayData:
    """x, y (None for predict), sample_weight arrays (already checked) in batches of
    batch_size: the first `steps` batches of each epoch's order."""

    mid_epoch_resumable = True

    def __init__(self, x, y, sample_weight, batch_size: int, shuffle: bool, sharded=False):
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size, self.shuffle, self.sharded = batch_size, shuffle, sharded
        self.total = num_samples(x)
        # fit's data (sharded) is this rank's shard in a distributed job (fd.distribute).
        self.samples = distribute.fit_samples(self.total) if sharded else self.total
        self.steps = math.ceil(self.samples / batch_size)
        self.ran_out = False

    def part(self, samples) -> "ArrayData":
        """These samples (a slice or index array) in order, as array data of the same batch
        size: a rank's part of evaluate's or predict's data (fd.distribute)."""
        def take(array):
            return array[samples]

        return ArrayData(map_arrays(self.x, take),
                         None if self.y is None else map_arrays(self.y, take),
                         None if self.sample_weight is None else take(self.sample_weight),
                         self.batch_size, shuffle=False)

    def new_order(self):
        if self.sharded:
            return distribute.epoch_order(self.total, self.shuffle)
        return _rng.generator().permutation(self.samples) if self.shuffle else None

    def batches(self, order, start: int):
        for step in range(start, self.steps):
            begin = step * self.batch_size

            def take(array):
                return _take_batch(array, order, begin, self.batch_size)

            yield (map_arrays(self.x, take), None if self.y is None else map_arrays(self.y, take),
                   None if self.sample_weight is None else take(self.sample_weight))

    def on_epoch_end(self) -> None:
        pass


class IteratorData:
    """A Python iterator of batches (one pass in all, shared by the epochs)."""

    mid_epoch_resumable = False
    samples = None
    shuffle = False

    def __init__(self, what: str, iterator, steps, with_targets: bool, class_weight=None):
        self.what, self.iterator, self.steps = what, iterator, steps
        self.with_targets, self.class_weight = with_targets, class_weight
        self.ran_out = False

    def new_order(self):
        return None

    def batches(self, order, start: int):
        count = 0
        while self.steps is None or count < self.steps:
            try:
                batch = next(self.iterator)
            except StopIteration:
                # Without steps, exhaustion ends an epoch; only an epoch with no batch ran out.
                self.ran_out = self.steps is not None or count == 0
                return
            count += 1
            yield _with_class_weight(self.what, _batch_parts(self.what, batch, self.with_targets),
                                     self.class_weight)

    def on_epoch_end(self) -> None:
        pass


class PyDatasetData:
    """A PyDataset: batches 0 .. steps - 1 every epoch."""

    mid_epoch_resumable = True
    samples = None
    shuffle = False

    def __init__(self, what: str, dataset: PyDataset, steps, with_targets: bool,
                 class_weight=None):
        length = len(dataset)
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length <= 0:
            raise ValueError(f"{what}: len() of the PyDataset must be a positive int, "
                             f"got {length!r}")
        if steps is not None and steps > length:
            raise ValueError(f"{what}: the PyDataset has {length} batches, fewer than the "
                             f"{steps} steps asked for")
        self.what, self.dataset = what, dataset
        self.steps = length if steps is None else steps
        self.with_targets, self.class_weight = with_targets, class_weight
        self.ran_out = False

    def new_order(self):
        return None

    def batches(self, order, start: int):
        loaded = batches_in_order(self.dataset, start, self.steps)
        try:
            for batch in loaded:
                yield _with_class_weight(self.what, _batch_parts(self.what, batch,
                                                                 self.with_targets),
                                         self.class_weight)
        finally:
            loaded.close()  # stops the prefetching threads now, also when fit raised

    def on_epoch_end(self) -> None:
        self.dataset.on_epoch_end()


def _with_class_weight(what: str, parts, class_weight):
    x, y, weights = parts
    if class_weight is None:
        return parts
    if weights is not None:
        raise ValueError(f"{what}: class_weight and sample_weight cannot be used at the same "
                         "time (the data yielded sample weights)")
    return x, y, class_weights_of(what, y, class_weight)


def stream(what: str, x, steps, with_targets: bool, class_weight=None):
    """IteratorData or PyDatasetData over x (is_stream(x) must hold)."""
    if isinstance(x, PyDataset):
        return PyDatasetData(what, x, steps, with_targets, class_weight)
    return IteratorData(what, x, steps, with_targets, class_weight)


def no_array_arguments(what: str, source: str, **arguments) -> None:
    """Arguments that only arrays take must be left at their defaults for a stream."""
    given = [name for name, value in arguments.items() if value is not None]
    if given:
        raise ValueError(f"{what}: {', '.join(given)} cannot be given when {source} is a "
                         "generator, iterator or PyDataset; yield them with each batch instead")
