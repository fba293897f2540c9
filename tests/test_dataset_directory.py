"""image_dataset_from_directory / text_dataset_from_directory: Keras 3's documented
behaviour on temporary folders of generated PNG/JPEG images and text files (label modes,
class_names, the split rule, messages, errors) and training on them with fit. The
comparison with Keras's own functions is in test_dataset_directory_keras.py."""
import os

import numpy as np
import pytest

import fusednn as fd
from fusednn import layers

Image = pytest.importorskip("PIL.Image")

CLASSES = ("cat", "dog", "owl")


def _write_images(root, per_class=5, seed=0, sizes=((6, 9), (11, 7), (8, 8))):
    """Random RGB images, PNG and JPEG, some in a nested folder, in three class folders."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        os.makedirs(root / name / "nested")
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            folder = root / name / ("nested" if i == 0 else "")
            Image.fromarray(pixels).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


@pytest.fixture
def image_dir(tmp_path):
    return _write_images(tmp_path / "images")


def _all_batches(dataset):
    batches = [dataset[i] for i in range(len(dataset))]
    if isinstance(batches[0], tuple):
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    return np.concatenate(batches), None


def test_found_message_class_names_and_label_modes(image_dir, capsys):
    ds = fd.utils.image_dataset_from_directory(image_dir, image_size=(4, 5), batch_size=4,
                                               shuffle=False)
    assert capsys.readouterr().out == "Found 15 files belonging to 3 classes.\n"
    assert ds.class_names == list(CLASSES) and len(ds) == 4
    x, y = _all_batches(ds)
    assert x.shape == (15, 4, 5, 3) and x.dtype == np.float32
    # Unshuffled: sorted class folders, so the labels run 0...0 1...1 2...2.
    np.testing.assert_array_equal(y, np.repeat(np.arange(3, dtype=np.int32), 5))
    assert y.dtype == np.int32
    # The first file of a class: its nested folder sorts after the class folder itself.
    assert ds.file_paths[0] == os.path.join(str(image_dir), "cat", "img1.png")
    assert ds.file_paths[4] == os.path.join(str(image_dir), "cat", "nested", "img0.jpg")

    onehot = fd.utils.image_dataset_from_directory(
        image_dir, image_size=(4, 5), label_mode="categorical", shuffle=False, verbose=False)
    np.testing.assert_array_equal(onehot[0][1], np.eye(3, dtype=np.float32)[y])
    assert capsys.readouterr().out == ""

    binary = fd.utils.image_dataset_from_directory(
        image_dir, image_size=(4, 5), label_mode="binary", class_names=["owl", "cat"],
        shuffle=False, verbose=False)
    # class_names picks and orders the classes: owl is 0, cat is 1; dog's images are left out.
    assert binary.class_names == ["owl", "cat"]
    np.testing.assert_array_equal(binary[0][1][:, 0], np.repeat([0.0, 1.0], 5))
    assert binary[0][1].shape == (10, 1) and binary[0][1].dtype == np.float32

    unlabelled = fd.utils.image_dataset_from_directory(image_dir, labels=None,
                                                       image_size=(4, 5), shuffle=False)
    assert capsys.readouterr().out == "Found 15 files.\n"
    assert unlabelled.class_names is None and isinstance(unlabelled[0], np.ndarray)


def test_explicit_labels_follow_file_order_and_shuffle(image_dir):
    labels = list(range(15))[::-1]
    ds = fd.utils.image_dataset_from_directory(image_dir, labels=labels, image_size=(3, 3),
                                               seed=4, batch_size=15, verbose=False)
    assert labels == list(range(15))[::-1]  # the caller's list is not shuffled in place
    assert ds.class_names == [str(i) for i in range(15)]
    unshuffled = fd.utils.image_dataset_from_directory(
        image_dir, labels=labels, image_size=(3, 3), shuffle=False, verbose=False)
    label_of = dict(zip(unshuffled.file_paths, labels))
    x, y = ds[0]
    # Each image keeps its label through the shuffle: compare the pixels of the image the
    # label names (via the unshuffled dataset, where label i sits at position 14 - i).
    reference, _ = unshuffled[0]
    for image, label in zip(x, y):
        np.testing.assert_array_equal(image, reference[14 - label])
    assert sorted(label_of[p] for p in ds.file_paths) == list(range(15))


def test_split_is_disjoint_complementary_and_reproducible(image_dir, capsys):
    common = dict(image_size=(3, 3), validation_split=0.4, seed=11, verbose=False)
    train = fd.utils.image_dataset_from_directory(image_dir, subset="training", **common)
    val = fd.utils.image_dataset_from_directory(image_dir, subset="validation", **common)
    assert capsys.readouterr().out == ("Using 9 files for training.\n"
                                       "Using 6 files for validation.\n")
    both = fd.utils.image_dataset_from_directory(image_dir, subset="both", **common)
    assert [d.file_paths for d in both] == [train.file_paths, val.file_paths]
    assert not set(train.file_paths) & set(val.file_paths)
    everything = fd.utils.image_dataset_from_directory(image_dir, shuffle=False, **{
        k: v for k, v in common.items() if k not in ("validation_split", "seed")})
    assert sorted(train.file_paths + val.file_paths) == sorted(everything.file_paths)
    # Another seed splits differently (15 files: the same 6 validation files by chance
    # has probability 1 / C(15, 6) = 2e-4 for a random split; seed 12 is fixed).
    other = fd.utils.image_dataset_from_directory(
        image_dir, subset="validation", **{**common, "seed": 12})
    assert set(other.file_paths) != set(val.file_paths)


def test_training_order_is_reshuffled_each_epoch_validation_kept(image_dir):
    train, val = fd.utils.image_dataset_from_directory(
        image_dir, image_size=(3, 3), validation_split=0.4, subset="both", seed=3,
        batch_size=2, verbose=False)
    first = np.concatenate([train[i][1] for i in range(len(train))])
    val_first = np.concatenate([val[i][1] for i in range(len(val))])
    train.on_epoch_end()
    val.on_epoch_end()
    second = np.concatenate([train[i][1] for i in range(len(train))])
    # Each epoch visits every training image once, in a new order.
    assert sorted(first) == sorted(second)
    np.testing.assert_array_equal(val_first,
                                  np.concatenate([val[i][1] for i in range(len(val))]))


def test_color_modes_data_format_and_pixels(tmp_path):
    root = tmp_path / "one"
    (root / "a").mkdir(parents=True)
    rgba = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    Image.fromarray(rgba, "RGBA").save(root / "a" / "x.png")
    same_size = dict(image_size=(2, 3), shuffle=False, verbose=False)
    x, _ = fd.utils.image_dataset_from_directory(root, color_mode="rgba", **same_size)[0]
    # Resizing to the image's own size keeps every pixel exactly (a weight of 1 per tap).
    np.testing.assert_array_equal(x[0], rgba.astype(np.float32))
    x, _ = fd.utils.image_dataset_from_directory(root, color_mode="rgba",
                                                 data_format="channels_first", **same_size)[0]
    np.testing.assert_array_equal(x[0], rgba.transpose(2, 0, 1).astype(np.float32))
    x, _ = fd.utils.image_dataset_from_directory(root, color_mode="grayscale", **same_size)[0]
    expected = np.asarray(Image.fromarray(rgba, "RGBA").convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(x[0, :, :, 0], expected)


def _bilinear_reference(image, out_h, out_w):
    """Half-pixel bilinear resize in float64, one output pixel at a time (TF's resize)."""
    in_h, in_w = image.shape[:2]
    out = np.zeros((out_h, out_w) + image.shape[2:])
    for o in range(out_h):
        for p in range(out_w):
            y = max((o + 0.5) * in_h / out_h - 0.5, 0.0)
            x = max((p + 0.5) * in_w / out_w - 0.5, 0.0)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, in_h - 1), min(x0 + 1, in_w - 1)
            ty, tx = y - y0, x - x0
            out[o, p] = ((1 - ty) * ((1 - tx) * image[y0, x0] + tx * image[y0, x1])
                         + ty * ((1 - tx) * image[y1, x0] + tx * image[y1, x1]))
    return out


