"""fit / evaluate / predict on generators, iterators and fd.utils.PyDataset (Keras 3's rules).

The references are the same model trained on the same batches given as arrays (shuffle
off): a data source that feeds the same batches in the same order must give bit-identical
weights and losses, since every float operation is then the same.
"""
from __future__ import annotations

import re
import threading
import traceback
import warnings

import numpy as np
import pytest

import fusednn as fd
from fusednn import callbacks, layers, models

N, BATCH, FEATURES = 64, 16, 4


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, FEATURES)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def _model(seed=3):
    fd.utils.set_random_seed(seed)
    model = models.Sequential([layers.Dense(8, activation="tanh", input_shape=(FEATURES,)),
                               layers.Dense(2, activation="softmax")])
    model.compile(fd.optimizers.SGD(0.1), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _batches(x, y, batch=BATCH):
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]


def _generator(x, y):
    yield from _batches(x, y)


class Batches(fd.utils.PyDataset):
    """x, y in batches of BATCH; counts epochs and records which threads loaded batches."""

    def __init__(self, x, y, fail_at=None, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.fail_at = x, y, fail_at
        self.epochs_ended = 0
        self.loader_threads = set()

    def __len__(self):
        return len(self.x) // BATCH

    def __getitem__(self, index):
        self.loader_threads.add(threading.current_thread().name)
        if index == self.fail_at:
            raise_in_worker(index)
        return self.x[index * BATCH:(index + 1) * BATCH], self.y[index * BATCH:(index + 1) * BATCH]

    def on_epoch_end(self):
        self.epochs_ended += 1


def raise_in_worker(index):
    raise KeyError(f"batch {index} is missing")


class BatchCounter(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batch_ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.batch_ends.append(batch)


def _run_with_timeout(fn, seconds=60.0):
    """fn() in a thread: its result or exception, or a failure if it is still running after
    `seconds` (a hang), instead of blocking the test run."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds}s: a hang"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _fit_arrays(epochs=2, **kwargs):
    x, y = _data()
    model = _model()
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                        **kwargs)
    return model, history.history


def _same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# ----- generators and iterators --------------------------------------------------------

def test_generator_with_steps_matches_arrays():
    x, y = _data()
    reference, expected = _fit_arrays(epochs=2)

    def forever():
        while True:
            yield from _batches(x, y)

    model = _model()
    history = model.fit(forever(), steps_per_epoch=N // BATCH, epochs=2, verbose=0).history
    assert history == expected
    _same_weights(model, reference)


def test_generator_without_steps_runs_to_exhaustion_then_stops_with_keras_warning():
    x, y = _data()
    reference, expected = _fit_arrays(epochs=1)
    model = _model()
    with pytest.warns(UserWarning, match="Your input ran out of data; interrupting training"):
        history = model.fit(_generator(x, y), epochs=3, verbose=0).history
    assert history == expected  # epoch 1 read all 4 batches; epoch 2 found none and stopped
    _same_weights(model, reference)


def test_iterator_with_steps_continues_across_epochs():
    # Keras: with steps_per_epoch the epochs share one iterator, epoch 2 takes batches 2, 3.
    x, y = _data()
    reference, _ = _fit_arrays(epochs=1)
    model = _model()
    counter = BatchCounter()
    model.fit(iter(_batches(x, y)), steps_per_epoch=2, epochs=2, verbose=0, callbacks=[counter])
    _same_weights(model, reference)
    assert counter.batch_ends == [0, 1, 0, 1]


def test_iterator_running_out_mid_epoch_ends_that_epoch_and_training():
    x, y = _data()
    model = _model()
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model.fit(iter(_batches(x, y)), steps_per_epoch=3, epochs=5, verbose=0)
    assert history.epoch == [0, 1]  # 3 batches, then the 4th and last alone


def test_generator_yielding_sample_weights_matches_arrays(rng):
    x, y = _data()
    weights = rng.random(N)
    reference, expected = _fit_arrays(epochs=1, sample_weight=weights)
    batches = [(xb, yb, weights[i * BATCH:(i + 1) * BATCH])
               for i, (xb, yb) in enumerate(_batches(x, y))]
    model = _model()
    history = model.fit(iter(batches), epochs=1, verbose=0).history
    assert history == expected
    _same_weights(model, reference)


def test_validation_data_generator_with_validation_steps():
    x, y = _data()
    x_val, y_val = _data(seed=1)
    _, expected = _fit_arrays(epochs=2, validation_data=(x_val, y_val))

    def forever():
        while True:
            yield from _batches(x_val, y_val, batch=32)

    model = _model()
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                        validation_data=forever(), validation_steps=2).history
    assert history.keys() == expected.keys()
    assert history["loss"] == expected["loss"]
    # val_loss: means over two batches of 32 instead of 32 + 32 as arrays in one call; the
    # same samples, so equal up to float32 rounding of the per-batch means.
    np.testing.assert_allclose(history["val_loss"], expected["val_loss"], rtol=1e-6)
    assert history["val_accuracy"] == expected["val_accuracy"]


def test_evaluate_and_predict_on_generators_match_arrays():
    x, y = _data()
    model, _ = _fit_arrays(epochs=1)
    expected = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    got = model.evaluate(_generator(x, y), verbose=0, return_dict=True)
    assert got == expected
    half = model.evaluate(_generator(x, y), steps=2, verbose=0, return_dict=True)
    assert half == model.evaluate(x[:32], y[:32], batch_size=BATCH, verbose=0, return_dict=True)
    predicted = model.predict(x, batch_size=BATCH)
    np.testing.assert_array_equal(model.predict(xb for xb, _ in _batches(x, y)), predicted)
    np.testing.assert_array_equal(model.predict(_generator(x, y)), predicted)  # y ignored
    np.testing.assert_array_equal(model.predict(_generator(x, y), steps=1), predicted[:BATCH])


# ----- PyDataset -------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 3])
def test_pydataset_matches_arrays_and_calls_on_epoch_end(workers):
    x, y = _data()
    reference, expected = _fit_arrays(epochs=3)
    dataset = Batches(x, y, workers=workers, max_queue_size=2)
    model = _model()
    history = _run_with_timeout(lambda: model.fit(dataset, epochs=3, verbose=0).history)
    assert history == expected
    _same_weights(model, reference)
    assert dataset.epochs_ended == 3
    loaded_by_pool = {name.startswith("fusednn-PyDataset") for name in dataset.loader_threads}
    assert loaded_by_pool == {workers > 1}
    assert not [t for t in threading.enumerate() if t.name.startswith("fusednn-PyDataset")]


def test_pydataset_steps_per_epoch_and_validation():
    x, y = _data()
    x_val, y_val = _data(seed=1)
    model = _model()
    history = model.fit(Batches(x, y), steps_per_epoch=2, epochs=2, verbose=0,
                        validation_data=Batches(x_val, y_val, workers=2))
    reference = _model()
    reference.fit(x[:32], y[:32], batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    _same_weights(model, reference)  # each epoch takes batches 0 and 1 of the PyDataset
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x_val, y_val, batch_size=BATCH, verbose=0)[0], rel=1e-6)


def test_exception_in_a_worker_surfaces_in_fit_with_its_traceback_and_threads_stop():
    x, y = _data()
    dataset = Batches(x, y, fail_at=2, workers=3, max_queue_size=4)
    model = _model()
    with pytest.raises(KeyError, match="batch 2 is missing") as info:
        _run_with_timeout(lambda: model.fit(dataset, epochs=2, verbose=0))
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "raise_in_worker" in frames and "__getitem__" in frames
    assert not [t for t in threading.enumerate() if t.name.startswith("fusednn-PyDataset")]


def test_exception_without_workers_surfaces_too():
    x, y = _data()
    with pytest.raises(KeyError, match="batch 1 is missing"):
        _model().fit(Batches(x, y, fail_at=1), verbose=0)


def test_pydataset_arguments_are_checked():
    x, y = _data()
    with pytest.raises(ValueError, match="use_multiprocessing=True is not supported"):
        Batches(x, y, use_multiprocessing=True)
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        Batches(x, y, workers=0)
    with pytest.raises(ValueError, match="has 4 batches, fewer than the 5 steps"):
        _model().fit(Batches(x, y), steps_per_epoch=5, verbose=0)


def test_learns_from_a_threaded_pydataset():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((512, FEATURES)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)

    class Shuffled(fd.utils.PyDataset):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.order = np.arange(len(x))

        def __len__(self):
            return len(x) // 32

        def __getitem__(self, index):
            rows = self.order[index * 32:(index + 1) * 32]
            return x[rows], y[rows]

        def on_epoch_end(self):
            rng.shuffle(self.order)

    model = _model()
    history = model.fit(Shuffled(workers=2), epochs=15, verbose=0)
    # A linear boundary through a tanh layer: well above chance (0.5) after 15 epochs.
    assert history.history["accuracy"][-1] > 0.95
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


# ----- bad input ------------------------------------------------------------------------

def test_bad_input_is_a_clear_error():
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match="y cannot be given when x is a generator"):
        model.fit(_generator(x, y), y)
    with pytest.raises(ValueError, match="validation_split needs array data"):
        model.fit(_generator(x, y), validation_split=0.2)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int or None, got 0"):
        model.fit(_generator(x, y), steps_per_epoch=0)
    with pytest.raises(ValueError, match=r"a batch must be x, \(x,\), \(x, y\) or "
                                         r"\(x, y, sample_weight\), got a tuple of 4 items"):
        model.fit(iter([(x, y, None, None)]), verbose=0)
    with pytest.raises(ValueError, match="each batch must be"):
        model.fit(iter([x]), verbose=0)
    with pytest.raises(ValueError, match="x and y must have the same number of samples"):
        model.fit(iter([(x, y[:3])]), verbose=0)
    with pytest.raises(ValueError, match="yielded no batch to evaluate on"):
        model.evaluate(iter([]), verbose=0)
    with pytest.raises(ValueError, match="yielded no batch to predict on"):
        model.predict(iter([]))
    with pytest.raises(ValueError, match="steps_per_epoch=5 is more than the 4 batches"):
        model.fit(x, y, batch_size=BATCH, steps_per_epoch=5, verbose=0)
    with pytest.raises(ValueError, match="validation_data must be a tuple"):
        model.fit(x, y, validation_data=(x,), verbose=0)


def test_mid_epoch_backup_does_not_resume_on_a_generator(tmp_path):
    x, y = _data()
    model = _model()

    class Interrupt(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise RuntimeError("killed")

    backup = callbacks.BackupAndRestore(tmp_path / "backup", save_freq=1)
    with pytest.raises(RuntimeError, match="killed"):
        model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[backup, Interrupt()])
    with pytest.raises(ValueError, match="resumes only on arrays or a PyDataset"):
        _model().fit(_generator(x, y), epochs=2, verbose=0, callbacks=[backup])


# ----- progress output -------------------------------------------------------------------

def test_unknown_number_of_steps_shows_a_counter(monkeypatch, capsys):
    monkeypatch.setattr(callbacks, "_dynamic_display", lambda: True)
    bar = callbacks.Progbar(None, verbose=1, interval=0.0)
    bar.update(1, [("loss", 0.5)])
    bar.update(12, [("loss", 0.25)])
    out = capsys.readouterr().out
    assert re.match(r"^\r      1/Unknown - \d+s \S+/step - loss: 0.5000\r     12/Unknown - "
                    r"\d+s \S+/step - loss: 0.2500$", out)


def test_fit_on_a_generator_prints_the_steps_it_found(capsys):
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _model().fit(_generator(x, y), epochs=2, verbose=2)
    out = capsys.readouterr().out
    # Epoch 1 ends knowing it had 4 steps; epoch 2 finds the generator exhausted.
    assert re.match(r"^Epoch 1/2\n4/4 - \d+s - loss: \S+ - accuracy: \S+ - .*\nEpoch 2/2\n$",
                    out)
