"""Pooling and global pooling against Keras 3's keras/src/layers/pooling tests (v3.15.1):
average_pooling_test.py, max_pooling_test.py, global_average_pooling_test.py,
global_max_pooling_test.py: their run_layer_test shape tables and their correctness
cases (on np.arange inputs), against a NumPy reference of our own (windows of TF's 'same'
padding, padded positions left out: what Keras's edge-padded reference gives for these
cases, where the padding is at most one position at the end)."""
import numpy as np
import pytest

from fusednn import layers

from gradcheck import check_layer_gradients
from keras_layer_check import run_layer_check


def np_pool(x, pool_size, strides, padding, data_format, reduce):
    """reduce (np.mean or np.max) over each window of the spatial axes of x."""
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    spatial = x.shape[1:-1]
    rank = len(spatial)
    pool = (pool_size,) * rank if isinstance(pool_size, int) else tuple(pool_size)
    stride = (strides,) * rank if isinstance(strides, int) else tuple(strides)
    if padding == "same":
        out = [-(-n // s) for n, s in zip(spatial, stride)]
        before = [max((o - 1) * s + p - n, 0) // 2
                  for o, s, p, n in zip(out, stride, pool, spatial)]
    else:
        out = [(n - p) // s + 1 for n, p, s in zip(spatial, pool, stride)]
        before = [0] * rank
    y = np.empty((x.shape[0], *out, x.shape[-1]), x.dtype)
    for index in np.ndindex(*out):
        window = tuple(slice(max(i * s - b, 0), min(i * s - b + p, n))
                       for i, s, b, p, n in zip(index, stride, before, pool, spatial))
        block = x[(slice(None),) + window]
        y[(slice(None),) + index] = reduce(block.reshape(x.shape[0], -1, x.shape[-1]), axis=1)
    return np.moveaxis(y, -1, 1) if data_format == "channels_first" else y


CLASSES = {"average": (layers.AveragePooling1D, layers.AveragePooling2D, np.mean),
           "max": (layers.MaxPooling1D, layers.MaxPooling2D, np.max)}

# Keras's test_average_pooling1d / test_max_pooling1d shape tables (the same for both).
SHAPES_1D = [(2, 1, "valid", "channels_last", (3, 5, 4), (3, 4, 4)),
             (2, 1, "same", "channels_first", (3, 5, 4), (3, 5, 4)),
             ((2,), (2,), "valid", "channels_last", (3, 5, 4), (3, 2, 4))]
SHAPES_2D = {
    "average": [(2, 1, "valid", "channels_last", (3, 5, 5, 4), (3, 4, 4, 4)),
                (2, 1, "same", "channels_last", (3, 5, 5, 4), (3, 5, 5, 4)),
                (2, 1, "valid", "channels_first", (3, 5, 5, 4), (3, 5, 4, 3)),
                (2, 1, "same", "channels_first", (3, 5, 5, 4), (3, 5, 5, 4)),
                ((2, 3), (2, 2), "valid", "channels_last", (3, 5, 5, 4), (3, 2, 2, 4)),
                ((2, 3), (2, 2), "same", "channels_last", (3, 5, 5, 4), (3, 3, 3, 4)),
                ((2, 3), (3, 3), "same", "channels_first", (3, 5, 5, 4), (3, 5, 2, 2))],
    "max": [(2, 1, "valid", "channels_last", (3, 5, 5, 4), (3, 4, 4, 4)),
            (2, 1, "same", "channels_first", (3, 5, 5, 4), (3, 5, 5, 4)),
            ((2, 3), (2, 2), "valid", "channels_last", (3, 5, 5, 4), (3, 2, 2, 4))],
}


BASIC = ([(k, 0) + case for k in CLASSES for case in SHAPES_1D]
         + [(k, 1) + case for k, cases in SHAPES_2D.items() for case in cases])


@pytest.mark.parametrize("kind, rank_index, pool, strides, padding, data_format, in_shape, "
                         "out_shape", BASIC)
def test_pooling_basic(kind, rank_index, pool, strides, padding, data_format, in_shape,
                       out_shape):
    # Keras: test_average_pooling1d/2d / test_max_pooling1d/2d (the run_layer_test cases;
    # built after instantiation, no weights, no masking).
    cls = CLASSES[kind][rank_index]
    assert cls(pool_size=pool).built
    run_layer_check(cls, dict(pool_size=pool, strides=strides, padding=padding,
                              data_format=data_format), in_shape, out_shape,
                    supports_masking=False)


# Keras's correctness cases (average: the valid ones, and the 'same' ones it skips only
# on the torch backend; max: all).
CORRECT_1D = [(2, 1, "valid", "channels_last"), (2, 1, "valid", "channels_first"),
              ((2,), (2,), "valid", "channels_last"), ((2,), (2,), "valid", "channels_first"),
              (2, 1, "same", "channels_last"), (2, 1, "same", "channels_first"),
              ((2,), (2,), "same", "channels_last"), ((2,), (2,), "same", "channels_first")]
CORRECT_2D = {
    "average": [(2, 1, "valid", "channels_last"), ((2, 3), (2, 2), "valid", "channels_last"),
                (2, (2, 1), "same", "channels_last"), (2, (2, 1), "same", "channels_first"),
                ((2, 2), (2, 2), "same", "channels_last"),
                ((2, 2), (2, 2), "same", "channels_first")],
    "max": [(2, 1, "valid", "channels_last"), (2, 1, "valid", "channels_first"),
            ((2, 2), (2, 2), "same", "channels_last"), ((2, 2), (2, 2), "same", "channels_first"),
            ((2, 3), (3, 3), "same", "channels_last")],
}


@pytest.mark.parametrize("kind", CLASSES)
@pytest.mark.parametrize("pool, strides, padding, data_format", CORRECT_1D)
def test_pooling1d_correctness(kind, pool, strides, padding, data_format):
    cls, _, reduce = CLASSES[kind]
    x = np.arange(24, dtype=np.float32).reshape((2, 3, 4))
    y = cls(pool_size=pool, strides=strides, padding=padding, data_format=data_format).forward(x)
    # float32 means of <= 4 integers below 24: exact to rounding (rtol 1e-6).
    np.testing.assert_allclose(y, np_pool(x, pool, strides, padding, data_format, reduce),
                               rtol=1e-6)


@pytest.mark.parametrize("kind, pool, strides, padding, data_format",
                         [(k,) + case for k, cases in CORRECT_2D.items() for case in cases])
def test_pooling2d_correctness(kind, pool, strides, padding, data_format):
    _, cls, reduce = CLASSES[kind]
    x = (np.arange(16, dtype=np.float32).reshape((1, 4, 4, 1)) if kind == "average"
         else np.arange(100, dtype=np.float32).reshape((1, 5, 5, 4)))
    y = cls(pool_size=pool, strides=strides, padding=padding, data_format=data_format).forward(x)
    np.testing.assert_allclose(y, np_pool(x, pool, strides, padding, data_format, reduce),
                               rtol=1e-6)


# ----- global pooling ---------------------------------------------------------------------

GLOBAL = {"average": (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D, np.mean),
          "max": (layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, np.max)}


@pytest.mark.parametrize("kind", GLOBAL)
@pytest.mark.parametrize("data_format, keepdims, in_shape, out_shape", [
    ("channels_last", False, (3, 5, 4), (3, 4)), ("channels_last", True, (3, 5, 4), (3, 1, 4)),
    ("channels_first", False, (3, 5, 4), (3, 5))])
def test_global_pooling1d_basic(kind, data_format, keepdims, in_shape, out_shape):
    # Keras: GlobalAveragePoolingBasicTest / GlobalMaxPoolingBasicTest (1-D: the average
    # supports masking, the max does not).
    cls = GLOBAL[kind][0]
    assert cls().built
    run_layer_check(cls, dict(data_format=data_format, keepdims=keepdims), in_shape, out_shape,
                    supports_masking=kind == "average")


@pytest.mark.parametrize("kind", GLOBAL)
@pytest.mark.parametrize("data_format, keepdims, in_shape, out_shape", [
    ("channels_last", False, (3, 5, 6, 4), (3, 4)),
    ("channels_last", True, (3, 5, 6, 4), (3, 1, 1, 4)),
    ("channels_first", False, (3, 5, 6, 4), (3, 5))])
def test_global_pooling2d_basic(kind, data_format, keepdims, in_shape, out_shape):
    cls = GLOBAL[kind][1]
    assert cls().built
    run_layer_check(cls, dict(data_format=data_format, keepdims=keepdims), in_shape, out_shape,
                    supports_masking=False)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_average_pooling1d_correctness(data_format, keepdims):
    # Keras: GlobalAveragePoolingCorrectnessTest.test_global_average_pooling1d, with its
    # masks (the steps axis is 1, or 2 for channels_first).
    x = np.arange(24, dtype=np.float32).reshape((2, 3, 4))
    steps = 1 if data_format == "channels_last" else 2
    layer = layers.GlobalAveragePooling1D(data_format=data_format, keepdims=keepdims)
    expected = x.mean(axis=steps, keepdims=keepdims)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-6)
    mask = (np.array([[1, 1, 0], [0, 1, 0]]) if data_format == "channels_last"
            else np.array([[1, 1, 0, 0], [0, 1, 0, 1]]))
    weights = np.expand_dims(mask, 2 if data_format == "channels_last" else 1)
    expected = (x * weights).sum(axis=steps, keepdims=keepdims) / weights.sum(
        axis=steps, keepdims=keepdims)
    np.testing.assert_allclose(layer.forward(x, mask=mask), expected, rtol=1e-6)


@pytest.mark.parametrize("kind", GLOBAL)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling2d_correctness(kind, data_format, keepdims):
    # Keras: test_global_average_pooling2d / test_global_max_pooling2d (np.arange(96)).
    _, cls, reduce = GLOBAL[kind]
    x = np.arange(96, dtype=np.float32).reshape((2, 3, 4, 4))
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    y = cls(data_format=data_format, keepdims=keepdims).forward(x)
    np.testing.assert_allclose(y, reduce(x, axis=axes, keepdims=keepdims), rtol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_max_pooling1d_correctness(data_format, keepdims):
    x = np.arange(24, dtype=np.float32).reshape((2, 3, 4))
    steps = 1 if data_format == "channels_last" else 2
    y = layers.GlobalMaxPooling1D(data_format=data_format, keepdims=keepdims).forward(x)
    np.testing.assert_array_equal(y, x.max(axis=steps, keepdims=keepdims))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_global_average_pooling1d_masked_backward(data_format):
    # The masked mean's backward in both layouts, against float64 finite differences.
    rng = np.random.default_rng(9)
    mask = rng.random((3, 5)) > 0.4
    x = rng.normal(size=(3, 5, 2) if data_format == "channels_last" else (3, 2, 5))
    check_layer_gradients(layers.GlobalAveragePooling1D(data_format=data_format,
                                                        dtype="float64"),
                          x, training=True, mask=mask)
