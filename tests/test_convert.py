"""fusednn.convert: PyTorch weights into fusednn layers and whole Sequential models,
checked against the PyTorch modules' own outputs (the recurrent converters are tested
with the recurrent layers in test_layers_recurrent.py)."""
import numpy as np
import pytest

from fusednn import convert, layers, models

torch = pytest.importorskip("torch")

# float32 on both sides; the outputs are sums of at most a few hundred products of O(1)
# values, so the two libraries' summation orders differ by a few hundred float32 ulps
# (~1e-5 relative) at most.
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _state_dict(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def _torch_output(module, x):
    module.eval()
    with torch.no_grad():
        return module(torch.tensor(x)).numpy()


def _converted(layer, input_shape, module):
    layer.build_for(input_shape)
    convert.set_weights_from_torch(layer, _state_dict(module))
    return layer


def _rng(seed):
    return np.random.default_rng(seed)


def test_linear():
    torch.manual_seed(0)
    module = torch.nn.Linear(7, 5)
    x = _rng(0).normal(size=(4, 7)).astype(np.float32)
    layer = _converted(layers.Dense(5), (None, 7), module)
    np.testing.assert_allclose(layer.forward(x), _torch_output(module, x), **TOL)


def test_linear_without_bias_and_wrong_layer_configuration():
    torch.manual_seed(1)
    module = torch.nn.Linear(3, 2, bias=False)
    layer = _converted(layers.Dense(2, use_bias=False), (None, 3), module)
    np.testing.assert_array_equal(layer.get_weights()[0], _state_dict(module)["weight"].T)
    with pytest.raises(ValueError, match="set_weights expected 2 arrays"):
        _converted(layers.Dense(2), (None, 3), module)  # the module has no bias to give
    with pytest.raises(ValueError, match=r"expected shape \(4, 2\)"):
        _converted(layers.Dense(2), (None, 4), torch.nn.Linear(3, 2))


@pytest.mark.parametrize("stride, padding, keras_padding, groups", [
    (1, 0, "valid", 1), (1, 1, "same", 1), (2, 0, "valid", 1), (1, 0, "valid", 2)])
def test_conv2d(stride, padding, keras_padding, groups):
    torch.manual_seed(2)
    module = torch.nn.Conv2d(4, 6, kernel_size=3, stride=stride, padding=padding, groups=groups)
    x = _rng(2).normal(size=(2, 4, 9, 8)).astype(np.float32)  # NCHW for PyTorch
    layer = _converted(layers.Conv2D(6, 3, strides=stride, padding=keras_padding, groups=groups),
                       (None, 9, 8, 4), module)
    y = layer.forward(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(y, _torch_output(module, x).transpose(0, 2, 3, 1), **TOL)


def test_conv1d():
    torch.manual_seed(3)
    module = torch.nn.Conv1d(3, 5, kernel_size=4, dilation=2)
    x = _rng(3).normal(size=(2, 3, 12)).astype(np.float32)  # NCT for PyTorch
    layer = _converted(layers.Conv1D(5, 4, dilation_rate=2), (None, 12, 3), module)
    y = layer.forward(x.transpose(0, 2, 1))
    np.testing.assert_allclose(y, _torch_output(module, x).transpose(0, 2, 1), **TOL)


def test_conv_transpose2d():
    torch.manual_seed(4)
    # kernel 3 >= stride 2: Keras's "valid" output (H - 1) * s + k is PyTorch's padding=0.
    module = torch.nn.ConvTranspose2d(3, 5, kernel_size=3, stride=2)
    x = _rng(4).normal(size=(2, 3, 5, 6)).astype(np.float32)
    layer = _converted(layers.Conv2DTranspose(5, 3, strides=2), (None, 5, 6, 3), module)
    y = layer.forward(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(y, _torch_output(module, x).transpose(0, 2, 3, 1), **TOL)


def _trained_statistics(module, shape, seed):
    """Random running statistics, weight and bias, so that none is at its default."""
    rng = _rng(seed)
    channels = module.num_features
    with torch.no_grad():
        module.running_mean.copy_(torch.tensor(rng.normal(size=channels)))
        module.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, size=channels)))
        if module.affine:
            module.weight.copy_(torch.tensor(rng.normal(size=channels)))
            module.bias.copy_(torch.tensor(rng.normal(size=channels)))
    return rng.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm2d(affine):
    module = torch.nn.BatchNorm2d(4, affine=affine)
    x = _trained_statistics(module, (3, 4, 5, 6), 5)
    layer = _converted(layers.BatchNormalization(epsilon=1e-5, center=affine, scale=affine),
                       (None, 5, 6, 4), module)
    y = layer.forward(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(y, _torch_output(module, x).transpose(0, 2, 3, 1), **TOL)


def test_batch_norm1d():
    module = torch.nn.BatchNorm1d(6)
    x = _trained_statistics(module, (5, 6), 6)
    layer = _converted(layers.BatchNormalization(epsilon=1e-5), (None, 6), module)
    np.testing.assert_allclose(layer.forward(x), _torch_output(module, x), **TOL)


def test_embedding():
    torch.manual_seed(7)
    module = torch.nn.Embedding(10, 3)
    ids = _rng(7).integers(0, 10, size=(4, 5))
    layer = _converted(layers.Embedding(10, 3), (None, 5), module)
    with torch.no_grad():
        expected = module(torch.tensor(ids)).numpy()
    np.testing.assert_array_equal(layer.forward(ids), expected)  # a copy: exact


def test_time_distributed_takes_the_wrapped_layers_weights():
    torch.manual_seed(8)
    module = torch.nn.Linear(4, 2)
    x = _rng(8).normal(size=(3, 5, 4)).astype(np.float32)
    layer = _converted(layers.TimeDistributed(layers.Dense(2)), (None, 5, 4), module)
    np.testing.assert_allclose(layer.forward(x), _torch_output(module, x), **TOL)


def _cnn_pair(with_batch_norm):
    """The same CNN in PyTorch (NCHW) and fusednn (NHWC), with a Flatten before Dense."""
    torch.manual_seed(9)
    torch_layers = [torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                    torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 3, 3), torch.nn.ReLU(),
                    torch.nn.Flatten()]
    fd_layers = [layers.Conv2D(4, 3, padding="same", activation="relu",
                               input_shape=(8, 10, 2)),
                 layers.MaxPooling2D(), layers.Conv2D(3, 3), layers.ReLU(), layers.Flatten()]
    if with_batch_norm:
        torch_layers.append(torch.nn.BatchNorm1d(3 * 2 * 3))
        fd_layers.append(layers.BatchNormalization(epsilon=1e-5))
    torch_layers += [torch.nn.Dropout(0.5), torch.nn.Linear(3 * 2 * 3, 5), torch.nn.Tanh(),
                     torch.nn.Linear(5, 2)]
    fd_layers += [layers.Dropout(0.5), layers.Dense(5, activation="tanh"), layers.Dense(2)]
    return torch.nn.Sequential(*torch_layers), models.Sequential(fd_layers)


