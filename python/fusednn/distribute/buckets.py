"""Arrays packed into a few flat buffers so that a collective runs once per buffer.

One collective per weight would pay the latency of the network once per weight (the
lecture CNN has 8 weights, an LSTM stack more); one buffer for everything would need a
copy the size of the model and leave nothing to overlap. Horovod's fusion buffer and
PyTorch DDP's buckets are a few MB (DDP: 25 MB, Horovod: 64 MB on GPUs); 4 MiB keeps
the extra memory small on the CPU and still sends every lecture model in one or two.
"""
from __future__ import annotations

from .. import backend

BUCKET_BYTES = 4 << 20


def buckets(arrays, bucket_bytes: int | None = None) -> list[list[int]]:
    """Indices of `arrays` grouped into buckets: same dtype and device in a bucket, in
    order, each at most bucket_bytes (an array larger than that is a bucket alone)."""
    bucket_bytes = BUCKET_BYTES if bucket_bytes is None else bucket_bytes
    groups: dict[tuple, list[list[int]]] = {}
    sizes: dict[tuple, int] = {}
    for i, array in enumerate(arrays):
        key = (str(array.dtype), backend.device_of(array))
        current = groups.setdefault(key, [[]])
        if current[-1] and sizes[key] + array.nbytes > bucket_bytes:
            current.append([])
            sizes[key] = 0
        current[-1].append(i)
        sizes[key] = sizes.get(key, 0) + array.nbytes
    return [bucket for key_buckets in groups.values() for bucket in key_buckets]


def run_in_buckets(arrays, collective, bucket_bytes: int | None = None) -> None:
    """collective(flat) on each bucket's arrays packed into one flat buffer, the result
    copied back into the arrays (in place)."""
    for bucket in buckets(arrays, bucket_bytes):
        members = [arrays[i] for i in bucket]
        flat = pack(members)
        collective(flat)
        unpack(flat, members)


def pack(arrays):
    """The arrays (same dtype and device) one after the other in one flat buffer."""
    xp = backend.get_array_module(arrays[0])
    return xp.concatenate([a.reshape(-1) for a in arrays])


def unpack(flat, arrays) -> None:
    """Copies consecutive pieces of `flat` back into `arrays` (in place)."""
    offset = 0
    for array in arrays:
        array[...] = flat[offset:offset + array.size].reshape(array.shape)
        offset += array.size
