"""Bilinear and bicubic upsampling (fusednn.ops.resize, UpSampling2D(interpolation=...)):
bilinear against PyTorch's interpolate (the same half-pixel definition), bicubic against a
direct NumPy transcription of Keys's cubic (a = -0.5, TensorFlow's and JAX's), gradients
against float64 finite differences."""
import numpy as np
import pytest

from fusednn import layers
from fusednn.ops import resize

from gradcheck import check_layer_gradients

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("size", [(2, 2), (3, 2), (1, 4)])
def test_bilinear_matches_torch(size):
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 3))
    y = resize.upsample_interpolated2d(x, size, "bilinear")
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), scale_factor=size, mode="bilinear",
        align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def _bicubic_reference(x, scale):
    """One axis at a time, tap by tap (clamped indices), in plain Python loops."""
    def cubic(d, a=-0.5):
        d = abs(d)
        if d <= 1:
            return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
        return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a if d < 2 else 0.0

    def along(values, axis, s):
        n = values.shape[axis]
        moved = np.moveaxis(values, axis, 0)
        out = np.zeros((n * s,) + moved.shape[1:])
        for o in range(n * s):
            src = (o + 0.5) / s - 0.5
            base = int(np.floor(src))
            for k in range(-1, 3):
                out[o] += cubic(src - (base + k)) * moved[min(max(base + k, 0), n - 1)]
        return np.moveaxis(out, 0, axis)

    return along(along(x, 1, scale[0]), 2, scale[1])


def test_bicubic_matches_keys_cubic():
    x = np.random.default_rng(1).normal(size=(1, 5, 4, 2))
    np.testing.assert_allclose(resize.upsample_interpolated2d(x, (2, 3), "bicubic"),
                               _bicubic_reference(x, (2, 3)), rtol=1e-12, atol=1e-12)


def test_constant_images_stay_constant():
    # Each row of the interpolation matrices sums to 1.
    for method in resize.METHODS:
        y = resize.upsample_interpolated2d(np.full((1, 3, 3, 1), 2.5), 3, method)
        np.testing.assert_allclose(y, 2.5, rtol=1e-12)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_upsampling2d_layer_gradients(interpolation):
    layer = layers.UpSampling2D((2, 3), interpolation=interpolation, dtype="float64")
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 2))
    assert layer.forward(x).shape == layer.compute_output_shape(x.shape)
    check_layer_gradients(layer, x)
    assert layers.UpSampling2D.from_config(layer.get_config()).interpolation == interpolation


def test_bad_interpolation_and_inputs():
    with pytest.raises(ValueError, match="expected interpolation one of"):
        layers.UpSampling2D(interpolation="area")
    with pytest.raises(ValueError, match="rank 4"):
        resize.upsample_interpolated2d(np.ones((2, 3)), 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        resize.upsample_interpolated2d(np.ones((1, 2, 2, 1), np.int32), 2)