@pytest.mark.parametrize("with_batch_norm", [False, True])
def test_sequential_cnn_with_flatten_before_dense(with_batch_norm):
    module, model = _cnn_pair(with_batch_norm)
    x = _rng(9).normal(size=(6, 2, 8, 10)).astype(np.float32)
    if with_batch_norm:
        _trained_statistics(module[6], (1,), 10)
    convert.set_sequential_weights_from_torch(model, _state_dict(module))
    expected = _torch_output(module, x)
    np.testing.assert_allclose(model.predict(x.transpose(0, 2, 3, 1)), expected, **TOL)
    # The permutation matters: the Dense given PyTorch's rows as they are computes
    # something else.
    linear = 8 if with_batch_norm else 7
    dense = model.layers[-2]
    dense.set_weights(convert.linear_weights_from_torch(_state_dict(module), f"{linear}."))
    assert not np.allclose(model.predict(x.transpose(0, 2, 3, 1)), expected, **TOL)


def test_sequential_channels_first_needs_no_permutation():
    """Layers with data_format="channels_first" take PyTorch's NCHW input as it is and
    flatten in its order; a Flatten(data_format="channels_first") flattens channels last."""
    torch.manual_seed(13)
    module = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(),
                                 torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(3 * 3 * 2, 4))
    x = _rng(13).normal(size=(5, 2, 8, 6)).astype(np.float32)
    expected = _torch_output(module, x)
    for flatten_format in ("channels_last", "channels_first"):
        model = models.Sequential([
            layers.Conv2D(3, 3, activation="relu", data_format="channels_first",
                          input_shape=(2, 8, 6)),
            layers.MaxPooling2D(data_format="channels_first"),
            layers.Flatten(data_format=flatten_format), layers.Dense(4)])
        convert.set_sequential_weights_from_torch(model, _state_dict(module))
        np.testing.assert_allclose(model.predict(x), expected, **TOL)


