"""Lambda: Keras 3's arguments, shapes, masks, training through the tape, and refusals.
(Its float64 finite-difference gradient check is in tests/test_layer_conformance.py.)"""
from __future__ import annotations

import numpy as np
import pytest

import fusednn as fd
from fusednn import layers, ops


def test_forward_and_backward_of_a_reduction():
    layer = layers.Lambda(lambda x: ops.sum(ops.square(x), axis=-1, keepdims=True))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, [[5.0], [50.0]])
    dx = layer.backward(np.array([[1.0], [-2.0]], np.float32))
    np.testing.assert_array_equal(dx, [[0.0, 2.0, 4.0], [-12.0, -16.0, -20.0]])
    assert dx.dtype == np.float32


def test_output_shape_inferred_given_or_computed():
    x_shape = (None, 6, 4)
    assert layers.Lambda(lambda x: x[:, 0]).build_for(x_shape) == (None, 4)
    assert layers.Lambda(lambda x: x, output_shape=(6, 4)).build_for(x_shape) == (None, 6, 4)
    computed = layers.Lambda(lambda x: ops.reshape(x, (-1, 24)),
                             output_shape=lambda s: (s[0], s[1] * s[2]))
    assert computed.build_for(x_shape) == (None, 24)


def test_trains_inside_a_sequential():
    fd.utils.set_random_seed(0)
    model = fd.Sequential([layers.Dense(4, input_shape=(3,)),
                           layers.Lambda(lambda x: ops.concatenate([ops.relu(x), ops.tanh(x)], 1)),
                           layers.Dense(1)])
    assert model.compute_output_shape((None, 3)) == (None, 1)
    model.compile(optimizer=fd.optimizers.Adam(0.05), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x[:, :1] ** 2 + x[:, 1:2]).astype(np.float32)
    first = model.train_on_batch(x, y)
    for _ in range(150):
        last = model.train_on_batch(x, y)
    assert last < 0.3 * first


def test_mask_and_training_reach_the_function():
    seen = {}

    def function(x, mask=None, training=None):
        seen.update(mask=mask, training=training)
        return x * 2.0

    layer = layers.Lambda(function, mask=lambda x, mask: mask)
    assert layer.supports_masking
    x = np.ones((2, 3, 1), np.float32)
    mask = np.array([[True, True, False], [True, False, False]])
    layer.forward(x, training=True, mask=mask)
    assert seen["training"] is True
    np.testing.assert_array_equal(seen["mask"], mask)
    np.testing.assert_array_equal(layer.output_mask, mask)


def test_refusals_are_clear():
    with pytest.raises(TypeError, match="function must be callable, got int"):
        layers.Lambda(3)
    with pytest.raises(TypeError, match="arguments must be a dict"):
        layers.Lambda(lambda x: x, arguments=[1])
    with pytest.raises(TypeError, match="output_shape must be a tuple"):
        layers.Lambda(lambda x: x, output_shape="big")
    layer = layers.Lambda(lambda x: np.sin(x))
    layer.forward(np.ones((2, 2), np.float32))  # not recorded: plain NumPy is fine
    with pytest.raises(TypeError, match="numpy.sin cannot be differentiated"):
        layer.forward(np.ones((2, 2), np.float32), training=True)


def test_a_model_with_a_lambda_cannot_be_saved(tmp_path):
    model = fd.Sequential([layers.Dense(2, input_shape=(3,)), layers.Lambda(ops.tanh)])
    model.build((None, 3))
    with pytest.raises(ValueError, match="safe save format cannot hold"):
        model.save(tmp_path / "m.keras")
