"""Keras 3 files into fusednn: models saved by real Keras (torch backend) load with
fd.models.load_model / model.load_weights and predict what Keras predicts; hostile
files give clear errors."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")
if keras.backend.backend() != "torch":
    pytest.skip("these tests run Keras on its torch backend", allow_module_level=True)

import fusednn as fd  # noqa: E402
from fusednn import layers, models  # noqa: E402
from fusednn.models import keras_format  # noqa: E402

KL = keras.layers
# Both compute in float32 with the same formulas; the outputs are sums of at most a few
# hundred O(1) products (and recurrences of <= 8 steps), ~1e-6 apart: the 1e-5.
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _randomize(model, seed):
    """Random weights (BatchNormalization variances positive), at the fan-in scale."""
    rng = np.random.default_rng(seed)
    weights = []
    for w, v in zip(model.get_weights(), model.weights):
        if "variance" in v.path:
            weights.append(rng.uniform(0.5, 1.5, size=w.shape))
        elif w.ndim >= 2:
            weights.append(rng.normal(scale=1 / np.sqrt(np.prod(w.shape[:-1])), size=w.shape))
        else:
            weights.append(rng.normal(scale=0.5, size=w.shape))
    model.set_weights([w.astype(np.float32) for w in weights])
    return model


def _saved(model, tmp_path, seed=0, name="model.keras"):
    path = tmp_path / name
    _randomize(model, seed).save(path)
    return path


def _x(model, batch, seed):
    rng = np.random.default_rng(seed)
    shape = (batch,) + tuple(model.input_shape[1:])
    if "int" in str(model.inputs[0].dtype):
        return rng.integers(0, 9, size=shape).astype(np.int32)
    return rng.normal(size=shape).astype(np.float32)


def _compare(keras_model, fd_model, batches=(1, 6)):
    for batch in batches:
        x = _x(keras_model, batch, batch)
        expected = keras.ops.convert_to_numpy(keras_model(x, training=False))
        np.testing.assert_allclose(fd_model.predict(x), expected, **TOL)


CASES = {
    "cnn": lambda: keras.Sequential([
        keras.Input((10, 9, 2)), KL.Conv2D(4, 3, activation="relu"), KL.MaxPooling2D(),
        KL.Conv2D(3, 2, padding="same", strides=2), KL.BatchNormalization(),
        KL.AveragePooling2D(1), KL.Flatten(), KL.Dropout(0.3), KL.Dense(5, activation="softmax")]),
    "conv_resampling": lambda: keras.Sequential([
        keras.Input((4, 5, 2)), KL.Conv2DTranspose(3, 3, strides=2, padding="same"),
        KL.UpSampling2D(), KL.ZeroPadding2D(((1, 0), (2, 1))), KL.Cropping2D(1),
        KL.GlobalMaxPooling2D()]),
    "conv1d": lambda: keras.Sequential([
        keras.Input((12, 3)), KL.Conv1D(4, 3, padding="causal", dilation_rate=2),
        KL.MaxPooling1D(2), KL.UpSampling1D(2), KL.AveragePooling1D(3, padding="same"),
        KL.GlobalAveragePooling1D()]),
    "depthwise_separable_transposed": lambda: keras.Sequential([
        keras.Input((8, 7, 3)), KL.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
        KL.SeparableConv2D(4, 3, activation="relu"), KL.Reshape((-1, 4)),
        KL.Conv1DTranspose(2, 3, strides=2), KL.SeparableConv1D(3, 2, depth_multiplier=2)]),
    "channels_first_grouped": lambda: keras.Sequential([
        keras.Input((4, 6, 5)), KL.Conv2D(4, 3, groups=2, data_format="channels_first"),
        KL.MaxPooling2D(data_format="channels_first"), KL.Flatten(), KL.Dense(2)]),
    "stacked_lstm": lambda: keras.Sequential([
        keras.Input((8, 3)), KL.LSTM(5, return_sequences=True), KL.LSTM(4),
        KL.Dense(2)]),
    "gru_reset_after": lambda: keras.Sequential([
        keras.Input((7, 3)), KL.GRU(4, return_sequences=True), KL.GRU(3, go_backwards=True)]),
    "gru_reset_before": lambda: keras.Sequential([
        keras.Input((7, 3)), KL.GRU(4, reset_after=False, return_sequences=True),
        KL.TimeDistributed(KL.Dense(2, activation="tanh"))]),
    "bidirectional": lambda: keras.Sequential([
        keras.Input((6, 3)), KL.Bidirectional(KL.LSTM(3, return_sequences=True)),
        KL.Bidirectional(KL.GRU(2), merge_mode="sum"), KL.Dense(1)]),
    "simple_rnn_embedding": lambda: keras.Sequential([
        keras.Input((6,), dtype="int32"), KL.Embedding(9, 4), KL.SimpleRNN(3, activation="relu",
                                                                             return_sequences=True),
        KL.SimpleRNN(2)]),
    "reshaping_and_activations": lambda: keras.Sequential([
        keras.Input((12,)), KL.Reshape((3, 4)), KL.PReLU(shared_axes=[1]), KL.Flatten(),
        KL.Dense(6), KL.LeakyReLU(0.2), KL.ELU(0.5), KL.ReLU(max_value=2.0),
        KL.RepeatVector(2), KL.Activation("gelu"), KL.Softmax()]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_keras_model_loads_and_predicts_the_same(case, tmp_path):
    keras_model = CASES[case]()
    path = _saved(keras_model, tmp_path)
    model = fd.models.load_model(path)
    assert isinstance(model, models.Sequential)
    assert len(model.layers) == len(keras_model.layers)
    _compare(keras_model, model)


def test_masked_embedding_lstm(tmp_path):
    """mask_zero ids reach the LSTM, which skips the padded steps as Keras does."""
    keras_model = keras.Sequential([keras.Input((6,), dtype="int32"),
                                    KL.Embedding(9, 4, mask_zero=True), KL.LSTM(3)])
    model = fd.models.load_model(_saved(keras_model, tmp_path))
    ids = np.array([[3, 4, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]], np.int32)
    expected = keras.ops.convert_to_numpy(keras_model(ids))
    np.testing.assert_allclose(model.predict(ids), expected, **TOL)


def test_load_weights_from_keras_weights_file(tmp_path):
    keras_model = _randomize(CASES["cnn"](), 3)
    path = tmp_path / "cnn.weights.h5"
    keras_model.save_weights(path)
    model = models.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(10, 9, 2)), layers.MaxPooling2D(),
        layers.Conv2D(3, 2, padding="same", strides=2), layers.BatchNormalization(),
        layers.AveragePooling2D(1), layers.Flatten(), layers.Dropout(0.3),
        layers.Dense(5, activation="softmax")])
    model.load_weights(path)
    _compare(keras_model, model)
    # The fusednn file format still loads through the same method.
    own = tmp_path / "own.weights.h5"
    model.save_weights(own)
    model.load_weights(own)
    _compare(keras_model, model)


# ----- hostile and unsupported files ---------------------------------------------------------

def _rewritten(path, tmp_path, **members):
    """A copy of the .keras zip `path` with some members replaced."""
    out = tmp_path / "changed.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w",
                                                          zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            target.writestr(name, members.get(name, source.read(name)))
    return out


def _config(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


@pytest.fixture
def dense_file(tmp_path):
    return _saved(keras.Sequential([keras.Input((4,)), KL.Dense(3), KL.Dense(2)]), tmp_path)


def test_truncated_zip(dense_file, tmp_path):
    data = dense_file.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        fd.models.load_model(truncated)


def test_unknown_and_custom_classes(dense_file, tmp_path):
    config = _config(dense_file)
    config["config"]["layers"][1]["class_name"] = "LayerNormalization"
    with pytest.raises(ValueError, match="'LayerNormalization' has no fusednn equivalent"):
        fd.models.load_model(_rewritten(dense_file, tmp_path,
                                        **{"config.json": json.dumps(config)}))
    config = _config(dense_file)
    config["config"]["layers"][2].update(module="my_package.layers",
                                         registered_name="my_package>Dense")
    with pytest.raises(ValueError, match="custom object"):
        fd.models.load_model(_rewritten(dense_file, tmp_path,
                                        **{"config.json": json.dumps(config)}))


def test_lambda_layer_is_refused_without_running_it(tmp_path):
    keras_model = keras.Sequential([keras.Input((3,)), KL.Lambda(lambda x: x * 2)])
    path = tmp_path / "lambda.keras"
    keras_model.save(path)
    with pytest.raises(ValueError, match="'Lambda' holds Python code, which fusednn never "
                                         "runs"):
        fd.models.load_model(path)


def test_unsupported_option_is_named(tmp_path):
    keras_model = keras.Sequential([keras.Input((6,)), KL.Dense(2, activity_regularizer="l2")])
    with pytest.raises(ValueError, match="activity_regularizer=.* is not supported"):
        fd.models.load_model(_saved(keras_model, tmp_path))


def test_constraints_come_in(tmp_path):
    keras_model = keras.Sequential([keras.Input((6,)), KL.Dense(2, kernel_constraint="non_neg")])
    model = fd.models.load_model(_saved(keras_model, tmp_path))
    assert type(model.layers[0].kernel_constraint).__name__ == "NonNeg"


def test_functional_model_with_a_merge_and_a_shared_layer(tmp_path):
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = KL.Dense(3, activation="tanh")
    added = KL.Add()([shared(a), shared(b)])
    sequence = KL.Reshape((2, 2))(a)
    outputs = [KL.Concatenate()([added, KL.Dense(2)(a), KL.LSTM(2)(sequence)]), added]
    keras_model = _randomize(keras.Model([a, b], outputs), 5)
    model = fd.models.load_model(_saved(keras_model, tmp_path, seed=5))
    assert isinstance(model, fd.Model) and model.input_names == ["a", "b"]
    rng = np.random.default_rng(5)
    x = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(2)]
    expected = [keras.ops.convert_to_numpy(y) for y in keras_model(x)]
    for got, want in zip(model.forward(x), expected):
        np.testing.assert_allclose(got, want, **TOL)


def test_subclassed_model_is_refused(dense_file, tmp_path):
    config = _config(dense_file)
    config["class_name"] = "MyModel"
    with pytest.raises(ValueError, match="expected a Keras Sequential or functional model, "
                                         "got 'MyModel'"):
        fd.models.load_model(_rewritten(dense_file, tmp_path,
                                        **{"config.json": json.dumps(config)}))


def test_weights_of_the_wrong_shape(dense_file, tmp_path):
    with zipfile.ZipFile(dense_file) as archive:
        weights = archive.read("model.weights.h5")
    buffer = io.BytesIO(weights)
    with h5py.File(buffer, "r+") as h5:
        del h5["layers/dense_1/vars/0"]
        h5["layers/dense_1/vars/0"] = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"has shape \(3, 2\), but the file's "
                                         r"'/layers/dense_1/vars/0' has shape \(5, 2\)"):
        fd.models.load_model(_rewritten(dense_file, tmp_path,
                                        **{"model.weights.h5": buffer.getvalue()}))


def test_zip_bomb_is_refused_before_it_fills_memory(dense_file, tmp_path, monkeypatch):
    # A lower cap keeps the test small; the check is the same at the real 64 MiB.
    monkeypatch.setattr(keras_format, "MAX_JSON_BYTES", 2**20)
    bomb = _rewritten(dense_file, tmp_path, **{"config.json": b" " * (2**20 + 1)})
    assert bomb.stat().st_size < 2**16  # it unpacks to 16x its size and more
    with pytest.raises(ValueError, match="zip bomb"):
        fd.models.load_model(bomb)


def test_missing_member_and_bad_json(dense_file, tmp_path):
    with pytest.raises(ValueError, match="not valid UTF-8 JSON"):
        fd.models.load_model(_rewritten(dense_file, tmp_path, **{"config.json": b"{nope"}))
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="has no config.json"):
        fd.models.load_model(empty)


def test_fusednn_files_named_keras_still_load(tmp_path):
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    path = tmp_path / "own.keras"
    model.save(path)
    np.testing.assert_array_equal(fd.models.load_model(path).get_weights()[0],
                                  model.get_weights()[0])
