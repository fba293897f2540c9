"""The one way the ops call a CUDA kernel binding: on the device of a given CuPy array,
queued on CuPy's current stream there, with the null stream current while nanobind
imports the arrays.

nanobind imports every CuPy array through __dlpack__() without a stream, and CuPy then
orders the legacy default stream after its current one with an event and a stream wait
per array (a conv backward passes seven). The kernel is queued on the current stream
itself, which already orders it after the work that produced the arrays, so the arrays
are handed over while the null stream is current (no events) and the real stream is
passed explicitly. optimizer_updates.py does the same for its tensor lists.
"""
from __future__ import annotations

from .. import backend


def launch(kernel, on, *args):
    """kernel(*args, stream) on `on`'s device, stream = CuPy's current stream there."""
    cp = backend.cupy_module()
    with on.device:
        stream = backend.current_stream_ptr()
        with cp.cuda.Stream.null:
            return kernel(*args, stream)
