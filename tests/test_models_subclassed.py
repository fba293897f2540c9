"""Model subclassing (models/subclassed.py): tracking, building, the tape's backward
against float64 finite differences and against the same network built functionally,
training through fit, saving weights, and the errors for what cannot work.

Tolerances: gradient checks run in float64 (tests/gradcheck.py explains rtol=1e-6).
The functional twin runs the same float32 kernels on the same values in the same order
except for the order in which a shared layer's two weight gradients are summed, so the
two agree to float32 rounding of a few Adam steps (rtol 1e-5).
"""
from __future__ import annotations

import numpy as np
import pytest

import fusednn as fd
from fusednn.errors import StateError
from gradcheck import check_layer_gradients, numeric_gradient

F64 = {"dtype": "float64"}


class SkipNet(fd.Model):
    """A layer used twice, a skip connection, a list of layers and fd.ops in between."""

    def __init__(self, dtype=None):
        super().__init__()
        kw = {} if dtype is None else {"dtype": dtype}
        self.inner = fd.layers.Dense(6, activation="tanh", name="inner", **kw)
        self.blocks = [fd.layers.Dense(6, activation="tanh", name=f"block{i}", **kw)
                       for i in range(2)]
        self.head = fd.layers.Dense(3, name="head", **kw)

    def call(self, inputs, training=False):
        h = self.inner(inputs)
        for block in self.blocks:
            h = h + block(h)                    # skip connections
        h = self.blocks[0](h)                   # a layer called a second time
        return self.head(h) * 2.0 + fd.ops.mean(inputs, axis=-1, keepdims=True)


def functional_skipnet():
    """SkipNet's graph as a functional model (same layer names, so weights line up)."""
    inputs = fd.Input((4,))
    inner = fd.layers.Dense(6, activation="tanh", name="inner")
    blocks = [fd.layers.Dense(6, activation="tanh", name=f"block{i}") for i in range(2)]
    head = fd.layers.Dense(3, name="head")
    h = inner(inputs)
    for block in blocks:
        h = fd.layers.Add()([h, block(h)])
    h = blocks[0](h)
    scaled = fd.layers.Lambda(lambda t: t * 2.0)(head(h))
    mean = fd.layers.Lambda(lambda t: fd.ops.mean(t, axis=-1, keepdims=True))(inputs)
    return fd.Model(inputs, fd.layers.Add()([scaled, mean]))


def test_layers_are_tracked_in_assignment_order_with_their_weights():
    model = SkipNet()
    assert [layer.name for layer in model.layers] == ["inner", "block0", "block1", "head"]
    assert not model.built
    model.build((None, 4))
    assert model.built and model.output_shape == (None, 3)
    # Keras's weight order: each tracked layer's kernel and bias, in layer order.
    assert [v.name for v in model.weights] == [
        f"{layer}/{var}" for layer in ("inner", "block0", "block1", "head")
        for var in ("kernel", "bias")]
    assert model.count_params() == 4 * 6 + 6 + 2 * (6 * 6 + 6) + 6 * 3 + 3
    model.blocks[1].trainable = False
    assert len(model.trainable_weights) == 6 and len(model.non_trainable_weights) == 2


def test_dicts_tuples_and_nested_models_are_tracked():
    class Outer(fd.Model):
        def __init__(self):
            super().__init__()
            self.encoder = fd.Sequential([fd.layers.Dense(5, name="enc")], name="encoder")
            self.heads = {"a": fd.layers.Dense(2, name="a"), "b": fd.layers.Dense(1, name="b")}
            self.pair = (fd.layers.Dense(3, name="p0"),)
            self.note = "not a layer"

        def call(self, inputs):
            h = self.encoder(inputs)
            return [self.heads["a"](h), self.heads["b"](self.pair[0](h))]

    model = Outer()
    out = model(np.ones((2, 4), np.float32))
    assert [o.shape for o in out] == [(2, 2), (2, 1)]
    assert [layer.name for layer in model.layers] == ["encoder", "a", "b", "p0"]
    assert model.output_shape == [(None, 2), (None, 1)]
    assert len(model.weights) == 8  # enc, a, b, p0: kernel and bias each


def test_backward_matches_finite_differences():
    model = SkipNet(dtype="float64")
    x = np.random.default_rng(1).normal(size=(5, 4))
    model.build((None, 4))
    check_layer_gradients(model, x)


