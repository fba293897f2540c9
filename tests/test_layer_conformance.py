"""Every registered layer class against the Keras lifecycle and the layer protocol.

Each class in fusednn.layers.registered_classes() needs at least one case in CASES
(test_every_registered_class_has_a_case fails otherwise), so a new layer cannot
skip these checks. A case gives the layer, an input shape, the weights Keras 3
creates for it (names and shapes, in order) and what the layer does with an
incoming time-step mask in Keras.
"""
from __future__ import annotations

from dataclasses import dataclass

import warnings

import numpy as np
import pytest
from gradcheck import numeric_gradient

import fusednn as fd
from fusednn import layers


@dataclass(frozen=True)
class Case:
    id: str
    make: object                  # make(**layer_keywords) -> a new, unbuilt layer
    input_shape: tuple            # full, batch first
    weights: tuple = ()           # Keras 3's (name, shape) of each weight, in order
    incompatible: tuple | None = None  # a shape a built layer's second build must refuse
    ids: int | None = None        # the input is integer ids in [0, ids) (Embedding)
    # What the layer does with an incoming time-step mask in Keras: "pass" it on,
    # "consume" it (uses it, the next layer gets none), "make" its own, or "drop" it
    # (a layer that does not support masking; Keras warns).
    mask: str = "drop"
    stochastic: bool = False      # a training forward draws random numbers
    # Why the layer has no config to save (Lambda holds code); its config and save tests
    # then check that saving is refused with that reason.
    unsaveable: str | None = None


def _dtype(layer_keywords: dict) -> dict:
    """The dtype keyword of a wrapper's case, for the wrapped layer too."""
    return {"dtype": layer_keywords["dtype"]} if "dtype" in layer_keywords else {}


