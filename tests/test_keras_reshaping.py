"""The reshaping layers fusednn has against Keras 3's keras/src/layers/reshaping tests
(v3.15.1): flatten_test.py, reshape_test.py, repeat_vector_test.py, cropping2d_test.py,
zero_padding2d_test.py, up_sampling1d_test.py, up_sampling2d_test.py. Their literal values
and shapes; the NumPy references Keras writes (np.reshape, np.repeat, slices)."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import layers

from keras_layer_check import run_layer_check

FORMATS = ["channels_first", "channels_last"]


# ----- flatten_test.py -------------------------------------------------------------------

def test_flatten():
    # Keras: FlattenTest.test_flatten (dense case; fusednn has no sparse tensors).
    rng = np.random.default_rng(0)
    x = rng.random((10, 3, 5, 5)).astype(np.float32)
    x = x * (x >= 0.8)
    last = x.reshape(-1, 75)
    first = np.transpose(x, (0, 2, 3, 1)).reshape(-1, 75)
    run_layer_check(layers.Flatten, {}, input_data=x, expected_output=last)
    run_layer_check(layers.Flatten, {"data_format": "channels_last"}, input_data=x,
                    expected_output=last)
    run_layer_check(layers.Flatten, {"data_format": "channels_first"}, input_data=x,
                    expected_output=first)


@pytest.mark.parametrize("data_format", [None, "channels_last", "channels_first"])
def test_flatten_with_scalar_channels(data_format):
    # Keras: FlattenTest.test_flatten_with_scalar_channels ((10,) -> (10, 1)).
    x = np.random.default_rng(1).random((10,)).astype(np.float32)
    kwargs = {} if data_format is None else {"data_format": data_format}
    run_layer_check(layers.Flatten, kwargs, input_data=x, expected_output=x[:, None])


def test_flatten_symbolic_shapes():
    # Keras: test_flatten_symbolic_with_dynamic_batch_size / _with_dynamic_dimension.
    assert tuple(layers.Flatten()(layers.Input(batch_shape=(None, 2, 3))).shape) == (None, 6)
    assert tuple(layers.Flatten()(layers.Input(batch_shape=(5, 2, None))).shape) == (5, None)


def test_flatten_with_dynamic_batch_size_and_dynamic_dimensions():
    # Keras: test_flatten_with_dynamic_batch_size_and_dynamic_dimenstions.
    model = fd.Sequential([layers.Flatten()])
    assert model.predict(np.ones((3, 5, 7), np.float32), verbose=0).shape == (3, 35)
    assert model.predict(np.ones((2, 7, 5), np.float32), verbose=0).shape == (2, 35)


# ----- reshape_test.py -------------------------------------------------------------------

@pytest.mark.parametrize("target, input_shape, output_shape", [
    ((8, 1), (3, 2, 4), (3, 8, 1)), ((8,), (3, 2, 4), (3, 8)), ((2, 4), (3, 8), (3, 2, 4)),
    ((-1, 1), (3, 2, 4), (3, 8, 1)), ((1, -1), (3, 2, 4), (3, 1, 8)),
    ((-1,), (3, 2, 4), (3, 8)), ((2, -1), (3, 2, 4), (3, 2, 4)),
])
def test_reshape(target, input_shape, output_shape):
    # Keras: ReshapeTest.test_reshape (dense cases).
    run_layer_check(layers.Reshape, {"target_shape": target}, input_shape, output_shape)


def test_reshape_symbolic_shapes():
    # Keras: test_reshape_with_dynamic_batch_size, test_reshape_sets_static_shape.
    assert tuple(layers.Reshape((8,))(layers.Input(shape=(2, 4))).shape) == (None, 8)
    assert tuple(layers.Reshape((3, 5))(layers.Input(batch_shape=(2, None))).shape) == (2, 3, 5)


def test_reshape_rejects_invalid_target_shape():
    # Keras: ReshapeTest.test_reshape_rejects_invalid_target_shape.
    with pytest.raises(ValueError, match=r"-2"):
        layers.Reshape(target_shape=(-2, 5))
    with pytest.raises(ValueError, match=r"-1"):
        layers.Reshape(target_shape=(-1, -1, 5))


def test_reshape_with_minus_one_and_unknown_sizes():
    # Keras: test_reshape_with_dynamic_batch_size_and_minus_one,
    # test_reshape_with_dynamic_dim_and_minus_one.
    assert layers.Reshape((-1, 8)).compute_output_shape((None, 6, 4)) == (None, 3, 8)
    assert layers.Reshape((-1, 3)).compute_output_shape((4, 6, None, 3)) == (4, None, 3)


def test_reshape_layer_with_varying_input_size_and_minus_one():
    # Keras: ReshapeTest.test_reshape_layer_with_varying_input_size_and_minus_one.
    layer = layers.Reshape((-1, 8))
    assert layer.forward(np.ones((1, 6, 4), np.float32)).shape == (1, 3, 8)
    assert layer.forward(np.ones((1, 10, 4), np.float32)).shape == (1, 5, 8)


# ----- repeat_vector_test.py -------------------------------------------------------------

def test_repeat_vector():
    # Keras: RepeatVectorTest.test_repeat_vector and its symbolic shapes.
    x = np.random.default_rng(2).random((2, 5)).astype(np.float32)
    run_layer_check(layers.RepeatVector, {"n": 3}, input_data=x,
                    expected_output=np.repeat(x.reshape(2, 1, 5), 3, axis=1))
    assert tuple(layers.RepeatVector(n=3)(layers.Input(batch_shape=(None, 5))).shape) == \
        (None, 3, 5)
    assert tuple(layers.RepeatVector(n=3)(layers.Input(batch_shape=(2, None))).shape) == \
        (2, 3, None)


@pytest.mark.parametrize("n", ["3", 3.5, [3]])
def test_repeat_vector_with_invalid_n(n):
    with pytest.raises(TypeError):
        layers.RepeatVector(n=n)


@pytest.mark.parametrize("n", [0, -3])
def test_repeat_vector_with_non_positive_n(n):
    with pytest.raises(ValueError, match="positive integer"):
        layers.RepeatVector(n=n)


# ----- cropping2d_test.py ----------------------------------------------------------------

@pytest.mark.parametrize("cropping, ranges", [
    (((1, 2), (3, 4)), ((1, 5), (3, 5))), (((2, 2), (2, 2)), ((2, 5), (2, 7))),
    ((2, 2), ((2, 5), (2, 7))), (2, ((2, 5), (2, 7))), (((0, 2), (0, 4)), ((0, 5), (0, 5))),
    (((1, 0), (3, 0)), ((1, 7), (3, 9))), (((1, 0), (3, 4)), ((1, 7), (3, 5))),
    (((1, 2), (3, 0)), ((1, 5), (3, 9))),
])
@pytest.mark.parametrize("data_format", FORMATS)
def test_cropping_2d(cropping, ranges, data_format):
    # Keras: Cropping2DTest.test_cropping_2d.
    (r0, r1), (c0, c1) = ranges
    rng = np.random.default_rng(3)
    if data_format == "channels_first":
        x = rng.random((3, 5, 7, 9))
        expected = x[:, :, r0:r1, c0:c1]
    else:
        x = rng.random((3, 7, 9, 5))
        expected = x[:, r0:r1, c0:c1, :]
    run_layer_check(layers.Cropping2D, {"cropping": cropping, "data_format": data_format},
                    input_data=x.astype(np.float32), expected_output=expected.astype(np.float32))


def test_cropping_2d_with_dynamic_spatial_dim():
    # Keras: Cropping2DTest.test_cropping_2d_with_dynamic_spatial_dim (channels_last).
    cropped = layers.Cropping2D(((1, 2), (3, 4)))(layers.Input(batch_shape=(1, 7, None, 5)))
    assert tuple(cropped.shape) == (1, 4, None, 5)


@pytest.mark.parametrize("cropping", [((3, 6), (0, 0)), ((0, 0), (5, 4))])
@pytest.mark.parametrize("data_format", FORMATS)
def test_cropping_2d_errors_if_cropping_more_than_available(cropping, data_format):
    with pytest.raises(ValueError):
        layers.Cropping2D(cropping=cropping, data_format=data_format)(
            layers.Input(batch_shape=(3, 7, 9, 5)))


@pytest.mark.parametrize("cropping", [(1,), (1, 2, 3), "1", ((1, 2), (3, 4, 5)),
                                      ((1, 2), (3, -4)), ((1, 2), "3")])
def test_cropping_2d_errors_if_cropping_argument_invalid(cropping):
    with pytest.raises(ValueError):
        layers.Cropping2D(cropping=cropping)


@pytest.mark.parametrize("cropping", [((4, 5), (0, 0)), ((0, 0), (5, 5)), ((6, 3), (0, 0)),
                                      ((0, 0), (7, 3))])
@pytest.mark.parametrize("data_format", FORMATS)
def test_cropping_2d_error_on_excessive_cropping(cropping, data_format):
    # Keras: Cropping2DTest.test_cropping_2d_error_on_excessive_cropping (Keras's message).
    layer = layers.Cropping2D(cropping=cropping, data_format=data_format)
    with pytest.raises(ValueError, match="(?i)values in `cropping` argument should be smaller "
                                         "than the corresponding spatial dimension of the input"):
        layer.forward(np.random.default_rng(4).random((3, 8, 9, 5)))


# ----- zero_padding2d_test.py ------------------------------------------------------------

@pytest.mark.parametrize("data_format", FORMATS)
def test_zero_padding_2d(data_format):
    # Keras: ZeroPadding2DTest.test_zero_padding_2d.
    x = np.random.default_rng(5).random((1, 2, 3, 4)).astype(np.float32)
    y = layers.ZeroPadding2D(padding=((1, 2), (3, 4)), data_format=data_format).forward(x)
    if data_format == "channels_first":
        y = np.transpose(y, (0, 2, 3, 1))
        x = np.transpose(x, (0, 2, 3, 1))
    for index in [0, -1, -2]:
        np.testing.assert_array_equal(y[:, index, :, :], 0.0)
    for index in [0, 1, 2, -1, -2, -3, -4]:
        np.testing.assert_array_equal(y[:, :, index, :], 0.0)
    np.testing.assert_array_equal(y[:, 1:-2, 3:-4, :], x)


@pytest.mark.parametrize("padding", [((2, 2), (2, 2)), (2, 2), 2])
@pytest.mark.parametrize("data_format", FORMATS)
def test_zero_padding_2d_with_same_padding(padding, data_format):
    x = np.random.default_rng(6).random((1, 2, 3, 4)).astype(np.float32)
    y = layers.ZeroPadding2D(padding=padding, data_format=data_format).forward(x)
    if data_format == "channels_first":
        y = np.transpose(y, (0, 2, 3, 1))
        x = np.transpose(x, (0, 2, 3, 1))
    for index in [0, 1, -1, -2]:
        np.testing.assert_array_equal(y[:, index, :, :], 0.0)
        np.testing.assert_array_equal(y[:, :, index, :], 0.0)
    np.testing.assert_array_equal(y[:, 2:-2, 2:-2, :], x)


def test_zero_padding_2d_with_dynamic_spatial_dim():
    padded = layers.ZeroPadding2D(((1, 2), (3, 4)))(layers.Input(batch_shape=(1, 2, None, 4)))
    assert tuple(padded.shape) == (1, 5, None, 4)


@pytest.mark.parametrize("padding", [(1,), (1, 2, 3), "1", ((1, 2), (3, 4, 5)),
                                     ((1, 2), (3, -4)), ((1, 2), "3")])
def test_zero_padding_2d_errors_if_padding_argument_invalid(padding):
    with pytest.raises(ValueError):
        layers.ZeroPadding2D(padding)


@pytest.mark.parametrize("data_format", FORMATS)
def test_zero_padding_2d_get_config(data_format):
    # Keras: ZeroPadding2DTest.test_zero_padding_2d_get_config (padding as pairs).
    config = layers.ZeroPadding2D(padding=(1, 2), data_format=data_format).get_config()
    assert config["data_format"] == data_format
    assert tuple(map(tuple, config["padding"])) == ((1, 1), (2, 2))


# ----- up_sampling1d_test.py -------------------------------------------------------------

def test_upsampling_1d():
    # Keras: UpSamplingTest.test_upsampling_1d (supports_masking=False).
    run_layer_check(layers.UpSampling1D, {"size": 2}, (3, 5, 4), (3, 10, 4),
                    supports_masking=False)


def test_upsampling_1d_correctness():
    y = layers.UpSampling1D(size=2).forward(np.arange(12.0).reshape((2, 2, 3)))
    np.testing.assert_array_equal(y, [[[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5]],
                                      [[6, 7, 8], [6, 7, 8], [9, 10, 11], [9, 10, 11]]])
    np.testing.assert_array_equal(layers.UpSampling1D(size=3).forward(np.ones((2, 1, 5))),
                                  np.ones((2, 3, 5)))


def test_upsampling_1d_with_unknown_sizes():
    # Keras: test_upsampling_1d_with_dynamic_batch_size / _with_dynamic_shape.
    assert layers.UpSampling1D(size=2).compute_output_shape((None, 2, 3)) == (None, 4, 3)
    assert layers.UpSampling1D(size=4).compute_output_shape((None, 2, 3)) == (None, 8, 3)
    assert layers.UpSampling1D(size=2).compute_output_shape((2, None, 3)) == (2, None, 3)
    assert layers.UpSampling1D(size=4).compute_output_shape((2, 3, None)) == (2, 12, None)


@pytest.mark.parametrize("size", [0, -2])
def test_upsampling_1d_with_non_positive_size(size):
    with pytest.raises(ValueError, match="positive integer"):
        layers.UpSampling1D(size=size)


@pytest.mark.parametrize("size", [2.5, "2", True])
def test_upsampling_1d_with_invalid_size(size):
    with pytest.raises(TypeError):
        layers.UpSampling1D(size=size)


# ----- up_sampling2d_test.py -------------------------------------------------------------

@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("length_col", [2, 3])
def test_upsampling_2d(data_format, length_col):
    # Keras: UpSampling2dTest.test_upsampling_2d (np.repeat along the two spatial axes).
    rng = np.random.default_rng(7)
    first = data_format == "channels_first"
    x = rng.random((2, 2, 11, 12) if first else (2, 11, 12, 2)).astype(np.float32)
    out_shape = (2, 2, 22, 24) if first else (2, 22, 24, 2)
    run_layer_check(layers.UpSampling2D, {"size": (2, 2), "data_format": data_format},
                    x.shape, out_shape)
    y = layers.UpSampling2D(size=(2, length_col), data_format=data_format).forward(x)
    rows, cols = (2, 3) if first else (1, 2)
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, 2, axis=rows), length_col,
                                               axis=cols))


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("length_col", [2, 3])
def test_upsampling_2d_bilinear(data_format, length_col):
    # Keras: UpSampling2dTest.test_upsampling_2d_bilinear (the output shapes).
    first = data_format == "channels_first"
    x = np.random.default_rng(8).random((2, 2, 11, 12) if first else (2, 11, 12, 2))
    run_layer_check(layers.UpSampling2D, {"size": (2, 2), "data_format": data_format,
                                          "interpolation": "bilinear"},
                    x.shape, (2, 2, 22, 24) if first else (2, 22, 24, 2))
    y = layers.UpSampling2D(size=(2, length_col), data_format=data_format,
                            interpolation="bilinear").forward(x)
    assert y.shape[2 if first else 1] == 22 and y.shape[3 if first else 2] == 12 * length_col


def test_upsampling_2d_correctness():
    # Keras: UpSampling2dTest.test_upsampling_2d_correctness.
    x = np.arange(12.0).reshape((2, 2, 1, 3))
    expected = [[[[0, 1, 2], [0, 1, 2]], [[3, 4, 5], [3, 4, 5]]],
                [[[6, 7, 8], [6, 7, 8]], [[9, 10, 11], [9, 10, 11]]]]
    np.testing.assert_array_equal(layers.UpSampling2D(size=(1, 2)).forward(x), expected)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
def test_upsampling_2d_various_interpolation_methods(interpolation):
    x = np.arange(12.0).reshape((2, 2, 1, 3))
    y = layers.UpSampling2D(size=(1, 2), interpolation=interpolation).forward(x)
    assert y.shape == (2, 2, 2, 3)