def test_sequential_recurrent_stack():
    torch.manual_seed(11)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    head = torch.nn.Linear(4, 2)
    state_dict = {**{f"0.{k}": v for k, v in _state_dict(lstm).items()},
                  **{f"1.{k}": v for k, v in _state_dict(head).items()}}
    model = models.Sequential([layers.LSTM(4, return_sequences=True, input_shape=(6, 3)),
                               layers.LSTM(4), layers.Dense(2)])
    convert.set_sequential_weights_from_torch(model, state_dict)
    x = _rng(11).normal(size=(5, 6, 3)).astype(np.float32)
    with torch.no_grad():
        expected = head(lstm(torch.tensor(x))[0][:, -1]).numpy()
    np.testing.assert_allclose(model.predict(x), expected, **TOL)


def test_sequential_errors_leave_the_model_unchanged():
    module, model = _cnn_pair(False)
    before = model.get_weights()
    state_dict = _state_dict(module)
    with pytest.raises(ValueError, match=r"5 modules with weights \(0, 3, 7, 9, 11\) .* 4 layers with weights"):
        convert.set_sequential_weights_from_torch(
            model, {**state_dict, "11.weight": np.zeros((2, 2), np.float32)})
    wrong = dict(state_dict, **{"9.weight": np.zeros((2, 6), np.float32)})
    with pytest.raises(ValueError, match=r"module '9' -> Dense .*shapes"):
        convert.set_sequential_weights_from_torch(model, wrong)
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)
    with pytest.raises(ValueError, match="built"):
        convert.set_sequential_weights_from_torch(models.Sequential([layers.Dense(2)]),
                                                  state_dict)
    with pytest.raises(TypeError, match="dict"):
        convert.set_sequential_weights_from_torch(model, [1, 2])


def test_layer_errors():
    state_dict = _state_dict(torch.nn.Conv2d(2, 3, 3))
    conv = layers.Conv2D(3, 3)
    conv.build_for((None, 5, 5, 2))
    with pytest.raises(ValueError, match="layer_index"):
        convert.set_weights_from_torch(conv, state_dict, layer_index=1)
    with pytest.raises(ValueError, match="flattened_shape"):
        convert.set_weights_from_torch(conv, state_dict, flattened_shape=(2, 2, 3))
    with pytest.raises(ValueError, match="rank 2"):
        convert.linear_weights_from_torch(state_dict)
    with pytest.raises(TypeError, match="floating-point"):
        convert.embedding_weights_from_torch({"weight": np.zeros((3, 2), np.int64)})
    with pytest.raises(ValueError, match="turns .* into 12 features"):
        convert.linear_weights_from_torch({"weight": np.zeros((2, 10))}, flattened_shape=(2, 2, 3))
    # a grouped convolution's weight (F, C / groups, K, K) does not fit the Conv2D kernel
    grouped = layers.Conv2D(4, 3)
    grouped.build_for((None, 5, 5, 2))
    with pytest.raises(ValueError, match="set_weights expected shape"):
        convert.set_weights_from_torch(grouped, _state_dict(torch.nn.Conv2d(2, 4, 3, groups=2)))
    with pytest.raises(ValueError, match="running_var"):
        convert.batch_norm_weights_from_torch({"running_mean": np.zeros(3)})
