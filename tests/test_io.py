"""Saving and loading (fusednn.io): round trips, the safetensors layout read back
independently with struct + json, validation of damaged or foreign files, and atomic
writes."""
import json
import os
import struct

import numpy as np
import pytest

import fusednn.io as fio
import fusednn.models as models
import fusednn.utils as utils
from fusednn import layers, losses, optimizers


def _classifier(seed=0):
    utils.set_random_seed(seed)
    return models.Sequential([
        layers.Dense(16, activation="relu", input_shape=(6,)),
        layers.Dropout(0.25),
        layers.Dense(3, activation="softmax"),
    ])


def _data(n=48, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)


def _read_header(path):
    """The safetensors header read independently of fusednn: (length, header dict, data bytes)."""
    raw = open(path, "rb").read()
    (length,) = struct.unpack("<Q", raw[:8])
    return length, json.loads(raw[8:8 + length]), raw[8 + length:]


def _write_raw(path, header: dict, data: bytes):
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def _assert_same(weights_a, weights_b):
    assert len(weights_a) == len(weights_b)
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


# ----- round trips ---------------------------------------------------------------

def test_save_and_load_model_round_trip_and_training_continues_identically(tmp_path):
    x, y = _data()
    model = _classifier()
    model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)

    restored = models.load_model(path)
    assert [type(l).__name__ for l in restored.layers] == ["Dense", "Dropout", "Dense"]
    assert [l.name for l in restored.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    assert isinstance(restored.optimizer, optimizers.Adam)
    assert restored.optimizer.learning_rate == 0.01
    assert restored.optimizer.iterations == model.optimizer.iterations == 12
    assert isinstance(restored.loss, losses.SparseCategoricalCrossentropy)
    assert restored.metrics_names == ["loss", "accuracy"]
    assert restored.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)

    # Same seed for shuffling and dropout: with Adam's moments restored, the next epochs
    # are bit-for-bit those of the original model.
    for m in (model, restored):
        utils.set_random_seed(5)
        m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    _assert_same(restored.get_weights(), model.get_weights())


def test_without_optimizer_state_training_differs(tmp_path):
    # The check above is meaningful: dropping Adam's state changes the continuation.
    x, y = _data()
    model = _classifier()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.safetensors", include_optimizer=False)
    restored = models.load_model(tmp_path / "m.safetensors")
    assert restored.optimizer.iterations == 0
    for m in (model, restored):
        utils.set_random_seed(5)
        m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert not np.array_equal(restored.get_weights()[0], model.get_weights()[0])


def test_weights_only_round_trip_into_a_model_with_other_layer_names(tmp_path):
    x, _ = _data()
    model = _classifier(seed=0)
    model.save_weights(tmp_path / "w.h5")
    other = _classifier(seed=1)  # fresh automatic names (dense_2, ...) and other weights
    assert [l.name for l in other.layers] != [l.name for l in model.layers]
    other.load_weights(tmp_path / "w.h5")
    np.testing.assert_array_equal(other.predict(x), model.predict(x))

    unbuilt = models.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.25),
                                 layers.Dense(3, activation="softmax")])
    unbuilt.load_weights(tmp_path / "w.h5")  # built for the input shape stored in the file
    np.testing.assert_array_equal(unbuilt.predict(x), model.predict(x))


def test_custom_metrics_are_left_out_with_a_warning(tmp_path):
    def within_half(y_true, y_pred):
        return float(np.mean(np.abs(y_true - y_pred) < 0.5))

    model = models.Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae", within_half])
    assert model.metrics_names == ["loss", "mae", "within_half"]
    with pytest.warns(RuntimeWarning, match="within_half.*custom function"):
        model.save(tmp_path / "m.safetensors")
    assert models.load_model(tmp_path / "m.safetensors").metrics_names == ["loss", "mae"]


