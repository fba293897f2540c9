"""compile/fit/evaluate with one loss, loss weight and metric set per output (Keras 3).

The functional Model comes from another branch; the training API reaches a model only
through its interface (forward returns one array per output, backward takes one gradient
per output, `output_names`), so a two-headed test double exercises the same code. The
names in History are Keras 3's, checked by running Keras 3.15 (torch backend) on the same
compile arguments: loss, out_a_loss, out_b_loss, out_a_mae, out_b_accuracy.
"""
from __future__ import annotations

import numpy as np
import pytest

import fusednn as fd
from fusednn import layers
from fusednn.models.training import Model

LR = 0.1
# float64 sums of a few dozen terms of order 1: a few ulp apart from NumPy's order.
TOL = 1e-12


class TwoHeads(Model):
    """Two Dense heads on one input: out_a regresses (1 unit), out_b classifies (3 classes)."""

    outputs_softmax = False

    def __init__(self, hidden=None):
        super().__init__(name="two_heads")
        self.hidden = hidden
        self.head_a = layers.Dense(1, name="out_a", dtype="float64")
        self.head_b = layers.Dense(3, activation="softmax", name="out_b", dtype="float64")
        self.output_names = ["out_a", "out_b"]
        self.dtype = np.float64

    @property
    def sublayers(self):
        return [layer for layer in (self.hidden, self.head_a, self.head_b) if layer is not None]

    @property
    def layers(self):
        return self.sublayers

    def build(self, input_shape):
        shape = self.hidden.build_for(input_shape) if self.hidden else input_shape
        self.head_a.build_for(shape)
        self.head_b.build_for(shape)

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], 1), (input_shape[0], 3)]

    def call(self, x, training):
        h = self.hidden.forward(x, training) if self.hidden else x
        return [self.head_a.forward(h, training), self.head_b.forward(h, training)], None

    def call_backward(self, dy, cache):
        dh = self.head_a.backward(dy[0]) + self.head_b.backward(dy[1])
        return self.hidden.backward(dh) if self.hidden else dh


def _data(rng, n=12):
    x = rng.standard_normal((n, 4))
    return x, x @ np.array([1.0, -2.0, 0.5, 0.0]), np.argmax(x[:, :3], axis=1)


def _compiled(**compile_kwargs):
    model = TwoHeads()
    model.compile(fd.optimizers.SGD(LR), **compile_kwargs)
    model.build((None, 4))
    return model


LIST_FORM = dict(loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[1.0, 0.5],
                 metrics=[["mae"], ["accuracy"]])
DICT_FORM = dict(loss={"out_a": "mse", "out_b": "sparse_categorical_crossentropy"},
                 loss_weights={"out_a": 1.0, "out_b": 0.5},
                 metrics={"out_a": "mae", "out_b": ["accuracy"]})


def test_logs_have_keras_3_names_and_order(rng):
    x, y_a, y_b = _data(rng)
    model = _compiled(**LIST_FORM)
    assert model.metrics_names == ["loss", "out_a_loss", "out_b_loss", "out_a_mae",
                                   "out_b_accuracy"]
    history = model.fit(x, [y_a, y_b], epochs=1, verbose=0, validation_data=(x, [y_a, y_b]))
    assert list(history.history) == ["loss", "out_a_loss", "out_b_loss", "out_a_mae",
                                     "out_b_accuracy", "val_loss", "val_out_a_loss",
                                     "val_out_b_loss", "val_out_a_mae", "val_out_b_accuracy"]
    results = model.evaluate(x, [y_a, y_b], verbose=0)
    assert len(results) == 5
    # Keras: the total is the loss-weighted sum of the outputs' losses (no regularizer here).
    assert results[0] == pytest.approx(results[1] + 0.5 * results[2], rel=TOL)


def test_loss_and_one_sgd_step_by_hand(rng):
    n = 12
    x, y_a, y_b = _data(rng, n)
    weights = rng.random(n)
    model = _compiled(**LIST_FORM)
    kernel_a, bias_a, kernel_b, bias_b = model.get_weights()
    logs = model.train_on_batch(x, {"out_a": y_a, "out_b": y_b}, sample_weight=weights,
                                return_dict=True)

    error = (x @ kernel_a + bias_a)[:, 0] - y_a
    loss_a = np.sum(weights * error ** 2) / n
    logits = x @ kernel_b + bias_b
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    loss_b = np.sum(weights * -np.log(probs[np.arange(n), y_b])) / n
    np.testing.assert_allclose([logs["out_a_loss"], logs["out_b_loss"], logs["loss"]],
                               [loss_a, loss_b, loss_a + 0.5 * loss_b], rtol=TOL)
    dpred_a = (weights * 2 * error / n)[:, None]
    dlogits_b = 0.5 * weights[:, None] * (probs - np.eye(3)[y_b]) / n
    expected = [kernel_a - LR * x.T @ dpred_a, bias_a - LR * dpred_a.sum(axis=0),
                kernel_b - LR * x.T @ dlogits_b, bias_b - LR * dlogits_b.sum(axis=0)]
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_dict_and_list_forms_agree_and_a_generator_matches_arrays(rng):
    x, y_a, y_b = _data(rng, 16)
    results = []
    for form, data in ((LIST_FORM, {"x": x, "y": [y_a, y_b]}),
                       (DICT_FORM, {"x": x, "y": {"out_b": y_b, "out_a": y_a}}),
                       (LIST_FORM, {"x": iter([(x[:8], [y_a[:8], y_b[:8]]),
                                               (x[8:], {"out_a": y_a[8:], "out_b": y_b[8:]})])})):
        fd.utils.set_random_seed(0)
        model = TwoHeads()
        model.compile(fd.optimizers.SGD(LR), **form)
        batching = {"batch_size": 8, "shuffle": False} if "y" in data else {}
        results.append((model.fit(**data, **batching, verbose=0).history, model.get_weights()))
    for history, final in results[1:]:
        assert history == results[0][0]
        for a, b in zip(final, results[0][1]):
            np.testing.assert_array_equal(a, b)


