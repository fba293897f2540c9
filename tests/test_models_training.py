"""The training step skips the gradient w.r.t. the model's input, which nobody reads.

fit / train_on_batch let the first layer skip its input gradient (Conv, Dense and the
recurrent layers do; in a functional model every call fed only by the inputs); every
weight gradient must stay bit-identical to the full backward's, the first layer must
really return None inside the step, and the public backward(dy) must still return dx
afterwards. The full backward is the same step with the skip switched off
(_input_grad_unused replaced by a no-op), on a twin model with the same weights.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import fusednn.models as models
from fusednn import layers

RNG = np.random.default_rng(7)


def _lecture_cnn(dt):
    return [layers.Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1), dtype=dt),
            layers.MaxPooling2D((2, 2), dtype=dt), layers.Flatten(dtype=dt),
            layers.Dense(3, activation="softmax", dtype=dt)]


def _normal_targets(n):
    return RNG.standard_normal((n, 2))


# name: (layers of dtype dt, input shape without the batch, loss, targets for n samples)
MODELS = {
    "conv2d-first-softmax-fusion": (_lecture_cnn, (8, 8, 1), "sparse_categorical_crossentropy",
                                    lambda n: RNG.integers(0, 3, n)),
    "dense-first-mse": (lambda dt: [layers.Dense(5, activation="tanh", input_shape=(6,),
                                                 dtype=dt), layers.Dense(2, dtype=dt)],
                        (6,), "mse", _normal_targets),
    "single-dense-softmax": (lambda dt: [layers.Dense(3, activation="softmax", input_shape=(6,),
                                                      dtype=dt)],
                             (6,), "categorical_crossentropy",
                             lambda n: np.eye(3)[RNG.integers(0, 3, n)]),
    "conv1d-first": (lambda dt: [layers.Conv1D(3, 2, padding="causal", input_shape=(7, 2),
                                               dtype=dt),
                                 layers.GlobalAveragePooling1D(dtype=dt), layers.Dense(2, dtype=dt)],
                     (7, 2), "mse", _normal_targets),
    "conv2d-transpose-first": (lambda dt: [layers.Conv2DTranspose(2, 3, strides=2,
                                                                  input_shape=(4, 4, 1), dtype=dt),
                                           layers.Flatten(dtype=dt), layers.Dense(2, dtype=dt)],
                               (4, 4, 1), "mse", _normal_targets),
    "lstm-first": (lambda dt: [layers.LSTM(4, input_shape=(5, 3), dtype=dt),
                               layers.Dense(2, dtype=dt)],
                   (5, 3), "mse", _normal_targets),
    # Input dropout (its own seeded generator, so both twins draw the same masks) and the
    # reversed sequence: the two steps the layer applies to dx after the kernel.
    "gru-first-dropout-go-backwards": (
        lambda dt: [layers.GRU(4, dropout=0.3, seed=5, go_backwards=True, input_shape=(5, 3),
                               dtype=dt), layers.Dense(2, dtype=dt)],
        (5, 3), "mse", _normal_targets),
    "simple-rnn-first-sequences": (
        lambda dt: [layers.SimpleRNN(4, return_sequences=True, input_shape=(5, 3), dtype=dt),
                    layers.Flatten(dtype=dt), layers.Dense(2, dtype=dt)],
        (5, 3), "mse", _normal_targets),
    "frozen-first-conv": (lambda dt: [layers.Conv2D(2, 3, trainable=False, input_shape=(5, 5, 1),
                                                    dtype=dt),
                                      layers.Flatten(dtype=dt), layers.Dense(2, dtype=dt)],
                          (5, 5, 1), "mse", _normal_targets),
}


def _twins(name, dtype):
    make, shape, loss, targets = MODELS[name]
    skipping, full = (models.Sequential(make(dtype)) for _ in range(2))
    for model in (skipping, full):
        model.build((None,) + shape)
        model.compile("sgd", loss)
    full.set_weights(skipping.get_weights())
    x = RNG.standard_normal((6,) + shape).astype(np.float32)
    return skipping, full, x, targets(6)


def _grads(model):
    return [None if v.grad is None else v.grad.copy() for v in model.variables]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weight_gradients_are_identical_with_and_without_the_skip(name, monkeypatch):
    skipping, full, x, y = _twins(name, "float32")
    first = skipping.layers[0]
    returned = []  # what the first layer's backward (or backward_from_logits) gave the model
    for method in {"backward", "backward_from_logits"} & set(dir(first)):
        def spy(dy, _public=getattr(first, method)):
            returned.append(_public(dy))
            return returned[-1]
        monkeypatch.setattr(first, method, spy)
    skipping.train_on_batch(x, y)
    with monkeypatch.context() as patch:
        patch.setattr(models.Sequential, "_input_grad_unused",
                      lambda self: contextlib.nullcontext())
        full.train_on_batch(x, y)
    for got, want in zip(_grads(skipping), _grads(full), strict=True):
        assert (got is None) == (want is None)
        if got is not None:
            assert np.array_equal(got, want)
    for got, want in zip(skipping.get_weights(), full.get_weights(), strict=True):
        assert np.array_equal(got, want)
    assert len(returned) == 1
    assert returned[0] is None


@pytest.mark.parametrize("name", ["conv2d-first-softmax-fusion", "dense-first-mse", "lstm-first"])
def test_public_backward_still_returns_the_input_gradient_after_a_training_step(name):
    """dx of model.backward after fit matches central differences of <model(x), dy> in
    float64 (the layers here are smooth at the sample points: relu's kinks are avoided
    with probability one)."""
    make, shape, loss, targets = MODELS[name]
    model = models.Sequential(make("float64"))
    x = RNG.standard_normal((2,) + shape)
    model.compile("sgd", loss)
    model.fit(x, targets(2), epochs=1, verbose=0)
    y = model.forward(x, training=True)
    dy = RNG.standard_normal(y.shape)
    dx = model.backward(dy)
    assert dx is not None and dx.shape == x.shape
    step = 1e-6
    flat = x.reshape(-1)
    for i in RNG.choice(flat.size, 5, replace=False):
        plus, minus = flat.copy(), flat.copy()
        plus[i] += step
        minus[i] -= step
        numeric = (np.sum(model.forward(plus.reshape(x.shape)) * dy)
                   - np.sum(model.forward(minus.reshape(x.shape)) * dy)) / (2 * step)
        # Central differences in float64: error ~ step^2 * f''' + eps * |f| / step ~ 1e-9.
        assert dx.reshape(-1)[i] == pytest.approx(numeric, rel=1e-6, abs=1e-7)


def _functional_twins():
    """Two functional models with the same weights: Input -> LSTM -> Dense, and a second
    Input -> Dense joined by Concatenate, so one call (the LSTM) and one Dense are fed
    only by inputs whose gradient nobody reads in a training step."""
    def make():
        seq = layers.Input((5, 3))
        flat = layers.Input((4,))
        joined = layers.Concatenate()([layers.LSTM(4)(seq), layers.Dense(3)(flat)])
        model = models.Model([seq, flat], layers.Dense(2)(joined))
        model.compile("sgd", "mse")
        return model
    skipping, full = make(), make()
    full.set_weights(skipping.get_weights())
    return skipping, full


def test_functional_calls_fed_only_by_inputs_skip_their_input_gradient(monkeypatch):
    skipping, full = _functional_twins()
    x = [RNG.standard_normal((6, 5, 3)).astype(np.float32),
         RNG.standard_normal((6, 4)).astype(np.float32)]
    y = RNG.standard_normal((6, 2))
    lstm, dense = skipping.layers[2], skipping.layers[3]
    assert isinstance(lstm, layers.LSTM) and isinstance(dense, layers.Dense)
    returned = {}
    for layer in (lstm, dense, skipping.layers[-1]):
        def spy(dy, _public=layer.backward, _name=layer.name):
            returned[_name] = _public(dy)
            return returned[_name]
        monkeypatch.setattr(layer, "backward", spy)
    skipping.train_on_batch(x, y)
    full_lstm = full.layers[2]
    full_returned = []
    monkeypatch.setattr(full_lstm, "backward",
                        lambda dy, _public=full_lstm.backward: full_returned.append(_public(dy))
                        or full_returned[-1])
    with monkeypatch.context() as patch:
        patch.setattr(type(full), "_input_grad_unused", lambda self: contextlib.nullcontext())
        full.train_on_batch(x, y)
    assert returned[lstm.name] is None and returned[dense.name] is None
    assert full_returned[0].shape == (6, 5, 3)  # the twin's full backward computed it
    assert returned[skipping.layers[-1].name] is not None  # the head's input gradient is read
    for got, want in zip(skipping.get_weights(), full.get_weights(), strict=True):
        assert np.array_equal(got, want)
    # Outside the training step the model's input gradients come back.
    skipping.forward(x, training=True)
    dx = skipping.backward(np.ones((6, 2), np.float32))
    assert [g.shape for g in dx] == [(6, 5, 3), (6, 4)]
