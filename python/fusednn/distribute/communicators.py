"""The communicators data-parallel training runs on: one process, MPI (host buffers,
mpi4py) and NCCL (device buffers, CuPy's cupy.cuda.nccl).

Each offers the same few collectives over the ranks of one job:
    allreduce_sum(array)       in place: every rank ends with the elementwise sum
    start_allreduce_sum(array) the same, non-blocking: returns a request whose test()
                               advances it and wait() completes it (array untouched until then)
    broadcast(array, root)     in place: every rank ends with root's array
    allgather_object(obj)      [obj of rank 0, obj of rank 1, ...] on every rank
    broadcast_object(obj, root)
    abort(code)                ends every rank of the job (a fault on one rank)
plus rank, size, local_rank and `description` (what fd.info() shows).
Arrays are C-contiguous; the MPI one takes NumPy arrays (and CuPy arrays through a host
copy), the NCCL one CuPy arrays (and NumPy arrays through its MPI communicator).
"""
from __future__ import annotations

import contextlib
import os
import sys

from .. import backend


class SingleProcess:
    """A job of one rank: every collective is the identity."""

    rank, size, local_rank = 0, 1, 0
    description = "single process (no MPI)"

    def allreduce_sum(self, array) -> None:
        pass

    def start_allreduce_sum(self, array):
        return Completed()

    def broadcast(self, array, root: int = 0) -> None:
        pass

    def allgather_object(self, obj) -> list:
        return [obj]

    def broadcast_object(self, obj, root: int = 0):
        return obj

    def abort(self, code: int = 1) -> None:
        os._exit(code)


class MPICommunicator:
    """MPI_COMM_WORLD through mpi4py, on host (NumPy) buffers."""

    def __init__(self, mpi, comm=None):
        self._mpi = mpi
        self._comm = mpi.COMM_WORLD if comm is None else comm
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        # Ranks that share a node: the local rank picks the GPU of a GPU rank.
        node = self._comm.Split_type(mpi.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = node.Get_rank()
        node.Free()
        library = mpi.Get_library_version().splitlines()[0].split(",")[0].strip()
        self.description = f"MPI ({library}; mpi4py {_version_of('mpi4py')}), host buffers"

    def allreduce_sum(self, array) -> None:
        with _on_host(array) as host:
            self._comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)

    def start_allreduce_sum(self, array):
        """MPI_Iallreduce. Open MPI has no progress thread by default: a non-blocking
        collective advances only inside MPI calls, so the caller test()s it now and then."""
        if backend.is_cuda_array(array):   # a host copy, copied back by wait()
            host = backend.to_numpy(array)
            request = self._comm.Iallreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
            return _MPIRequest(request, lambda: array.__setitem__(
                Ellipsis, backend.to_device(host, "cuda")))
        return _MPIRequest(self._comm.Iallreduce(self._mpi.IN_PLACE, array,
                                                 op=self._mpi.SUM))

    def broadcast(self, array, root: int = 0) -> None:
        with _on_host(array) as host:
            self._comm.Bcast(host, root=root)

    def allgather_object(self, obj) -> list:
        return self._comm.allgather(obj)

    def broadcast_object(self, obj, root: int = 0):
        return self._comm.bcast(obj, root=root)

    def abort(self, code: int = 1) -> None:
        self._comm.Abort(code)