CASES = [
    Case("Dense", lambda **k: layers.Dense(3, **k), (2, 5, 4),
         (("kernel", (4, 3)), ("bias", (3,))), incompatible=(2, 5, 6), mask="pass"),
    Case("Activation", lambda **k: layers.Activation("tanh", **k), (2, 5, 4), mask="pass"),
    Case("Dropout", lambda **k: layers.Dropout(0.5, seed=3, **k), (2, 5, 4), mask="pass",
         stochastic=True),
    Case("Flatten", lambda **k: layers.Flatten(**k), (2, 5, 4)),
    Case("InputLayer", lambda **k: layers.InputLayer(shape=(5, 4), **k), (2, 5, 4),
         incompatible=(2, 5, 6)),
    Case("Reshape", lambda **k: layers.Reshape((20,), **k), (2, 5, 4), incompatible=(2, 5, 6)),
    Case("AveragePooling1D", lambda **k: layers.AveragePooling1D(2, **k), (2, 6, 3)),
    Case("MaxPooling1D", lambda **k: layers.MaxPooling1D(2, **k), (2, 6, 3)),
    Case("AveragePooling2D", lambda **k: layers.AveragePooling2D((2, 2), **k), (2, 4, 4, 3)),
    Case("MaxPooling2D", lambda **k: layers.MaxPooling2D((2, 2), **k), (2, 4, 4, 3)),
    Case("GlobalAveragePooling1D", lambda **k: layers.GlobalAveragePooling1D(**k), (2, 5, 3),
         mask="consume"),
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
          ("moving_variance", (3,))), incompatible=(4, 5, 6), mask="pass"),
    Case("ELU", lambda **k: layers.ELU(**k), (2, 5, 4), mask="pass"),
    Case("LeakyReLU", lambda **k: layers.LeakyReLU(**k), (2, 5, 4), mask="pass"),
    Case("ReLU", lambda **k: layers.ReLU(**k), (2, 5, 4), mask="pass"),
    Case("Softmax", lambda **k: layers.Softmax(**k), (2, 5, 4), mask="pass"),
    Case("PReLU", lambda **k: layers.PReLU(**k), (2, 5, 4), (("alpha", (5, 4)),),
         incompatible=(2, 5, 6), mask="pass"),
    Case("SimpleRNN", lambda **k: layers.SimpleRNN(3, **k), (2, 5, 4),
         (("kernel", (4, 3)), ("recurrent_kernel", (3, 3)), ("bias", (3,))),
         incompatible=(2, 5, 6), mask="consume"),
    Case("LSTM", lambda **k: layers.LSTM(3, **k), (2, 5, 4),
         (("kernel", (4, 12)), ("recurrent_kernel", (3, 12)), ("bias", (12,))),
         incompatible=(2, 5, 6), mask="consume"),
    Case("LSTM-sequences-states",
         lambda **k: layers.LSTM(3, return_sequences=True, return_state=True, **k), (2, 5, 4),
         (("kernel", (4, 12)), ("recurrent_kernel", (3, 12)), ("bias", (12,))),
         incompatible=(2, 5, 6), mask="pass"),
    Case("GRU", lambda **k: layers.GRU(3, **k), (2, 5, 4),
         (("kernel", (4, 9)), ("recurrent_kernel", (3, 9)), ("bias", (2, 9))),
         incompatible=(2, 5, 6), mask="consume"),
    Case("Bidirectional", lambda **k: layers.Bidirectional(layers.LSTM(3, **_dtype(k)), **k),
         (2, 5, 4),
         (("kernel", (4, 12)), ("recurrent_kernel", (3, 12)), ("bias", (12,))) * 2,
         incompatible=(2, 5, 6), mask="consume"),
    Case("Bidirectional-sequences-no-merge",
         lambda **k: layers.Bidirectional(layers.GRU(2, return_sequences=True, **_dtype(k)),
                                          merge_mode=None, **k), (2, 5, 4),
         (("kernel", (4, 6)), ("recurrent_kernel", (2, 6)), ("bias", (2, 6))) * 2,
         incompatible=(2, 5, 6), mask="pass"),
    Case("RepeatVector", lambda **k: layers.RepeatVector(3, **k), (2, 4)),
    Case("TimeDistributed", lambda **k: layers.TimeDistributed(layers.Dense(3, **_dtype(k)), **k),
         (2, 5, 4), (("kernel", (4, 3)), ("bias", (3,))), incompatible=(2, 5, 6), mask="pass"),
    Case("Embedding", lambda **k: layers.Embedding(10, 3, mask_zero=True, **k), (2, 5),
         (("embeddings", (10, 3)),), ids=10, mask="make"),
    Case("Masking", lambda **k: layers.Masking(**k), (2, 5, 4), mask="make"),
    Case("Lambda", lambda **k: layers.Lambda(
        lambda x, scale: fd.ops.tanh(x) * scale + fd.ops.square(x), arguments={"scale": 2.0},
        **k), (2, 5, 4), mask="consume", unsaveable="holds the function"),
    Case("Conv1D", lambda **k: layers.Conv1D(3, 2, **k), (2, 6, 4),
         (("kernel", (2, 4, 3)), ("bias", (3,))), incompatible=(2, 6, 5)),
    Case("Conv2D", lambda **k: layers.Conv2D(3, (2, 2), **k), (2, 5, 5, 4),
         (("kernel", (2, 2, 4, 3)), ("bias", (3,))), incompatible=(2, 5, 5, 5)),
    # Keras's transposed kernel is (height, width, filters, input channels).
    Case("Conv2DTranspose", lambda **k: layers.Conv2DTranspose(3, (2, 2), **k), (2, 4, 4, 2),
         (("kernel", (2, 2, 3, 2)), ("bias", (3,))), incompatible=(2, 4, 4, 5)),
    Case("Conv1DTranspose", lambda **k: layers.Conv1DTranspose(3, 2, strides=2, **k),
         (2, 4, 2), (("kernel", (2, 3, 2)), ("bias", (3,))), incompatible=(2, 4, 5)),
    Case("DepthwiseConv2D", lambda **k: layers.DepthwiseConv2D(2, depth_multiplier=2, **k),
         (2, 4, 4, 3), (("depthwise_kernel", (2, 2, 3, 2)), ("bias", (6,))),
         incompatible=(2, 4, 4, 5)),
    Case("DepthwiseConv1D", lambda **k: layers.DepthwiseConv1D(3, **k), (2, 6, 2),
         (("depthwise_kernel", (3, 2, 1)), ("bias", (2,))), incompatible=(2, 6, 4)),
    Case("SeparableConv2D", lambda **k: layers.SeparableConv2D(4, 2, depth_multiplier=2, **k),
         (2, 4, 4, 3), (("depthwise_kernel", (2, 2, 3, 2)), ("pointwise_kernel", (1, 1, 6, 4)),
                        ("bias", (4,))), incompatible=(2, 4, 4, 5)),
    Case("SeparableConv1D", lambda **k: layers.SeparableConv1D(3, 2, **k), (2, 5, 2),
         (("depthwise_kernel", (2, 2, 1)), ("pointwise_kernel", (1, 2, 3)), ("bias", (3,))),
         incompatible=(2, 5, 4)),
]


