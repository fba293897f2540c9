"""UpSampling2D/1D, ZeroPadding2D and Cropping2D: forward against NumPy (np.repeat,
np.pad, slicing) and PyTorch (interpolate, ZeroPad2d), backward against central
finite differences in float64 and the adjoint identity, Keras's argument forms,
output shapes, configs and bad input; CPU vs CUDA where a GPU exists."""
import numpy as np
import pytest

from fusednn import backend, layers
from gradcheck import numeric_gradient


def check_backward(layer, x, rng):
    """backward(w) is the gradient of sum(forward(x) * w) (all four layers are linear in x,
    so central differences are exact up to rounding: ~1e-16 * |loss| / 1e-6)."""
    y = layer.forward(x, training=True)
    weights = rng.standard_normal(y.shape)
    got = layer.backward(weights)
    x = x.copy()
    want = numeric_gradient(lambda: float((layer.forward(x) * weights).sum()), x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)


# ----- UpSampling ------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(2, 2), (1, 3), (3, 1), 2])
def test_upsampling2d_forward_and_backward(rng, size):
    x = rng.standard_normal((2, 3, 5, 4))
    layer = layers.UpSampling2D(size, dtype="float64")
    sh, sw = (size, size) if isinstance(size, int) else size
    want = np.repeat(np.repeat(x, sh, axis=1), sw, axis=2)
    y = layer(x)
    np.testing.assert_array_equal(y, want)
    assert y.shape == (2, 3 * sh, 5 * sw, 4)
    assert layer.compute_output_shape((None, 3, None, 4)) == (None, 3 * sh, None, 4)
    check_backward(layer, x, rng)


def test_upsampling_defaults_and_1d(rng):
    assert layers.UpSampling2D().size == (2, 2)
    assert layers.UpSampling1D().size == 2
    x = rng.standard_normal((3, 7, 2))
    layer = layers.UpSampling1D(3, dtype="float64")
    y = layer(x)
    np.testing.assert_array_equal(y, np.repeat(x, 3, axis=1))
    assert y.shape == layer.compute_output_shape((3, 7, 2)) == (3, 21, 2)
    check_backward(layer, x, rng)


def test_upsampling_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    want = torch.nn.Upsample(scale_factor=(2, 3), mode="nearest")(
        torch.tensor(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(layers.UpSampling2D((2, 3))(x), want)


# ----- ZeroPadding2D / Cropping2D -----------------------------------------------------------

@pytest.mark.parametrize("argument, pairs", [
    (1, ((1, 1), (1, 1))), ((2, 3), ((2, 2), (3, 3))), (((0, 2), (3, 1)), ((0, 2), (3, 1))),
    ([[1, 0], [0, 4]], ((1, 0), (0, 4))), (0, ((0, 0), (0, 0)))])
def test_zero_padding_forms_forward_and_backward(rng, argument, pairs):
    x = rng.standard_normal((2, 3, 5, 2))
    layer = layers.ZeroPadding2D(argument, dtype="float64")
    assert layer.padding == pairs
    y = layer(x)
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0),) + pairs + ((0, 0),)))
    (t, b), (l, r) = pairs
    assert y.shape == (2, 3 + t + b, 5 + l + r, 2)
    assert layer.compute_output_shape((None, 3, 5, 2)) == (None, 3 + t + b, 5 + l + r, 2)
    assert layer.compute_output_shape((None, None, 5, 2)) == (None, None, 5 + l + r, 2)
    check_backward(layer, x, rng)


