"""image_dataset_from_directory / text_dataset_from_directory against Keras 3 itself (torch
backend). Keras's public functions build tf.data (or grain) pipelines, absent here, so the
comparison calls the pieces they are made of, which need neither: dataset_utils.
index_directory and get_training_or_validation_split (file order, labels, class_names, the
seeded shuffle and the split) and image_dataset_utils._load_image_grain (Pillow decoding and
keras.ops.image.resize, the per-image work of format="grain")."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
Image = pytest.importorskip("PIL.Image")
if keras.backend.backend() != "torch":
    pytest.skip("these tests run Keras on its torch backend", allow_module_level=True)

from keras.src.utils import dataset_utils, image_dataset_utils  # noqa: E402

import fusednn as fd  # noqa: E402

FORMATS = image_dataset_utils.ALLOWLIST_FORMATS


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Four classes of random images of varied sizes, PNG and JPEG, some nested."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("zebra", "Ant", "bee", "cow"):
        os.makedirs(root / name / "deep" / "er")
        for i in range(6):
            h, w = rng.integers(5, 30, 2)
            folder = root / name / ("deep/er" if i == 0 else "deep" if i == 1 else "")
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                folder / f"{'ABcd'[i % 4]}{i}.{'png' if i % 2 else 'JPG'}")
    return root


def _keras_index(root, shuffle, seed, labels="inferred", class_names=None):
    return dataset_utils.index_directory(str(root), labels, formats=FORMATS,
                                         class_names=class_names, shuffle=shuffle, seed=seed)


@pytest.mark.parametrize("class_names", [None, ["cow", "Ant"]])
def test_file_order_labels_and_class_names_match_keras(image_dir, class_names):
    paths, labels, names = _keras_index(image_dir, False, None, class_names=class_names)
    ds = fd.utils.image_dataset_from_directory(image_dir, class_names=class_names,
                                               shuffle=False, image_size=(4, 4), verbose=False)
    assert ds.class_names == names and ds.file_paths == paths
    np.testing.assert_array_equal(np.concatenate([ds[i][1] for i in range(len(ds))]), labels)


@pytest.mark.parametrize("seed", [0, 7, 123456])
def test_seeded_split_membership_matches_keras(image_dir, seed):
    # Keras's split is its index (shuffled with RandomState(seed)) cut at the last
    # int(validation_split * N) files; the same seed must give the same files and labels.
    paths, labels, _ = _keras_index(image_dir, True, seed)
    for subset in ("training", "validation"):
        keras_paths, keras_labels = dataset_utils.get_training_or_validation_split(
            paths, labels, 0.3, subset)
        ds = fd.utils.image_dataset_from_directory(
            image_dir, validation_split=0.3, subset=subset, seed=seed, image_size=(4, 4),
            batch_size=64, verbose=False)
        assert ds.file_paths == keras_paths
        label_of = dict(zip(keras_paths, keras_labels))
        x, y = ds[0]
        assert [label_of[ds.file_paths[i]] for i in ds._order] == list(y)


def test_explicit_labels_shuffle_like_keras(image_dir):
    given = [i % 5 for i in range(24)]
    paths, labels, names = _keras_index(image_dir, True, 3, labels=list(given))
    ds = fd.utils.image_dataset_from_directory(image_dir, labels=given, seed=3,
                                               image_size=(4, 4), verbose=False)
    assert ds.file_paths == paths and ds.class_names == names
    np.testing.assert_array_equal(ds.labels, labels)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("aspect", ["stretch", "crop", "pad"])
@pytest.mark.parametrize("color_mode,channels", [("rgb", 3), ("grayscale", 1)])
def test_pixels_match_keras_resize(image_dir, interpolation, aspect, color_mode, channels):
    size = (11, 16)  # shrinks some images and enlarges others, with other aspect ratios
    crop, pad = aspect == "crop", aspect == "pad"
    ds = fd.utils.image_dataset_from_directory(
        image_dir, image_size=size, shuffle=False, batch_size=64, color_mode=color_mode,
        interpolation=interpolation, crop_to_aspect_ratio=crop, pad_to_aspect_ratio=pad,
        verbose=False)
    x, _ = ds[0]
    expected = np.stack([np.asarray(image_dataset_utils._load_image_grain(
        path, size, channels, interpolation, "channels_last", crop, pad))
        for path in ds.file_paths])
    # Nearest copies pixels: equal. Bilinear: PyTorch computes each source coordinate
    # (o + 0.5) * in / out - 0.5 in float32 (error <= 30 * 2^-24 ~ 2e-6 for images up to 30
    # pixels), which moves a weight by as much and the value by 2e-6 * 255 = 5e-4 per axis;
    # float32 rounding of the sums adds ~1e-4: 2e-3 bounds both axes.
    np.testing.assert_allclose(x, expected, rtol=0, atol=0 if interpolation == "nearest"
                               else 2e-3)


def test_text_split_and_contents_match_keras(tmp_path):
    from keras.src.utils import text_dataset_utils
    rng = np.random.default_rng(1)
    for label in ("neg", "pos", "neutral"):
        (tmp_path / label).mkdir()
        for i in range(5):
            words = " ".join(rng.choice(["good", "bad", "film", "plot"], rng.integers(1, 9)))
            (tmp_path / label / f"{i}.txt").write_text(words)
    paths, labels, names = dataset_utils.index_directory(str(tmp_path), "inferred",
                                                         formats=(".txt",), seed=9)
    keras_paths, keras_labels = dataset_utils.get_training_or_validation_split(
        paths, labels, 0.2, "validation")
    ds = fd.utils.text_dataset_from_directory(tmp_path, validation_split=0.2,
                                              subset="validation", seed=9, shuffle=True,
                                              max_length=7, verbose=False)
    assert ds.class_names == names and ds.file_paths == keras_paths
    texts, y = ds[0]
    for text, label, index in zip(texts, y, ds._order):
        assert text == text_dataset_utils._path_to_string_content_grain(keras_paths[index], 7)
        assert label == keras_labels[index]
