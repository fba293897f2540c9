"""Input(shape=(T,), dtype="int32") feeding an Embedding in a functional model, end to end:
fit learns, predict equals the Embedding's table lookup, save / load keeps the predictions,
and the ids stay integers all the way (an id above 2^24 has no float32 representation)."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import layers


def _model(vocabulary, steps=7):
    ids = layers.Input(shape=(steps,), dtype="int32")
    pooled = layers.GlobalAveragePooling1D()(layers.Embedding(vocabulary, 8)(ids))
    return fd.Model(ids, layers.Dense(1, activation="sigmoid")(pooled))


def test_int_ids_through_embedding_fit_predict_save_load(tmp_path):
    fd.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (512, 7)).astype(np.int32)
    y = ((x < 10).mean(axis=1, keepdims=True) > 0.5).astype(np.float32)  # majority of low ids
    model = _model(20)
    assert model.inputs[0].dtype == np.int32
    model.compile(fd.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    # A constant guess scores ~0.5 (the label is a fair majority vote); averaging two
    # learned embedding values per class separates the majority of 7 ids almost always.
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9
    predicted = model.predict(x, verbose=0)
    # The same forward in NumPy from the model's weights: table lookup, mean, dense.
    table, kernel, bias = (w for w in model.get_weights())
    expected = 1 / (1 + np.exp(-(table[x].mean(axis=1) @ kernel + bias)))
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)  # float32 sums of 8
    model.save(tmp_path / "ids.keras")
    loaded = fd.models.load_model(tmp_path / "ids.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), predicted)


def test_ids_beyond_float32_precision_reach_their_row(tmp_path):
    vocabulary = 2**24 + 3  # 2^24 + 1 rounds to 2^24 in float32
    ids = layers.Input(shape=(1,), dtype="int32")
    embedding = layers.Embedding(vocabulary, 1)
    model = fd.Model(ids, layers.Flatten()(embedding(ids)))
    table = np.zeros((vocabulary, 1), np.float32)
    table[2**24 + 1] = 1.0
    embedding.set_weights([table])
    x = np.array([[2**24 + 1], [2**24]], np.int32)
    np.testing.assert_array_equal(model.predict(x, verbose=0)[:, 0], [1.0, 0.0])
    model.save(tmp_path / "big.keras")
    loaded = fd.models.load_model(tmp_path / "big.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0)[:, 0], [1.0, 0.0])


def test_loaded_model_input_keeps_int32_dtype(tmp_path):
    model = _model(20)
    model.save(tmp_path / "ids.keras")
    assert fd.models.load_model(tmp_path / "ids.keras").inputs[0].dtype == np.int32