def test_several_inputs_and_outputs_match_finite_differences():
    class TwoInTwoOut(fd.Model):
        def __init__(self):
            super().__init__()
            self.a = fd.layers.Dense(3, activation="sigmoid", name="a", **F64)
            self.b = fd.layers.Dense(3, name="b", **F64)
            self.merge = fd.layers.Concatenate(**F64)

        def call(self, inputs):
            left, right = inputs
            joined = self.merge([self.a(left), self.b(right)])
            return [joined, fd.ops.sum(self.a(right) * left, axis=-1, keepdims=True)]

    rng = np.random.default_rng(2)
    left, right = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    model = TwoInTwoOut()
    outputs = model.forward([left, right], training=True)
    grads = [rng.normal(size=o.shape) for o in outputs]
    model.zero_grad()
    dleft, dright = model.backward(grads)

    def loss():
        out = model.forward([left, right])
        return float(sum(np.sum(g * o) for g, o in zip(grads, out)))

    np.testing.assert_allclose(dleft, numeric_gradient(loss, left), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dright, numeric_gradient(loss, right), rtol=1e-6, atol=1e-7)
    for var, analytic in zip(model.variables, model.get_gradients()):
        np.testing.assert_allclose(analytic, numeric_gradient(loss, var.value), rtol=1e-6,
                                   atol=1e-7, err_msg=var.name)


def test_same_outputs_and_weights_as_the_functional_model_after_adam_steps():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.normal(size=(16, 3)).astype(np.float32)
    subclassed, functional = SkipNet(), functional_skipnet()
    subclassed.build((None, 4))
    by_name = {v.name: v for v in functional.weights}
    for var in subclassed.weights:
        by_name[var.name].value[...] = var.value
    for model in (subclassed, functional):
        model.compile(optimizer=fd.optimizers.Adam(0.01), loss="mse")
    losses = [[], []]
    for _ in range(5):
        for model, record in zip((subclassed, functional), losses):
            record.append(model.train_on_batch(x, y))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    assert losses[0][-1] < losses[0][0]  # the steps did train
    for var in subclassed.weights:
        np.testing.assert_allclose(var.value, by_name[var.name].value, rtol=1e-5, atol=1e-6,
                                   err_msg=var.name)
    np.testing.assert_allclose(subclassed.predict(x), functional.predict(x), rtol=1e-5,
                               atol=1e-6)


def test_fit_evaluate_predict_learn_a_regression():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 3)) + 0.5).astype(np.float32)
    model = SkipNet()
    model.compile(optimizer=fd.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    history = model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    # A 6-unit tanh net fits this linear map far better than the untrained one.
    assert after["loss"] < 0.1 * before
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.predict(x[:7]).shape == (7, 3)


def test_training_is_passed_to_call_and_inherited_by_layer_calls():
    class Dropping(fd.Model):
        def __init__(self):
            super().__init__()
            self.drop = fd.layers.Dropout(0.5)
            self.seen = []

        def call(self, inputs, training=False):
            self.seen.append(training)
            return self.drop(inputs)  # no training=: inherits the model's, as in Keras

    model = Dropping()
    x = np.ones((8, 50), np.float32)
    np.testing.assert_array_equal(model(x), x)
    dropped = model(x, training=True)
    assert model.seen[-2:] == [False, True]
    assert np.sum(dropped == 0) > 0 and np.all((dropped == 0) | (dropped == 2.0))
    # backward masks the same units (Dropout's cache from this call).
    np.testing.assert_array_equal(model.backward(np.ones_like(x)), dropped)


def test_weights_round_trip_and_whole_model_save_says_how():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    model = SkipNet()
    expected = model(x)
    twin = SkipNet()
    twin.build((None, 4))
    assert not np.allclose(twin(x), expected)
    import tempfile, os
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "skip.weights.h5")
        model.save_weights(path)
        twin.load_weights(path)
        with pytest.raises(ValueError, match="subclassed model.*save_weights"):
            model.save(os.path.join(folder, "skip.keras"))
        assert not os.path.exists(os.path.join(folder, "skip.keras"))
    np.testing.assert_array_equal(twin(x), expected)
    twin.set_weights(model.get_weights())


def test_what_the_tape_cannot_differentiate_is_named():
    class UsesNumpy(fd.Model):
        def __init__(self):
            super().__init__()
            self.dense = fd.layers.Dense(2)

        def call(self, inputs):
            return np.sort(self.dense(inputs), axis=-1)

    model = UsesNumpy()
    x = np.ones((2, 3), np.float32)
    assert model(x).shape == (2, 2)  # inference runs on plain arrays
    with pytest.raises(TypeError, match="numpy.sort cannot be differentiated"):
        model.forward(x, training=True)

    class FrozenCall(fd.Model):
        def __init__(self):
            super().__init__()
            self.dense = fd.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs, training=False)

    model = FrozenCall()
    model.forward(x, training=True)
    with pytest.raises(StateError, match="called with training=False inside a training"):
        model.backward(np.ones((2, 2), np.float32))

    class Detached(fd.Model):
        def __init__(self):
            super().__init__()
            self.dense = fd.layers.Dense(2)

        def call(self, inputs):
            self.dense(inputs)
            return np.zeros((len(inputs), 2), np.float32)

    model = Detached()
    model.forward(x, training=True)
    with pytest.raises(StateError, match="recorded nothing"):
        model.backward(np.ones((2, 2), np.float32))


