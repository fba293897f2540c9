"""Grouped convolution (Conv1D/Conv2D groups=), DepthwiseConv1D/2D and SeparableConv1D/2D
against PyTorch's grouped convolutions in float64 (forward and autograd), Keras's weight
shapes and parameter counts, and finite differences through channels_first."""
import numpy as np
import pytest

from fusednn import layers

from gradcheck import check_layer_gradients

torch = pytest.importorskip("torch")
F64 = dict(dtype="float64")


def _torch_conv(x, weight, bias, rank, groups, **kw):
    """Channels-last x through torch's channels-first grouped conv; weight (F, C/g, K..)."""
    conv = torch.nn.functional.conv2d if rank == 2 else torch.nn.functional.conv1d
    xt = torch.from_numpy(np.moveaxis(x, -1, 1)).requires_grad_()
    w = torch.from_numpy(weight).requires_grad_()
    b = None if bias is None else torch.from_numpy(bias).requires_grad_()
    y = conv(xt, w, b, groups=groups, **kw)
    return xt, w, b, y


def _channels_last(y):
    return np.moveaxis(y.detach().numpy(), 1, -1)


@pytest.mark.parametrize("rank, groups", [(2, 2), (2, 4), (1, 3)])
def test_grouped_conv_matches_torch(rank, groups):
    rng = np.random.default_rng(0)
    shape = (2, 5, 6, 12) if rank == 2 else (2, 7, 6)
    x = rng.normal(size=shape)
    conv = (layers.Conv2D(8 if rank == 2 else 6, 3, padding="same", groups=groups, **F64)
            if rank == 2 else layers.Conv1D(6, 3, groups=groups, **F64))
    y = conv.forward(x, training=True)
    kernel, bias = conv.get_weights()          # (K.., C/g, F)
    assert kernel.shape[-2] == shape[-1] // groups
    weight = np.moveaxis(kernel, (-1, -2), (0, 1)).copy()
    xt, w, b, yt = _torch_conv(x, weight, bias, rank, groups, padding=1 if rank == 2 else 0)
    np.testing.assert_allclose(y, _channels_last(yt), rtol=1e-12, atol=1e-12)
    dy = rng.normal(size=y.shape)
    conv.zero_grad()
    dx = conv.backward(dy)
    yt.backward(torch.from_numpy(np.moveaxis(dy, -1, 1)))
    np.testing.assert_allclose(dx, np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-10, atol=1e-12)
    dkernel, dbias = conv.get_gradients()
    np.testing.assert_allclose(dkernel, np.moveaxis(w.grad.numpy(), (0, 1), (-1, -2)),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dbias, b.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rank", [2, 1])
def test_depthwise_matches_torch(rank):
    rng = np.random.default_rng(1)
    shape = (2, 6, 5, 3) if rank == 2 else (2, 8, 3)
    x = rng.normal(size=shape)
    cls = layers.DepthwiseConv2D if rank == 2 else layers.DepthwiseConv1D
    layer = cls(3, strides=2, depth_multiplier=2, activation="relu", **F64)
    y = layer.forward(x)
    kernel, bias = layer.get_weights()          # (K.., C, M)
    channels = shape[-1]
    # torch: out channel c * M + m of group c has weight (C * M, 1, K..).
    weight = np.moveaxis(kernel.reshape(kernel.shape[:-2] + (channels * 2,)), -1, 0)[:, None]
    _, _, _, yt = _torch_conv(x, weight.copy(), bias, rank, channels, stride=2)
    np.testing.assert_allclose(y, np.maximum(_channels_last(yt), 0), rtol=1e-12, atol=1e-12)
    assert layer.count_params() == kernel.size + bias.size


@pytest.mark.parametrize("rank", [2, 1])
def test_separable_matches_depthwise_then_pointwise(rank):
    rng = np.random.default_rng(2)
    shape = (2, 6, 5, 3) if rank == 2 else (2, 8, 3)
    x = rng.normal(size=shape)
    cls = layers.SeparableConv2D if rank == 2 else layers.SeparableConv1D
    layer = cls(4, 3, depth_multiplier=2, padding="same", activation="tanh", **F64)
    y = layer.forward(x)
    depthwise, pointwise, bias = layer.get_weights()
    channels = shape[-1]
    weight = np.moveaxis(depthwise.reshape(depthwise.shape[:-2] + (channels * 2,)), -1, 0)
    _, _, _, dt = _torch_conv(x, weight[:, None].copy(), None, rank, channels,
                              padding="same")
    point = np.moveaxis(pointwise, (-1, -2), (0, 1)).copy()     # (F, C * M, 1..)
    conv = torch.nn.functional.conv2d if rank == 2 else torch.nn.functional.conv1d
    expected = torch.tanh(conv(dt, torch.from_numpy(point), torch.from_numpy(bias)))
    np.testing.assert_allclose(y, _channels_last(expected), rtol=1e-12, atol=1e-12)
    # Keras's parameter count: C K.. M + C M F + F.
    kernel_size = 9 if rank == 2 else 3
    assert layer.count_params() == channels * kernel_size * 2 + channels * 2 * 4 + 4


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.DepthwiseConv2D(2, depth_multiplier=3, data_format="channels_first", **F64),
     (2, 2, 4, 3)),
    (lambda: layers.SeparableConv2D(3, 2, activation="relu", data_format="channels_first",
                                    **F64), (2, 2, 4, 4)),
    (lambda: layers.Conv2D(4, 2, groups=2, data_format="channels_first", **F64), (2, 4, 3, 3)),
])
def test_gradients_through_channels_first(make, shape):
    check_layer_gradients(make(), np.random.default_rng(3).normal(size=shape), training=True)


