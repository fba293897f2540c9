"""fd.ops.dropout_mask and fd.ops.dropout: the CPU kernel's counter-based masks against
a NumPy SplitMix64 written here, the product that never forms the mask against x times
that mask, their statistics, repeatability across thread counts, the checks on bad
input, and the Dropout layers that draw them."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import ops

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix_mask(n, key, rate, dtype):
    """The mask fusednn/dropout.h specifies, in NumPy's wrapping uint64 arithmetic."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (np.arange(1, n + 1, dtype=np.uint64) * GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    threshold = np.uint64(int(np.ceil(rate * 2.0**32)))
    keep = (z >> np.uint64(32)) >= threshold
    return np.where(keep, dtype(1.0 / (1.0 - rate)), dtype(0)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.4, 0.9])
@pytest.mark.parametrize("n", [1, 17, 1000, 70_001])  # 70_001: above the kernel's fork size
def test_mask_equals_the_splitmix_reference(dtype, rate, n):
    key = 0x0123456789ABCDEF
    got = ops.dropout_mask(np, (n,), rate, dtype, key)
    assert got.dtype == dtype and got.shape == (n,)
    np.testing.assert_array_equal(got, splitmix_mask(n, key, rate, dtype))


def test_shape_and_values():
    mask = ops.dropout_mask(np, (3, 5, 7), 0.25, np.float32, 99)
    assert mask.shape == (3, 5, 7)
    assert set(np.unique(mask)) <= {np.float32(0), np.float32(1 / 0.75)}
    assert ops.dropout_mask(np, (0, 4), 0.5, np.float32, 1).shape == (0, 4)


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.75])
def test_kept_fraction_and_pairs_follow_the_rate(rate):
    n = 1_000_000
    keep = ops.dropout_mask(np, (n,), rate, np.float32, 2024) > 0
    p = 1 - rate
    # 6 binomial standard deviations: a correct generator fails this about once in 5e8 runs.
    assert abs(keep.mean() - p) < 6 * np.sqrt(p * (1 - p) / n)
    # Neighbours independent: both kept with probability p^2 (same 6-sigma bound).
    both = (keep[1:] & keep[:-1]).mean()
    assert abs(both - p * p) < 6 * np.sqrt(p * p * (1 - p * p) / (n - 1))
    # Masks of consecutive keys (a mask per training step) independent of each other.
    other = ops.dropout_mask(np, (n,), rate, np.float32, 2025) > 0
    assert abs((keep & other).mean() - p * p) < 6 * np.sqrt(p * p * (1 - p * p) / n)


def test_same_key_same_mask_on_any_thread_count():
    threads = fd.get_num_threads()
    try:
        fd.set_num_threads(1)
        one = ops.dropout_mask(np, (300_000,), 0.3, np.float64, 7)
        fd.set_num_threads(2)
        two = ops.dropout_mask(np, (300_000,), 0.3, np.float64, 7)
    finally:
        fd.set_num_threads(threads)
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, ops.dropout_mask(np, (300_000,), 0.3, np.float64, 8))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), "0.5", True, None])
def test_bad_rate_is_named(rate):
    with pytest.raises(ValueError, match=r"dropout_mask: expected rate to be a number in \[0, 1\)"):
        ops.dropout_mask(np, (4,), rate, np.float32, 1)


@pytest.mark.parametrize("key", [-1, 2**63, 1.5, "1", True])
def test_bad_key_is_named(key):
    with pytest.raises(ValueError, match=r"dropout_mask: expected key to be an int in \[0, 2\*\*63\)"):
        ops.dropout_mask(np, (4,), 0.5, np.float32, key)


def test_bad_dtype_is_named():
    with pytest.raises(TypeError, match="dropout_mask: expected dtype float32 or float64, got int32"):
        ops.dropout_mask(np, (4,), 0.5, np.int32, 1)


def test_kernel_checks_rate_itself():
    with pytest.raises(ValueError, match=r"dropout_mask: expected rate in \[0, 1\)"):
        fd._C.dropout_mask_cpu(np.empty(4, np.float32), 1, 1.0)


