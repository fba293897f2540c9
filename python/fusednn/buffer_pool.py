"""fusednn's pool of large NumPy buffers: the memory the CPU kernels write their
outputs, caches and gradients into, kept from one call to the next instead of
being handed back to the C allocator in between.

Why: glibc gives large freed blocks back to the operating system (munmap, or a
trim of the heap's top), so a new large array is often fresh memory whose every
page faults on its first write while the kernel zeroes it. Alone, fusednn's
arrays happened to stay resident; with a PyTorch call before each of its calls
in one process, torch's frees made glibc trim the heap, and the lecture CNN's
batch-256 predict took 266-777 page faults and 8-32 ms instead of 0 faults and
5.5 ms (Xeon with AVX-512, 2 cores, 2026-12-06; fusednn bench --suite interleaved).

Safety: an array from `empty` holds its block through a lease (the array's
.base); the block returns to the pool only when the array and every view of it
have died, so nothing a user or a layer still holds is ever handed out again.

Reuse: the smallest idle block that holds the request and is at most twice its
size, so an array wastes at most half of its block while it lives.

Bound: the pool keeps at most `limit()` bytes of idle blocks (1 GiB, or an
eighth of the physical memory when that is less), freeing the least recently
returned ones first; `release()` (called by fusednn.utils.clear_session) frees
every idle block. Requests below MIN_BYTES go to NumPy directly: glibc keeps
small blocks in its free lists, resident, so they do not fault, and a lease
would cost more than it saves.
"""
from __future__ import annotations

import collections
import math
import os
import threading

import numpy as np

MIN_BYTES = 1 << 20
_ALIGNMENT = 64  # a cache line, and the width of one AVX-512 register


class _Lease:
    """Owner of one pooled block while an array lives on it; NumPy reads the array's
    address, shape and dtype from __array_interface__ and keeps the lease as .base."""

    def __init__(self, block, shape, dtype, give_back):
        self._block = block
        self._give_back = give_back
        address = block.ctypes.data
        self.__array_interface__ = {"data": (address + (-address) % _ALIGNMENT, False),
                                    "shape": shape, "typestr": dtype.str, "version": 3}

    def __del__(self):
        self._give_back(self._block)


class BufferPool:
    def __init__(self, limit_bytes: int):
        self._lock = threading.Lock()
        self._idle = []      # blocks nobody uses, least recently returned first
        self._idle_bytes = 0
        self._returned = collections.deque()  # blocks whose arrays died, not yet in _idle
        self._limit = limit_bytes
        self._counts = {"reused": 0, "allocated": 0}

    def empty(self, shape, dtype) -> np.ndarray:
        """An uninitialised C-contiguous array, like np.empty(shape, dtype)."""
        dtype = np.dtype(dtype)
        shape = tuple(int(d) for d in shape)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES or self._limit == 0:
            return np.empty(shape, dtype)
        with self._lock:
            self._sort_returned()
            block = self._take(nbytes)
            self._counts["allocated" if block is None else "reused"] += 1
        if block is None:
            block = np.empty(nbytes + _ALIGNMENT, np.uint8)
        return np.asarray(_Lease(block, shape, dtype, self._give_back))

    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit_bytes) -> None:
        """At most `limit_bytes` of idle blocks are kept (0: no pooling); frees the excess now."""
        if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, (int, np.integer)) \
                or limit_bytes < 0:
            raise ValueError(f"buffer pool limit: expected a number of bytes >= 0, got "
                             f"{limit_bytes!r}")
        with self._lock:
            self._limit = int(limit_bytes)
            self._sort_returned()

    def release(self) -> int:
        """Frees every idle block; returns how many bytes that was. Arrays in use keep theirs
        (their blocks are pooled again when they die)."""
        with self._lock:
            self._sort_returned()
            freed = self._idle_bytes
            self._idle.clear()
            self._idle_bytes = 0
        return freed

    def stats(self) -> dict:
        """idle_bytes, idle_blocks, limit_bytes, and how many requests were served by a reused
        block and by a new one."""
        with self._lock:
            self._sort_returned()
            return {"idle_bytes": self._idle_bytes, "idle_blocks": len(self._idle),
                    "limit_bytes": self._limit, **self._counts}

    def _give_back(self, block) -> None:
        # Called from a lease's __del__, which may run anywhere, even inside this pool's own
        # critical section on this thread: deque.append needs no lock, and the sorting waits
        # for whoever holds the lock next when it is taken.
        self._returned.append(block)
        if self._lock.acquire(blocking=False):
            try:
                self._sort_returned()
            finally:
                self._lock.release()

    def _sort_returned(self) -> None:
        while self._returned:
            block = self._returned.popleft()
            self._idle.append(block)
            self._idle_bytes += block.nbytes
        while self._idle_bytes > self._limit:
            self._idle_bytes -= self._idle.pop(0).nbytes

    def _take(self, nbytes: int):
        # The smallest fitting block; of equal ones the most recently returned (the likeliest
        # to be still in cache).
        best = None
        for i in reversed(range(len(self._idle))):
            capacity = self._idle[i].nbytes - _ALIGNMENT
            if nbytes <= capacity <= 2 * nbytes and (
                    best is None or capacity < self._idle[best].nbytes - _ALIGNMENT):
                best = i
        if best is None:
            return None
        block = self._idle.pop(best)
        self._idle_bytes -= block.nbytes
        return block


def _default_limit() -> int:
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = 8 << 30
    return min(1 << 30, physical // 8)


POOL = BufferPool(_default_limit())
empty = POOL.empty
limit = POOL.limit
set_limit = POOL.set_limit
release = POOL.release
stats = POOL.stats

__all__ = ["MIN_BYTES", "BufferPool", "empty", "limit", "release", "set_limit", "stats"]