def test_a_subclass_without_call_is_told_to_write_one():
    class Empty(fd.Model):
        pass

    with pytest.raises(NotImplementedError, match=r"call\(self, inputs, training=False\)"):
        Empty()(np.ones((1, 2), np.float32))


def test_a_subclassed_model_nests_inside_sequential_with_gradients():
    inner = SkipNet(dtype="float64")
    model = fd.Sequential([fd.layers.Dense(4, name="first", **F64), inner])
    model.build((None, 5))
    check_layer_gradients(model, np.random.default_rng(6).normal(size=(3, 5)))


def test_a_layer_shared_by_nested_models_has_its_weights_once_and_right_gradients():
    class Inner(fd.Model):
        def __init__(self, shared):
            super().__init__()
            self.shared = shared
            self.own = fd.layers.Dense(3, activation="tanh", name="own", **F64)

        def call(self, inputs):
            return self.shared(self.own(inputs))

    class Outer(fd.Model):
        def __init__(self):
            super().__init__()
            self.shared = fd.layers.Dense(3, activation="sigmoid", name="shared", **F64)
            self.inner = Inner(self.shared)
            self.norm = fd.layers.BatchNormalization(name="norm", **F64)

        def call(self, inputs, training=False):
            h = self.shared(inputs)
            return self.inner(h) * self.norm(h) + fd.ops.exp(-h)

    model = Outer()
    model.build((None, 3))
    assert [v.name for v in model.weights] == [
        "shared/kernel", "shared/bias", "own/kernel", "own/bias", "norm/gamma", "norm/beta",
        "norm/moving_mean", "norm/moving_variance"]
    assert model.count_params() == 12 + 12 + 12
    x = np.random.default_rng(7).normal(size=(4, 3))
    # training=True: BatchNormalization's batch statistics are part of what is differentiated.
    check_layer_gradients(model, x, training=True)
    # One SGD step moves the shared kernel by lr * its (summed) gradient, once.
    kernel = model.shared.kernel.value.copy()
    model.zero_grad()
    model.forward(x, training=True)
    model.backward(np.ones((4, 3)))
    grad = model.shared.kernel.grad.copy()
    fd.optimizers.SGD(0.1).step(model)
    np.testing.assert_allclose(model.shared.kernel.value, kernel - 0.1 * grad, rtol=1e-12)


def test_dict_inputs():
    class TwoFeatures(fd.Model):
        def __init__(self):
            super().__init__()
            self.dense = fd.layers.Dense(2, name="dense", **F64)

        def call(self, inputs):
            return self.dense(inputs["u"]) * inputs["v"]

    rng = np.random.default_rng(8)
    u, v = rng.normal(size=(3, 4)), rng.normal(size=(3, 2))
    model = TwoFeatures()
    out = model({"u": u, "v": v})
    assert model.input_shape == {"u": (None, 4), "v": (None, 2)}
    assert model.output_shape == (None, 2) and out.shape == (3, 2)
    model.forward({"u": u, "v": v}, training=True)
    du, dv = model.backward(np.ones((3, 2)))
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(dv, u @ kernel + bias, rtol=1e-12)   # d(a*v)/dv = a
    np.testing.assert_allclose(du, v @ kernel.T, rtol=1e-12)        # d(Wu*v)/du = W v


def test_tracking_and_weight_order_match_keras3():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")

    def make(lib):
        class Tracked(lib.Model):
            def __init__(self):
                super().__init__()
                self.first = lib.layers.Dense(5, name="first")
                self.heads = {"b": lib.layers.Dense(2, name="b"),
                              "a": lib.layers.Dense(3, name="a")}
                self.norm = lib.layers.BatchNormalization(name="norm")
                self.chain = [lib.layers.Dense(4, name="c0"), lib.layers.Dense(4, name="c1")]

            def call(self, inputs):
                h = self.norm(self.first(inputs))
                h = self.chain[1](self.chain[0](h))
                return [self.heads["a"](h), self.heads["b"](h)]

        model = Tracked()
        model(np.ones((2, 3), np.float32))
        return model

    ours, theirs = make(fd), make(keras)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert [v.shape for v in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [v.shape for v in ours.trainable_weights] == [
        tuple(w.shape) for w in theirs.trainable_weights]
    assert ours.count_params() == theirs.count_params()
