"""Convolution layers (Conv1D, Conv2D, Conv2DTranspose): Keras's weight shapes,
order and parameter counts, output shapes, the lecture CNN's summary, forward
and every gradient against PyTorch (float64) and against central finite
differences in float64 layers, fused and unfused activations, the layer
protocol (frozen layers, accumulation, regularizers, configs and the
registry) and validation errors that name the layer, before any kernel runs."""
import json

import numpy as np
import pytest

from fusednn import activations, layers
import fusednn.models as models
from gradcheck import check_layer_gradients

torch = pytest.importorskip("torch")
F = torch.nn.functional
F64 = {"dtype": "float64"}


def _rand(shape, seed=1, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


def _keras_same(n, k, s, d=1):
    """(before, after) padding of Keras's 'same' along one axis."""
    kd = (k - 1) * d + 1
    total = max((-(-n // s) - 1) * s + kd - n, 0)
    return total // 2, total - total // 2


# ----- the lecture CNN ---------------------------------------------------------------
def lecture_cnn():
    return models.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])


def test_lecture_cnn_summary_matches_keras(capsys):
    model = lecture_cnn()
    model.summary()
    text = capsys.readouterr().out
    shapes = [layer.output_shape for layer in model.layers]
    assert shapes == [(None, 26, 26, 32), (None, 13, 13, 32), (None, 11, 11, 64),
                      (None, 5, 5, 64), (None, 3, 3, 64), (None, 576), (None, 64), (None, 10)]
    assert [layer.count_params() for layer in model.layers] == \
        [320, 0, 18496, 0, 36928, 0, 36928, 650]
    assert model.count_params() == 93322
    assert "93,322" in text
    for row in ["(None, 26, 26, 32)", "(None, 11, 11, 64)", "(None, 3, 3, 64)", "18496", "36928"]:
        assert row in text
    y = model.predict(np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32),
                      verbose=0)
    assert y.shape == (3, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


# ----- weights, shapes, counts ------------------------------------------------------
def test_weight_shapes_order_and_counts():
    conv2d = layers.Conv2D(8, (3, 2))
    conv2d.build_for((None, 10, 9, 4))
    assert [w.shape for w in conv2d.get_weights()] == [(3, 2, 4, 8), (8,)]
    assert [v.name for v in conv2d.variables] == [f"{conv2d.name}/kernel", f"{conv2d.name}/bias"]
    assert conv2d.count_params() == 3 * 2 * 4 * 8 + 8
    conv1d = layers.Conv1D(5, 4, use_bias=False)
    conv1d.build_for((None, 12, 3))
    assert [w.shape for w in conv1d.get_weights()] == [(4, 3, 5)]
    assert conv1d.count_params() == 60
    transpose = layers.Conv2DTranspose(6, 3)
    transpose.build_for((None, 5, 5, 2))
    assert [w.shape for w in transpose.get_weights()] == [(3, 3, 6, 2), (6,)]
    assert transpose.count_params() == 3 * 3 * 6 * 2 + 6
    np.testing.assert_array_equal(conv2d.get_weights()[1], 0)  # bias_initializer="zeros"


def test_default_names_are_keras_snake_case():
    names = [layers.Conv2D(1, 1).name, layers.Conv1D(1, 1).name,
             layers.Conv2DTranspose(1, 1).name]
    assert names[0].startswith("conv2d") and names[1].startswith("conv1d")
    assert names[2].startswith("conv2d_transpose")


@pytest.mark.parametrize("kwargs,input_shape,output_shape", [
    (dict(filters=4, kernel_size=3), (None, 28, 28, 1), (None, 26, 26, 4)),
    (dict(filters=4, kernel_size=3, padding="same"), (None, 28, 28, 1), (None, 28, 28, 4)),
    (dict(filters=4, kernel_size=3, strides=2), (None, 28, 27, 1), (None, 13, 13, 4)),
    (dict(filters=4, kernel_size=(4, 2), strides=(3, 2), padding="same"), (None, 10, 7, 3),
     (None, 4, 4, 4)),
    (dict(filters=2, kernel_size=3, dilation_rate=2), (None, 9, None, 3), (None, 5, None, 2)),
    (dict(filters=2, kernel_size=5, strides=1, padding="valid"), (8, 5, 5, 3), (8, 1, 1, 2)),
])
def test_conv2d_output_shapes(kwargs, input_shape, output_shape):
    assert layers.Conv2D(**kwargs).compute_output_shape(input_shape) == output_shape


@pytest.mark.parametrize("kwargs,input_shape,output_shape", [
    (dict(filters=4, kernel_size=3), (None, 5, 5, 2), (None, 7, 7, 4)),
    (dict(filters=4, kernel_size=3, strides=2), (None, 5, 5, 2), (None, 11, 11, 4)),
    (dict(filters=4, kernel_size=2, strides=3), (None, 5, 4, 2), (None, 15, 12, 4)),
    (dict(filters=4, kernel_size=3, strides=2, padding="same"), (None, 5, 6, 2),
     (None, 10, 12, 4)),
    (dict(filters=4, kernel_size=3, strides=2, output_padding=1), (None, 5, 5, 2),
     (None, 12, 12, 4)),
    (dict(filters=4, kernel_size=4, strides=2, padding="same", output_padding=(0, 1)),
     (None, 5, 5, 2), (None, 8, 9, 4)),
])
def test_conv2d_transpose_output_shapes(kwargs, input_shape, output_shape):
    """Keras: valid (n-1)s + max(k, s); same n*s; with output_padding p valid
    (n-1)s + k + p and same (n-1)s + k % 2 + p."""
    layer = layers.Conv2DTranspose(**kwargs)
    assert layer.compute_output_shape(input_shape) == output_shape
    y = layer(np.zeros((1,) + input_shape[1:], np.float32))
    assert y.shape == (1,) + output_shape[1:]


@pytest.mark.parametrize("padding,strides,expected", [("valid", 1, 8), ("same", 1, 10),
                                                      ("causal", 1, 10), ("same", 3, 4),
                                                      ("causal", 2, 5)])
def test_conv1d_output_shapes(padding, strides, expected):
    layer = layers.Conv1D(3, 3, strides=strides, padding=padding)
    assert layer.compute_output_shape((None, 10, 2)) == (None, expected, 3)


# ----- forward and gradients against torch -----------------------------------------
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3), dict(kernel_size=(4, 3), strides=2, padding="same"),
    dict(kernel_size=3, dilation_rate=2, padding="same"), dict(kernel_size=1, strides=2),
])
def test_conv2d_matches_torch(kwargs, activation):
    layer = layers.Conv2D(5, activation=activation, bias_initializer="random_normal", **kwargs)
    x = _rand((2, 11, 10, 3)).astype(np.float32)
    y = layer.forward(x, training=True)
    kernel, bias = (torch.tensor(w.astype(np.float64), requires_grad=True)
                    for w in layer.get_weights())
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    strides, dilation = layer.strides, layer.dilation_rate
    padded = xt.permute(0, 3, 1, 2)
    if layer.padding == "same":
        (top, bottom), (left, right) = (_keras_same(n, k, s, d) for n, k, s, d in
                                        zip((11, 10), layer.kernel_size, strides, dilation))
        padded = F.pad(padded, (left, right, top, bottom))
    yt = F.conv2d(padded, kernel.permute(3, 2, 0, 1), bias, stride=strides, dilation=dilation)
    yt = yt.permute(0, 2, 3, 1)
    if activation == "relu":
        yt = torch.relu(yt)
    elif activation == "tanh":
        yt = torch.tanh(yt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=2e-4, atol=2e-4)
    dy = _rand(y.shape, seed=3).astype(np.float32)
    yt.backward(torch.tensor(dy.astype(np.float64)))
    layer.zero_grad()
    dx = layer.backward(dy)
    # float32 layer vs float64 torch: relative 2e-4 of the largest value (sums of <= 100 terms).
    for ours, theirs in ((dx, xt.grad), *zip(layer.get_gradients(), (kernel.grad, bias.grad))):
        theirs = theirs.numpy()
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-4 * np.abs(theirs).max())


