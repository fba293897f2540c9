"""keras.utils.text_dataset_from_directory: the .txt files under class folders as a
PyDataset of batches of strings."""
from __future__ import annotations

import numbers

import numpy as np

from .dataset_directory import dataset_from_directory

_WHAT = "text_dataset_from_directory"


def text_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                class_names=None, batch_size=32, max_length=None, shuffle=True,
                                seed=None, validation_split=None, subset=None,
                                follow_links=False, verbose=True):
    """Keras's text_dataset_from_directory: the same folders, labels, label modes, shuffling
    and validation split as image_dataset_from_directory, for .txt files. A batch of texts
    is a NumPy array of Python strings (dtype object), each file read as UTF-8 and cut to
    its first `max_length` characters when max_length is given (Keras's grain reader counts
    characters too; its tf.data reader counts bytes). Turn the strings into numbers before
    fit with the dataset's `map`, as Keras users map a TextVectorization layer:

        train = text_dataset_from_directory("reviews", ...).map(
            lambda texts, labels: (my_tokenizer(texts), labels))

    Differs from Keras: batch_size=None is refused and the training order is reshuffled in
    full every epoch.
    """
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(
            max_length, numbers.Integral) or max_length < 0):
        raise ValueError(f"{_WHAT}: max_length must be None or an int >= 0, got "
                         f"{max_length!r}")

    def load(paths):
        texts = np.empty(len(paths), dtype=object)
        for i, path in enumerate(paths):
            with open(path, encoding="utf-8") as file:
                texts[i] = file.read() if max_length is None else file.read(max_length)
        return texts

    return dataset_from_directory(
        _WHAT, directory, labels=labels, label_mode=label_mode, class_names=class_names,
        batch_size=batch_size, shuffle=shuffle, seed=seed, validation_split=validation_split,
        subset=subset, follow_links=follow_links, verbose=verbose, formats=(".txt",),
        load=load, nothing_found="text files")