def test_flat_metric_list_is_one_metric_per_output_and_one_loss_serves_all():
    model = _compiled(loss="mse", metrics=["mae", "mse"])  # as Keras 3.15 names them
    assert model.metrics_names == ["loss", "out_a_loss", "out_b_loss", "out_a_mae",
                                   "out_b_mse"]


def test_an_output_without_a_loss_gets_no_gradient(rng):
    x, y_a, y_b = _data(rng)
    model = _compiled(loss={"out_b": "sparse_categorical_crossentropy"})
    before = model.get_weights()
    logs = model.train_on_batch(x, {"out_b": y_b}, return_dict=True)
    assert list(logs) == ["loss", "out_b_loss"]
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])  # out_a's kernel: no loss, no update
    assert not np.array_equal(after[2], before[2])


def test_two_outputs_learn_both_tasks(rng):
    x = rng.standard_normal((400, 4))
    y_a, y_b = x @ np.array([1.0, -2.0, 0.5, 0.0]), np.argmax(x[:, :3], axis=1)
    fd.utils.set_random_seed(1)
    model = TwoHeads(hidden=layers.Dense(16, activation="tanh", dtype="float64"))
    model.compile(fd.optimizers.Adam(0.01), **LIST_FORM)
    history = model.fit(x, [y_a, y_b], batch_size=32, epochs=40, verbose=0).history
    # Chance levels: out_a's MSE starts near var(y_a) = 5.25, out_b's accuracy near 1/3.
    assert history["out_a_loss"][-1] < 0.05 * history["out_a_loss"][0]
    assert history["out_b_accuracy"][-1] > 0.9


def test_bad_multi_output_arguments_are_clear_errors(rng):
    x, y_a, y_b = _data(rng)
    model = TwoHeads()
    with pytest.raises(ValueError, match=r"loss as a list needs one entry per output \(2: "
                                         r"\['out_a', 'out_b'\]\), got 3"):
        model.compile("sgd", loss=["mse", "mse", "mse"])
    with pytest.raises(ValueError, match=r"loss names outputs \['out_c'\] that the model does "
                                         "not have"):
        model.compile("sgd", loss={"out_c": "mse"})
    with pytest.raises(ValueError, match=r"metrics as a list needs one entry per output \(2: "):
        model.compile("sgd", loss="mse", metrics=["mae"])  # Keras 3 refuses it too
    with pytest.raises(ValueError, match="metrics must be a list with one entry per output or "
                                         "a dict keyed by output name, got 'mae'"):
        model.compile("sgd", loss="mse", metrics="mae")
    model.compile("sgd", **LIST_FORM)
    with pytest.raises(ValueError, match=r"y must be a list of 2 arrays or a dict keyed by "
                                         "output name, got one ndarray"):
        model.fit(x, y_a, verbose=0)
    with pytest.raises(ValueError, match=r"y names outputs \['out_c'\]"):
        model.fit(x, {"out_a": y_a, "out_c": y_b}, verbose=0)
    with pytest.raises(ValueError, match="y has no target for output 'out_b'"):
        model.fit(x, {"out_a": y_a}, verbose=0)
    with pytest.raises(ValueError, match=r"x and y\[1\] must have the same number of samples"):
        model.fit(x, [y_a, y_b[:5]], verbose=0)
    with pytest.raises(ValueError, match="class_weight is only supported for models with one "
                                         "output"):
        model.fit(x, [y_a, y_b], class_weight={0: 2.0}, verbose=0)


def test_predict_returns_one_array_per_output(rng):
    x, _, _ = _data(rng, 10)
    model = _compiled(**LIST_FORM)
    whole = model.forward(x)
    for predicted in (model.predict(x, batch_size=4),
                      model.predict(iter([x[:4], x[4:8], x[8:]])),
                      model.predict_on_batch(x)):
        assert len(predicted) == 2
        for got, want in zip(predicted, whole):
            # Dense rows do not depend on the batch they are in: the same products and sums.
            np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


# ----- on the functional Model (models/functional.py) -------------------------------------

