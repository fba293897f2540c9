"""keras.utils.timeseries_dataset_from_array: sliding windows over an array as a PyDataset."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .py_dataset import PyDataset


def _count(name, value, minimum, optional=False):
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"timeseries_dataset_from_array: {name} must be an int >= {minimum}"
                         f"{' or None' if optional else ''}, got {value!r}")
    return int(value)


class TimeseriesDataset(PyDataset):
    """Batches of windows data[s + j * sampling_rate], j < sequence_length, for the start
    positions s (shuffled once with `seed` if asked), each with targets[s]."""

    def __init__(self, data, targets, starts, sequence_length, sampling_rate, batch_size):
        super().__init__()
        self.data, self.targets, self.starts = data, targets, starts
        self.offsets = np.arange(sequence_length) * sampling_rate
        self.batch_size = batch_size

    def __len__(self):
        return math.ceil(len(self.starts) / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"TimeseriesDataset: batch {index} is out of range [0, {len(self)})")
        starts = self.starts[index * self.batch_size:(index + 1) * self.batch_size]
        windows = self.data[starts[:, None] + self.offsets]
        return windows if self.targets is None else (windows, self.targets[starts])


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1,
                                  sampling_rate=1, batch_size=128, shuffle=False, seed=None,
                                  start_index=None, end_index=None):
    """Keras's sliding windows: the window starting at position s of data[start_index:
    end_index] has sequence_length steps sampling_rate apart, and targets[start_index + s]
    as its target (targets=None: windows only); starts are sequence_stride apart. A
    PyDataset of batches of batch_size windows, which fit, evaluate and predict take."""
    data = np.asarray(data)
    if data.ndim == 0 or len(data) == 0:
        raise ValueError(f"timeseries_dataset_from_array: data must be a non-empty array "
                         f"with time first, got shape {data.shape}")
    sequence_length = _count("sequence_length", sequence_length, 1)
    sequence_stride = _count("sequence_stride", sequence_stride, 1)
    sampling_rate = _count("sampling_rate", sampling_rate, 1)
    if batch_size is None:
        raise ValueError("timeseries_dataset_from_array: batch_size=None (Keras's unbatched "
                         "dataset) is not supported; fit and predict take batches, pass an "
                         "int >= 1")
    batch_size = _count("batch_size", batch_size, 1)
    start_index = _count("start_index", start_index, 0, optional=True) or 0
    end_index = _count("end_index", end_index, 0, optional=True)
    end_index = len(data) if end_index is None else end_index
    if not start_index < end_index <= len(data):
        raise ValueError(f"timeseries_dataset_from_array: expected 0 <= start_index < "
                         f"end_index <= len(data) = {len(data)}, got start_index={start_index}, "
                         f"end_index={end_index}")
    windows = end_index - start_index - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = np.asarray(targets)
        if len(targets) != len(data):
            raise ValueError(f"timeseries_dataset_from_array: targets and data must have the "
                             f"same length, got {len(targets)} and {len(data)}")
        windows = min(windows, len(targets) - start_index)
    starts = np.arange(0, max(windows, 0), sequence_stride) + start_index
    if shuffle:
        np.random.default_rng(seed).shuffle(starts)
    return TimeseriesDataset(data, targets, starts, sequence_length, sampling_rate, batch_size)
