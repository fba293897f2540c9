"""fd.utils.timeseries_dataset_from_array (keras/src/utils/timeseries_dataset_utils_test.py):
windows, targets, strides, sampling rate, index range and shuffling against a NumPy
reference, and a forecaster trained from it with fit."""
import numpy as np
import pytest

import fusednn as fd


def _batches(dataset):
    return [dataset[i] for i in range(len(dataset))]


def test_basics():
    # Keras: test_basics (data = arange(100), targets = 2 * data, windows of 9, batches of 5).
    data = np.arange(100)
    dataset = fd.utils.timeseries_dataset_from_array(data, data * 2, sequence_length=9,
                                                     batch_size=5)
    batches = _batches(dataset)
    assert len(batches) == 19  # 92 windows: 18 batches of 5 and one of 2
    for i, (x, y) in enumerate(batches):
        starts = np.arange(5 * i, min(5 * i + 5, 92))
        np.testing.assert_array_equal(x, data[starts[:, None] + np.arange(9)])
        np.testing.assert_array_equal(y, 2 * starts)


def test_stride_sampling_rate_and_index_range():
    data = np.arange(200).reshape(100, 2)
    dataset = fd.utils.timeseries_dataset_from_array(
        data, None, sequence_length=4, sequence_stride=3, sampling_rate=2, batch_size=7,
        start_index=10, end_index=60)
    windows = np.concatenate(_batches(dataset))
    # Windows start at 10, 13, ... and span 4 steps 2 apart, all inside [10, 60).
    starts = np.arange(10, 60 - 3 * 2, 3)
    np.testing.assert_array_equal(windows, data[starts[:, None] + 2 * np.arange(4)])


def test_shuffle_keeps_windows_with_their_targets():
    data = np.arange(50)
    dataset = fd.utils.timeseries_dataset_from_array(data, data + 1000, sequence_length=5,
                                                     batch_size=8, shuffle=True, seed=3)
    x = np.concatenate([b[0] for b in _batches(dataset)])
    y = np.concatenate([b[1] for b in _batches(dataset)])
    assert sorted(x[:, 0]) == list(range(46)) and list(x[:, 0]) != list(range(46))
    np.testing.assert_array_equal(y, x[:, 0] + 1000)


def test_fit_reads_it():
    series = np.sin(np.arange(400) * 0.1)[:, None].astype(np.float32)
    targets = np.roll(series[:, 0], -10)   # the value 10 steps after the window starts
    dataset = fd.utils.timeseries_dataset_from_array(series, targets, sequence_length=10,
                                                     batch_size=32, end_index=380)
    fd.utils.set_random_seed(0)
    model = fd.Sequential([fd.layers.LSTM(16, input_shape=(10, 1)), fd.layers.Dense(1)])
    model.compile(fd.optimizers.Adam(0.01), "mse")
    history = model.fit(dataset, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]  # 0.19 -> 2e-4 here


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size=None"):
        fd.utils.timeseries_dataset_from_array(np.arange(10), None, 3, batch_size=None)
    with pytest.raises(ValueError, match="same length"):
        fd.utils.timeseries_dataset_from_array(np.arange(10), np.arange(9), 3)
    with pytest.raises(ValueError, match="sequence_length must be an int >= 1"):
        fd.utils.timeseries_dataset_from_array(np.arange(10), None, 0)