def _functional(outputs_as_dict=False, dtype="float64"):
    features = fd.Input((4,), name="features", dtype=dtype)
    hidden = layers.Dense(16, activation="tanh", name="hidden", dtype=dtype)(features)
    out_a = layers.Dense(1, name="out_a", dtype=dtype)(hidden)
    out_b = layers.Dense(3, activation="softmax", name="out_b", dtype=dtype)(hidden)
    return fd.Model(features, {"out_a": out_a, "out_b": out_b} if outputs_as_dict
                    else [out_a, out_b])


@pytest.mark.parametrize("as_dict", [False, True])
def test_functional_two_output_model_learns_both_tasks(rng, as_dict):
    x = rng.standard_normal((400, 4))
    y_a, y_b = x @ np.array([1.0, -2.0, 0.5, 0.0]), np.argmax(x[:, :3], axis=1)
    fd.utils.set_random_seed(1)
    model = _functional(outputs_as_dict=as_dict)
    assert model.output_names == ["out_a", "out_b"]
    model.compile(fd.optimizers.Adam(0.01), **(DICT_FORM if as_dict else LIST_FORM))
    y = {"out_a": y_a, "out_b": y_b} if as_dict else [y_a, y_b]
    history = model.fit(x, y, batch_size=32, epochs=40, verbose=0, validation_split=0.2).history
    assert list(history)[:5] == ["loss", "out_a_loss", "out_b_loss", "out_a_mae",
                                 "out_b_accuracy"]
    # Chance levels: out_a's MSE starts near var(y_a) = 5.25, out_b's accuracy near 1/3.
    assert history["out_a_loss"][-1] < 0.05 * history["out_a_loss"][0]
    assert history["val_out_b_accuracy"][-1] > 0.9
    predicted = model.predict(x[:5])
    if as_dict:
        assert sorted(predicted) == ["out_a", "out_b"]
        predicted = [predicted["out_a"], predicted["out_b"]]
    assert [p.shape for p in predicted] == [(5, 1), (5, 3)]


def test_functional_two_output_step_equals_the_double(rng):
    # The same weights, data and compile settings: the functional graph and the hand-written
    # double must compute the same float64 step (same products, same order).
    x, y_a, y_b = _data(rng, 12)
    functional = _functional()
    functional.compile(fd.optimizers.SGD(LR), **LIST_FORM)
    double = TwoHeads(hidden=layers.Dense(16, activation="tanh", dtype="float64"))
    double.compile(fd.optimizers.SGD(LR), **LIST_FORM)
    double.build((None, 4))
    double.set_weights(functional.get_weights())
    weights = rng.random(12)
    logs = [m.train_on_batch(x, [y_a, y_b], sample_weight=weights, return_dict=True)
            for m in (functional, double)]
    assert logs[0] == logs[1]
    for a, b in zip(functional.get_weights(), double.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_functional_two_inputs_from_arrays_and_a_generator(rng):
    def two_inputs():
        left, right = fd.Input((3,), name="left"), fd.Input((2,), name="right")
        merged = layers.Concatenate()([left, right])
        return fd.Model([left, right], layers.Dense(1, name="out")(merged))

    x_left, x_right = rng.standard_normal((64, 3)), rng.standard_normal((64, 2))
    y = x_left.sum(axis=1) - 2 * x_right[:, 0]
    results = []
    for data in ({"x": [x_left, x_right], "y": y, "batch_size": 16, "shuffle": False},
                 {"x": iter([([x_left[i:i + 16], x_right[i:i + 16]], y[i:i + 16])
                             for i in range(0, 64, 16)])}):
        fd.utils.set_random_seed(3)
        model = two_inputs()
        model.compile(fd.optimizers.SGD(0.05), "mse")
        results.append((model.fit(**data, verbose=0).history, model.get_weights()))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)
    fd.utils.set_random_seed(3)
    model = two_inputs()
    model.compile(fd.optimizers.SGD(0.05), "mse")
    history = model.fit({"left": x_left, "right": x_right}, y, epochs=60, verbose=0,
                        validation_split=0.25).history
    assert history["val_loss"][-1] < 0.01 * history["loss"][0]  # a linear target: near exact


def test_save_and_load_keep_per_output_compile_settings(tmp_path):
    a, b = fd.Input((3,), name="a"), fd.Input((2,), name="b")
    joined = fd.layers.Concatenate()([a, b])
    model = fd.Model([a, b], [fd.layers.Dense(1, name="reg")(joined),
                              fd.layers.Dense(3, activation="softmax", name="cls")(joined)])
    model.compile("adam", loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"},
                  loss_weights={"reg": 0.5, "cls": 2.0}, metrics={"cls": ["accuracy"]},
                  weighted_metrics=["mae", None])
    x = [np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)]
    y = [np.zeros((4, 1), np.float32), np.array([0, 1, 2, 0])]
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.safetensors")
    loaded = fd.models.load_model(tmp_path / "m.safetensors")
    assert loaded.compile_arguments["loss_weights"] == {"reg": 0.5, "cls": 2.0}
    assert [type(loss).__name__ for loss in loaded.loss.values()] == [
        "MeanSquaredError", "SparseCategoricalCrossentropy"]
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True))