def test_conv1d_and_transpose_match_torch():
    rng = np.random.default_rng(5)
    conv1d = layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")
    x = rng.standard_normal((2, 9, 3)).astype(np.float32)
    y = conv1d(x)
    kernel, bias = conv1d.get_weights()
    ref = F.conv1d(F.pad(torch.tensor(x).permute(0, 2, 1), (4, 0)),
                   torch.tensor(kernel).permute(2, 1, 0), torch.tensor(bias), dilation=2)
    np.testing.assert_allclose(y, torch.relu(ref).permute(0, 2, 1).numpy(), rtol=2e-4, atol=2e-4)

    transpose = layers.Conv2DTranspose(3, (3, 3), strides=2, bias_initializer="ones")
    x = rng.standard_normal((2, 4, 5, 2)).astype(np.float32)
    y = transpose(x)
    kernel, bias = transpose.get_weights()
    ref = F.conv_transpose2d(torch.tensor(x).permute(0, 3, 1, 2),
                             torch.tensor(kernel).permute(3, 2, 0, 1), torch.tensor(bias),
                             stride=2)
    assert y.shape == (2, 9, 11, 3)
    np.testing.assert_allclose(y, ref.permute(0, 2, 3, 1).numpy(), rtol=2e-4, atol=2e-4)


