"""Which samples each rank trains on in an epoch.

Every rank takes the same global order of the N samples (root's shuffle, broadcast),
pads it to a multiple of the number of ranks p by repeating its first samples (as
PyTorch's DistributedSampler does: every rank must run the same number of steps, or
the ranks with more would wait forever in an allreduce), and rank r takes every p-th
entry from position r. Batch b of all ranks together is then positions b*B*p ..
(b+1)*B*p - 1 of the padded order: with N a multiple of B*p, exactly the batch b of
one process with batch size B*p, which is what makes 2 x 16 train like 1 x 32.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _rng
from . import environment


def samples_per_rank(samples: int, size: int | None = None) -> int:
    """ceil(samples / size): the length of every rank's shard."""
    size = environment.size() if size is None else size
    return math.ceil(samples / size)


def shard_indices(order, rank: int | None = None, size: int | None = None) -> np.ndarray:
    """Rank `rank`'s positions into the data, from the global `order` (a permutation of
    range(N), or an int N for the order 0..N-1): samples_per_rank(N) of them."""
    rank = environment.rank() if rank is None else rank
    size = environment.size() if size is None else size
    order = np.arange(order) if isinstance(order, (int, np.integer)) else np.asarray(order)
    if not 0 <= rank < size:
        raise ValueError(f"fusednn.distribute.shard_indices: expected 0 <= rank < size, got "
                         f"rank {rank} and size {size}")
    if len(order) == 0:
        raise ValueError("fusednn.distribute.shard_indices: there are no samples to shard")
    padded_length = samples_per_rank(len(order), size) * size
    padding = np.resize(order, padded_length - len(order))  # repeats order if N < size
    return np.concatenate([order, padding])[rank::size]


def rank_part(count: int, rank: int | None = None, size: int | None = None) -> slice:
    """This rank's contiguous part of `count` items: [ceil(r count / p), ceil((r+1) count / p)).
    The parts cover every item once, differ in length by at most one, and rank 0's is empty
    only when count is 0. For evaluate/predict (distribute/evaluation.py) and for a
    hand-written loop that splits a global batch (the GAN demos): all of it in one process."""
    rank = environment.rank() if rank is None else rank
    size = environment.size() if size is None else size
    begin, end = (-(-count * r // size) for r in (rank, rank + 1))
    return slice(begin, end)


# The job's global order of the epoch fit is in (None without shuffling) and the size of
# fit's data: what a backup inside an epoch saves so that every rank can recompute its own
# shard on resume (global_shard).
_fit_epoch = {"order": None, "samples": 0}


def epoch_order(samples: int, shuffle: bool):
    """The sample order of fit's next epoch for this rank: in one process (or without
    shard_data) the permutation fit always drew (None without shuffling); in a job of
    several ranks this rank's shard of root's order."""
    comm = environment.communicator()
    if comm.size == 1 or not environment.shards_fit_data():
        return _rng.generator().permutation(samples) if shuffle else None
    order = _rng.generator().permutation(samples) if shuffle and comm.rank == 0 else None
    order = comm.broadcast_object(order) if shuffle else None
    _fit_epoch["order"] = order
    return shard_indices(samples if order is None else order, comm.rank, comm.size)


def fit_samples(samples: int) -> int:
    """How many samples of `samples` this rank trains on per epoch in fit."""
    if environment.size() == 1 or not environment.shards_fit_data():
        return samples
    _fit_epoch["samples"] = samples
    return samples_per_rank(samples)


def global_order():
    """The current epoch's order of all the job's samples (None without shuffling)."""
    return _fit_epoch["order"]


def resume_order(order):
    """Resuming fit inside an epoch whose global order (global_order() when the backup
    was taken) is `order`: this rank's shard of it (of fit's samples in order for None)."""
    _fit_epoch["order"] = order
    return shard_indices(_fit_epoch["samples"] if order is None else order)