def test_zero_padding_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    # torch's ZeroPad2d takes (left, right, top, bottom).
    want = torch.nn.ZeroPad2d((3, 1, 0, 2))(torch.tensor(x.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(layers.ZeroPadding2D(((0, 2), (3, 1)))(x),
                                  want.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("argument, pairs", [
    (1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))), (((0, 2), (3, 1)), ((0, 2), (3, 1))),
    (((0, 0), (0, 0)), ((0, 0), (0, 0)))])
def test_cropping_forms_forward_and_backward(rng, argument, pairs):
    x = rng.standard_normal((2, 7, 6, 3))
    layer = layers.Cropping2D(argument, dtype="float64")
    assert layer.cropping == pairs
    (t, b), (l, r) = pairs
    y = layer(x)
    np.testing.assert_array_equal(y, x[:, t:7 - b, l:6 - r])
    assert y.flags.c_contiguous
    assert layer.compute_output_shape((None, 7, 6, 3)) == (None, 7 - t - b, 6 - l - r, 3)
    check_backward(layer, x, rng)


def test_cropping_undoes_zero_padding(rng):
    x = rng.standard_normal((1, 4, 5, 2)).astype(np.float32)
    pairs = ((1, 2), (0, 3))
    np.testing.assert_array_equal(layers.Cropping2D(pairs)(layers.ZeroPadding2D(pairs)(x)), x)


def test_batch_one_and_float32(rng):
    x = rng.standard_normal((1, 3, 3, 1)).astype(np.float32)
    for layer in [layers.UpSampling2D(), layers.ZeroPadding2D(), layers.Cropping2D(1)]:
        y = layer.forward(x, training=True)
        assert y.dtype == np.float32 and y.shape[0] == 1
        assert layer.backward(np.ones_like(y)).shape == x.shape


# ----- configs and errors --------------------------------------------------------------

def test_configs_round_trip():
    for layer in [layers.UpSampling2D((2, 3)), layers.UpSampling1D(4),
                  layers.ZeroPadding2D(((1, 2), (3, 4))), layers.Cropping2D((1, 0))]:
        clone = layers.deserialize(layers.serialize(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    assert layers.ZeroPadding2D().get_config()["padding"] == [[1, 1], [1, 1]]
    assert layers.Cropping2D().get_config()["cropping"] == [[0, 0], [0, 0]]
    assert layers.UpSampling2D().get_config()["interpolation"] == "nearest"


def test_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match=r"UpSampling2D 'u'.*expected interpolation one of "
                                         r"'nearest', 'bilinear', 'bicubic', got 'area'"):
        layers.UpSampling2D(interpolation="area", name="u")
    with pytest.raises(ValueError, match=r"UpSampling2D.*size.*positive.*got \(0, 2\)"):
        layers.UpSampling2D((0, 2))
    with pytest.raises(ValueError, match=r"UpSampling1D.*size.*got -1"):
        layers.UpSampling1D(-1)
    with pytest.raises(ValueError, match=r"ZeroPadding2D 'z'.*padding.*ints >= 0.*got -1"):
        layers.ZeroPadding2D(-1, name="z")
    with pytest.raises(ValueError, match=r"ZeroPadding2D.*got \(1, 2, 3\)"):
        layers.ZeroPadding2D((1, 2, 3))
    with pytest.raises(ValueError, match=r"Cropping2D.*cropping.*got \(\(1, -1\), \(0, 0\)\)"):
        layers.Cropping2D(((1, -1), (0, 0)))
    with pytest.raises(ValueError, match=r"Cropping2D.*got 1.5"):
        layers.Cropping2D(1.5)


def test_bad_inputs_name_the_layer():
    with pytest.raises(ValueError, match=r"Cropping2D 'c'.*removes 4 of the 4 positions on the "
                                         r"height.*at least one must remain"):
        layers.Cropping2D(((2, 2), (0, 0)), name="c")(np.zeros((1, 4, 6, 1)))
    with pytest.raises(ValueError, match=r"Cropping2D.*width"):
        layers.Cropping2D((0, 3)).compute_output_shape((None, 9, 6, 1))
    for layer, bad in [(layers.UpSampling2D(), np.zeros((2, 3, 4))),
                       (layers.UpSampling1D(), np.zeros((2, 3, 4, 1))),
                       (layers.ZeroPadding2D(), np.zeros((2, 3))),
                       (layers.Cropping2D(), np.zeros((2, 3, 4, 1, 1)))]:
        with pytest.raises(ValueError, match=rf"{type(layer).__name__} .*expected input of rank"):
            layer(bad)


@pytest.mark.cuda
def test_cuda_matches_cpu(rng):
    cp = backend.cupy_module()
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    for layer in [layers.UpSampling2D((2, 3)), layers.ZeroPadding2D(((1, 2), (0, 1))),
                  layers.Cropping2D(((1, 0), (1, 2)))]:
        y = layer.forward(x, training=True)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(dy)
        gy = layer.forward(cp.asarray(x), training=True)
        assert isinstance(gy, cp.ndarray)
        np.testing.assert_allclose(gy.get(), y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(layer.backward(cp.asarray(dy)).get(), dx, rtol=1e-6, atol=1e-6)
    seq = rng.standard_normal((2, 5, 3)).astype(np.float32)
    layer = layers.UpSampling1D(3)
    np.testing.assert_array_equal(layer(cp.asarray(seq)).get(), layer(seq))