# ----- finite differences in float64 -----------------------------------------------
@pytest.mark.parametrize("make,input_shape", [
    (lambda: layers.Conv2D(3, (2, 3), strides=(2, 1), padding="same", activation="tanh",
                           bias_initializer="random_normal", **F64), (2, 5, 4, 2)),
    (lambda: layers.Conv2D(2, 3, dilation_rate=2, activation="relu",
                           bias_initializer="random_normal", **F64), (1, 6, 6, 2)),
    (lambda: layers.Conv1D(3, 3, padding="causal", activation="sigmoid",
                           bias_initializer="random_normal", **F64), (2, 6, 2)),
    (lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same",
                                    bias_initializer="random_normal", **F64), (2, 3, 3, 2)),
    (lambda: layers.Conv2DTranspose(2, (2, 3), strides=(2, 3), output_padding=(1, 2),
                                    activation="relu", bias_initializer="random_normal", **F64),
     (1, 3, 2, 2)),
], ids=["conv2d-tanh", "conv2d-relu-dilated", "conv1d-causal", "transpose-same",
        "transpose-output-padding"])
def test_gradients_match_finite_differences(make, input_shape):
    layer = make()
    check_layer_gradients(layer, _rand(input_shape, seed=2))


# ----- fused activations ------------------------------------------------------------
def test_fused_relu_equals_unfused_relu():
    x = _rand((2, 7, 7, 3), seed=4).astype(np.float32)
    fused = layers.Conv2D(4, 3, activation="relu", bias_initializer="random_normal")
    plain = layers.Conv2D(4, 3)
    after = layers.ReLU()
    y = fused.forward(x, training=True)
    plain.build_for(x.shape)
    plain.set_weights(fused.get_weights())
    z = plain.forward(x, training=True)
    np.testing.assert_allclose(y, after(z), rtol=1e-6, atol=1e-6)
    dy = _rand(y.shape, seed=5).astype(np.float32)
    fused.zero_grad()
    plain.zero_grad()
    dx = fused.backward(dy)
    after.forward(z, training=True)
    dx_plain = plain.backward(after.backward(dy))
    np.testing.assert_allclose(dx, dx_plain, rtol=1e-6, atol=1e-6)
    for a, b in zip(fused.get_gradients(), plain.get_gradients()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_relu_with_parameters_is_not_fused():
    capped = activations.get({"class_name": "relu", "config": {"max_value": 1.0}})
    layer = layers.Conv2D(2, 1, activation=capped, kernel_initializer="ones")
    y = layer(np.full((1, 2, 2, 1), 3.0, np.float32))
    np.testing.assert_array_equal(y, 1.0)


# ----- the layer protocol --------------------------------------------------------------
def test_frozen_layer_passes_dx_and_keeps_no_gradients():
    layer = layers.Conv2D(3, 3, trainable=False)
    x = _rand((2, 5, 5, 2)).astype(np.float32)
    y = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(y))
    assert np.abs(dx).sum() > 0
    for grad in layer.get_gradients():
        np.testing.assert_array_equal(grad, 0)
    assert layer.trainable_variables == []


