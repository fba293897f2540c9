"""Data-parallel training over MPI (CPU ranks, host buffers) and NCCL (GPU ranks through
CuPy), Horovod's design made small:

    import fusednn as fd
    fd.distribute.initialize()          # a no-op (and no MPI import) in a single process
    model = build_model(); model.compile(...)
    model.fit(x, y, batch_size=16)      # each rank trains on its shard, batch 16 per rank

launched as `mpiexec -n 4 python train.py`. In a job of several ranks fit broadcasts
root's weights and optimizer state, averages the gradients before every step
(DistributedOptimizer), overlapping that with the backward (overlap.py), gives each rank
its shard of every epoch (shard_indices), averages the logs over the ranks, keeps the
callbacks' decisions the same on every rank and prints and writes checkpoints on rank 0
only (backups inside an epoch resume every rank). evaluate and predict split array data
over the ranks and return on every rank what one process would (evaluation.py). A
hand-written loop calls
allreduce_gradients(model) between backward and optimizer.step (or wraps the optimizer
in DistributedOptimizer) after broadcast_variables(model). An uncaught exception on one
rank aborts every rank, naming the rank that failed.
"""
from .evaluation import evaluation_data, gather_in_rank_order, prints, sum_states
from .environment import (initialize, is_initialized, launched_by_mpi, local_rank, rank,
                          size)
from .fit import average_logs, fit_callbacks
from .optimizer import DistributedOptimizer, is_distributed
from .sharding import epoch_order, fit_samples, rank_part, samples_per_rank, shard_indices
from .synchronize import allreduce_gradients, broadcast_variables, check_same_model

# The public API; fit_callbacks, fit_samples and epoch_order are Model.fit's hooks,
# evaluation_data, sum_states, gather_in_rank_order and prints evaluate's and predict's.
__all__ = [
    "DistributedOptimizer", "allreduce_gradients", "average_logs", "broadcast_variables",
    "check_same_model", "initialize", "is_distributed", "is_initialized", "launched_by_mpi",
    "local_rank", "rank", "rank_part", "samples_per_rank", "shard_indices", "size",
]