class NCCLCommunicator:
    """NCCL on device (CuPy) buffers, one GPU per rank; objects, the NCCL id and aborts go
    through the MPI communicator the job was launched with.

    `nccl` is cupy.cuda.nccl and `cupy` the CuPy module (parameters so that the unit tests
    can stand in for both where no GPU exists). Not yet run on a GPU.
    """

    _DTYPES = {"float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64", "float16": "NCCL_FLOAT16"}

    def __init__(self, host: MPICommunicator, nccl, cupy):
        self._host, self._nccl, self._cupy = host, nccl, cupy
        self.rank, self.size, self.local_rank = host.rank, host.size, host.local_rank
        cupy.cuda.Device(self.local_rank % cupy.cuda.runtime.getDeviceCount()).use()
        unique_id = host.broadcast_object(nccl.get_unique_id() if self.rank == 0 else None)
        self._comm = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        self._side_stream = None   # the overlapped allreduces' stream, made on first use
        self.description = (f"NCCL {nccl.get_version()} (CuPy {cupy.__version__}), device "
                            f"buffers; objects over {host.description.split(',')[0]}")

    def _datatype(self, array):
        name = self._DTYPES.get(str(array.dtype))
        if name is None:
            raise TypeError(f"fusednn.distribute (NCCL): expected a float16/32/64 array, got "
                            f"dtype {array.dtype}")
        if not array.flags.c_contiguous:
            raise ValueError("fusednn.distribute (NCCL): expected a C-contiguous array")
        return getattr(self._nccl, name)

    def allreduce_sum(self, array) -> None:
        if not isinstance(array, self._cupy.ndarray):   # a CPU model on a GPU rank
            return self._host.allreduce_sum(array)
        datatype = self._datatype(array)
        stream = self._cupy.cuda.get_current_stream()
        self._comm.allReduce(array.data.ptr, array.data.ptr, array.size, datatype,
                             self._nccl.NCCL_SUM, stream.ptr)
        stream.synchronize()

    def start_allreduce_sum(self, array):
        """The allreduce on a stream of its own, after the work queued so far on the
        current stream (which made the gradients); wait() makes the current stream wait
        for it without blocking the host."""
        if not isinstance(array, self._cupy.ndarray):
            return self._host.start_allreduce_sum(array)
        datatype = self._datatype(array)
        cuda = self._cupy.cuda
        if self._side_stream is None:
            self._side_stream = cuda.Stream(non_blocking=True)
        made = cuda.Event()
        made.record(cuda.get_current_stream())
        self._side_stream.wait_event(made)
        self._comm.allReduce(array.data.ptr, array.data.ptr, array.size, datatype,
                             self._nccl.NCCL_SUM, self._side_stream.ptr)
        reduced = cuda.Event()
        reduced.record(self._side_stream)
        return _StreamRequest(reduced, array, cuda)

    def broadcast(self, array, root: int = 0) -> None:
        if not isinstance(array, self._cupy.ndarray):
            return self._host.broadcast(array, root)
        datatype = self._datatype(array)
        stream = self._cupy.cuda.get_current_stream()
        self._comm.bcast(array.data.ptr, array.size, datatype, root, stream.ptr)
        stream.synchronize()

    def allgather_object(self, obj) -> list:
        return self._host.allgather_object(obj)

    def broadcast_object(self, obj, root: int = 0):
        return self._host.broadcast_object(obj, root)

    def abort(self, code: int = 1) -> None:
        self._comm.abort()
        self._host.abort(code)


class Completed:
    """The request of a collective that has already finished."""

    def test(self) -> bool:
        return True

    def wait(self) -> None:
        pass


class _MPIRequest:
    def __init__(self, request, after_wait=None):
        self._request, self._after_wait = request, after_wait

    def test(self) -> bool:
        return self._request.Test()

    def wait(self) -> None:
        self._request.Wait()
        if self._after_wait is not None:
            self._after_wait()


class _StreamRequest:
    """An allreduce queued on the side stream; holds its buffer until it is waited for."""

    def __init__(self, reduced, array, cuda):
        self._reduced, self._array, self._cuda = reduced, array, cuda

    def test(self) -> bool:
        return self._reduced.done

    def wait(self) -> None:
        self._cuda.get_current_stream().wait_event(self._reduced)
        self._array = None


@contextlib.contextmanager
def _on_host(array):
    """The array itself when on the host; a host copy, copied back, when on a GPU (MPI
    builds that read device memory are not assumed)."""
    if not backend.is_cuda_array(array):
        yield array
        return
    host = backend.to_numpy(array)
    yield host
    array[...] = backend.to_device(host, "cuda")


def _version_of(module_name: str) -> str:
    module = sys.modules.get(module_name)
    return getattr(module, "__version__", "?")
