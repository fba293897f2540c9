"""keras.utils.image_dataset_from_directory: the images under class folders as a PyDataset
of float32 batches, decoded by Pillow (`pip install "fusednn[image]"`) and resized as
Keras's image resize does (half-pixel centres, no antialiasing; fusednn.ops.resize)."""
from __future__ import annotations

import numbers

import numpy as np

from .dataset_directory import dataset_from_directory
from .image_utils import _data_format, _pillow
from .ops.resize import resize_matrix

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
# Keras's list; fusednn resizes with the first three (the others raise, naming them).
_KERAS_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                         "gaussian", "mitchellcubic")
INTERPOLATIONS = ("bilinear", "nearest", "bicubic")
_WHAT = "image_dataset_from_directory"


def _decoded(image, path, channels: int) -> np.ndarray:
    """The first frame of the image file at `path` as float32 (H, W, channels), converted
    as Keras converts: 8-bit (or 16/32-bit integer) grayscale, RGB or RGBA."""
    with image.open(path) as opened:
        if channels == 1:
            img = opened if opened.mode in ("L", "I;16", "I") else opened.convert("L")
        else:
            mode = "RGB" if channels == 3 else "RGBA"
            img = opened if opened.mode == mode else opened.convert(mode)
        pixels = np.array(img, dtype=np.float32)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _to_aspect_ratio(pixels: np.ndarray, size, crop: bool, pad: bool) -> np.ndarray:
    """The centre window (crop) or the zero-padded canvas (pad) of (H, W, C) pixels with the
    aspect ratio of size=(height, width), with keras.ops.image.resize's integer rounding."""
    height, width = pixels.shape[:2]
    target_h, target_w = size
    if crop:
        crop_h = max(min(height, int(float(width * target_h) / target_w)), 1)
        crop_w = max(min(width, int(float(height * target_w) / target_h)), 1)
        top, left = int(float(height - crop_h) / 2), int(float(width - crop_w) / 2)
        return pixels[top:top + crop_h, left:left + crop_w]
    if pad:
        # Keras pads the same number of rows (columns) on both sides.
        top = int(float(max(height, int(float(width * target_h) / target_w)) - height) / 2)
        left = int(float(max(width, int(float(height * target_w) / target_h)) - width) / 2)
        return np.pad(pixels, ((top, top), (left, left), (0, 0)))
    return pixels


def _resized(pixels: np.ndarray, size, method: str) -> np.ndarray:
    rows = resize_matrix(pixels.shape[0], size[0], method).astype(np.float32)
    cols = resize_matrix(pixels.shape[1], size[1], method).astype(np.float32)
    return np.einsum("oh,hwc,pw->opc", rows, pixels, cols, optimize=True)


def _image_size(image_size):
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2 or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
            for n in image_size):
        raise ValueError(f"{_WHAT}: Invalid `image_size` value. Expected a tuple of 2 positive "
                         f"integers. Received: image_size={image_size!r}")
    return int(image_size[0]), int(image_size[1])


def _interpolation(interpolation) -> str:
    method = interpolation.lower() if isinstance(interpolation, str) else interpolation
    if method not in _KERAS_INTERPOLATIONS:
        raise ValueError(f"{_WHAT}: Argument `interpolation` should be one of "
                         f"{_KERAS_INTERPOLATIONS}. Received: interpolation={interpolation!r}")
    if method not in INTERPOLATIONS:
        raise ValueError(f"{_WHAT}: interpolation={method!r} is not supported by fusednn; "
                         f"use one of {INTERPOLATIONS}")
    return method


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, verbose=True):
    """Keras's image_dataset_from_directory. `directory` holds one folder per class
    (labels="inferred": class i is the i-th folder in sorted order, or in `class_names`'
    order), or any tree of images (labels=None, or a list of integer labels in file order).
    Images (.bmp .gif .jpeg .jpg .png; a GIF's first frame) become float32 batches
    (N, height, width, C) in [0, 255] (channels first with data_format="channels_first"),
    C = 1, 3 or 4 for color_mode "grayscale", "rgb", "rgba". Labels: int32 (N,) for
    label_mode="int", float32 (N, 1) for "binary", float32 one-hot (N, classes) for
    "categorical"; label_mode=None gives images alone.

    validation_split with subset "training" or "validation" (the same seed for both calls)
    gives complementary parts; subset="both" returns [training, validation]. The result is
    a PyDataset (fit, evaluate and predict take it) with `class_names` and `file_paths`.
    Differs from Keras: batch_size=None is refused (fusednn reads batches), the training
    order is reshuffled in full every epoch, and interpolation is one of "bilinear",
    "nearest", "bicubic".
    """
    if color_mode not in _CHANNELS:
        raise ValueError(f"{_WHAT}: `color_mode` must be one of {{'rgb', 'rgba', "
                         f"'grayscale'}}. Received: color_mode={color_mode!r}")
    channels = _CHANNELS[color_mode]
    size = _image_size(image_size)
    method = _interpolation(interpolation)
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError(f"{_WHAT}: Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` "
                         "can be set to `True`.")
    channels_first = _data_format(data_format) == "channels_first"
    image = _pillow()  # before the files are indexed: a missing Pillow is the first error

    def load(paths):
        batch = np.stack([_resized(_to_aspect_ratio(_decoded(image, path, channels), size,
                                                    crop_to_aspect_ratio, pad_to_aspect_ratio),
                                   size, method) for path in paths])
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if channels_first else batch

    return dataset_from_directory(
        _WHAT, directory, labels=labels, label_mode=label_mode, class_names=class_names,
        batch_size=batch_size, shuffle=shuffle, seed=seed, validation_split=validation_split,
        subset=subset, follow_links=follow_links, verbose=verbose, formats=ALLOWLIST_FORMATS,
        load=load, nothing_found="images")
