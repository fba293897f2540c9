"""Core and activation layers: forward against NumPy (and PyTorch for Dense),
backward (dx and every weight gradient) against central finite differences in
float64, the layer protocol (frozen layers, accumulation, zero_grad, errors,
set_weights checks, config round trips, parameter counts equal to Keras's),
Dropout statistics, the softmax fusion contract and the layer registry."""
import json
import math

import numpy as np
import pytest

from fusednn import _rng, activations, layers, models
from gradcheck import check_layer_gradients

F64 = {"dtype": "float64"}


def _away_from(x, points, margin=0.05):
    """Moves entries of x within `margin` of any kink point to point +/- margin."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin)
    return x


def _rand(shape, seed=1, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


def _dense_reference(x, kernel, bias, act):
    return act(np.einsum("...i,io->...o", x, kernel) + bias)


# ----- Dense -----------------------------------------------------------------------
@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid", "gelu", "softmax", "elu"])
def test_dense_forward_and_gradients(activation):
    layer = layers.Dense(5, activation=activation, kernel_initializer="glorot_normal",
                         bias_initializer="random_normal", **F64)
    x = _rand((3, 4))
    y = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (4, 5) and bias.shape == (5,)
    act = activations.get(activation)
    expected = act(x @ kernel + bias)
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-14)
    check_layer_gradients(layer, x)


def test_dense_on_rank_3_input_acts_on_last_axis():
    layer = layers.Dense(4, activation="tanh", bias_initializer="random_uniform", **F64)
    x = _rand((2, 3, 5))
    y = layer(x)
    assert y.shape == (2, 3, 4)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(y, _dense_reference(x, kernel, bias, np.tanh), rtol=1e-13)
    assert layer.compute_output_shape((None, 7, 5)) == (None, 7, 4)
    check_layer_gradients(layer, x)


def test_dense_without_bias_and_on_views():
    layer = layers.Dense(3, use_bias=False, **F64)
    wide = _rand((4, 10))
    x = wide[:, ::2]  # non-contiguous view with 5 features
    y = layer(x)
    assert len(layer.get_weights()) == 1 and layer.count_params() == 15
    np.testing.assert_allclose(y, np.ascontiguousarray(x) @ layer.get_weights()[0], rtol=1e-13)
    check_layer_gradients(layer, np.ascontiguousarray(x))


def test_dense_matches_torch_linear():
    torch = pytest.importorskip("torch")
    layer = layers.Dense(6, activation="relu", bias_initializer="random_normal", **F64)
    x = _rand((5, 7))
    y = layer.forward(x, training=True)
    kernel, bias = layer.get_weights()
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(kernel.T.copy(), requires_grad=True)  # torch weight is (out, in)
    tb = torch.tensor(bias, requires_grad=True)
    ty = torch.relu(torch.nn.functional.linear(tx, tw, tb))
    dy = _rand(y.shape, seed=9)
    ty.backward(torch.tensor(dy))
    layer.zero_grad()
    dx = layer.backward(dy)
    # Same float64 products summed in a different order.
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-13)
    dkernel, dbias = layer.get_gradients()
    np.testing.assert_allclose(dkernel, tw.grad.numpy().T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dbias, tb.grad.numpy(), rtol=1e-12, atol=1e-13)


def test_dense_empty_and_single_batch():
    layer = layers.Dense(3, **F64)
    for n in (0, 1):
        x = _rand((n, 4))
        y = layer.forward(x, training=True)
        assert y.shape == (n, 3)
        layer.zero_grad()
        assert layer.backward(np.ones((n, 3))).shape == (n, 4)
        if n == 0:
            assert all(np.all(g == 0) for g in layer.get_gradients())


def test_dense_float32_default_and_casting():
    layer = layers.Dense(2)
    y = layer(np.ones((3, 4), dtype=np.float64))
    assert y.dtype == np.float32 and layer.get_weights()[0].dtype == np.float32
    assert layer(np.ones((3, 4), dtype=np.int64)).dtype == np.float32


def test_dense_regularization_loss():
    layer = layers.Dense(3, kernel_regularizer="l2", bias_regularizer={"l1": 0.5, "l2": 0.0},
                         bias_initializer="ones", **F64)
    layer.build_for((None, 4))
    kernel, bias = layer.get_weights()
    assert layer.regularization_loss() == pytest.approx(0.01 * np.sum(kernel ** 2) + 0.5 * 3)


def test_dense_validation_errors():
    for bad in (0, -3, 2.5, True, "8", None):
        with pytest.raises(ValueError, match=r"Dense .*units.*positive integer"):
            layers.Dense(bad)
    with pytest.raises(ValueError, match=r"Dense .*activation.*'relux'"):
        layers.Dense(2, activation="relux")
    with pytest.raises(ValueError, match=r"Dense .*kernel_initializer.*'glorot'"):
        layers.Dense(2, kernel_initializer="glorot")
    with pytest.raises(ValueError, match=r"Dense .*kernel_regularizer.*'l3'"):
        layers.Dense(2, kernel_regularizer="l3")
    with pytest.raises(TypeError, match="unknown keyword argument.*kernel_size"):
        layers.Dense(2, kernel_size=3)
    with pytest.raises(ValueError, match="rank >= 2"):
        layers.Dense(2)(np.ones(4))
    with pytest.raises(ValueError, match="last axis of the input must be known"):
        layers.Dense(2).build_for((None, 3, None))


def test_wrong_feature_size_names_the_layer_and_both_sizes():
    layer = layers.Dense(2, name="head")
    layer(np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"Dense 'head'.*size 4 on axis -1.*\(2, 5\)"):
        layer(np.ones((2, 5)))
    prelu = layers.PReLU(name="pr")
    prelu(np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match=r"PReLU 'pr'.*size 4 on axis 2.*\(1, 3, 6\)"):
        prelu(np.ones((1, 3, 6)))
    with pytest.raises(ValueError, match=r"PReLU 'pr'.*rank 3"):
        prelu(np.ones((1, 12)))


def test_checked_shapes_are_remembered_and_a_wrong_one_still_raises(monkeypatch):
    """A built layer answers build_for from the shapes it has checked (each forward calls
    it), still rejects a shape that does not fit however often the fitting one came, keeps
    a bounded number of them, and a model checks its (changeable) layers every time."""
    from fusednn.layers import base
    layer = layers.Dense(3, name="head")
    layer(np.ones((2, 4), np.float32))
    for _ in range(3):
        assert layer.build_for((None, 4)) == (None, 3)
        assert layer.build_for((7, 4)) == (7, 3)
    assert layer._checked_shapes == {(None, 4): (None, 3), (7, 4): (7, 3)}
    with pytest.raises(ValueError, match=r"Dense 'head'.*size 4 on axis -1.*\(None, 5\)"):
        layer.build_for((None, 5))
    with pytest.raises(TypeError, match="expected an input shape"):
        layer.build_for((None, "four"))
    monkeypatch.setattr(base, "_CHECKED_SHAPES", 2)
    for batch in range(1, 6):
        assert layer.build_for((batch, 4)) == (batch, 3)
        assert len(layer._checked_shapes) <= 2
    model = models.Sequential([layers.Input((4,)), layers.Dense(3)])
    assert model.build_for((None, 4)) == (None, 3)
    model.add(layers.Dense(5))
    assert model.build_for((None, 4)) == (None, 5)
    assert model._checked_shapes == {}


# ----- Activation and the activation layers ------------------------------------------
ACTIVATION_LAYERS = [
    (lambda: layers.Activation("tanh", **F64), np.tanh, []),
    (lambda: layers.Activation("softmax", **F64), activations.softmax, []),
    (lambda: layers.ReLU(**F64), lambda x: np.maximum(x, 0), [0.0]),
    (lambda: layers.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.5, **F64),
     # Keras: max_value if x >= max_value; x if threshold <= x < max_value; slope*(x - threshold) below
     lambda x: np.where(x >= 1.0, 1.0, np.where(x >= 0.5, x, 0.1 * (x - 0.5))), [0.5, 1.0]),
    (lambda: layers.LeakyReLU(**F64), lambda x: np.where(x > 0, x, 0.3 * x), [0.0]),
    (lambda: layers.LeakyReLU(alpha=0.05, **F64), lambda x: np.where(x > 0, x, 0.05 * x), [0.0]),
    (lambda: layers.ELU(alpha=0.7, **F64), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1)), [0.0]),
    (lambda: layers.Softmax(**F64), activations.softmax, []),
    (lambda: layers.Softmax(axis=1, **F64),
     lambda x: np.exp(x) / np.exp(x).sum(axis=1, keepdims=True), []),
]


@pytest.mark.parametrize("make,reference,kinks", ACTIVATION_LAYERS)
def test_activation_layers_forward_and_gradients(make, reference, kinks):
    layer = make()
    x = _away_from(_rand((2, 3, 4), scale=1.5), kinks)
    np.testing.assert_allclose(layer(x), reference(x), rtol=1e-12, atol=1e-14)
    assert layer.count_params() == 0 and layer.compute_output_shape((None, 3, 4)) == (None, 3, 4)
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("shared_axes,alpha_shape", [(None, (3, 4, 2)), ([1, 2], (1, 1, 2)),
                                                      (2, (3, 1, 2))])
def test_prelu_forward_gradients_and_shapes(shared_axes, alpha_shape):
    layer = layers.PReLU(shared_axes=shared_axes, **F64)
    x = _away_from(_rand((5, 3, 4, 2)), [0.0])
    layer.build_for((None, 3, 4, 2))
    assert layer.get_weights()[0].shape == alpha_shape
    assert np.all(layer.get_weights()[0] == 0)  # Keras's default alpha_initializer is zeros
    alpha = _rand(alpha_shape, seed=4)
    layer.set_weights([alpha])
    np.testing.assert_allclose(layer(x), np.where(x > 0, x, alpha * x), rtol=1e-14)
    assert layer.count_params() == math.prod(alpha_shape)
    check_layer_gradients(layer, x)


def test_activation_layer_validation():
    with pytest.raises(ValueError, match=r"Activation .*'relux'.*expected one of"):
        layers.Activation("relux")
    with pytest.raises(ValueError, match=r"ReLU .*max_value.*-1"):
        layers.ReLU(max_value=-1)
    with pytest.raises(ValueError, match=r"ReLU .*negative_slope"):
        layers.ReLU(negative_slope=-0.1)
    for bad in (None, -0.5):
        with pytest.raises(ValueError, match=r"ReLU .*threshold"):
            layers.ReLU(threshold=bad)
    with pytest.raises(ValueError, match=r"LeakyReLU .*negative_slope"):
        layers.LeakyReLU(-0.2)
    with pytest.raises(ValueError, match=r"ELU .*alpha"):
        layers.ELU(alpha="big")
    with pytest.raises(ValueError, match=r"Softmax .*axis"):
        layers.Softmax(axis=1.5)
    with pytest.raises(ValueError, match=r"Softmax .*axis 3 is out of range"):
        layers.Softmax(axis=3)(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"PReLU .*shared_axes"):
        layers.PReLU(shared_axes=[0])
    with pytest.raises(ValueError, match=r"PReLU .*shared_axes"):
        layers.PReLU(shared_axes=[3])(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"PReLU .*alpha_initializer"):
        layers.PReLU(alpha_initializer="zero")
    with pytest.raises(ValueError, match="known size"):
        layers.PReLU().build_for((None, None, 4))
    assert layers.LeakyReLU(0.2).negative_slope == 0.2


# ----- Flatten, Reshape, InputLayer ----------------------------------------------------
def test_flatten_forward_backward_and_channels_first():
    x = _rand((2, 3, 4, 5))
    layer = layers.Flatten(**F64)
    np.testing.assert_array_equal(layer(x), x.reshape(2, 60))
    assert layer.compute_output_shape((None, 3, 4, 5)) == (None, 60)
    assert layer.compute_output_shape((None, None, 4)) == (None, None)
    check_layer_gradients(layer, x)
    first = layers.Flatten(data_format="channels_first", **F64)
    np.testing.assert_array_equal(first(x), x.transpose(0, 2, 3, 1).reshape(2, 60))
    check_layer_gradients(first, x)
    assert layers.Flatten()(np.ones(5)).shape == (5, 1)
    with pytest.raises(ValueError, match=r"Flatten .*data_format"):
        layers.Flatten(data_format="nchw")


def test_reshape_infers_one_axis_and_checks_sizes():
    x = _rand((2, 3, 4))
    layer = layers.Reshape((4, -1), **F64)
    np.testing.assert_array_equal(layer(x), x.reshape(2, 4, 3))
    assert layer.compute_output_shape((None, 3, 4)) == (None, 4, 3)
    assert layer.compute_output_shape((None, None, 4)) == (None, 4, None)
    check_layer_gradients(layer, x)
    assert layers.Reshape((6, 2))(np.zeros((0, 12))).shape == (0, 6, 2)
    with pytest.raises(ValueError, match=r"Reshape .*cannot reshape.*\(None, 5\).*\(2, 3\)"):
        layers.Reshape((2, 3)).build_for((None, 5))
    with pytest.raises(ValueError, match=r"Reshape .*not a multiple of 4"):
        layers.Reshape((4, -1))(np.ones((2, 7)))
    for bad in ((-1, -1), (0, 3), (), 5, (2.0, 3)):
        with pytest.raises(ValueError, match=r"Reshape .*target_shape"):
            layers.Reshape(bad)


def test_input_layer_declares_and_passes_through():
    tensor = layers.Input((4,), name="features")
    # Keras 3: Input is a symbolic tensor made by an InputLayer, which does the checks.
    assert tensor.shape == (None, 4) and tensor.dtype == np.float32
    inp = tensor.node.layer
    assert isinstance(inp, layers.InputLayer) and inp.name == "features"
    assert inp.batch_shape == (None, 4) and inp.declared_input_shape == (4,)
    x = _rand((3, 4))
    assert inp(x) is not None and np.array_equal(inp(x), x.astype(np.float32))
    with pytest.raises(ValueError, match=r"InputLayer 'features'.*size 4 on axis 1"):
        inp(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"InputLayer 'features'.*rank 2"):
        inp(np.ones((3, 4, 1)))
    passthrough = layers.InputLayer(shape=(2, None), **F64)
    check_layer_gradients(passthrough, _rand((2, 2, 3)))
    with pytest.warns(UserWarning, match="input_shape is deprecated"):  # as Keras 3 warns
        assert layers.InputLayer(input_shape=(7,)).batch_shape == (None, 7)  # Keras 2 spelling
    assert layers.InputLayer(batch_shape=(16, 3, 2)).batch_shape == (16, 3, 2)
    assert layers.Input(shape=(5,), batch_size=8).shape == (8, 5)
    with pytest.raises(ValueError, match="exactly one of shape"):
        layers.InputLayer()
    with pytest.raises(ValueError, match="InputLayer.*positive ints"):
        layers.Input((4, -2))
    with pytest.raises(ValueError, match="InputLayer.*batch_size"):
        layers.Input((4,), batch_size=0)


def test_sequential_treats_input_as_the_input_declaration():
    models = pytest.importorskip("fusednn.models")
    model = models.Sequential([layers.Input((4,)), layers.Dense(2)])
    assert model.built and model.output_shape == (None, 2) and model.count_params() == 10


# ----- the layer protocol, for layers with and without weights ----------------------------
PROTOCOL_LAYERS = [
    (lambda: layers.Dense(3, activation="tanh", **F64), (4, 5)),
    (lambda: layers.PReLU(alpha_initializer="random_uniform", **F64), (4, 2, 3)),
    (lambda: layers.ELU(**F64), (4, 5)),
]


@pytest.mark.parametrize("make,shape", PROTOCOL_LAYERS)
def test_frozen_layer_passes_dx_but_adds_no_gradients(make, shape):
    x = _rand(shape)
    layer = make()
    y = layer.forward(x, training=True)
    dy = _rand(y.shape, seed=3)
    dx = layer.backward(dy)
    frozen = make()
    frozen.build_for((None,) + shape[1:])
    frozen.set_weights(layer.get_weights())
    frozen.trainable = False
    frozen.forward(x, training=True)
    np.testing.assert_array_equal(frozen.backward(dy), dx)
    assert all(np.all(g == 0) for g in frozen.get_gradients())
    assert frozen.trainable_variables == [] and len(frozen.non_trainable_variables) == len(frozen.variables)
    assert frozen.count_params() == layer.count_params()


@pytest.mark.parametrize("make,shape", PROTOCOL_LAYERS)
def test_gradients_accumulate_and_zero_grad_clears(make, shape):
    layer = make()
    x = _rand(shape)
    dy = _rand(layer.forward(x, training=True).shape, seed=3)
    layer.backward(dy)
    once = layer.get_gradients()
    layer.forward(x, training=True)
    layer.backward(dy)
    for g1, g2 in zip(once, layer.get_gradients()):
        np.testing.assert_allclose(g2, 2 * g1, rtol=1e-14)
    layer.zero_grad()
    assert all(np.all(g == 0) for g in layer.get_gradients())


@pytest.mark.parametrize("make,shape", PROTOCOL_LAYERS)
def test_backward_errors(make, shape):
    layer = make()
    x = _rand(shape)
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        layer.backward(np.ones(shape))
    y = layer.forward(x)  # inference forward keeps no cache
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        layer.backward(np.ones(y.shape))
    y = layer.forward(x, training=True)
    with pytest.raises(ValueError, match=r"backward expected a gradient of shape"):
        layer.backward(np.ones((y.shape[0] + 1,) + y.shape[1:]))


def test_set_weights_checks_count_and_shapes():
    layer = layers.Dense(3, name="d")
    layer.build_for((None, 4))
    with pytest.raises(ValueError, match=r"Dense 'd'.*expected 2 arrays.*got 1"):
        layer.set_weights([np.zeros((4, 3))])
    with pytest.raises(ValueError, match=r"Dense 'd'.*expected shape \(4, 3\).*got \(3, 4\)"):
        layer.set_weights([np.zeros((3, 4)), np.zeros(3)])
    layer.set_weights([np.ones((4, 3)), np.arange(3)])
    np.testing.assert_array_equal(layer(np.ones((1, 4))), [[4, 5, 6]])
    with pytest.raises(ValueError, match=r"expected 0 arrays"):
        layers.Flatten().set_weights([np.ones(1)])


def test_count_params_equal_keras():
    cases = [
        (layers.Dense(10), (None, 64), 64 * 10 + 10),
        (layers.Dense(10, use_bias=False), (None, 64), 640),
        (layers.Dense(4), (None, 5, 7), 7 * 4 + 4),          # rank 3: kernel over the last axis
        (layers.PReLU(), (None, 8, 8, 3), 192),
        (layers.PReLU(shared_axes=[1, 2]), (None, 8, 8, 3), 3),
        (layers.Dropout(0.5), (None, 10), 0),
        (layers.Flatten(), (None, 4, 4, 2), 0),
    ]
    for layer, shape, expected in cases:
        layer.build_for(shape)
        assert layer.count_params() == expected, layer
    with pytest.raises(ValueError, match="not built"):
        layers.Dense(3).count_params()


# ----- configs and the registry ----------------------------------------------------------
CONFIG_LAYERS = [
    lambda: layers.Dense(7, activation="gelu", use_bias=False, kernel_initializer="he_normal",
                         kernel_regularizer="l2", input_shape=(3,), name="fc"),
    lambda: layers.Dense(4, input_shape=(2, 3), batch_size=8),
    lambda: layers.Dense(2, activation=activations.LeakyReLU(0.1),
                         bias_initializer=layers.core.initializers.Constant(0.5),
                         bias_regularizer="l1_l2", dtype="float64", trainable=False),
    lambda: layers.Activation("hard_swish"),
    lambda: layers.Dropout(0.25, noise_shape=(None, 1), seed=11),
    lambda: layers.Flatten(data_format="channels_first"),
    lambda: layers.Reshape((-1, 2)),
    lambda: layers.InputLayer(shape=(None, 3), batch_size=4, name="in"),
    lambda: layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5),
    lambda: layers.LeakyReLU(alpha=0.05),
    lambda: layers.PReLU(alpha_initializer="ones", alpha_regularizer="l2", shared_axes=[1]),
    lambda: layers.ELU(alpha=0.3),
    lambda: layers.Softmax(axis=1),
]


@pytest.mark.parametrize("make", CONFIG_LAYERS)
def test_get_config_round_trips_through_json(make):
    layer = make()
    blob = json.loads(json.dumps(layers.serialize(layer)))
    rebuilt = layers.deserialize(blob)
    assert type(rebuilt) is type(layer)
    assert rebuilt.get_config() == layer.get_config()
    assert type(rebuilt).from_config(layer.get_config()).get_config() == layer.get_config()
    assert (rebuilt.declared_input_shape, rebuilt.declared_batch_size) == \
        (layer.declared_input_shape, layer.declared_batch_size)


def test_round_tripped_dense_computes_the_same_function():
    layer = layers.Dense(3, activation="softmax", bias_initializer="random_normal")
    x = _rand((4, 5)).astype(np.float32)
    y = layer(x)
    rebuilt = layers.deserialize(layers.serialize(layer))
    rebuilt.build_for((None, 5))
    rebuilt.set_weights(layer.get_weights())
    np.testing.assert_array_equal(rebuilt(x), y)


def test_registry_errors_and_custom_registration():
    with pytest.raises(ValueError, match=r"unknown layer class 'Conv9D'.*Dense.*Dropout"):
        layers.deserialize({"class_name": "Conv9D", "config": {}})
    with pytest.raises(ValueError, match="'class_name' string and a 'config' dict"):
        layers.deserialize({"class_name": "Dense"})
    with pytest.raises(TypeError, match="Layer subclass"):
        layers.register(int)

    class Doubler(layers.Layer):
        def call(self, x, training):
            return 2 * x, None

    with pytest.raises(ValueError, match="Doubler is not a registered layer class"):
        layers.serialize(Doubler())
    layers.register(Doubler)
    assert layers.register(Doubler) is Doubler  # registering the same class again is harmless
    assert isinstance(layers.deserialize(layers.serialize(Doubler(name="x2"))), Doubler)

    class Dense(layers.Layer):  # a different class under a taken name
        pass

    with pytest.raises(ValueError, match="already registered as 'Dense'"):
        layers.register(Dense)
    assert {"Dense", "Dropout", "InputLayer", "PReLU", "Softmax"} <= set(layers.registered_classes())


# ----- Dropout ---------------------------------------------------------------------------
def test_dropout_statistics_and_scaling():
    rate, n = 0.3, 200 * 500
    x = np.ones((200, 500))
    y = layers.Dropout(rate, **F64).forward(x, training=True)
    dropped = np.mean(y == 0)
    # Binomial(n, rate) fraction: 5 standard deviations.
    assert abs(dropped - rate) <= 5 * math.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - rate), rtol=1e-15)
    # Inverted dropout preserves the expectation: mean(y) ~ 1 with std sqrt(rate / (1 - rate) / n).
    assert abs(y.mean() - 1.0) <= 5 * math.sqrt(rate / (1 - rate) / n)


def test_dropout_identity_at_inference_and_backward_uses_the_mask():
    layer = layers.Dropout(0.5, **F64)
    x = _rand((6, 7)) + 5.0  # no zeros in x, so y / x recovers the mask
    np.testing.assert_array_equal(layer(x), x)
    y = layer.forward(x, training=True)
    mask = y / x
    assert set(np.unique(np.round(mask, 12))) <= {0.0, 2.0}
    dy = _rand(y.shape, seed=2)
    np.testing.assert_allclose(layer.backward(dy), dy * mask, rtol=1e-14)
    zero = layers.Dropout(0.0, **F64)
    np.testing.assert_array_equal(zero.forward(x, training=True), x)
    np.testing.assert_array_equal(zero.backward(dy), dy)


def test_dropout_repeats_with_global_seed_and_layer_seed():
    x = np.ones((20, 30), dtype=np.float32)
    _rng.seed(5)
    a = layers.Dropout(0.4).forward(x, training=True)
    _rng.seed(5)
    b = layers.Dropout(0.4).forward(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, layers.Dropout(0.4).forward(x, training=True))
    first, second = layers.Dropout(0.4, seed=3), layers.Dropout(0.4, seed=3)
    masks = [first.forward(x, training=True), first.forward(x, training=True)]
    assert not np.array_equal(masks[0], masks[1])  # a stream, not one fixed mask
    _rng.seed(99)  # a seeded layer does not depend on the global generator
    np.testing.assert_array_equal(second.forward(x, training=True), masks[0])
    np.testing.assert_array_equal(second.forward(x, training=True), masks[1])


def test_dropout_noise_shape_shares_the_mask():
    layer = layers.Dropout(0.5, noise_shape=(None, 1, 4), **F64)
    y = layer.forward(np.ones((8, 5, 4)), training=True)
    assert np.all(y == y[:, :1, :])  # one draw per (sample, feature), shared over axis 1
    assert 0 < np.mean(y == 0) < 1
    with pytest.raises(ValueError, match=r"Dropout .*noise_shape \(None, 1, 3\) does not broadcast"):
        layers.Dropout(0.5, noise_shape=(None, 1, 3)).forward(np.ones((8, 5, 4)), training=True)


def test_dropout_validation():
    for bad in (1.0, -0.1, 1.5, "0.5", None, True):
        with pytest.raises(ValueError, match=r"Dropout .*rate.*\[0, 1\)"):
            layers.Dropout(bad)
    with pytest.raises(ValueError, match=r"Dropout .*noise_shape"):
        layers.Dropout(0.5, noise_shape=(None, 0))
    with pytest.raises(ValueError, match=r"Dropout .*seed"):
        layers.Dropout(0.5, seed=-1)


# ----- softmax fusion --------------------------------------------------------------------
SOFTMAX_LAYERS = [
    lambda: layers.Dense(4, activation="softmax", bias_initializer="random_normal", **F64),
    lambda: layers.Activation("softmax", **F64),
    lambda: layers.Softmax(**F64),
]


@pytest.mark.parametrize("make", SOFTMAX_LAYERS)
def test_backward_from_logits_equals_backward_through_the_softmax(make):
    x = _rand((5, 4))
    labels = np.array([0, 3, 1, 2, 3])
    fused, plain = make(), make()
    assert fused.outputs_softmax
    probs = fused.forward(x, training=True)
    if fused.variables:
        plain.build_for((None, 4))
        plain.set_weights(fused.get_weights())
    np.testing.assert_array_equal(plain.forward(x, training=True), probs)
    logits = fused.logits_of_last_forward()
    np.testing.assert_allclose(activations.softmax(logits), probs, rtol=1e-14)
    if fused.variables:
        kernel, bias = fused.get_weights()
        np.testing.assert_allclose(logits, x @ kernel + bias, rtol=1e-14)
    else:
        np.testing.assert_array_equal(logits, x)
    # Mean cross-entropy: d/dprobs = -onehot / (N probs); d/dlogits = (probs - onehot) / N.
    onehot = np.eye(4)[labels]
    dx_fused = fused.backward_from_logits((probs - onehot) / len(x))
    dx_plain = plain.backward(-onehot / (len(x) * probs))
    np.testing.assert_allclose(dx_fused, dx_plain, rtol=1e-10, atol=1e-14)
    for g_fused, g_plain in zip(fused.get_gradients(), plain.get_gradients()):
        np.testing.assert_allclose(g_fused, g_plain, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="backward_from_logits expected a gradient of shape"):
        fused.backward_from_logits(np.ones((5, 3)))


def test_outputs_softmax_flags_and_errors():
    assert not layers.Dense(3).outputs_softmax
    assert not layers.Dense(3, activation="log_softmax").outputs_softmax
    assert not layers.Activation("sigmoid").outputs_softmax
    assert not getattr(layers.Dropout(0.1), "outputs_softmax", False)
    on_time_axis = layers.Softmax(axis=1)
    on_time_axis(np.ones((2, 3, 4)))
    assert not on_time_axis.outputs_softmax
    last_by_index = layers.Softmax(axis=2)
    last_by_index(np.ones((2, 3, 4)))
    assert last_by_index.outputs_softmax
    fresh = layers.Dense(3, activation="softmax")
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        fresh.logits_of_last_forward()
    relu = layers.Dense(3, activation="relu")
    relu.forward(np.ones((2, 2)), training=True)
    with pytest.raises(RuntimeError, match="only defined for a layer whose output is a softmax"):
        relu.backward_from_logits(np.ones((2, 3)))


# ----- GPU ---------------------------------------------------------------------------------
@pytest.mark.cuda
def test_dense_and_dropout_run_on_cupy():
    import cupy
    layer = layers.Dense(3, activation="softmax")
    x = _rand((4, 5)).astype(np.float32)
    expected = layer(x)
    layer.to("cuda")
    y = layer.forward(cupy.asarray(x), training=True)
    assert isinstance(y, cupy.ndarray)
    np.testing.assert_allclose(y.get(), expected, rtol=1e-5, atol=1e-6)
    dx = layer.backward(cupy.ones_like(y))
    assert isinstance(dx, cupy.ndarray) and dx.shape == (4, 5)
    with pytest.raises(TypeError, match="cuda"):
        layer(x)
    out = layers.Dropout(0.5).forward(cupy.ones((100, 100), dtype=cupy.float32), training=True)
    assert isinstance(out, cupy.ndarray) and 0.4 < float((out == 0).mean()) < 0.6