def test_models_with_unregistered_layers_save_weights_but_not_the_model(tmp_path):
    class Scale(layers.Layer):  # a user's layer, not in fusednn.layers' registry
        def build(self, input_shape):
            self.factor = self.add_weight("factor", (input_shape[-1],), "ones")

        def call(self, x, training):
            return x * self.factor.value, None

    model = models.Sequential([Scale(input_shape=(3,), name="scale"), layers.Dense(2)])
    model.layers[0].factor.value[:] = [1.0, 2.0, 3.0]
    model.save_weights(tmp_path / "w.safetensors")
    copy = models.Sequential([Scale(input_shape=(3,), name="scale"), layers.Dense(2)])
    copy.load_weights(tmp_path / "w.safetensors")
    _assert_same(copy.get_weights(), model.get_weights())
    with pytest.raises(ValueError, match="Scale is not a registered layer class"):
        model.save(tmp_path / "m.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]


def test_uncompiled_nested_float64_model_round_trip(tmp_path):
    inner = models.Sequential([layers.Dense(4, activation="tanh", input_shape=(3,),
                                            dtype="float64")], name="encoder")
    model = models.Sequential([layers.Input((3,)), inner, layers.Dense(2, dtype="float64")])
    model.save(tmp_path / "nested.safetensors")
    restored = models.load_model(tmp_path / "nested.safetensors")
    assert restored.optimizer is None
    assert isinstance(restored.layers[0], models.Sequential)
    assert restored.layers[0].name == "encoder"
    x = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    _, header, _ = _read_header(tmp_path / "nested.safetensors")
    assert {header[k]["dtype"] for k in header if k != "__metadata__"} == {"F64"}
    with pytest.raises(ValueError):  # the InputLayer came back and checks the input shape
        restored.predict(np.zeros((1, 4)))


# ----- the file layout --------------------------------------------------------------

def test_file_is_safetensors_readable_with_struct_and_json(tmp_path):
    model = _classifier()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    path = tmp_path / "model.keras"  # the name says Keras, the content is safetensors
    model.save(path)
    length, header, data = _read_header(path)
    assert (8 + length) % 8 == 0  # header padded so the data is 8-byte aligned
    metadata = header.pop("__metadata__")
    assert all(isinstance(v, str) for v in metadata.values())
    config = json.loads(metadata["fusednn_config"])
    assert config["class_name"] == "Sequential"
    assert [l["class_name"] for l in config["config"]["layers"]] == ["Dense", "Dropout", "Dense"]
    assert json.loads(metadata["fusednn_compile"])["loss"]["class_name"] == \
        "SparseCategoricalCrossentropy"

    names = [v.name for v in model.variables]
    assert list(header)[:4] == names  # weights first, in Keras order
    end = 0
    for var in model.variables:
        entry = header[var.name]
        assert entry["dtype"] == "F32" and entry["shape"] == list(var.shape)
        begin, stop = entry["data_offsets"]
        assert begin == end  # contiguous, no holes
        end = stop
        stored = np.frombuffer(data[begin:stop], dtype="<f4").reshape(var.shape)
        np.testing.assert_array_equal(stored, var.value)
    assert max(e["data_offsets"][1] for e in header.values()) == len(data)


def test_reference_safetensors_library_reads_our_files_and_we_read_its_files(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    model = _classifier()
    model.save_weights(tmp_path / "ours.safetensors")
    loaded = st.load_file(str(tmp_path / "ours.safetensors"))
    for var in model.variables:
        np.testing.assert_array_equal(loaded[var.name], var.value)
    # The reference library orders tensors by name (bias before kernel): matched by name.
    st.save_file({v.name: v.value for v in model.variables}, str(tmp_path / "theirs.safetensors"))
    original = model.get_weights()
    model.set_weights([np.zeros_like(w) for w in original])
    model.load_weights(tmp_path / "theirs.safetensors")
    _assert_same(model.get_weights(), original)


# ----- damaged and foreign files ------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    model = _classifier()
    path = tmp_path / "model.safetensors"
    model.save(path)
    return model, path


def test_truncated_files_raise_naming_the_file(saved, tmp_path):
    _, path = saved
    raw = path.read_bytes()
    cases = {"in_data.safetensors": raw[:-10], "in_header.safetensors": raw[:40],
             "tiny.safetensors": raw[:5]}
    for name, content in cases.items():
        broken = tmp_path / name
        broken.write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}.*(truncated|larger than|fewer than)"):
            models.load_model(broken)


def test_oversized_header_length_raises(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}" + b" " * 6)
    with pytest.raises(ValueError, match=r"huge\.safetensors.*header length 1099511627776"):
        fio.read_safetensors(path)


def test_unsupported_dtype_bad_offsets_and_bad_json_raise(tmp_path):
    path = tmp_path / "t.safetensors"
    _write_raw(path, {"a": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))
    with pytest.raises(ValueError, match="'a' has dtype 'I32'.*F32 and F64"):
        fio.read_safetensors(path)
    _write_raw(path, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8))
    with pytest.raises(ValueError, match="needs 12 bytes"):
        fio.read_safetensors(path)
    _write_raw(path, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                      "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, bytes(8))
    with pytest.raises(ValueError, match="overlap or hole"):
        fio.read_safetensors(path)
    path.write_bytes(struct.pack("<Q", 4) + b"{no}")
    with pytest.raises(ValueError, match="not valid UTF-8 JSON"):
        fio.read_safetensors(path)


def test_unknown_layer_type_raises(saved, tmp_path):
    _, path = saved
    tensors, metadata = fio.read_safetensors(path)
    config = json.loads(metadata["fusednn_config"])
    config["config"]["layers"][1]["class_name"] = "Conv9D"
    metadata["fusednn_config"] = json.dumps(config)
    forged = tmp_path / "forged.safetensors"
    fio.write_safetensors(forged, tensors, metadata)
    with pytest.raises(ValueError, match=r"forged\.safetensors.*unknown layer class 'Conv9D'"):
        models.load_model(forged)


def test_shape_mismatch_names_the_layer_variable_and_both_shapes(saved, tmp_path):
    _, path = saved
    wider = models.Sequential([layers.Dense(17, activation="relu", input_shape=(6,), name="d1"),
                               layers.Dropout(0.25), layers.Dense(3, activation="softmax")])
    before = wider.get_weights()
    with pytest.raises(ValueError, match=r"weight 'kernel' of layer 'd1' has shape \(6, 17\) in "
                                         r"the model, but the file's tensor '.*kernel' has shape "
                                         r"\(6, 16\)"):
        wider.load_weights(path)
    _assert_same(wider.get_weights(), before)  # nothing was half-loaded

    tensors, metadata = fio.read_safetensors(path)
    config = json.loads(metadata["fusednn_config"])
    config["config"]["layers"][2]["config"]["units"] = 4
    metadata["fusednn_config"] = json.dumps(config)
    forged = tmp_path / "forged.safetensors"
    fio.write_safetensors(forged, tensors, metadata)
    with pytest.raises(ValueError, match=r"\(16, 4\) in the model.*\(16, 3\)"):
        models.load_model(forged)

    with pytest.raises(ValueError, match="holds 4 weight tensors.*has 2 weights"):
        models.Sequential([layers.Dense(3, input_shape=(6,))]).load_weights(path)


def test_missing_config_and_missing_files(tmp_path):
    fio.write_safetensors(tmp_path / "plain.safetensors", {"w": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="no model config"):
        models.load_model(tmp_path / "plain.safetensors")
    with pytest.raises(FileNotFoundError, match="no such file"):
        models.load_model(tmp_path / "absent.keras")


# ----- writing ---------------------------------------------------------------------------

def test_saving_into_a_missing_folder_or_an_unbuilt_model_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _classifier().save(tmp_path / "no" / "such" / "model.keras")
    with pytest.raises(ValueError, match="not built"):
        models.Sequential([layers.Dense(2)]).save_weights(tmp_path / "w.safetensors")


def test_atomic_write_keeps_the_old_file_when_writing_fails(saved, monkeypatch):
    model, path = saved
    old = path.read_bytes()

    class FailingFile:
        """Writes the first chunk (the header length), then fails like a full disk."""

        def __init__(self, f):
            self.f, self.writes = f, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.writes += 1
            if self.writes > 1:
                raise OSError(28, "No space left on device")
            return self.f.write(data)

    real_fdopen = os.fdopen
    monkeypatch.setattr(fio.os, "fdopen", lambda fd, mode: FailingFile(real_fdopen(fd, mode)))
    model.layers[0].kernel.value += 1.0
    with pytest.raises(OSError, match="No space left"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(path.parent) == [path.name]  # the temporary file was removed
    model.save(path)  # and a normal save then replaces it
    assert path.read_bytes() != old
