"""fusednn.buffer_pool: large NumPy buffers reused from call to call, never while anything
still holds them, within a bound, and released by clear_session; ops on reused memory
compute what they compute on fresh memory."""
from __future__ import annotations

import gc
import pickle
import threading

import numpy as np
import pytest

import fusednn as fd
from fusednn import buffer_pool, ops
from fusednn.buffer_pool import MIN_BYTES, BufferPool

LARGE = (MIN_BYTES // 4 + 1000,)  # float32 elements just above the pooling threshold


@pytest.fixture
def pool():
    return BufferPool(64 * MIN_BYTES)


def address(array) -> int:
    return array.__array_interface__["data"][0]


def test_a_dead_array_s_block_is_reused(pool):
    a = pool.empty(LARGE, np.float32)
    first = address(a)
    del a
    b = pool.empty(LARGE, np.float32)
    assert address(b) == first
    assert pool.stats()["reused"] == 1 and pool.stats()["allocated"] == 1


def test_a_held_array_is_never_handed_out_again(pool):
    held = pool.empty(LARGE, np.float32)
    held[:] = 7.0
    others = [pool.empty(LARGE, np.float32) for _ in range(3)]
    for other in others:
        assert not np.shares_memory(held, other)
        other[:] = -1.0
    assert np.all(held == 7.0)


def test_a_view_keeps_its_block_after_the_array_dies(pool):
    a = pool.empty(LARGE, np.float32)
    view = a[10:]
    view[:] = 3.0
    del a
    b = pool.empty(LARGE, np.float32)
    b[:] = -1.0
    assert not np.shares_memory(view, b)
    assert np.all(view == 3.0)
    del view, b
    assert pool.stats()["idle_blocks"] == 2


def test_reuse_takes_the_smallest_block_that_fits_and_no_block_over_twice_the_request(pool):
    n = MIN_BYTES // 4
    blocks = {size: pool.empty((size,), np.float32) for size in (n, 3 * n, 5 * n)}
    addresses = {size: address(a) for size, a in blocks.items()}
    del blocks
    # 2.6 n fits the 3 n and the 5 n blocks; the smaller one is taken.
    assert address(pool.empty((int(2.6 * n),), np.float32)) == addresses[3 * n]
    # 1.2 n fits the 3 n block only at 2.5x its size: too wasteful, so a new block.
    fresh = pool.empty((int(1.2 * n),), np.float32)
    assert address(fresh) not in addresses.values()


def test_small_requests_bypass_the_pool(pool):
    small = pool.empty((MIN_BYTES // 8 - 1,), np.float64)
    assert small.base is None
    assert pool.stats()["allocated"] == pool.stats()["reused"] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_arrays_are_aligned_writeable_c_contiguous_and_picklable(pool, dtype):
    a = pool.empty((3, MIN_BYTES // 8 + 5), dtype)
    assert a.dtype == dtype and a.shape == (3, MIN_BYTES // 8 + 5)
    assert a.flags.c_contiguous and a.flags.writeable and address(a) % 64 == 0
    a[...] = np.arange(a.size, dtype=dtype).reshape(a.shape)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a)), a)


def test_idle_bytes_stay_within_the_limit_oldest_freed_first():
    pool = BufferPool(3 * (MIN_BYTES + 64))
    arrays = [pool.empty((MIN_BYTES,), np.uint8) for _ in range(5)]
    newest = address(arrays[-1])
    for i in range(5):  # returned oldest first
        arrays[i] = None
    stats = pool.stats()
    assert stats["idle_blocks"] == 3 and stats["idle_bytes"] <= stats["limit_bytes"]
    assert address(pool.empty((MIN_BYTES,), np.uint8)) == newest


def test_set_limit_frees_the_excess_and_zero_turns_pooling_off(pool):
    arrays = [pool.empty(LARGE, np.float32) for _ in range(4)]
    del arrays
    assert pool.stats()["idle_blocks"] == 4
    pool.set_limit(0)
    assert pool.stats()["idle_bytes"] == 0
    unpooled = pool.empty(LARGE, np.float32)
    assert unpooled.base is None


@pytest.mark.parametrize("bad", [-1, 1.5, "1GB", None, True])
def test_set_limit_rejects_anything_but_a_byte_count(pool, bad):
    with pytest.raises(ValueError, match="expected a number of bytes >= 0"):
        pool.set_limit(bad)


def test_release_frees_idle_blocks_and_leaves_live_arrays_alone(pool):
    live = pool.empty(LARGE, np.float32)
    live[:] = 5.0
    dead = pool.empty(LARGE, np.float32)
    nbytes = dead.base._block.nbytes
    del dead
    assert pool.release() == nbytes
    assert pool.stats()["idle_blocks"] == 0 and np.all(live == 5.0)
    del live
    assert pool.stats()["idle_blocks"] == 1  # a block in use when released is pooled again


def test_clear_session_releases_the_process_pool():
    held = ops.conv2d(np.ones((64, 32, 32, 8), np.float32), np.ones((3, 3, 8, 16), np.float32))
    assert isinstance(held.base, buffer_pool._Lease)
    del held
    gc.collect()
    assert buffer_pool.stats()["idle_blocks"] >= 1
    fd.utils.clear_session()
    assert buffer_pool.stats()["idle_bytes"] == 0


def test_threads_never_share_a_live_block(pool):
    failures = []

    def work(value):
        for _ in range(50):
            a = pool.empty(LARGE, np.float32)
            a[:] = value
            if not np.all(a == value):
                failures.append(value)

    threads = [threading.Thread(target=work, args=(float(v),)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert pool.stats()["idle_bytes"] <= pool.limit()


def test_ops_on_reused_memory_match_numpy(rng):
    """Every output element is written by the kernels, so NaN left in a reused block by an
    earlier array never shows. References: conv2d as a sum of shifted products in float64
    (float32 sums of 3*3*8 = 72 terms of size ~1: errors ~1e-6 of the terms' scale, so
    1e-4 is ample), max pooling as a reshaped max (exact)."""
    x = rng.standard_normal((64, 64, 64, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    for _ in range(2):  # the second round runs on the first round's poisoned blocks
        y = ops.conv2d(x, w)
        pooled, _ = ops.max_pool2d(x, (2, 2))
        reference = sum(np.einsum("nhwc,cf->nhwf", x[:, i:i + 62, j:j + 62].astype(np.float64),
                                  w[i, j].astype(np.float64))
                        for i in range(3) for j in range(3))
        np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(pooled, x.reshape(64, 32, 2, 32, 2, 8).max(axis=(2, 4)))
        assert y.base is not None and pooled.base is not None  # both came from the pool
        y[...] = np.nan
        pooled[...] = np.nan
        del y, pooled