def _input(case: Case, seed: int = 0, dtype=np.float32, padded: bool = False):
    """Random data of the case's shape. padded: the last step of the first sample is
    all zeros (id 0 for ids), for the layers that make a mask."""
    rng = np.random.default_rng(seed)
    if case.ids is not None:
        ids = rng.integers(1, case.ids, size=case.input_shape)
        ids[0, -1] = 0
        return ids
    x = rng.standard_normal(case.input_shape).astype(dtype)
    if padded:
        x[0, -1] = 0
    return x


def _fresh_weights(layer, seed: int = 1):
    """New values for every weight, all in [0.5, 1.5] (valid moving variances too)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 1.5, v.shape).astype(v.value.dtype) for v in layer.weights]


def _as_list(y):
    return y if isinstance(y, list) else [y]


def test_every_registered_class_has_a_case():
    covered = {type(case.make()).__name__ for case in CASES + LIST_CASES}
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


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_weight_names_count_and_shapes_are_keras(case):
    layer = case.make()
    layer.build(case.input_shape)
    assert [(v.name.split("/")[-1], v.shape) for v in layer.weights] == list(case.weights)
    assert layer.count_params() == sum(int(np.prod(shape)) for _, shape in case.weights)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_config_round_trip(case):
    layer = case.make()
    if case.unsaveable:
        with pytest.raises(ValueError, match=case.unsaveable):
            layers.serialize(layer)
        return
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    rebuilt = layers.deserialize(layers.serialize(layer))
    assert rebuilt.get_config() == config


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_save_load_round_trip_in_a_sequential(case, tmp_path):
    layer = case.make()
    # An InputLayer only declares a model's input: the model needs a layer after it.
    stack = [layer, layers.Flatten()] if isinstance(layer, layers.InputLayer) else [layer]
    model = fd.Sequential(stack)
    model.build((None,) + case.input_shape[1:])
    model.set_weights(_fresh_weights(model))
    x = _input(case)
    expected = model.forward(x)
    path = tmp_path / "model.keras"
    if case.unsaveable:
        with pytest.raises(ValueError, match=case.unsaveable):
            model.save(path)
        return
    model.save(path)
    loaded = fd.models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert loaded.get_config() == model.get_config()
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    # The same weights, configuration and arithmetic: equal bit for bit.
    for got, want in zip(_as_list(loaded.forward(x)), _as_list(expected)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("training", [False, True])
def test_output_shape_is_compute_output_shape(case, training):
    layer = case.make()
    x = _input(case)
    y = layer.forward(x, training=training)
    expected = layer.compute_output_shape(x.shape)
    if isinstance(y, list):
        assert [o.shape for o in y] == [tuple(e) for e in expected]
    else:
        assert y.shape == tuple(expected)
    assert layer.output_shape == layer.compute_output_shape(layer.input_shape)


def _time_step_mask(shape):
    mask = np.ones(shape[:2], dtype=bool)
    mask[0, -2:] = False
    mask[-1, 0] = False
    return mask


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_mask_passes_on_or_is_consumed_as_in_keras(case):
    layer = case.make()
    x = _input(case, padded=True)
    mask = _time_step_mask(x.shape)
    if case.mask == "drop":
        with pytest.warns(UserWarning, match="does not support masking"):
            layer.forward(x, mask=mask)
        assert layer.output_mask is None
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Embedding starts a model: it makes a mask and is given none.
        layer.forward(x, mask=mask if layer.supports_masking else None)
    if case.mask == "pass":
        np.testing.assert_array_equal(layer.output_mask, mask)
    elif case.mask == "consume":
        assert layer.output_mask is None
    else:
        assert case.mask == "make"
        padding = (x == 0) if case.ids is not None else (x == 0).all(axis=-1)
        np.testing.assert_array_equal(layer.output_mask, ~padding)
        assert not layer.output_mask[0, -1] and layer.output_mask[1].all()


def test_sequential_hands_the_mask_on_as_keras_does():
    # Masking -> Dense -> TimeDistributed -> Dropout pass the mask on; the LSTM consumes it.
    model = fd.Sequential([layers.Masking(), layers.Dense(4), layers.TimeDistributed(
        layers.Dense(4)), layers.Dropout(0.1), layers.LSTM(3, return_sequences=True),
        layers.LSTM(2)])
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    x[1, 3:] = 0
    model.forward(x)
    kept = np.array([[True] * 5, [True] * 3 + [False] * 2])
    for layer in model.layers[:-1]:
        np.testing.assert_array_equal(layer.output_mask, kept)
    assert model.layers[-1].output_mask is None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float64_end_to_end_with_finite_difference_gradients(case):
    layer = case.make(dtype="float64")
    x = _input(case, dtype=np.float64)
    y = layer.forward(x, training=True)
    assert all(o.dtype == np.float64 for o in _as_list(y))
    assert all(v.value.dtype == np.float64 for v in layer.weights)
    rng = np.random.default_rng(2)
    # loss = sum of (output * fixed random weights): its gradient w.r.t. the outputs is
    # those weights, handed to backward (one per output).
    output_weights = [rng.standard_normal(o.shape) for o in _as_list(y)]
    layer.zero_grad()
    dx = layer.backward(output_weights if isinstance(y, list) else output_weights[0])
    assert all(d.dtype == np.float64 for d in _as_list(dx) if d is not None)
    gradients = layer.get_gradients()
    assert all(g.dtype == np.float64 for g in gradients)
    if case.stochastic:
        return  # every training forward draws a new dropout mask: no function to difference
    weights = layer.get_weights()

    def loss(inputs=x):
        layer.set_weights(weights)  # a training forward may update moving statistics
        return sum(float(np.sum(o * w)) for o, w in
                   zip(_as_list(layer.forward(inputs, training=True)), output_weights))

    # float64 central differences with step 1e-6: truncation ~1e-12 and rounding
    # ~1e-16 * |loss| / 1e-6 ~ 1e-9 for these O(10) losses, far inside the tolerance;
    # the inputs are random normals, so no kink (relu, max) lies within a step of them.
    if case.ids is None:
        np.testing.assert_allclose(_as_list(dx)[0], numeric_gradient(loss, x),
                                   rtol=1e-5, atol=1e-6)
    else:
        assert dx is None  # integer ids have no gradient
    # loss() loads `weights` into the layer, so perturbing an entry of one of them in place
    # differences the loss w.r.t. that weight (zero for moving statistics in training).
    for variable, weight, gradient in zip(layer.weights, weights, gradients):
        np.testing.assert_allclose(gradient, numeric_gradient(loss, weight),
                                   rtol=1e-5, atol=1e-6, err_msg=f"gradient of {variable.name}")


# ----- one protocol through every layer ---------------------------------------------------

@pytest.mark.parametrize("name", sorted(layers.registered_classes()))
def test_no_layer_class_overrides_forward_or_backward(name):
    cls = layers.registered_classes()[name]
    assert cls.forward is layers.Layer.forward and cls.backward is layers.Layer.backward
    assert cls.__call__ is layers.Layer.__call__


def test_a_standalone_lstm_gets_the_numerics_check():
    layer = layers.LSTM(3, name="l")
    x = np.ones((2, 4, 3), np.float32)
    x[1, 2, 0] = np.nan
    with fd.utils.check_numerics():
        with pytest.raises(FloatingPointError, match="input of LSTM 'l'"):
            layer.forward(x)


def test_an_unknown_call_argument_is_a_clear_error():
    x = np.ones((2, 4, 3), np.float32)
    with pytest.raises(TypeError, match=r"Dense 'd'.*initial_state.*accepts training, mask$"):
        layers.Dense(2, name="d").forward(x, initial_state=[x])
    with pytest.raises(TypeError, match=r"GRU 'g'.*states.*accepts training, mask, "
                                        r"initial_state"):
        layers.GRU(2, name="g").forward(x, states=[x])


def test_none_output_gradients_count_as_zeros():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layer = layers.Bidirectional(layers.GRU(2, return_sequences=True, return_state=True),
                                 merge_mode=None)
    outputs = layer.forward(x, training=True)
    grads = [rng.standard_normal(o.shape).astype(np.float32) for o in outputs]
    grads[0] = grads[3] = None
    layer.zero_grad()
    with_none = layer.backward(grads)
    with_none_weights = layer.get_gradients()
    zeros = [np.zeros(o.shape, np.float32) if g is None else g for o, g in zip(outputs, grads)]
    layer.zero_grad()
    # The same arithmetic either way: zeros are what None stands for.
    np.testing.assert_array_equal(with_none, layer.backward(zeros))
    for got, want in zip(with_none_weights, layer.get_gradients()):
        np.testing.assert_array_equal(got, want)


def test_global_average_pooling_1d_averages_the_unmasked_steps():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2))
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
    layer = layers.GlobalAveragePooling1D(dtype="float64")
    y = layer.forward(x, training=True, mask=mask)
    # NumPy reference; a sample with no unmasked step averages to 0 (nothing to divide).
    expected = np.stack([x[0, :2].mean(axis=0), x[1].mean(axis=0), np.zeros(2)])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-15)
    assert layer.output_mask is None
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)

    def loss():
        return float(np.sum(layer.forward(x, training=True, mask=mask) * dy))

    # Linear in x: central differences are exact up to float64 rounding.
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=1e-6, atol=1e-8)


# ----- layers called on a list of inputs (merging) ----------------------------------------

@dataclass(frozen=True)
class ListCase:
    id: str
    make: object                  # make(**layer_keywords) -> a new, unbuilt layer
    input_shapes: tuple           # one full shape (batch first) per input
    incompatible: tuple           # input shapes a built layer's second build must refuse
    # Keras 3.15: "or" of the inputs' masks (None unless every input has one), "concat",
    # or "none" (Dot: takes masks, makes none).
    mask: str = "or"


LIST_CASES = [
    ListCase("Add", lambda **k: layers.Add(**k), ((2, 5, 4), (2, 5, 4)), ((2, 5, 4), (2, 5, 3))),
    # A lower-rank input gains axes after the batch axis, then broadcasts (Keras's rule).
    ListCase("Add-broadcast", lambda **k: layers.Add(**k), ((2, 5, 4), (2, 4), (2, 1, 4)),
             ((2, 5, 4), (2, 3))),
    ListCase("Subtract", lambda **k: layers.Subtract(**k), ((2, 5, 4), (2, 5, 4)),
             ((2, 5, 4), (2, 5, 4), (2, 5, 4))),
    ListCase("Multiply", lambda **k: layers.Multiply(**k), ((2, 5, 4), (2, 5, 1), (2, 5, 4)),
             ((2, 5, 4), (2, 5, 3))),
    ListCase("Average", lambda **k: layers.Average(**k), ((2, 5, 4), (2, 5, 4)),
             ((2, 5, 4), (2, 6, 4))),
    ListCase("Maximum", lambda **k: layers.Maximum(**k), ((2, 5, 4), (2, 5, 4), (2, 5, 4)),
             ((2, 5, 4), (2, 5, 2))),
    ListCase("Minimum", lambda **k: layers.Minimum(**k), ((2, 5, 4), (2, 4)),
             ((2, 5, 4), (2, 5, 2))),
    ListCase("Concatenate", lambda **k: layers.Concatenate(**k), ((2, 5, 4), (2, 5, 2)),
             ((2, 5, 4), (2, 6, 2)), mask="concat"),
    ListCase("Concatenate-axis1", lambda **k: layers.Concatenate(axis=1, **k),
             ((2, 5, 4), (2, 3, 4)), ((2, 5, 4), (2, 3, 2)), mask="concat"),
    ListCase("Dot", lambda **k: layers.Dot(axes=(2, 1), **k), ((2, 5, 4), (2, 4, 3)),
             ((2, 5, 4), (2, 3, 3)), mask="none"),
    ListCase("Dot-normalize", lambda **k: layers.Dot(axes=-1, normalize=True, **k),
             ((2, 5, 4), (2, 3, 4)), ((2, 5, 4), (2, 3, 5)), mask="none"),
]


def _inputs(case: ListCase, seed: int = 0, dtype=np.float32) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in case.input_shapes]


def _batchless(shapes) -> list:
    return [(None,) + tuple(shape[1:]) for shape in shapes]


@pytest.mark.parametrize("case", LIST_CASES, ids=lambda c: c.id)
def test_list_layer_builds_once_and_refuses_shapes_that_do_not_fit(case):
    layer = case.make()
    layer.build(list(case.input_shapes))
    assert layer.built and layer.weights == []
    assert layer.output_shape == layer.compute_output_shape(list(case.input_shapes))
    layer.build(_batchless(case.input_shapes))  # another batch size fits
    with pytest.raises(ValueError, match="expected|incompatible|broadcast|matching"):
        layer.build(list(case.incompatible))
    with pytest.raises(ValueError, match="list of"):
        case.make().build(case.input_shapes[0])  # one shape, not a list


@pytest.mark.parametrize("case", LIST_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("training", [False, True])
def test_list_layer_output_shape_is_compute_output_shape(case, training):
    layer = case.make()
    y = layer.forward(_inputs(case), training=training)
    assert y.shape == layer.compute_output_shape(list(case.input_shapes))
    assert layer.output_shape == layer.compute_output_shape(_batchless(case.input_shapes))


@pytest.mark.parametrize("case", LIST_CASES, ids=lambda c: c.id)
def test_list_layer_config_round_trip(case):
    layer = case.make()
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    assert layers.deserialize(layers.serialize(layer)).get_config() == config


@pytest.mark.parametrize("case", LIST_CASES, ids=lambda c: c.id)
def test_list_layer_float64_gradients_match_finite_differences(case):
    layer = case.make(dtype="float64")
    xs = _inputs(case, dtype=np.float64)
    y = layer.forward(xs, training=True)
    assert y.dtype == np.float64
    g = np.random.default_rng(2).standard_normal(y.shape)
    grads = layer.backward(g)
    assert [d.shape for d in grads] == [x.shape for x in xs]

    def loss():
        return float(np.sum(layer.forward(xs, training=True) * g))

    # float64 central differences, step 1e-6: error ~1e-9 for these O(10) losses; random
    # normal inputs put no tie of Maximum/Minimum within a step of each other.
    for i, (x, d) in enumerate(zip(xs, grads)):
        np.testing.assert_allclose(d, numeric_gradient(loss, x), rtol=1e-5, atol=1e-6,
                                   err_msg=f"input {i}")


@pytest.mark.parametrize("case", LIST_CASES, ids=lambda c: c.id)
def test_list_layer_masks_as_keras(case):
    xs = _inputs(case)
    masks = [_time_step_mask(x.shape) if i == 0 else None for i, x in enumerate(xs)]
    layer = case.make()
    layer.forward(xs, mask=masks)
    if case.mask in ("none", "or"):  # one input without a mask: no output mask
        assert layer.output_mask is None
    if case.mask == "none":
        return
    layer.forward(xs, mask=[None] * len(xs))
    assert layer.output_mask is None
    masks[-1] = np.random.default_rng(3).random(xs[-1].shape[:2]) > 0.3
    # a lower-rank input has no time axis to mask, then the output has no mask
    masks = [m if x.ndim == xs[0].ndim else None for m, x in zip(masks, xs)]
    masks = [_time_step_mask(x.shape) if m is None and x.ndim == xs[0].ndim else m
             for m, x in zip(masks, xs)]
    layer.forward(xs, mask=masks)
    if case.mask == "or" and any(m is None for m in masks):
        assert layer.output_mask is None
        return
    given = [m for m in masks if m is not None]
    if case.mask == "or":
        assert len(given) == len(xs)
        # a (N, 1) mask of a size-1 time axis broadcasts too
        np.testing.assert_array_equal(layer.output_mask, np.logical_or.reduce(
            np.broadcast_arrays(*given)))
    elif layer.axis == -1:  # joined features: a step is kept where any input keeps it
        np.testing.assert_array_equal(layer.output_mask, np.logical_or.reduce(given))
    else:  # joined steps: each input's steps keep their own mask
        np.testing.assert_array_equal(layer.output_mask, np.concatenate(masks, axis=1))