def _bicubic_reference(image, out_h, out_w, a=-0.5):
    """Keys's cubic (a = -0.5, tf.image.resize's bicubic) with edge-clamped taps."""
    def weights(d):
        d = abs(d)
        if d <= 1:
            return ((a + 2) * d - (a + 3)) * d * d + 1
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a if d < 2 else 0.0

    in_h, in_w = image.shape[:2]
    out = np.zeros((out_h, out_w) + image.shape[2:])
    for o in range(out_h):
        for p in range(out_w):
            y = (o + 0.5) * in_h / out_h - 0.5
            x = (p + 0.5) * in_w / out_w - 0.5
            for i in range(int(np.floor(y)) - 1, int(np.floor(y)) + 3):
                for j in range(int(np.floor(x)) - 1, int(np.floor(x)) + 3):
                    pixel = image[min(max(i, 0), in_h - 1), min(max(j, 0), in_w - 1)]
                    out[o, p] += weights(y - i) * weights(x - j) * pixel
    return out


@pytest.mark.parametrize("interpolation,reference", [("bilinear", _bilinear_reference),
                                                     ("bicubic", _bicubic_reference)])
@pytest.mark.parametrize("size", [(4, 13), (17, 5)])
def test_resize_matches_per_pixel_reference(tmp_path, interpolation, reference, size):
    (tmp_path / "a").mkdir()
    pixels = np.random.default_rng(5).integers(0, 256, (9, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a" / "x.png")
    x, _ = fd.utils.image_dataset_from_directory(
        tmp_path, image_size=size, interpolation=interpolation.upper(), verbose=False)[0]
    # float32 sums of <= 16 weighted pixels <= 255 (weights summing to 1 in magnitude
    # <= 1.5): rounding error well below 16 * 255 * 1.5 * 6e-8 = 4e-4.
    np.testing.assert_allclose(x[0], reference(pixels.astype(np.float64), *size),
                               rtol=0, atol=1e-3)


def test_crop_and_pad_to_aspect_ratio(tmp_path):
    (tmp_path / "a").mkdir()
    pixels = np.random.default_rng(6).integers(0, 256, (4, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a" / "x.png")
    same = dict(image_size=(4, 4), interpolation="nearest", verbose=False)
    x, _ = fd.utils.image_dataset_from_directory(tmp_path, crop_to_aspect_ratio=True,
                                                 **same)[0]
    np.testing.assert_array_equal(x[0], pixels[:, 2:6].astype(np.float32))  # the centre
    x, _ = fd.utils.image_dataset_from_directory(
        tmp_path, pad_to_aspect_ratio=True, **{**same, "image_size": (8, 8)})[0]
    np.testing.assert_array_equal(x[0, 2:6], pixels.astype(np.float32))
    assert not x[0, :2].any() and not x[0, 6:].any()  # zero rows above and below


def test_text_dataset_reads_and_truncates(tmp_path, capsys):
    texts = {"neg": ["bad film", "awful ", "très mauvais"], "pos": ["great", "loved it"]}
    for label, items in texts.items():
        (tmp_path / label).mkdir()
        for i, text in enumerate(items):
            (tmp_path / label / f"{i}.txt").write_text(text, encoding="utf-8")
    (tmp_path / "pos" / "skip.md").write_text("not a .txt")
    ds = fd.utils.text_dataset_from_directory(tmp_path, shuffle=False, max_length=5)
    assert capsys.readouterr().out == "Found 5 files belonging to 2 classes.\n"
    x, y = ds[0]
    assert ds.class_names == ["neg", "pos"] and x.dtype == object
    assert list(x) == ["bad f", "awful", "très ", "great", "loved"]  # 5 characters each
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1])
    mapped = ds.map(lambda t, labels: (np.array([[len(s)] for s in t], np.float32), labels))
    assert mapped.class_names == ["neg", "pos"]
    np.testing.assert_array_equal(mapped[0][0][:, 0], [5, 5, 5, 5, 5])
    train, val = fd.utils.text_dataset_from_directory(
        tmp_path, validation_split=0.4, subset="both", seed=1, verbose=False)
    assert len(train.file_paths) == 3 and len(val.file_paths) == 2


def test_fit_evaluate_predict_on_images(tmp_path):
    # Two classes a convnet tells apart at once: dark and bright noisy images.
    rng = np.random.default_rng(7)
    for name, level in (("bright", 200), ("dark", 40)):
        (tmp_path / name).mkdir()
        for i in range(24):
            pixels = np.clip(rng.normal(level, 30, (10, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    fd.utils.set_random_seed(0)
    train, val = fd.utils.image_dataset_from_directory(
        tmp_path, image_size=(8, 8), batch_size=8, validation_split=0.25, subset="both",
        seed=2, label_mode="binary", verbose=False)
    # fusednn has no Rescaling layer: the batches are scaled by the datasets' map.
    train, val = (d.map(lambda x, y: (x / 255, y)) for d in (train, val))
    model = fd.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"),
                           layers.GlobalAveragePooling2D(), layers.Dense(1, "sigmoid")])
    model.compile(fd.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=15, verbose=0)
    # Mean brightness separates the classes by 160 / 255 with noise 30 / sqrt(192) per
    # image mean: a learned threshold classifies every validation image.
    assert history.history["val_accuracy"][-1] == 1.0
    assert model.evaluate(val, verbose=0)[1] == 1.0
    assert model.predict(val, verbose=0).shape == (12, 1)


def test_bad_arguments_raise_keras_errors(image_dir, tmp_path):
    call = fd.utils.image_dataset_from_directory
    cases = [
        (dict(labels="folders"), "`labels` argument should be a list/tuple"),
        (dict(labels=[0] * 15, class_names=["a"]), "only pass `class_names` if"),
        (dict(label_mode="sparse"), "`label_mode` argument must be one of"),
        (dict(color_mode="rgbx"), "`color_mode` must be one of"),
        (dict(image_size=(3, 3, 3)), "Invalid `image_size` value"),
        (dict(interpolation="cubic"), "`interpolation` should be one of"),
        (dict(interpolation="lanczos3"), "not supported by fusednn"),
        (dict(validation_split=1.5, subset="training", seed=1), "between 0 and 1"),
        (dict(validation_split=0.2), "If `subset` is set, `validation_split` must be set"),
        (dict(validation_split=0.2, subset="test", seed=1), "`subset` must be either"),
        (dict(validation_split=0.2, subset="training"), "must provide a `seed`"),
        (dict(label_mode="binary"), "exactly 2 class_names"),
        (dict(class_names=["cat", "zebra"]), "did not match the names of the subdirectories"),
        (dict(labels=[0, 1]), "lengths of `labels` to match the number of files"),
        (dict(crop_to_aspect_ratio=True, pad_to_aspect_ratio=True), "Only one of"),
        (dict(batch_size=None), "batch_size=None"),
        (dict(data_format="NHWC"), "data_format"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            call(image_dir, verbose=False, **kwargs)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images found in directory"):
        call(tmp_path / "empty", verbose=False)
    with pytest.raises(ValueError, match="No validation images found"):
        call(image_dir, validation_split=0.01, subset="both", seed=1, verbose=False)
    with pytest.raises(FileNotFoundError):
        call(tmp_path / "missing", verbose=False)
    with pytest.raises(ValueError, match="max_length"):
        fd.utils.text_dataset_from_directory(image_dir, max_length=-1)


def test_missing_pillow_is_a_clear_import_error(image_dir, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` fail
    with pytest.raises(ImportError, match=r"pip install \"fusednn\[image\]\""):
        fd.utils.image_dataset_from_directory(image_dir)


def test_resize_matrices_match_torch_for_every_size_pair():
    # Every (in, out) pair up to 39, shrinking and enlarging: nearest picks the same source
    # pixel as PyTorch's "nearest-exact" (Keras's nearest on torch), including the pairs
    # where (o + 0.5) * in / out is whole and float32 rounding decides; bilinear weights
    # agree to PyTorch's float32 coordinate rounding (<= 39 * 2^-24 ~ 3e-6).
    torch = pytest.importorskip("torch")
    from fusednn.ops.resize import resize_matrix
    for in_size in range(1, 40):
        identity = torch.eye(in_size, dtype=torch.float64)[:, None]  # (in, 1, in)
        for out_size in range(1, 40):
            for method, mode, tol in (("nearest", "nearest-exact", 0),
                                      ("bilinear", "linear", 1e-5)):
                expected = torch.nn.functional.interpolate(
                    identity.float(), size=out_size, mode=mode,
                    **({"align_corners": False} if mode == "linear" else {}))[:, 0].T
                np.testing.assert_allclose(resize_matrix(in_size, out_size, method),
                                           expected.double().numpy(), rtol=0, atol=tol)
