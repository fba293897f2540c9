"""Every registered layer class against the Keras lifecycle and the layer protocol.

Each class in fusednn.layers.registered_classes() needs at least one case in CASES
(test_every_registered_class_has_a_case fails otherwise), so a new layer cannot
skip these checks. A case gives the layer, an input shape, the weights Keras 3
creates for it (names and shapes, in order) and what the layer does with an
incoming time-step mask in Keras.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fusednn import layers


@dataclass(frozen=True)
class Case:
    id: str
    make: object                  # make(**layer_keywords) -> a new, unbuilt layer
    input_shape: tuple            # full, batch first
    weights: tuple = ()           # Keras 3's (name, shape) of each weight, in order
    incompatible: tuple | None = None  # a shape a built layer's second build must refuse
    ids: int | None = None        # the input is integer ids in [0, ids) (Embedding)


CASES = [
    Case("Dense", lambda **k: layers.Dense(3, **k), (2, 5, 4),
         (("kernel", (4, 3)), ("bias", (3,))), incompatible=(2, 5, 6)),
    Case("Activation", lambda **k: layers.Activation("tanh", **k), (2, 5, 4)),
    Case("Dropout", lambda **k: layers.Dropout(0.5, seed=3, **k), (2, 5, 4)),
    Case("Flatten", lambda **k: layers.Flatten(**k), (2, 5, 4)),
    Case("InputLayer", lambda **k: layers.InputLayer(shape=(5, 4), **k), (2, 5, 4),
         incompatible=(2, 5, 6)),
    Case("Reshape", lambda **k: layers.Reshape((20,), **k), (2, 5, 4), incompatible=(2, 5, 6)),
    Case("AveragePooling1D", lambda **k: layers.AveragePooling1D(2, **k), (2, 6, 3)),
    Case("MaxPooling1D", lambda **k: layers.MaxPooling1D(2, **k), (2, 6, 3)),
    Case("AveragePooling2D", lambda **k: layers.AveragePooling2D((2, 2), **k), (2, 4, 4, 3)),
    Case("MaxPooling2D", lambda **k: layers.MaxPooling2D((2, 2), **k), (2, 4, 4, 3)),
    Case("GlobalAveragePooling1D", lambda **k: layers.GlobalAveragePooling1D(**k), (2, 5, 3)),
    Case("GlobalMaxPooling1D", lambda **k: layers.GlobalMaxPooling1D(**k), (2, 5, 3)),
    Case("GlobalAveragePooling2D", lambda **k: layers.GlobalAveragePooling2D(**k),
         (2, 3, 4, 2)),
    Case("GlobalMaxPooling2D", lambda **k: layers.GlobalMaxPooling2D(**k), (2, 3, 4, 2)),
    Case("Cropping2D", lambda **k: layers.Cropping2D(((1, 0), (0, 1)), **k), (2, 4, 5, 3)),
    Case("ZeroPadding2D", lambda **k: layers.ZeroPadding2D((1, 2), **k), (2, 3, 3, 2)),
    Case("UpSampling2D", lambda **k: layers.UpSampling2D((2, 3), **k), (2, 3, 2, 2)),
    Case("UpSampling1D", lambda **k: layers.UpSampling1D(2, **k), (2, 5, 3)),
    Case("BatchNormalization", lambda **k: layers.BatchNormalization(**k), (4, 5, 3),
         (("gamma", (3,)), ("beta", (3,)), ("moving_mean", (3,)),
          ("moving_variance", (3,))), incompatible=(4, 5, 6)),
    Case("ELU", lambda **k: layers.ELU(**k), (2, 5, 4)),
    Case("LeakyReLU", lambda **k: layers.LeakyReLU(**k), (2, 5, 4)),
    Case("ReLU", lambda **k: layers.ReLU(**k), (2, 5, 4)),
    Case("Softmax", lambda **k: layers.Softmax(**k), (2, 5, 4)),
    Case("PReLU", lambda **k: layers.PReLU(**k), (2, 5, 4), (("alpha", (5, 4)),),
         incompatible=(2, 5, 6)),
    Case("SimpleRNN", lambda **k: layers.SimpleRNN(3, **k), (2, 5, 4),
         (("kernel", (4, 3)), ("recurrent_kernel", (3, 3)), ("bias", (3,))),
         incompatible=(2, 5, 6)),
    Case("LSTM", lambda **k: layers.LSTM(3, **k), (2, 5, 4),
         (("kernel", (4, 12)), ("recurrent_kernel", (3, 12)), ("bias", (12,))),
         incompatible=(2, 5, 6)),
    Case("LSTM-sequences-states",
         lambda **k: layers.LSTM(3, return_sequences=True, return_state=True, **k), (2, 5, 4),
         (("kernel", (4, 12)), ("recurrent_kernel", (3, 12)), ("bias", (12,))),
         incompatible=(2, 5, 6)),
    Case("GRU", lambda **k: layers.GRU(3, **k), (2, 5, 4),
         (("kernel", (4, 9)), ("recurrent_kernel", (3, 9)), ("bias", (2, 9))),
         incompatible=(2, 5, 6)),
    Case("Bidirectional", lambda **k: layers.Bidirectional(layers.LSTM(3), **k), (2, 5, 4),
         (("kernel", (4, 12)), ("recurrent_kernel", (3, 12)), ("bias", (12,))) * 2,
         incompatible=(2, 5, 6)),
    Case("Bidirectional-sequences-no-merge",
         lambda **k: layers.Bidirectional(layers.GRU(2, return_sequences=True),
                                          merge_mode=None, **k), (2, 5, 4),
         (("kernel", (4, 6)), ("recurrent_kernel", (2, 6)), ("bias", (2, 6))) * 2,
         incompatible=(2, 5, 6)),
    Case("RepeatVector", lambda **k: layers.RepeatVector(3, **k), (2, 4)),
    Case("TimeDistributed", lambda **k: layers.TimeDistributed(layers.Dense(3), **k),
         (2, 5, 4), (("kernel", (4, 3)), ("bias", (3,))), incompatible=(2, 5, 6)),
    Case("Embedding", lambda **k: layers.Embedding(10, 3, mask_zero=True, **k), (2, 5),
         (("embeddings", (10, 3)),), ids=10),
    Case("Masking", lambda **k: layers.Masking(**k), (2, 5, 4)),
    Case("Conv1D", lambda **k: layers.Conv1D(3, 2, **k), (2, 6, 4),
         (("kernel", (2, 4, 3)), ("bias", (3,))), incompatible=(2, 6, 5)),
    Case("Conv2D", lambda **k: layers.Conv2D(3, (2, 2), **k), (2, 5, 5, 4),
         (("kernel", (2, 2, 4, 3)), ("bias", (3,))), incompatible=(2, 5, 5, 5)),
    # Keras's transposed kernel is (height, width, filters, input channels).
    Case("Conv2DTranspose", lambda **k: layers.Conv2DTranspose(3, (2, 2), **k), (2, 4, 4, 2),
         (("kernel", (2, 2, 3, 2)), ("bias", (3,))), incompatible=(2, 4, 4, 5)),
]


def _input(case: Case, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    if case.ids is not None:
        ids = rng.integers(0, case.ids, size=case.input_shape)
        ids[:, -1] = 0  # padding, for the mask
        return ids
    return rng.standard_normal(case.input_shape).astype(dtype)


def _fresh_weights(layer, seed: int = 1):
    """New values for every weight, all in [0.5, 1.5] (valid moving variances too)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 1.5, v.shape).astype(v.value.dtype) for v in layer.weights]