def test_dropout_layer_is_repeatable_under_a_seed_and_keeps_the_mean():
    x = np.ones((64, 50, 32), np.float32)
    layer = fd.layers.Dropout(0.4)
    fd.utils.set_random_seed(3)
    first = np.asarray(layer(x, training=True))
    fd.utils.set_random_seed(3)
    again = np.asarray(layer(x, training=True))
    np.testing.assert_array_equal(first, again)
    # Inverted dropout keeps the expectation: the mean of 102,400 values of 0 or 1/0.6
    # has standard deviation sqrt(0.6 * 0.4 / 102400) / 0.6 = 0.0026.
    assert abs(first.mean() - 1.0) < 6 * 0.0026
    assert not np.array_equal(first, np.asarray(layer(x, training=True)))


def test_layer_seed_gives_its_own_repeatable_masks():
    x = np.ones((8, 100), np.float64)
    a = fd.layers.Dropout(0.5, seed=11)
    b = fd.layers.Dropout(0.5, seed=11)
    np.testing.assert_array_equal(np.asarray(a(x, training=True)), np.asarray(b(x, training=True)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 0.4, 0.9])
@pytest.mark.parametrize("n", [1, 1000, 70_001])
def test_dropout_equals_x_times_the_mask(dtype, rate, n):
    key = 0x0123456789ABCDEF
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    x[::97] = np.nan  # x * 0 keeps NaN (and inf) where an entry is dropped, as x * mask does
    x[1::97] = np.inf
    got = ops.dropout(x, rate, key)
    assert got.dtype == dtype and got.shape == (n,)
    with np.errstate(invalid="ignore"):  # inf * 0
        expected = x * splitmix_mask(n, key, rate, dtype)
    np.testing.assert_array_equal(got, expected)


def test_dropout_keeps_the_shape_and_reads_views():
    x = np.random.default_rng(0).standard_normal((6, 40, 5)).astype(np.float32)
    view = x.transpose(1, 0, 2)[::2]
    got = ops.dropout(view, 0.3, 42)
    assert got.shape == view.shape
    np.testing.assert_array_equal(got, view * ops.dropout_mask(np, view.shape, 0.3, np.float32, 42))


def test_dropout_is_the_same_on_any_thread_count():
    x = np.random.default_rng(1).standard_normal(300_000)
    threads = fd.get_num_threads()
    try:
        fd.set_num_threads(1)
        one = ops.dropout(x, 0.3, 7)
        fd.set_num_threads(2)
        two = ops.dropout(x, 0.3, 7)
    finally:
        fd.set_num_threads(threads)
    np.testing.assert_array_equal(one, two)


def test_dropout_bad_input_is_named():
    with pytest.raises(TypeError, match="dropout: expected x of dtype float32 or float64, got int64"):
        ops.dropout(np.arange(4), 0.5, 1)
    with pytest.raises(TypeError, match="dropout: expected x to be a NumPy or CuPy array, got list"):
        ops.dropout([1.0, 2.0], 0.5, 1)
    with pytest.raises(ValueError, match=r"dropout: expected rate to be a number in \[0, 1\)"):
        ops.dropout(np.ones(4), 1.0, 1)
    with pytest.raises(ValueError, match=r"dropout: expected key to be an int in \[0, 2\*\*63\)"):
        ops.dropout(np.ones(4), 0.5, -1)


def test_dropout_kernel_checks_rate_and_size_itself():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"dropout: expected rate in \[0, 1\)"):
        fd._C.dropout_cpu(x, np.empty(4, np.float32), 1, 1.0)
    with pytest.raises(ValueError, match="dropout: expected out of x's size 4, got 3"):
        fd._C.dropout_cpu(x, np.empty(3, np.float32), 1, 0.5)


@pytest.mark.parametrize("noise_shape", [None, (None, 1, None)])
def test_dropout_layer_backward_applies_its_forward_mask(noise_shape):
    """The layer keeps only the key (or, with a noise_shape, the broadcast mask) and the
    backward multiplies by the same mask the forward did."""
    rng = np.random.default_rng(5)
    layer = fd.layers.Dropout(0.4, noise_shape=noise_shape)
    ones = np.ones((4, 30, 16), np.float32)
    mask = np.asarray(layer.forward(ones, training=True))
    dy = rng.standard_normal(ones.shape).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(layer.backward(dy)), dy * mask)
    assert set(np.unique(mask)) == {np.float32(0), np.float32(1 / 0.6)}
    if noise_shape is not None:  # one draw per (sample, feature), shared along axis 1
        np.testing.assert_array_equal(mask, np.broadcast_to(mask[:, :1], mask.shape))
