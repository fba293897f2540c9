"""The merging layers against Keras 3's keras/src/layers/merging/merging_test.py (v3.15.1):
its run_layer_test cases, its correctness cases (NumPy references, Keras's atol 1e-4), its
masked literal values and its errors."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import layers

from gradcheck import numeric_gradient
from keras_layer_check import run_layer_check


def np_dot(a, b, axes):
    """Keras's reference: per-sample tensordot over `axes` (batch axis excluded)."""
    axes = (axes, axes) if isinstance(axes, int) else axes
    axes = [axis if axis < 0 else axis - 1 for axis in axes]
    result = np.stack([np.tensordot(a[i], b[i], axes) for i in range(a.shape[0])])
    return result[:, None] if result.ndim == 1 else result


# Keras's TEST_PARAMETERS: (id, class, NumPy op, init kwargs, input shape, output shape,
# whether the layer takes masks).
CASES = [
    ("add", layers.Add, np.add, {}, (2, 4, 5), (2, 4, 5), True),
    ("subtract", layers.Subtract, np.subtract, {}, (2, 4, 5), (2, 4, 5), True),
    ("minimum", layers.Minimum, np.minimum, {}, (2, 4, 5), (2, 4, 5), True),
    ("maximum", layers.Maximum, np.maximum, {}, (2, 4, 5), (2, 4, 5), True),
    ("multiply", layers.Multiply, np.multiply, {}, (2, 4, 5), (2, 4, 5), True),
    ("average", layers.Average, lambda a, b: (a + b) * 0.5, {}, (2, 4, 5), (2, 4, 5), True),
    ("concat", layers.Concatenate, lambda a, b, axis: np.concatenate((a, b), axis=axis),
     {"axis": -1}, (2, 4, 5), (2, 4, 10), True),
    ("dot_2d", layers.Dot, np_dot, {"axes": -1}, (2, 4), (2, 1), False),
    ("dot_3d", layers.Dot, np_dot, {"axes": -1}, (2, 4, 5), (2, 4, 4), False),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("name, cls, op, kwargs, shape, out_shape, masks", CASES, ids=IDS)
def test_basic(name, cls, op, kwargs, shape, out_shape, masks):
    # Keras: MergingLayersTest.test_basic (no weights, supports_masking=True for every one).
    run_layer_check(cls, kwargs, [shape, shape], out_shape, supports_masking=True)


@pytest.mark.parametrize("name, cls, op, kwargs, shape, out_shape, masks", CASES, ids=IDS)
def test_correctness(name, cls, op, kwargs, shape, out_shape, masks):
    # Keras: MergingLayersTest.test_correctness_static / _dynamic, in a functional model
    # with fixed and with unknown batch size; atol 1e-4 as Keras (float32 sums of <= 5 terms).
    rng = np.random.default_rng(0)
    x1, x2 = rng.random(shape), rng.random(shape)
    for batch_size in (shape[0], None):
        input_1 = layers.Input(shape=shape[1:], batch_size=batch_size)
        input_2 = layers.Input(shape=shape[1:], batch_size=batch_size)
        layer = cls(**kwargs)
        model = fd.Model([input_1, input_2], layer([input_1, input_2]))
        result = model.predict([x1, x2], verbose=0)
        assert result.shape == out_shape
        np.testing.assert_allclose(result, op(x1, x2, **kwargs), atol=1e-4)
    assert layer.compute_mask([x1, x2], [None, None]) is None
    if masks:
        ones = np.ones(shape[:-1], bool)
        assert np.all(layer.compute_mask([x1, x2], [ones, ones]))


@pytest.mark.parametrize("name, cls, op, kwargs, shape, out_shape, masks",
                         [c for c in CASES if c[-1]], ids=[c[0] for c in CASES if c[-1]])
def test_errors(name, cls, op, kwargs, shape, out_shape, masks):
    # Keras: MergingLayersTest.test_errors: compute_mask wants a list of masks, a list of
    # inputs, and as many masks as inputs.
    layer = cls(**kwargs)
    x1 = np.random.default_rng(0).random(shape)
    with pytest.raises(ValueError, match="list"):
        layer.compute_mask([x1, x1], x1)
    with pytest.raises(ValueError, match="list"):
        layer.compute_mask(x1, [None, None])
    with pytest.raises(ValueError, match="same length|2 masks"):
        layer.compute_mask([x1, x1], [None])


def test_subtract_layer_inputs_length_errors():
    # Keras: MergingLayersTest.test_subtract_layer_inputs_length_errors.
    inputs = [layers.Input(shape=(4, 5)) for _ in range(3)]
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        layers.Subtract()(inputs)
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        layers.Subtract()(inputs[:1])


def test_dot_higher_dim():
    # Keras: MergingLayersTest.test_dot_higher_dim.
    a = layers.Input(batch_shape=(1, 3, 2))
    b = layers.Input(batch_shape=(1, 1, 2, 3))
    assert tuple(layers.Dot(axes=(-2, -1))([a, b]).shape) == (1, 2, 1, 2)
    rng = np.random.default_rng(0)
    c = layers.Dot(axes=(-2, -1)).forward([rng.random((1, 3, 2)), rng.random((1, 1, 2, 3))])
    assert c.shape == (1, 2, 1, 2)


X1 = np.array([[[0, 0], [1, 2], [0, 0], [3, 4]]], np.float32)
X2 = np.array([[[0, 0], [0, 0], [1, 2], [3, 4]]], np.float32)


def _masked(x):
    masking = layers.Masking()
    return masking.forward(x), masking.output_mask


# Keras's test_<op>_with_mask: (layer, output with only x1 masked, output with both masked).
MASKED = [
    (layers.Add, [[[0, 0], [1, 2], [1, 2], [6, 8]]], [[[0, 0], [1, 2], [1, 2], [6, 8]]]),
    (layers.Subtract, [[[0, 0], [1, 2], [-1, -2], [0, 0]]],
     [[[0, 0], [1, 2], [-1, -2], [0, 0]]]),
    (layers.Average, [[[0, 0], [0.5, 1], [0.5, 1], [3, 4]]],
     [[[0, 0], [0.5, 1], [0.5, 1], [3, 4]]]),
    (layers.Multiply, [[[0, 0], [0, 0], [1, 2], [9, 16]]], [[[0, 0], [1, 2], [1, 2], [9, 16]]]),
    (layers.Minimum, [[[0, 0], [0, 0], [1, 2], [3, 4]]], [[[0, 0], [1, 2], [1, 2], [3, 4]]]),
]


@pytest.mark.parametrize("cls, one_masked, both_masked", MASKED,
                         ids=[case[0].__name__ for case in MASKED])
def test_with_mask(cls, one_masked, both_masked):
    # Keras: MergingLayersTest.test_add_with_mask ... test_minimum_with_mask. A masked step
    # of one input does not take part (the op of the other inputs there); the output mask is
    # None unless every input has one, then their union.
    x1, mask1 = _masked(X1)
    layer = cls()
    np.testing.assert_allclose(layer.forward([x1, X2], mask=[mask1, None]), one_masked)
    assert layer.output_mask is None
    x2, mask2 = _masked(X2)
    np.testing.assert_allclose(layer.forward([x1, x2], mask=[mask1, mask2]), both_masked)
    np.testing.assert_array_equal(layer.output_mask, [[0, 1, 1, 1]])


def test_maximum_with_mask():
    # Keras: MergingLayersTest.test_maximum_with_mask (negative values: a masked step must
    # not win with its zeros).
    x1, mask1 = _masked(-X1)
    layer = layers.Maximum()
    np.testing.assert_allclose(layer.forward([x1, -X2], mask=[mask1, None]),
                               [[[0, 0], [0, 0], [-1, -2], [-3, -4]]])
    assert layer.output_mask is None
    x2, mask2 = _masked(-X2)
    np.testing.assert_allclose(layer.forward([x1, x2], mask=[mask1, mask2]),
                               [[[0, 0], [-1, -2], [-1, -2], [-3, -4]]])
    np.testing.assert_array_equal(layer.output_mask, [[0, 1, 1, 1]])


def test_concatenate_with_mask():
    # Keras: MergingLayersTest.test_concatenate_with_mask (an unmasked input counts as all
    # True; along the time axis the masks concatenate, along features they combine).
    x1, mask1 = _masked(X1)
    layer = layers.Concatenate(axis=1)
    np.testing.assert_array_equal(
        layer.forward([x1, X2], mask=[mask1, None]),
        [[[0, 0], [1, 2], [0, 0], [3, 4], [0, 0], [0, 0], [1, 2], [3, 4]]])
    np.testing.assert_array_equal(layer.output_mask, [[0, 1, 0, 1, 1, 1, 1, 1]])
    layer = layers.Concatenate(axis=2)
    np.testing.assert_array_equal(layer.forward([x1, X2], mask=[mask1, None]),
                                  [[[0, 0, 0, 0], [1, 2, 0, 0], [0, 0, 1, 2], [3, 4, 3, 4]]])
    np.testing.assert_array_equal(layer.output_mask, [[1, 1, 1, 1]])


def test_concatenate_with_mask_symbolic():
    # Keras: MergingLayersTest.test_concatenate_with_mask_symbolic, in a model: the mask
    # Masking makes reaches the concatenation, whose output mask the next layer gets.
    input1, input2 = layers.Input((4, 2)), layers.Input((4, 2))
    output = layers.Concatenate(axis=1)([layers.Masking()(input1), input2])
    pooled = layers.GlobalAveragePooling1D()(output)  # averages only the unmasked steps
    model = fd.Model([input1, input2], pooled)
    mask = np.array([0, 1, 0, 1, 1, 1, 1, 1], bool)
    steps = np.concatenate([X1, X2], axis=1)[0]
    np.testing.assert_allclose(model.predict([X1, X2], verbose=0),
                               [steps[mask].mean(axis=0)], rtol=1e-6)


def test_concatenate_errors():
    # Keras: MergingLayersTest.test_concatenate_errors.
    out = layers.Concatenate(axis=-1).forward([np.ones((1, 1, 1, 1, 5)), np.ones((1, 1, 1, 1, 4))])
    assert out.shape == (1, 1, 1, 1, 9)
    for axis, shape1, shape2 in ((-1, (1, 2, 1, 1, 5), (1, 1, 1, 1, 4)),
                                 (1, (1, 2, 1, 2, 1), (1, 1, 1, 3, 1))):
        with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
            layers.Concatenate(axis=axis).forward([np.ones(shape1), np.ones(shape2)])


@pytest.mark.parametrize("cls", [layers.Multiply, layers.Maximum, layers.Minimum, layers.Add])
@pytest.mark.parametrize("masked", [(True, False), (True, True)])
def test_masked_merge_backward_matches_finite_differences(cls, masked):
    # The masked forwards above are new paths (a masked position is a constant 1, or left
    # out of the extremum): their backward against float64 central differences (error
    # ~1e-9 at step 1e-6 for these O(1) sums; random inputs put no ties within a step).
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(3, 4, 2)) for _ in range(2)]
    masks = [rng.random((3, 4)) > 0.4 if m else None for m in masked]
    for m in masks:
        if m is not None:
            m[0, 1] = False  # a step every masked input masks
    layer = cls(dtype="float64")
    y = layer.forward(xs, training=True, mask=masks)
    g = rng.normal(size=y.shape)
    grads = layer.backward(g)
    for x, d in zip(xs, grads):
        np.testing.assert_allclose(d, numeric_gradient(
            lambda: float(np.sum(layer.forward(xs, mask=masks) * g)), x), rtol=1e-6, atol=1e-8)
