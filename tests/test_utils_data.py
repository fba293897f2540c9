"""fd.utils.pad_sequences / normalize (keras/src/utils/sequence_utils_test.py,
numerical_utils_test.py) and the image helpers array_to_img, img_to_array, load_img,
save_img (image_utils_test.py), with Keras's literal expectations."""
import numpy as np
import pytest

import fusednn as fd

A = [[1], [1, 2], [1, 2, 3]]


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0, 0, 1], [0, 1, 2], [1, 2, 3]]),
    ({"padding": "post"}, [[1, 0, 0], [1, 2, 0], [1, 2, 3]]),
    ({"maxlen": 2}, [[0, 1], [1, 2], [2, 3]]),
    ({"maxlen": 2, "truncating": "post"}, [[0, 1], [1, 2], [1, 2]]),
    ({"value": 1}, [[1, 1, 1], [1, 1, 2], [1, 2, 3]]),
])
def test_pad_sequences(kwargs, expected):
    # Keras: SequenceUtilsTest.test_pad_sequences.
    out = fd.utils.pad_sequences(A, **kwargs)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


def test_pad_sequences_of_vectors_and_floats_and_strings():
    # Keras: test_pad_sequences_vector, test_pad_sequences_float, test_pad_sequences_str.
    vectors = [[[1, 1]], [[2, 1], [2, 2]], [[3, 1], [3, 2], [3, 3]]]
    np.testing.assert_array_equal(
        fd.utils.pad_sequences(vectors, maxlen=2),
        [[[0, 0], [1, 1]], [[2, 1], [2, 2]], [[3, 2], [3, 3]]])
    floats = fd.utils.pad_sequences([[1.5], [2.5, 3.5]], dtype="float32", padding="post")
    np.testing.assert_array_equal(floats, np.array([[1.5, 0.0], [2.5, 3.5]], np.float32))
    words = fd.utils.pad_sequences([["a"], ["b", "c"]], dtype=object, value="<pad>")
    assert words.tolist() == [["<pad>", "a"], ["b", "c"]]
    with pytest.raises(ValueError, match="cannot hold the string padding value"):
        fd.utils.pad_sequences([["a"]], value="<pad>")


def test_pad_sequences_bad_arguments():
    with pytest.raises(ValueError, match="padding must be 'pre' or 'post'"):
        fd.utils.pad_sequences(A, padding="middle")
    with pytest.raises(ValueError, match="list of iterables"):
        fd.utils.pad_sequences([1, 2])
    with pytest.raises(ValueError, match="items of sequence 1 have shape"):
        fd.utils.pad_sequences([[[1, 2]], [[1, 2, 3]]])


def test_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(fd.utils.normalize(x), [[0.6, 0.8], [0, 0], [1, 0]])
    np.testing.assert_allclose(fd.utils.normalize(x, axis=0, order=1),
                               x / np.array([[4.0, 4.0]]))


def test_image_round_trip(tmp_path):
    pytest.importorskip("PIL")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 7, 3)).astype(np.float32)
    path = tmp_path / "x.png"
    fd.utils.save_img(path, pixels, scale=False)
    loaded = fd.utils.img_to_array(fd.utils.load_img(path))
    assert loaded.dtype == np.float32 and loaded.shape == (5, 7, 3)
    np.testing.assert_array_equal(loaded, pixels)  # PNG is lossless
    gray = fd.utils.img_to_array(fd.utils.load_img(path, color_mode="grayscale"))
    assert gray.shape == (5, 7, 1)
    small = fd.utils.load_img(path, target_size=(2, 3))
    assert (small.height, small.width) == (2, 3)
    first = fd.utils.img_to_array(fd.utils.load_img(path), data_format="channels_first")
    np.testing.assert_array_equal(first, pixels.transpose(2, 0, 1))


def test_array_to_img_scales_to_the_full_range():
    pytest.importorskip("PIL")
    img = fd.utils.array_to_img(np.array([[[0.0], [0.5]], [[1.0], [0.25]]]))
    assert img.mode == "L"
    np.testing.assert_array_equal(np.asarray(img), [[0, 127], [255, 63]])
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        fd.utils.array_to_img(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="rank 3"):
        fd.utils.array_to_img(np.zeros((2, 2)))
