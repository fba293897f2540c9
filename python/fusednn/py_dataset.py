"""PyDataset: Keras 3's base class for data that fit, evaluate and predict read batch by
batch, with optional prefetching of the next batches in background threads."""
from __future__ import annotations

import concurrent.futures
import numbers


class PyDataset:
    """Subclass it and define `__len__` (batches per epoch) and `__getitem__(index)`
    returning one batch: `(x, y)`, `(x, y, sample_weight)` or `x` alone (for predict).
    `on_epoch_end()` runs after every epoch (shuffle there when the order should change).

    workers > 1 loads up to `max_queue_size` batches ahead in `workers` threads (useful
    when __getitem__ reads files or waits on I/O; NumPy releases the GIL too). Batches
    still arrive in index order. An exception inside a worker is raised by fit (or
    evaluate, predict) with the worker's traceback, and the threads are stopped.
    use_multiprocessing=True (Keras's process pool) is not supported.
    Subclasses must call super().__init__(**kwargs), as in Keras.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be an int >= 1, "
                                 f"got {value!r}")
        if use_multiprocessing:
            raise ValueError(f"{type(self).__name__}: use_multiprocessing=True is not supported; "
                             "fusednn prefetches batches in threads (workers > 1)")
        self.workers = int(workers)
        self.use_multiprocessing = False
        self.max_queue_size = int(max_queue_size)

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__ "
                                  "(the number of batches in an epoch)")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) "
                                  "returning one batch")

    def on_epoch_end(self):
        """Runs at the end of every epoch; does nothing unless overridden."""

    @property
    def num_batches(self) -> int:
        return len(self)


def batches_in_order(dataset: PyDataset, start: int, stop: int):
    """Yields dataset[start], ..., dataset[stop - 1]; with workers > 1 loads up to
    max_queue_size of them ahead in a thread pool that stops when the generator closes
    (also when the consumer raised): pending loads are cancelled, running ones finished."""
    if getattr(dataset, "workers", 1) <= 1:
        for index in range(start, stop):
            yield dataset[index]
        return
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=dataset.workers,
                                                 thread_name_prefix="fusednn-PyDataset")
    try:
        pending = [pool.submit(dataset.__getitem__, index)
                   for index in range(start, min(stop, start + dataset.max_queue_size))]
        for index in range(start, stop):
            # result() re-raises a worker's exception with the traceback of its frames.
            batch = pending.pop(0).result()
            ahead = index + dataset.max_queue_size
            if ahead < stop:
                pending.append(pool.submit(dataset.__getitem__, ahead))
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