def _as_list(y):
    return y if isinstance(y, list) else [y]


def test_every_registered_class_has_a_case():
    covered = {type(case.make()).__name__ for case in CASES}
    missing = sorted(set(layers.registered_classes()) - covered)
    assert not missing, f"registered layer classes without a conformance case: {missing}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_build_then_set_weights_then_forward_keeps_the_weights(case):
    x = _input(case)
    layer = case.make()
    layer.build(case.input_shape)  # Keras 3: the layer is built now
    assert layer.built
    assert layer.input_shape == case.input_shape
    assert layer.output_shape == layer.compute_output_shape(case.input_shape)
    count = len(layer.weights)
    weights = _fresh_weights(layer)
    layer.set_weights(weights)
    y = layer.forward(x)
    assert len(layer.weights) == count
    assert len(layer.get_gradients()) == count
    for got, want in zip(layer.get_weights(), weights):
        np.testing.assert_array_equal(got, want)
    # The same layer built by its first call and given the same weights: the same
    # arithmetic on the same numbers, so the outputs are equal bit for bit.
    reference = case.make()
    reference.forward(x)
    reference.set_weights(weights)
    assert reference.input_shape == (None,) + case.input_shape[1:]
    assert reference.output_shape == reference.compute_output_shape(reference.input_shape)
    for got, want in zip(_as_list(y), _as_list(reference.forward(x))):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_building_twice_is_harmless(case):
    layer = case.make()
    layer.build(case.input_shape)
    variables = layer.weights
    values = _fresh_weights(layer)
    layer.set_weights(values)
    layer.build(case.input_shape)
    layer.build((None,) + case.input_shape[1:])  # another batch size fits the same weights
    assert [id(v) for v in layer.weights] == [id(v) for v in variables]
    for got, want in zip(layer.get_weights(), values):
        np.testing.assert_array_equal(got, want)
    assert layer.input_shape == case.input_shape
    if case.incompatible is not None:
        # The message names the layer (or the wrapped layer) and what it expected.
        with pytest.raises(ValueError, match="expected input|cannot reshape"):
            layer.build(case.incompatible)
        assert [id(v) for v in layer.weights] == [id(v) for v in variables]


def test_a_failed_build_leaves_no_weights_behind():
    # PReLU creates alpha from the input's sizes: an unknown axis fails the build after the
    # checks, and nothing may be left to double the weights of the next, valid build.
    layer = layers.PReLU()
    with pytest.raises(ValueError, match="known size"):
        layer.build((None, None, 4))
    assert not layer.built and layer.weights == []
    layer.build((None, 3, 4))
    assert [v.shape for v in layer.weights] == [(3, 4)]


def test_dense_build_set_weights_forward_as_a_new_user_writes_it():
    # The script: Keras 3 keeps the weights given after a direct build().
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((7, 5)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    x = rng.standard_normal((16, 7)).astype(np.float32)
    d = layers.Dense(5)
    d.build((16, 7))
    d.set_weights([kernel, bias])
    y = d.forward(x)
    assert len(d.weights) == 2
    # float32 GEMM against a float64 NumPy product: 7 terms of size ~1, so a few ulps.
    np.testing.assert_allclose(y, x.astype(np.float64) @ kernel + bias, rtol=1e-5, atol=1e-5)
