"""What image_dataset_from_directory and text_dataset_from_directory share, with Keras 3's
rules (keras.utils): the checks of labels / label_mode / validation_split / subset, the
file index of a directory (class folders in sorted order, each walked as os.walk visits it,
files sorted), the one global shuffle with NumPy's RandomState(seed) that makes training
and validation complementary for the same seed, the split (validation takes the last
int(validation_split * N) files), the label encodings, and DirectoryDataset, the PyDataset
that loads each batch's files when fit, evaluate or predict asks for it.
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np

from .py_dataset import PyDataset

LABEL_MODES = ("int", "categorical", "binary", None)


def check_label_arguments(what: str, labels, label_mode, class_names):
    """(labels, label_mode) after Keras's checks; both None when either asks for no labels."""
    if labels is not None and not (isinstance(labels, str) and labels == "inferred"):
        if not isinstance(labels, (list, tuple, np.ndarray)):
            raise ValueError(
                f"{what}: `labels` argument should be a list/tuple of integer labels, of the "
                "same size as the number of files in the target directory, 'inferred' (from "
                f"the subdirectory names) or None (no labels). Received: labels={labels!r}")
        if class_names:
            raise ValueError(f"{what}: You can only pass `class_names` if labels='inferred'. "
                             f"Received: labels={labels!r}, and class_names={class_names!r}")
        labels = np.asarray(labels)
        if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
            raise ValueError(f"{what}: `labels` must be a flat list of integer labels, got "
                             f"{labels.dtype} of shape {labels.shape}")
    if label_mode not in LABEL_MODES:
        raise ValueError(f"{what}: `label_mode` argument must be one of 'int', 'categorical', "
                         f"'binary', or None. Received: label_mode={label_mode!r}")
    if labels is None or label_mode is None:
        return None, None
    return labels, label_mode


def check_validation_split(what: str, validation_split, subset, shuffle, seed) -> None:
    if validation_split is not None and (
            isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real)):
        raise ValueError(f"{what}: `validation_split` must be a float between 0 and 1, "
                         f"received: {validation_split!r}")
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"{what}: `validation_split` must be between 0 and 1, "
                         f"received: {validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError(f"{what}: If `subset` is set, `validation_split` must be set, and "
                         "inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f"{what}: `subset` must be either 'training', 'validation' or "
                         f"'both', received: {subset!r}")
    if validation_split and shuffle and seed is None:
        raise ValueError(f"{what}: If using `validation_split` and shuffling the data, you "
                         "must provide a `seed` argument, to make sure that there is no overlap "
                         "between the training and validation subset.")


def _class_folders(what: str, directory, class_names):
    names = [name for name in sorted(os.listdir(directory))
             if os.path.isdir(os.path.join(directory, name)) and not name.startswith(".")]
    if class_names is None:
        return names
    class_names = list(class_names)
    if not set(class_names).issubset(names):
        raise ValueError(f"{what}: The `class_names` passed did not match the names of the "
                         f"subdirectories of the target directory. Expected: {names} (or a "
                         f"subset of it), but received: class_names={class_names}")
    return class_names  # the caller's order gives the class indices


def _files_under(folder, follow_links: bool, formats):
    """The files of `folder` and its subfolders with an extension in `formats`, in Keras's
    order: folders sorted by path, then the files of each sorted by name."""
    found = []
    for root, _, files in sorted(os.walk(folder, followlinks=follow_links),
                                 key=lambda entry: entry[0]):
        found += [os.path.join(root, name) for name in sorted(files)
                  if name.lower().endswith(formats)]
    return found


def index_directory(what: str, directory, labels, formats, class_names, shuffle, seed,
                    follow_links, verbose):
    """(file_paths, labels as an int array or None, class_names or None), shuffled together
    when asked with RandomState(seed), as keras.utils's index_directory."""
    directory = os.fspath(directory)
    if isinstance(labels, str):  # "inferred"
        folders = _class_folders(what, directory, class_names)
    elif class_names is not None:
        raise ValueError(f"{what}: When `labels` is None or a list, `class_names` cannot be "
                         "specified")
    else:
        folders = [""]  # the whole tree, labels by file order
    file_paths, inferred = [], []
    for index, folder in enumerate(folders):
        files = _files_under(os.path.join(directory, folder), follow_links, formats)
        file_paths += files
        inferred += [index] * len(files)
    if isinstance(labels, str):
        labels, class_names = np.array(inferred, dtype=np.int32), folders
    elif labels is not None:
        if len(labels) != len(file_paths):
            raise ValueError(f"{what}: Expected the lengths of `labels` to match the number of "
                             f"files in the target directory. len(labels) is {len(labels)} "
                             f"while we found {len(file_paths)} files in directory {directory}.")
        labels = np.array(labels, dtype=np.int32)  # a copy: Keras shuffles the caller's list
        class_names = [str(label) for label in sorted(set(labels.tolist()))]
    if verbose:
        print(f"Found {len(file_paths)} files." if labels is None else
              f"Found {len(file_paths)} files belonging to {len(class_names)} classes.")
    if shuffle:
        # One global shuffle erases the class blocks; the labels follow with the same seed.
        np.random.RandomState(seed).shuffle(file_paths)
        if labels is not None:
            np.random.RandomState(seed).shuffle(labels)
    return file_paths, labels, class_names


