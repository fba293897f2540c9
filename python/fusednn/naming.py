"""Automatic layer names (dense, dense_1, ...), Keras's: one counter per snake-case class
name. Below both the layers and fusednn.utils, so utils.clear_session restarts the
counters without utils importing the layers (which import utils)."""
from __future__ import annotations

import re
from collections import Counter

_name_counts: Counter = Counter()


def reset_layer_names() -> None:
    """Restart automatic names (dense, dense_1, ...); fd.utils.clear_session calls it."""
    _name_counts.clear()


def default_layer_name(cls_name: str) -> str:
    # Keras's snake case: Conv2D -> conv2d, Conv2DTranspose -> conv2d_transpose, LeakyReLU -> leaky_re_lu.
    base = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls_name)
    base = re.sub(r"([a-z])([A-Z])", r"\1_\2", base).lower()
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"
