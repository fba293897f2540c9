"""run_layer_check: the checks of Keras 3's `testing.TestCase.run_layer_test`, for fusednn.

Keras's layer tests mostly call run_layer_test(layer_class, init_kwargs, input_shape,
expected_output_shape, expected_num_trainable_weights, expected_num_non_trainable_weights,
supports_masking); the conformance tests pass the same arguments here, so each ported case
checks what Keras's checks: the layer's config rebuilds an equal layer, a forward of random
input has the expected shape (and compute_output_shape says so), the built layer has
Keras's number of trainable and non-trainable weights, supports_masking is as in Keras, and
a training forward and backward run."""
from __future__ import annotations

import numpy as np


def _random_input(shape, rng, ids):
    if ids is not None:
        return rng.integers(0, ids, size=shape)
    return rng.normal(size=shape).astype(np.float32)


def run_layer_check(layer_class, init_kwargs, input_shape=None, expected_output_shape=None,
                    expected_num_trainable_weights=0, expected_num_non_trainable_weights=0,
                    supports_masking=None, ids=None, input_data=None, expected_output=None):
    """input_shape: one shape, or a list of shapes for a layer that takes a list (then
    expected_output_shape is that of its one output). ids: the input is integer ids below it.
    input_data and expected_output (Keras's other form): the input, and the output it must
    give (compared to float32 rounding, rtol 1e-6)."""
    rng = np.random.default_rng(0)
    if input_data is not None:
        input_shape = np.shape(input_data)
        expected_output_shape = np.shape(expected_output)
    layer = layer_class(**init_kwargs)
    config = layer.get_config()
    assert layer_class.from_config(config).get_config() == config
    if supports_masking is not None:
        assert layer.supports_masking == supports_masking
    if isinstance(input_shape, list):
        x = [_random_input(shape, rng, ids) for shape in input_shape]
        shapes = [tuple(shape) for shape in input_shape]
    else:
        x = _random_input(input_shape, rng, ids)
        shapes = tuple(input_shape)
    if input_data is not None:
        x = np.asarray(input_data)
    y = layer.forward(x, training=True)
    assert tuple(y.shape) == tuple(expected_output_shape)
    if expected_output is not None:
        np.testing.assert_allclose(y, expected_output, rtol=1e-6)
    assert tuple(layer.compute_output_shape(shapes)) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    dx = layer.backward(np.ones_like(y))
    if isinstance(x, list):
        assert [tuple(d.shape) for d in dx] == shapes
    elif ids is None:
        assert dx.shape == x.shape
    # The rebuilt layer, with the trained layer's weights, gives the same inference output.
    twin = layer_class.from_config(layer.get_config())
    twin.build_for(shapes if isinstance(x, list) else (None,) + shapes[1:])
    twin.set_weights(layer.get_weights())
    np.testing.assert_array_equal(twin.forward(x), layer.forward(x))
    return layer