def split(file_paths, labels, validation_split, subset):
    """The training part (all but the last int(validation_split * N) files) or the
    validation part (those last files); everything without a validation_split."""
    if not validation_split:
        return file_paths, labels
    count = int(validation_split * len(file_paths))
    if subset == "training":
        print(f"Using {len(file_paths) - count} files for training.")
        keep = slice(0, len(file_paths) - count)
    else:
        print(f"Using {count} files for validation.")
        keep = slice(len(file_paths) - count, len(file_paths))
    return file_paths[keep], None if labels is None else labels[keep]


def encode_labels(what: str, labels, label_mode, num_classes):
    """int32 (N,) for "int", float32 (N, 1) of 0/1 for "binary", float32 one-hot (N, C) for
    "categorical", as Keras's labels_to_dataset."""
    if label_mode == "int":
        return labels.astype(np.int32)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what}: label_mode={label_mode!r} needs labels in [0, "
                         f"{num_classes}), got values in [{labels.min()}, {labels.max()}]")
    if label_mode == "binary":
        return labels.astype(np.float32)[:, None]
    return np.eye(num_classes, dtype=np.float32)[labels]


class _Mappable:
    def map(self, function):
        """A dataset whose batches are function(*batch) (function(x) without labels), as
        tf.data's map after batch: e.g. lambda texts, labels: (tokenize(texts), labels)."""
        if not callable(function):
            raise TypeError(f"{type(self).__name__}.map: expected a callable, got "
                            f"{type(function).__name__}")
        return MappedDataset(self, function)


class DirectoryDataset(_Mappable, PyDataset):
    """Batches of `load(path)` for the files, with their encoded labels: (x, y), or x alone
    without labels. With shuffle=True the order of the files is drawn again every epoch
    (from a generator seeded by `seed`), so every epoch still visits every file once;
    Keras's tf.data version shuffles within a buffer of 8 batches instead.
    `class_names` and `file_paths` as Keras sets them on its datasets."""

    def __init__(self, file_paths, labels, class_names, load, batch_size, shuffle, seed):
        super().__init__()
        self.file_paths, self.labels, self.class_names = list(file_paths), labels, class_names
        self.load, self.batch_size, self.shuffle = load, batch_size, shuffle
        self._rng = np.random.default_rng(seed)
        self._order = self._new_order()

    def _new_order(self):
        count = len(self.file_paths)
        return self._rng.permutation(count) if self.shuffle else np.arange(count)

    def __len__(self):
        return math.ceil(len(self.file_paths) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__}: batch {index} is out of range "
                             f"[0, {len(self)})")
        chosen = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.load([self.file_paths[i] for i in chosen])
        return x if self.labels is None else (x, self.labels[chosen])

    def on_epoch_end(self):
        self._order = self._new_order()


class MappedDataset(_Mappable, PyDataset):
    """function applied to every batch of another PyDataset (its epochs end with it)."""

    def __init__(self, source: PyDataset, function):
        super().__init__()
        self.source, self.function = source, function
        self.class_names = getattr(source, "class_names", None)
        self.file_paths = getattr(source, "file_paths", None)

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        batch = self.source[index]
        return self.function(*batch) if isinstance(batch, tuple) else self.function(batch)

    def on_epoch_end(self):
        self.source.on_epoch_end()



def dataset_from_directory(what: str, directory, *, labels, label_mode, class_names,
                           batch_size, shuffle, seed, validation_split, subset, follow_links,
                           verbose, formats, load, nothing_found: str):
    """The DirectoryDataset (or [training, validation] for subset="both") of the files in
    `formats` under `directory`, read by load(list of paths) -> batch array."""
    labels, label_mode = check_label_arguments(what, labels, label_mode, class_names)
    check_validation_split(what, validation_split, subset, shuffle, seed)
    if batch_size is None:
        raise ValueError(f"{what}: batch_size=None (Keras's unbatched dataset) is not "
                         "supported; fit and predict take batches, pass an int >= 1")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"{what}: batch_size must be an int >= 1, got {batch_size!r}")
    if seed is None:
        seed = np.random.randint(1e6)  # Keras draws it from NumPy's global generator
    file_paths, labels, class_names = index_directory(
        what, directory, labels, formats, class_names, shuffle, seed, follow_links, verbose)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f"{what}: When passing label_mode='binary', there must be exactly 2 "
                         f"class_names. Received: class_names={class_names}")
    if labels is not None:
        labels = encode_labels(what, labels, label_mode, len(class_names))
    subsets = ("training", "validation") if subset == "both" else (subset,)
    datasets = []
    for part in subsets:
        paths, part_labels = split(file_paths, labels, validation_split, part)
        if not paths:
            kind = f"{part} " if subset == "both" else ""
            raise ValueError(f"{what}: No {kind}{nothing_found} found in directory "
                             f"{directory}. Allowed formats: {formats}")
        # Validation data keeps its order in a "both" split, as Keras's.
        datasets.append(DirectoryDataset(paths, part_labels, class_names, load, int(batch_size),
                                         shuffle and (subset != "both" or part == "training"),
                                         seed))
    return datasets if subset == "both" else datasets[0]
