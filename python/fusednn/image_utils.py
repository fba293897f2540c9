"""Keras's image helpers (keras.utils): array_to_img, img_to_array, load_img, save_img.

They read and write image files through Pillow (`pip install "fusednn[image]"`), imported
only when one of them runs. Arrays are float32 (H, W, C) by default, channels last unless
data_format="channels_first".
"""
from __future__ import annotations

import numpy as np

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_COLOR_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("fusednn's image utilities need Pillow: pip install "
                          "\"fusednn[image]\" (or pip install pillow)") from None
    return Image


def _data_format(data_format) -> str:
    if data_format in (None, "channels_last", "channels_first"):
        return data_format or "channels_last"
    raise ValueError(f"expected data_format 'channels_last' or 'channels_first', got "
                     f"{data_format!r}")


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """A Pillow image from a rank-3 array (H, W, C) with 1, 3 or 4 channels; scale=True
    maps the array's [min, max] to [0, 255] as Keras does."""
    image = _pillow()
    x = np.asarray(x, dtype=dtype or "float32")
    if x.ndim != 3:
        raise ValueError(f"array_to_img: expected an image array of rank 3, got shape "
                         f"{x.shape}")
    if _data_format(data_format) == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        peak = np.max(x)
        if peak != 0:
            x = x / peak
        x = x * 255
    channels = x.shape[2]
    if channels not in _MODES:
        raise ValueError(f"array_to_img: expected 1, 3 or 4 channels, got {channels}")
    pixels = np.clip(x, 0, 255).astype(np.uint8)
    return image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, _MODES[channels])


def img_to_array(img, data_format=None, dtype=None) -> np.ndarray:
    """A Pillow image as an array (H, W, C) (float32 by default); grayscale gets C = 1."""
    x = np.asarray(img, dtype=dtype or "float32")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"img_to_array: unsupported image shape {x.shape}")
    return x.transpose(2, 0, 1) if _data_format(data_format) == "channels_first" else x


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """The image file at `path` as a Pillow image in `color_mode` ("grayscale", "rgb",
    "rgba"), resized to target_size=(height, width) with `interpolation` ("nearest",
    "bilinear", "bicubic", "lanczos", "box", "hamming"); keep_aspect_ratio crops the
    centre to the target's aspect ratio first."""
    image = _pillow()
    if color_mode not in _COLOR_MODES:
        raise ValueError(f"load_img: color_mode must be one of {sorted(_COLOR_MODES)}, got "
                         f"{color_mode!r}")
    methods = {"nearest": image.NEAREST, "bilinear": image.BILINEAR, "bicubic": image.BICUBIC,
               "lanczos": image.LANCZOS, "box": image.BOX, "hamming": image.HAMMING}
    if interpolation not in methods:
        raise ValueError(f"load_img: interpolation must be one of {sorted(methods)}, got "
                         f"{interpolation!r}")
    with image.open(path) as opened:
        img = opened.convert(_COLOR_MODES[color_mode])
    if target_size is not None:
        height, width = target_size
        if (img.height, img.width) != (height, width):
            if keep_aspect_ratio:
                crop_w = min(img.width, img.height * width // height)
                crop_h = min(img.height, img.width * height // width)
                left, top = (img.width - crop_w) // 2, (img.height - crop_h) // 2
                img = img.crop((left, top, left + crop_w, top + crop_h))
            img = img.resize((width, height), methods[interpolation])
    return img


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Writes the array x (H, W, C) as an image file (format from the extension unless
    file_format is given); kwargs go to Pillow's save."""
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and (file_format == "jpeg" or str(path).lower().endswith(
            (".jpg", ".jpeg"))):
        img = img.convert("RGB")  # JPEG has no alpha channel, as Keras handles it
    img.save(path, format=file_format, **kwargs)