def test_gradients_accumulate_and_zero_grad_clears():
    layer = layers.Conv1D(2, 2)
    x = _rand((3, 5, 2)).astype(np.float32)
    y = layer.forward(x, training=True)
    layer.backward(np.ones_like(y))
    once = layer.get_gradients()
    layer.backward(np.ones_like(y))
    for twice, single in zip(layer.get_gradients(), once):
        np.testing.assert_allclose(twice, 2 * single, rtol=1e-6)
    layer.zero_grad()
    assert all(not g.any() for g in layer.get_gradients())


def test_regularizers_and_set_weights():
    layer = layers.Conv2D(2, 2, kernel_regularizer="l2", bias_regularizer="l1")
    layer.build_for((None, 4, 4, 1))
    kernel = np.full((2, 2, 1, 2), 0.5, np.float32)
    bias = np.array([1.0, -2.0], np.float32)
    layer.set_weights([kernel, bias])
    # Keras defaults: l2 = 0.01 * sum(w^2), l1 = 0.01 * sum(|b|).
    assert layer.regularization_loss() == pytest.approx(0.01 * 8 * 0.25 + 0.01 * 3)
    with pytest.raises(ValueError, match="expected shape \\(2, 2, 1, 2\\)"):
        layer.set_weights([kernel[:1], bias])


@pytest.mark.parametrize("layer", [
    layers.Conv2D(4, (3, 2), strides=2, padding="same", activation="tanh", use_bias=False,
                  kernel_regularizer="l2", name="c2"),
    layers.Conv1D(4, 5, padding="causal", dilation_rate=2, kernel_initializer="he_normal"),
    layers.Conv2DTranspose(3, 3, strides=(2, 1), output_padding=(1, 0), activation="relu"),
], ids=["conv2d", "conv1d", "transpose"])
def test_config_round_trip(layer):
    config = layer.get_config()
    json.dumps(config)
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = layers.deserialize(json.loads(json.dumps(layers.serialize(layer))))
    assert type(restored) is type(layer) and restored.get_config() == config
    for key in ("filters", "kernel_size", "strides", "padding", "dilation_rate", "activation",
                "use_bias", "kernel_initializer", "bias_initializer", "kernel_regularizer",
                "bias_regularizer", "data_format"):
        assert key in config


def test_float64_layers_keep_float64():
    layer = layers.Conv2D(2, 3, **F64)
    y = layer(np.zeros((1, 4, 4, 1), np.float32))
    assert y.dtype == np.float64 and layer.get_weights()[0].dtype == np.float64


