"""Keras's sequence helpers: pad_sequences (keras.utils.pad_sequences) and normalize."""
from __future__ import annotations

import numbers

import numpy as np


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0) -> np.ndarray:
    """A list of sequences (lists or arrays of equal item shape) as one array
    (num_sequences, maxlen, *item_shape), as Keras: shorter sequences are filled with
    `value` before ("pre", default) or after ("post") their items, longer ones lose
    items at the start ("pre") or the end ("post"); maxlen defaults to the longest."""
    for name, option in (("padding", padding), ("truncating", truncating)):
        if option not in ("pre", "post"):
            raise ValueError(f"pad_sequences: {name} must be 'pre' or 'post', got {option!r}")
    if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, numbers.Integral)
                               or maxlen < 0):
        raise ValueError(f"pad_sequences: maxlen must be None or an int >= 0, got {maxlen!r}")
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"pad_sequences: sequences must be a list of iterables, got "
                         f"{type(sequences).__name__}")
    items = []
    for i, sequence in enumerate(sequences):
        if not hasattr(sequence, "__len__"):
            raise ValueError(f"pad_sequences: sequences must be a list of iterables; sequence "
                             f"{i} is {type(sequence).__name__} {sequence!r}")
        items.append(np.asarray(sequence))
    item_shape = next((tuple(s.shape[1:]) for s in items if len(s)), ())
    for i, sequence in enumerate(items):
        if len(sequence) and tuple(sequence.shape[1:]) != item_shape:
            raise ValueError(f"pad_sequences: the items of sequence {i} have shape "
                             f"{tuple(sequence.shape[1:])}, expected {item_shape} like the "
                             "first non-empty sequence")
    if maxlen is None:
        maxlen = max((len(s) for s in items), default=0)
    is_text = np.dtype(dtype).kind in "SU" or np.dtype(dtype) == object
    if isinstance(value, str) and not is_text:
        raise ValueError(f"pad_sequences: dtype {dtype!r} cannot hold the string padding value "
                         f"{value!r}; pass dtype=object or a str dtype")
    out = np.full((len(items), maxlen) + item_shape, value, dtype=dtype)
    for i, sequence in enumerate(items):
        if not len(sequence) or not maxlen:
            continue
        kept = sequence[-maxlen:] if truncating == "pre" else sequence[:maxlen]
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out


def normalize(x, axis=-1, order=2) -> np.ndarray:
    """x divided by its `order`-norm along `axis` (keras.utils.normalize); zero vectors
    stay zero."""
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)
