"""data_format="channels_first" (Keras's NCHW / NCT layouts) on the convolution, pooling,
upsampling, padding and cropping layers: equal to the channels-last layer on transposed
data, against PyTorch's NCHW convolution, and float64 finite differences."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import layers

from gradcheck import check_layer_gradients

F64 = dict(dtype="float64")

CASES = [
    ("conv2d", lambda f: layers.Conv2D(3, (3, 2), padding="same", activation="tanh",
                                       data_format=f, **F64), (2, 4, 5, 6)),
    ("conv2d_strided", lambda f: layers.Conv2D(2, 3, strides=2, data_format=f, **F64),
     (2, 3, 7, 6)),
    ("conv1d", lambda f: layers.Conv1D(3, 3, padding="causal", data_format=f, **F64), (2, 4, 7)),
    ("conv2d_transpose", lambda f: layers.Conv2DTranspose(2, 3, strides=2, data_format=f, **F64),
     (2, 3, 4, 5)),
    ("max_pool2d", lambda f: layers.MaxPooling2D((2, 3), padding="same", data_format=f, **F64),
     (2, 3, 5, 7)),
    ("avg_pool1d", lambda f: layers.AveragePooling1D(2, data_format=f, **F64), (2, 3, 6)),
    ("global_max2d", lambda f: layers.GlobalMaxPooling2D(data_format=f, **F64), (2, 3, 4, 5)),
    ("global_avg1d_keepdims", lambda f: layers.GlobalAveragePooling1D(
        data_format=f, keepdims=True, **F64), (2, 3, 6)),
    ("upsampling2d", lambda f: layers.UpSampling2D((2, 3), data_format=f, **F64), (2, 3, 4, 2)),
    ("upsampling2d_bilinear", lambda f: layers.UpSampling2D(
        2, data_format=f, interpolation="bilinear", **F64), (1, 2, 3, 3)),
    ("zero_padding2d", lambda f: layers.ZeroPadding2D(((1, 2), (0, 3)), data_format=f, **F64),
     (2, 3, 4, 5)),
    ("cropping2d", lambda f: layers.Cropping2D(((1, 0), (2, 1)), data_format=f, **F64),
     (2, 3, 5, 6)),
]


def _last(x):
    return np.moveaxis(x, 1, -1)


def _first(y):
    return np.moveaxis(y, -1, 1) if y.ndim > 2 else y


@pytest.mark.parametrize("name, make, shape", CASES, ids=[c[0] for c in CASES])
def test_channels_first_equals_channels_last_on_transposed_data(name, make, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    first, last = make("channels_first"), make("channels_last")
    first.build_for((None,) + shape[1:])
    last.build_for((None,) + _last(x).shape[1:])
    if last.weights:
        last.set_weights(first.get_weights())  # kernels are the same in both formats
    y = first.forward(x, training=True)
    np.testing.assert_allclose(y, _first(last.forward(_last(x))), rtol=1e-12, atol=1e-12)
    assert y.shape == first.compute_output_shape(x.shape)
    assert first.output_shape[1:] == y.shape[1:]
    check_layer_gradients(first, x, training=True)
    rebuilt = type(first).from_config(first.get_config())
    assert rebuilt.data_format == "channels_first"


def test_conv2d_channels_first_matches_torch_nchw():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 6, 5))
    conv = layers.Conv2D(4, (3, 2), strides=(1, 2), padding="valid", data_format="channels_first",
                         **F64)
    y = conv.forward(x)
    kernel, bias = conv.get_weights()  # (KH, KW, C, F): torch wants (F, C, KH, KW)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x),
                                          torch.from_numpy(kernel.transpose(3, 2, 0, 1)),
                                          torch.from_numpy(bias), stride=(1, 2)).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_a_channels_first_cnn_trains_like_its_channels_last_twin():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 16)

    def model(data_format):
        fd.utils.set_random_seed(3)
        return fd.Sequential([
            layers.Conv2D(4, 3, activation="relu", data_format=data_format,
                          input_shape=(1, 8, 8) if data_format == "channels_first" else (8, 8, 1)),
            layers.MaxPooling2D(2, data_format=data_format),
            layers.GlobalAveragePooling2D(data_format=data_format),
            layers.Dense(3, activation="softmax")])

    first, last = model("channels_first"), model("channels_last")
    last.set_weights(first.get_weights())
    for m in (first, last):
        m.compile("sgd", "sparse_categorical_crossentropy")
    h_first = first.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    h_last = last.fit(_last(x), y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_allclose(h_first.history["loss"], h_last.history["loss"], rtol=1e-5)
    assert first.layers[0].output_shape == (None, 4, 6, 6)


def test_bad_data_format():
    with pytest.raises(ValueError, match="expected data_format 'channels_last' or "
                                         "'channels_first'"):
        layers.MaxPooling2D(data_format="NHWC")