# ----- validation ------------------------------------------------------------------
@pytest.mark.parametrize("make,error,message", [
    (lambda: layers.Conv2D(0, 3), ValueError, "Conv2D '.*': expected filters to be a positive"),
    (lambda: layers.Conv2D(-2, 3), ValueError, "got -2"),
    (lambda: layers.Conv2D("8", 3), ValueError, "got '8'"),
    (lambda: layers.Conv2D(8, 0), ValueError, "expected kernel_size to be a positive int"),
    (lambda: layers.Conv2D(8, 2**31, padding="same"), ValueError,
     "Conv2D '.*': expected kernel_size .* below 2\\^31, got 2147483648"),
    (lambda: layers.Conv2D(8, (3, 3, 3)), ValueError,
     "tuple of 2 positive ints, each below 2\\^31, got \\(3, 3, 3\\)"),
    (lambda: layers.Conv1D(8, (3, 3)), ValueError, "Conv1D '.*': expected kernel_size"),
    (lambda: layers.Conv2D(8, 3, strides=0), ValueError, "expected strides"),
    (lambda: layers.Conv2D(8, 3, dilation_rate=-1), ValueError, "expected dilation_rate"),
    (lambda: layers.Conv2D(8, 3, strides=2, dilation_rate=2), ValueError,
     "strides > 1 together with dilation_rate > 1"),
    (lambda: layers.Conv2DTranspose(8, 3, strides=2, dilation_rate=2), ValueError,
     "Conv2DTranspose '.*': strides > 1 together"),
    (lambda: layers.Conv2D(8, 3, padding="full"), ValueError,
     "expected padding to be one of 'valid', 'same', got 'full'"),
    (lambda: layers.Conv2D(8, 3, padding="causal"), ValueError, "got 'causal'"),
    (lambda: layers.Conv2D(8, 3, activation="swishy"), ValueError,
     "Conv2D '.*': invalid activation: unknown activation 'swishy'"),
    (lambda: layers.Conv2D(8, 3, data_format="NCHW"), ValueError,
     "expected data_format 'channels_last' or 'channels_first'"),
    (lambda: layers.Conv2D(8, 3, groups=3), ValueError, "filters=8 must be divisible by groups=3"),
    (lambda: layers.Conv2DTranspose(8, 3, strides=2, output_padding=2), ValueError,
     "strides \\(2, 2\\) must be greater than output_padding \\(2, 2\\)"),
    (lambda: layers.Conv2DTranspose(8, 3, output_padding=-1), ValueError,
     "expected output_padding to be a non-negative int"),
])
def test_bad_configuration_is_rejected(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_inputs_name_the_layer_before_any_kernel_runs():
    layer = layers.Conv2D(4, 3, name="edges")
    with pytest.raises(ValueError, match="Conv2D 'edges': expected input of rank 4.*got shape "
                                         "\\((None|2), 8, 8\\)"):
        layer(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="Conv2D 'edges': input shape \\(None, 2, 8, 1\\), "
                                         "spatial axis 1: the kernel .* larger than the input"):
        layer(np.zeros((2, 2, 8, 1), np.float32))
    assert not layer.built
    layer(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="Conv2D 'edges': expected input with size 3 on axis -1, "
                                         "got shape \\(2, 8, 8, 5\\)"):
        layer(np.zeros((2, 8, 8, 5), np.float32))
    with pytest.raises(ValueError, match="Conv2D 'edges': .*larger than the input"):
        layer(np.zeros((2, 8, 2, 3), np.float32))
    with pytest.raises(ValueError, match="Conv1D '.*': expected input of rank 3"):
        layers.Conv1D(2, 3)(np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(TypeError, match="Conv2D 'edges' input: expected a real numeric array"):
        layer(np.zeros((2, 8, 8, 3), np.complex64))
    with pytest.raises(ValueError, match="Conv2DTranspose '.*': the channel axis"):
        layers.Conv2DTranspose(2, 3).build_for((None, 4, 4, None))


# ----- CUDA ------------------------------------------------------------------------
@pytest.mark.cuda
def test_layers_on_cuda_match_cpu():
    cp = pytest.importorskip("cupy")
    x = _rand((2, 9, 9, 3)).astype(np.float32)
    for make in (lambda: layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                 lambda: layers.Conv2DTranspose(4, 3, strides=2, activation="tanh")):
        cpu = make()
        y = cpu.forward(x, training=True)
        gpu = make()
        gpu.build_for(x.shape)
        gpu.set_weights(cpu.get_weights())
        gpu.to("cuda")
        y_gpu = gpu.forward(cp.asarray(x), training=True)
        np.testing.assert_allclose(cp.asnumpy(y_gpu), y, rtol=2e-4, atol=2e-4)
        dy = _rand(y.shape, seed=7).astype(np.float32)
        dx = cpu.backward(dy)
        dx_gpu = gpu.backward(cp.asarray(dy))
        np.testing.assert_allclose(cp.asnumpy(dx_gpu), dx, rtol=2e-4, atol=2e-4)
        for a, b in zip(gpu.get_gradients(), cpu.get_gradients()):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * np.abs(b).max())
