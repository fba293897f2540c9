"""evaluate and predict in a job of several ranks: each rank computes on its part of the
data, the results are combined so that every rank returns what one process would.

Array data given whole to every rank (the default, initialize(shard_data=True)) is cut
into contiguous parts, rank r taking samples [r N / p, (r+1) N / p) (floored; sizes
differ by at most one, and no sample is repeated: padding as in fit would count a sample
twice). Any other data (a generator, iterator or PyDataset, arrays limited by steps=,
or any data with shard_data=False) is taken as this rank's own part, as given.

evaluate (test_on_batch, fit's validation): every loss and metric keeps sums over the
samples it saw (a Mean its sum of value x weight and of weights, Precision or AUC their
true/false positive/negative counts per threshold); the ranks add their states and the
metric computes its result once, so it is the result over all samples of all ranks,
exactly as one process computes it (float rounding aside), not a mean of the ranks'
results, which would weight a short part like a long one (and be wrong for AUC). Every
rank gets the same numbers. A custom Metric must keep additive state for this (Keras's
own metrics do: their variables are sums).

predict: every rank returns the predictions of all ranks' parts concatenated in rank
order; for array data given whole, that is the predictions for x in x's order, what one
process returns (Keras users call predict on every rank and expect the full result; a
model with ranks gathering only on rank 0 would leave the others with something else).
predict_on_batch and train_on_batch stay per rank.
"""
from __future__ import annotations

import math

from . import environment
from .sharding import rank_part


def evaluation_data(data):
    """`data` as this rank evaluates or predicts it: this rank's contiguous part of array
    data given whole (what has `part`: models/data_adapters.ArrayData), else `data` itself."""
    comm = environment.communicator()
    if comm.size == 1 or not environment.shards_fit_data() or not hasattr(data, "part") \
            or data.steps != math.ceil(data.total / data.batch_size):
        return data
    return data.part(rank_part(data.total, comm.rank, comm.size))


def sum_states(metrics) -> None:
    """Replaces each metric's state (its `variables`) with its sum over the ranks."""
    if environment.size() == 1:
        return
    metrics = list(metrics)   # the same compile order on every rank
    for metric, summed in zip(metrics, states_over_ranks(metrics, average=False)):
        metric._set_variables(summed)


def states_over_ranks(metrics, average: bool) -> list:
    """Each metric's variables summed (or averaged) over the ranks, added in rank order so
    that every rank computes the same floats."""
    gathered = environment.communicator().allgather_object(
        [metric.variables for metric in metrics])
    size = len(gathered)
    result = []
    for i in range(len(metrics)):
        summed = [sum(rank_states[i][k] for rank_states in gathered)
                  for k in range(len(gathered[0][i]))]
        result.append([value / size for value in summed] if average else summed)
    return result


def gather_in_rank_order(batches: list) -> list:
    """Every rank's list of predicted batches, concatenated in rank order."""
    comm = environment.communicator()
    if comm.size == 1:
        return batches
    return [batch for rank_batches in comm.allgather_object(batches) for batch in rank_batches]


def prints() -> bool:
    """Whether this rank shows progress bars: rank 0 alone."""
    return environment.rank() == 0