def test_bad_grouping():
    with pytest.raises(ValueError, match="must be divisible by groups=2"):
        layers.Conv2D(4, 3, groups=2).build((None, 5, 5, 3))
    with pytest.raises(ValueError, match="depth_multiplier to be a positive integer"):
        layers.DepthwiseConv2D(3, depth_multiplier=0)
    config = layers.SeparableConv2D(4, 3).get_config()
    assert "groups" not in config and config["filters"] == 4 and config["depth_multiplier"] == 1


@pytest.mark.parametrize("strides, padding, output_padding", [
    (1, "valid", None), (2, "same", None), (3, "valid", 2), (2, "same", 1)])
def test_conv1d_transpose_matches_torch(strides, padding, output_padding):
    # Keras's Conv1DTranspose is torch's conv_transpose1d with the kernel (K, F, C) as
    # torch's (C, F, K) and, for "same", the padding that gives T * strides outputs.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 5, 3))
    layer = layers.Conv1DTranspose(4, 3, strides=strides, padding=padding,
                                   output_padding=output_padding, **F64)
    y = layer.forward(x, training=True)
    kernel, bias = layer.get_weights()
    expected = torch.nn.functional.conv_transpose1d(
        torch.from_numpy(np.moveaxis(x, -1, 1)), torch.from_numpy(kernel.transpose(2, 1, 0).copy()),
        torch.from_numpy(bias), stride=strides, output_padding=output_padding or 0).numpy()
    expected = np.moveaxis(expected, 1, -1)
    if padding == "same":
        # TensorFlow's rule: the output of length `out` is the transpose of a SAME conv2d
        # over it, whose padding before is max((T - 1) s + k - out, 0) // 2.
        out = y.shape[1]
        start = max((5 - 1) * strides + 3 - out, 0) // 2
        expected = expected[:, start:start + out]
    assert y.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    check_layer_gradients(layer, x, training=True)


@pytest.mark.parametrize("make, input_shape, expected", [
    (lambda: layers.DepthwiseConv2D(2, depth_multiplier=3), (None, 5, 5, 4), (None, 4, 4, 12)),
    (lambda: layers.DepthwiseConv1D(2, depth_multiplier=2), (None, 5, 3), (None, 4, 6)),
    (lambda: layers.SeparableConv1D(7, 2), (None, 5, 4), (None, 4, 7)),
])
def test_compute_output_shape_before_build_changes_nothing(make, input_shape, expected):
    # Keras's compute_output_shape is pure: asking for the shape before build must leave
    # the layer as created (a later build on other channels still fits them).
    layer = make()
    before = (layer.get_config(), layer.filters)
    assert layer.compute_output_shape(input_shape) == expected
    assert (layer.get_config(), layer.filters) == before and not layer.built
    x = np.ones((2,) + input_shape[1:-1] + (input_shape[-1] + 1,), np.float32)
    assert layer.forward(x).shape == layer.compute_output_shape(x.shape)
