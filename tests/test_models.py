"""Sequential (the layer protocol at model level, fit/evaluate/predict, summary, progress
output, errors), metrics and utils. References: the layers composed by hand, central
finite differences in float64, and NumPy formulas."""
import re

import numpy as np
import pytest

import fusednn.callbacks as callbacks
import fusednn.models as models
import fusednn.utils as utils
from fusednn import backend, layers, losses, optimizers
from gradcheck import numeric_gradient


class Recorder(layers.Layer):
    """Identity layer that records the inputs of training forwards (to see fit's batches)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, x, training):
        if training:
            self.seen.append(np.array(x))
        return x, None

    def call_backward(self, dy, cache):
        return dy


def _mlp(dtype="float32", **dense_kwargs):
    return models.Sequential([
        layers.Dense(5, activation="tanh", input_shape=(4,), dtype=dtype, **dense_kwargs),
        layers.Dense(3, dtype=dtype),
    ])


def _regression_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 3)) + 0.5).astype(np.float32)
    return x, y


# ----- the layer protocol at model level ------------------------------------------

def test_forward_and_backward_equal_the_layers_composed_by_hand(rng):
    model = _mlp()
    first, second = model.layers
    x = rng.normal(size=(6, 4)).astype(np.float32)
    dy = rng.normal(size=(6, 3)).astype(np.float32)

    by_hand = second.forward(first.forward(x, training=True), training=True)
    model.zero_grad()
    dx_by_hand = first.backward(second.backward(dy))
    grads_by_hand = model.get_gradients()

    model.zero_grad()
    y = model.forward(x, training=True)
    dx = model.backward(dy)
    # Same operations in the same order on the same arrays: identical results.
    np.testing.assert_array_equal(y, by_hand)
    np.testing.assert_array_equal(dx, dx_by_hand)
    for g, g_by_hand in zip(model.get_gradients(), grads_by_hand):
        np.testing.assert_array_equal(g, g_by_hand)
    np.testing.assert_array_equal(model(x), by_hand)  # __call__ is forward


def test_backward_matches_finite_differences_in_float64(rng):
    model = _mlp("float64")
    x = rng.normal(size=(3, 4))
    weight = rng.normal(size=(3, 3))          # loss = sum(weight * model(x))
    loss = lambda: float(np.sum(weight * model.forward(x)))

    model.zero_grad()
    model.forward(x, training=True)
    dx = model.backward(weight)
    # float64 central differences with eps 1e-6: truncation and rounding errors ~1e-9.
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=1e-6, atol=1e-8)
    for var in model.variables:
        np.testing.assert_allclose(var.grad, numeric_gradient(loss, var.value), rtol=1e-6,
                                   atol=1e-8, err_msg=var.name)


def test_gan_protocol_generator_gradients_through_a_frozen_discriminator(rng):
    generator = models.Sequential([layers.Dense(4, activation="tanh", input_shape=(3,),
                                                dtype="float64"),
                                   layers.Dense(2, dtype="float64")])
    discriminator = models.Sequential([layers.Dense(5, activation="tanh", input_shape=(2,),
                                                    dtype="float64"),
                                       layers.Dense(1, dtype="float64")])
    bce = losses.BinaryCrossentropy(from_logits=True)
    z = rng.normal(size=(7, 3))
    ones = np.ones((7, 1))
    generator_loss = lambda: bce(ones, discriminator.forward(generator.forward(z)))

    generator.zero_grad()
    discriminator.zero_grad()
    discriminator.trainable = False
    _, g = bce.value_and_grad(ones, discriminator.forward(generator.forward(z, training=True),
                                                          training=True))
    generator.backward(discriminator.backward(g))
    discriminator.trainable = True

    for var in generator.variables:
        np.testing.assert_allclose(var.grad, numeric_gradient(generator_loss, var.value),
                                   rtol=1e-6, atol=1e-8, err_msg=var.name)
    # The frozen discriminator passed gradients back but accumulated none.
    assert all(not np.any(g) for g in discriminator.get_gradients())


def test_model_level_weights_api(rng):
    model = _mlp()
    assert model.count_params() == (4 * 5 + 5) + (5 * 3 + 3)
    assert [v.name for v in model.variables] == [
        f"{model.layers[0].name}/kernel", f"{model.layers[0].name}/bias",
        f"{model.layers[1].name}/kernel", f"{model.layers[1].name}/bias"]
    new = [rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(new)
    for w, expected in zip(model.get_weights(), new):
        np.testing.assert_array_equal(w, expected)
    x = rng.normal(size=(2, 4)).astype(np.float32)
    expected = np.tanh(x @ new[0] + new[1]) @ new[2] + new[3]
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)  # float32
    model.forward(x, training=True)
    model.backward(np.ones((2, 3), np.float32))
    assert any(np.any(g) for g in model.get_gradients())
    model.zero_grad()
    assert not any(np.any(g) for g in model.get_gradients())
    assert model.to("cpu") is model
    with pytest.raises(ValueError, match="expected 4 arrays"):
        model.set_weights(new[:2])


def test_backward_without_training_forward_raises():
    model = _mlp()
    model.forward(np.zeros((2, 4), np.float32))
    with pytest.raises(RuntimeError, match=r"forward\(x, training=True\)"):
        model.backward(np.zeros((2, 3), np.float32))


def test_building_from_input_shape_input_layer_build_and_data():
    declared = _mlp()
    assert declared.built and declared.input_shape == (None, 4)
    assert declared.output_shape == (None, 3)

    with_input = models.Sequential([layers.Input((4,)), layers.Dense(2)])
    assert with_input.built and len(with_input.layers) == 1  # Input is not one of the layers
    with pytest.raises(ValueError):
        with_input.forward(np.zeros((1, 5), np.float32))

    lazy = models.Sequential()
    lazy.add(layers.Dense(2))
    assert not lazy.built
    lazy.build((None, 7))
    assert lazy.built and lazy.count_params() == 7 * 2 + 2

    on_data = models.Sequential([layers.Dense(2)])
    on_data.predict(np.zeros((3, 6), np.float32))
    assert on_data.built and on_data.input_shape == (None, 6)

    on_data.add(layers.Dense(4))  # adding to a built model builds the new layer
    assert on_data.output_shape == (None, 4) and on_data.layers[-1].built
    assert on_data.pop() is not None and on_data.output_shape == (None, 2)


def test_add_rejects_non_layers_and_duplicate_names():
    model = models.Sequential()
    with pytest.raises(TypeError, match="expected a fusednn Layer"):
        model.add("dense")
    model.add(layers.Dense(2, name="same", input_shape=(3,)))
    with pytest.raises(ValueError, match="unique names"):
        model.add(layers.Dense(2, name="same"))
    assert len(model.layers) == 1


def test_nested_sequential_is_a_layer(rng):
    inner = models.Sequential([layers.Dense(3, activation="relu", input_shape=(4,))])
    outer = models.Sequential([inner, layers.Dense(2)])
    assert outer.built and outer.count_params() == (4 * 3 + 3) + (3 * 2 + 2)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(outer.predict(x), outer.layers[1](inner(x)))


# ----- compile / fit ----------------------------------------------------------------

def test_fit_reduces_the_loss_on_a_toy_regression():
    utils.set_random_seed(0)
    x, y = _regression_data(128)
    model = _mlp()
    model.compile(optimizer=optimizers.Adam(0.02), loss="mse", metrics=["mae"])
    history = model.fit(x, y, batch_size=16, epochs=30, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 10
    loss, mae = model.evaluate(x, y, verbose=0)
    prediction = model.predict(x)
    # Independent NumPy formulas on the predictions (float32 outputs, float64 sums).
    assert loss == pytest.approx(np.mean((prediction - y) ** 2), rel=1e-5)
    assert mae == pytest.approx(np.mean(np.abs(prediction - y)), rel=1e-5)


def test_fit_on_a_classifier_uses_the_fused_softmax_path(rng, monkeypatch):
    utils.set_random_seed(1)
    model = models.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    calls = []
    last = model.layers[-1]
    original = last.backward_from_logits
    monkeypatch.setattr(last, "backward_from_logits", lambda d: calls.append(1) or original(d))
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=10)
    model.fit(x, y, batch_size=5, epochs=1, verbose=0)
    assert len(calls) == 2


def test_fused_softmax_step_equals_the_probability_gradient(rng):
    # One SGD step through the fused logits path vs the same model trained through the
    # probability gradient of the loss (model.backward): both are d loss / d weights.
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, size=6)

    def build():
        utils.set_random_seed(2)
        return models.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,),
                                               dtype="float64")])

    fused = build()
    fused.compile(optimizer=optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    fused.train_on_batch(x, y)

    manual = build()
    loss = losses.SparseCategoricalCrossentropy()
    manual.zero_grad()
    _, dy = loss.value_and_grad(y, manual.forward(x, training=True))
    manual.backward(dy)
    optimizers.SGD(0.5).step(manual)
    # float64; the probability path clips at 1e-7, far from these probabilities.
    for w_fused, w_manual in zip(fused.get_weights(), manual.get_weights()):
        np.testing.assert_allclose(w_fused, w_manual, rtol=1e-10, atol=1e-12)


def test_reported_loss_includes_the_regularization_penalty(rng):
    model = _mlp(kernel_regularizer="l2")
    model.compile(optimizer="sgd", loss="mse")
    x, y = _regression_data(8)
    kernel = model.layers[0].kernel.value
    penalty = 0.01 * float(np.sum(kernel.astype(np.float64) ** 2))
    mse = float(np.mean((model.predict(x).astype(np.float64) - y) ** 2))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(mse + penalty, rel=1e-5)
    assert model.train_on_batch(x, y) == pytest.approx(mse + penalty, rel=1e-5)


def test_validation_split_takes_the_tail_before_shuffling():
    utils.set_random_seed(3)
    recorder = Recorder(input_shape=(4,))
    model = models.Sequential([recorder, layers.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = _regression_data(20)
    history = model.fit(x, y, batch_size=4, epochs=2, validation_split=0.25, verbose=0)
    seen = np.concatenate(recorder.seen)
    assert seen.shape == (2 * 15, 4)
    # Every epoch trains on exactly the first 15 samples (in shuffled order).
    for epoch in range(2):
        rows = seen[epoch * 15:(epoch + 1) * 15]
        np.testing.assert_array_equal(np.sort(rows, axis=0), np.sort(x[:15], axis=0))
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x[15:], y[15:], verbose=0), rel=1e-6)


def test_validation_data_is_used_and_reported():
    model = _mlp()
    model.compile(optimizer="sgd", loss="mse", metrics=["mse"])
    x, y = _regression_data(16)
    x_val, y_val = _regression_data(8, seed=5)
    history = model.fit(x, y, epochs=1, validation_data=(x_val, y_val), verbose=0)
    assert set(history.history) == {"loss", "mse", "val_loss", "val_mse"}
    val_loss, val_mse = model.evaluate(x_val, y_val, verbose=0)
    assert history.history["val_loss"] == [pytest.approx(val_loss, rel=1e-6)]
    assert history.history["val_mse"] == [pytest.approx(val_mse, rel=1e-6)]


def test_shuffle_false_feeds_batches_in_order_and_is_deterministic():
    x, y = _regression_data(10)
    weights = None
    for _ in range(2):
        recorder = Recorder(input_shape=(4,))
        model = models.Sequential([recorder, layers.Dense(3)])
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        assert [len(b) for b in recorder.seen] == [4, 4, 2, 4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(recorder.seen[:3]), x)
        result = model.get_weights()
        if _ == 0:
            first = result
    for a, b in zip(first, result):
        np.testing.assert_array_equal(a, b)


def test_set_random_seed_makes_two_fits_identical():
    x, y = _regression_data(40)

    def run():
        utils.set_random_seed(123)
        model = models.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                                   layers.Dropout(0.5), layers.Dense(3)])
        model.compile(optimizer="adam", loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
        return model.get_weights(), history.history["loss"]

    (w1, l1), (w2, l2) = run(), run()
    assert l1 == l2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_history_contents_and_initial_epoch():
    model = _mlp()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = _regression_data(10)
    history = model.fit(x, y, batch_size=3, epochs=4, initial_epoch=1, validation_split=0.2,
                        verbose=0)
    assert isinstance(history, callbacks.History) and model.history is history
    assert history.epoch == [1, 2, 3]
    assert history.params == {"verbose": 0, "epochs": 4, "steps": 3}  # 8 samples / 3
    assert set(history.history) == {"loss", "mae", "val_loss", "val_mae"}
    assert all(len(v) == 3 and all(isinstance(f, float) for f in v)
               for v in history.history.values())
    assert model.fit(x, y, epochs=0, verbose=0).history == {}


def test_logged_loss_is_the_batch_size_weighted_mean():
    # A frozen model keeps its weights, so the epoch loss must equal evaluate's.
    model = _mlp()
    model.trainable = False
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = _regression_data(10)
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    loss, mae = model.evaluate(x, y, batch_size=10, verbose=0)
    assert history.history["loss"][0] == pytest.approx(loss, rel=1e-6)
    assert history.history["mae"][0] == pytest.approx(mae, rel=1e-6)


def test_stop_training_flag_ends_fit_after_the_batch():
    class StopAtBatch(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.last = batch
            if batch == 1:
                self.model.stop_training = True

    model = _mlp()
    model.compile(optimizer="sgd", loss="mse")
    x, y = _regression_data(20)
    stopper = StopAtBatch()
    history = model.fit(x, y, batch_size=4, epochs=5, callbacks=[stopper], verbose=0)
    assert stopper.last == 1 and history.epoch == [0] and model.stop_training


def test_evaluate_and_predict_in_batches_equal_one_batch(rng):
    model = models.Sequential([layers.Dense(6, activation="relu", input_shape=(4,)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "sparse_categorical_accuracy"])
    x = rng.normal(size=(23, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=23)
    whole = model.evaluate(x, y, batch_size=23, verbose=0)
    batched = model.evaluate(x, y, batch_size=5, verbose=0)
    # Per-sample means weighted by batch size: equal up to float32 summation order.
    np.testing.assert_allclose(batched, whole, rtol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=5), model.predict(x, batch_size=23),
                               rtol=1e-6, atol=1e-7)
    assert isinstance(model.predict(x), np.ndarray)
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {
        "loss", "accuracy", "sparse_categorical_accuracy"}
    assert model.metrics_names == ["loss", "accuracy", "sparse_categorical_accuracy"]
    assert batched[1] == pytest.approx(np.mean(model.predict(x).argmax(axis=1) == y))


def test_on_batch_methods(rng):
    model = _mlp()
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", metrics=["mae"])
    x, y = _regression_data(6)
    before = model.predict(x)
    test_loss, test_mae = model.test_on_batch(x, y)
    assert test_loss == pytest.approx(np.mean((before - y) ** 2), rel=1e-5)
    np.testing.assert_array_equal(model.predict(x), before)  # test_on_batch does not train
    train_loss, _ = model.train_on_batch(x, y)
    assert train_loss == pytest.approx(test_loss, rel=1e-6)  # loss before the update
    after = model.predict_on_batch(x)
    assert isinstance(after, np.ndarray)
    assert np.mean((after - y) ** 2) < test_loss
    assert model.train_on_batch(x, y, return_dict=True).keys() == {"loss", "mae"}


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: m.fit(x, y[:-1], verbose=0), "same number of samples"),
    (lambda m, x, y: m.fit(x[:0], y[:0], verbose=0), "empty"),
    (lambda m, x, y: m.fit(x, y, batch_size=0, verbose=0), "batch_size"),
    (lambda m, x, y: m.fit(x, y, epochs=-1, verbose=0), "epochs"),
    (lambda m, x, y: m.fit(x, y, validation_split=1.0, verbose=0), "validation_split"),
    (lambda m, x, y: m.fit(x, y, validation_split=-0.1, verbose=0), "validation_split"),
    (lambda m, x, y: m.fit(x, y, verbose=3), "verbose"),
    (lambda m, x, y: m.fit(x, y, validation_data=(x,), verbose=0), "validation_data"),
    (lambda m, x, y: m.evaluate(x, y[:3], verbose=0), "same number of samples"),
    (lambda m, x, y: m.evaluate(x, y, batch_size=-2, verbose=0), "batch_size"),
    (lambda m, x, y: m.predict(x[:0]), "empty"),
    (lambda m, x, y: m.fit(x[:, :3], y, verbose=0), "Dense"),   # wrong input shape
])
def test_bad_arguments_raise_value_errors(call, message):
    model = _mlp()
    model.compile(optimizer="sgd", loss="mse")
    x, y = _regression_data(8)
    with pytest.raises(ValueError, match=message):
        call(model, x, y)


def test_fit_and_evaluate_before_compile_raise():
    model = _mlp()
    x, y = _regression_data(4)
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y, verbose=0),
                 lambda: model.train_on_batch(x, y)):
        with pytest.raises(RuntimeError, match="compile"):
            call()
    model.compile(optimizer="sgd")
    with pytest.raises(RuntimeError, match="without a loss"):
        model.fit(x, y, verbose=0)


def test_compile_accepts_names_and_objects_and_rejects_unknown_metrics():
    model = _mlp()
    model.compile(optimizer=optimizers.SGD(0.3), loss=losses.MeanSquaredError(), metrics="mae")
    assert isinstance(model.optimizer, optimizers.SGD) and model.optimizer.learning_rate == 0.3
    assert model.metrics_names == ["loss", "mae"]
    model.compile()  # Keras defaults: rmsprop, no loss
    assert isinstance(model.optimizer, optimizers.RMSprop)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        model.compile(loss="mse", metrics=["f1"])
    with pytest.raises(ValueError, match="unique"):
        model.compile(loss="mse", metrics=["mae", "mae"])


# ----- summary and progress output -------------------------------------------------

def test_summary_prints_the_keras_table():
    utils.clear_session()
    model = models.Sequential([layers.Dense(64, activation="relu", input_shape=(784,)),
                               layers.Dropout(0.2), layers.Dense(10, activation="softmax")],
                              name="mnist")
    lines = []
    model.summary(print_fn=lines.append)
    assert lines == [
        'Model: "mnist"',
        "_" * 65,
        " Layer (type)                Output Shape              Param #",
        "=" * 65,
        " dense (Dense)               (None, 64)                50240",
        " dropout (Dropout)           (None, 64)                0",
        " dense_1 (Dense)             (None, 10)                650",
        "=" * 65,
        "Total params: 50,890",          # 784*64 + 64 + 64*10 + 10
        "Trainable params: 50,890",
        "Non-trainable params: 0",
        "_" * 65,
    ]


def test_summary_totals_use_thousands_separators_and_count_frozen_layers(capsys):
    model = models.Sequential([layers.Dense(100, activation="relu", input_shape=(784,)),
                               layers.Dense(128, activation="relu"), layers.Dense(10)])
    model.layers[1].trainable = False
    model.summary()
    out = capsys.readouterr().out
    # 784*100+100 = 78,500; 100*128+128 = 12,928 (frozen); 128*10+10 = 1,290.
    assert "Total params: 92,718\n" in out
    assert "Trainable params: 79,790\n" in out
    assert "Non-trainable params: 12,928\n" in out
    assert re.search(r"^ dense_\d+ \(Dense\) +\(None, 100\) +78500$", out, re.M)


def test_summary_wraps_long_names_and_requires_a_built_model():
    model = models.Sequential([layers.Dense(2, input_shape=(3,),
                                            name="a_very_long_layer_name_that_wraps")])
    lines = []
    model.summary(print_fn=lines.append)
    assert lines[4] == " a_very_long_layer_name_tha  (None, 2)                 8"
    assert lines[5] == " t_wraps (Dense)"
    with pytest.raises(ValueError, match="not been built"):
        models.Sequential([layers.Dense(2)]).summary()


def test_progress_output_for_each_verbosity(capsys):
    model = _mlp()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = _regression_data(10)
    model.fit(x, y, batch_size=4, epochs=2, validation_split=0.2, verbose=1)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "\r" not in out  # not a TTY: only each epoch's final line
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    bar = (r"^2/2 \[==============================\] - \d+s \d+(s|ms|us)/step - loss: \S+ - "
           r"mae: \S+ - val_loss: \S+ - val_mae: \S+$")
    assert re.match(bar, lines[1]) and re.match(bar, lines[3])

    model.fit(x, y, batch_size=4, epochs=1, verbose=2)
    out = capsys.readouterr().out
    assert re.match(r"^3/3 - \d+s - loss: \S+ - mae: \S+ - \d+(s|ms|us)/epoch - "
                    r"\d+(s|ms|us)/step\n$", out)

    model.fit(x, y, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert capsys.readouterr().out == ""
    model.evaluate(x, y, batch_size=4)
    assert re.match(r"^3/3 \[=+\] - \d+s \S+/step - loss: \S+ - mae: \S+\n$",
                    capsys.readouterr().out)


def test_progbar_redraws_in_place_on_a_tty(monkeypatch, capsys):
    monkeypatch.setattr(callbacks, "_dynamic_display", lambda: True)
    bar = callbacks.Progbar(4, verbose=1, interval=0.0)
    bar.update(1, [("loss", 0.5)])
    bar.update(4, [("loss", 0.25)], finalize=True)
    out = capsys.readouterr().out
    assert out.startswith("\r1/4 [======>.......................] - ETA: ")
    assert re.search(r"\r4/4 \[={30}\] - \d+s \S+/step - loss: 0.2500 *\n$", out)


# ----- utils -------------------------------------------------------------------------

def test_to_categorical_like_keras():
    np.testing.assert_array_equal(utils.to_categorical([0, 2, 1]),
                                  np.eye(3, dtype=np.float32)[[0, 2, 1]])
    out = utils.to_categorical(np.array([[1], [3]]), num_classes=5)
    assert out.shape == (2, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(axis=1), [1, 3])
    assert utils.to_categorical(np.zeros((2, 3), int), 4).shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        utils.to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="non-integer"):
        utils.to_categorical([0.5])


def test_set_random_seed_and_clear_session():
    import random
    utils.set_random_seed(7)
    kernel = lambda: models.Sequential([layers.Dense(2, input_shape=(3,))]).get_weights()[0]
    draws = (np.random.rand(), random.random(), kernel())
    utils.set_random_seed(7)
    again = (np.random.rand(), random.random(), kernel())
    assert draws[:2] == again[:2]
    np.testing.assert_array_equal(draws[2], again[2])
    utils.clear_session()
    assert layers.Dense(1).name == "dense"
    with pytest.raises(ValueError):
        utils.set_random_seed(-1)


# ----- GPU ---------------------------------------------------------------------------

@pytest.mark.cuda
def test_fit_evaluate_predict_on_a_gpu_model_move_numpy_batches():
    cp = backend.cupy_module()
    x, y = _regression_data(32)
    utils.set_random_seed(4)
    cpu = _mlp()
    utils.set_random_seed(4)
    gpu = _mlp().to("cuda")
    for model in (cpu, gpu):
        model.compile(optimizer=optimizers.SGD(0.05), loss="mse", metrics=["mae"])
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    prediction = gpu.predict(x)
    assert isinstance(prediction, np.ndarray)
    assert isinstance(gpu.predict(cp.asarray(x)), cp.ndarray)
    # float32 on different kernels: agree to float32 rounding after a few steps.
    np.testing.assert_allclose(prediction, cpu.predict(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.evaluate(x, y, verbose=0), cpu.evaluate(x, y, verbose=0),
                               rtol=1e-4)
