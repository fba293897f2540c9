"""Bidirectional and TimeDistributed against Keras 3's tests (v3.15.1):
keras/src/layers/rnn/bidirectional_test.py (correctness, masking, return_state;
statefulness is in test_keras_recurrent.py) and keras/src/layers/rnn/time_distributed_test.py.
Keras's literal values, compared as Keras does (atol = rtol = 1e-5, float32)."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import initializers, layers

from keras_layer_check import run_layer_check

TOL = dict(atol=1e-5, rtol=1e-5)


def _rnn(cls, units, kernel=0.01, recurrent=0.02, bias=0.03, **kwargs):
    return cls(units, kernel_initializer=initializers.Constant(kernel),
               recurrent_initializer=initializers.Constant(recurrent),
               bias_initializer=initializers.Constant(bias), **kwargs)


SEQUENCE_234 = np.arange(24).reshape((2, 3, 4)).astype(np.float32)
SEQUENCE_243 = np.arange(24).reshape((2, 4, 3)).astype(np.float32)


@pytest.mark.parametrize("merge_mode, expected", [
    ("concat", [[0.39687276, 0.39687276, 0.10004295, 0.10004295],
                [0.7237238, 0.7237238, 0.53391594, 0.53391594]]),
    ("ave", [[0.24845785, 0.24845785], [0.6288199, 0.6288199]]),
])
def test_bidirectional_correctness(merge_mode, expected):
    # Keras: BidirectionalTest.test_correctness (SimpleRNN, default and "ave" merges).
    layer = layers.Bidirectional(_rnn(layers.SimpleRNN, 2), merge_mode=merge_mode)
    np.testing.assert_allclose(layer.forward(SEQUENCE_234), expected, **TOL)


def test_bidirectional_correctness_no_merge_and_own_backward_layer():
    # Keras: BidirectionalTest.test_correctness (merge_mode None; a backward layer of its
    # own with merge_mode "mul"; a GRU with return_sequences and merge_mode "sum").
    output1, output2 = layers.Bidirectional(_rnn(layers.SimpleRNN, 2),
                                            merge_mode=None).forward(SEQUENCE_234)
    np.testing.assert_allclose(output1, [[0.39687276, 0.39687276], [0.7237238, 0.7237238]],
                               **TOL)
    np.testing.assert_allclose(output2, [[0.10004295, 0.10004295], [0.53391594, 0.53391594]],
                               **TOL)
    backward = _rnn(layers.SimpleRNN, 2, kernel=0.03, bias=0.01, go_backwards=True)
    layer = layers.Bidirectional(_rnn(layers.SimpleRNN, 2), backward_layer=backward,
                                 merge_mode="mul")
    np.testing.assert_allclose(layer.forward(SEQUENCE_234),
                               [[0.08374989, 0.08374989], [0.6740834, 0.6740834]], **TOL)
    layer = layers.Bidirectional(_rnn(layers.GRU, 2, return_sequences=True), merge_mode="sum")
    np.testing.assert_allclose(
        layer.forward(SEQUENCE_234),
        [[[0.20937867] * 2, [0.34462988] * 2, [0.40290534] * 2],
         [[0.59829646] * 2, [0.6734641] * 2, [0.6479671] * 2]], **TOL)


def test_bidirectional_masking():
    # Keras: BidirectionalTest.test_masking.
    mask = np.array([[True, True, False, True], [True, False, False, True]])
    output = layers.Bidirectional(_rnn(layers.GRU, 2)).forward(SEQUENCE_243, mask=mask)
    np.testing.assert_allclose(output, [[0.19393763, 0.19393763, 0.11669192, 0.11669192],
                                        [0.30818558, 0.30818558, 0.28380975, 0.28380975]],
                               **TOL)


def test_bidirectional_return_state():
    # Keras: BidirectionalTest.test_return_state (LSTM: output, then h and c per direction).
    layer = layers.Bidirectional(_rnn(layers.LSTM, 2, return_state=True))
    output, h1, c1, h2, c2 = layer.forward(SEQUENCE_243)
    np.testing.assert_allclose(output, [[0.1990008, 0.1990008, 0.12659755, 0.12659755],
                                        [0.52335435, 0.52335435, 0.44717982, 0.44717982]],
                               **TOL)
    np.testing.assert_allclose(h1, [[0.1990008] * 2, [0.52335435] * 2], **TOL)
    np.testing.assert_allclose(c1, [[0.35567185] * 2, [1.0492687] * 2], **TOL)
    np.testing.assert_allclose(h2, [[0.12659755] * 2, [0.44717982] * 2], **TOL)
    np.testing.assert_allclose(c2, [[0.2501858] * 2, [0.941473] * 2], **TOL)


# ----- time_distributed_test.py --------------------------------------------------------------

def test_time_distributed_basics():
    layer = run_layer_check(layers.TimeDistributed,
                            {"layer": layers.Dense(1, use_bias=False)}, (3, 2, 4), (3, 2, 1),
                            expected_num_trainable_weights=1, supports_masking=True)
    assert layer.layer.kernel.value.shape == (4, 1)


def test_time_distributed_build():
    # Keras: TimeDistributedTest.test_build (Conv2D over 10 frames, channels_last).
    inputs = layers.Input(shape=(10, 128, 128, 3), batch_size=32)
    outputs = layers.TimeDistributed(layers.Conv2D(64, (3, 3)))(inputs)
    assert tuple(outputs.shape) == (32, 10, 126, 126, 64)


def test_time_distributed_correctness():
    sequence = np.arange(24).reshape((3, 2, 4)).astype(np.float32)
    layer = layers.TimeDistributed(
        layers.Dense(1, kernel_initializer=initializers.Constant(0.01), use_bias=False))
    np.testing.assert_allclose(layer.forward(sequence),
                               [[[0.06], [0.22]], [[0.38], [0.53999996]], [[0.7], [0.86]]],
                               rtol=1e-6)


def test_time_distributed_with_mask_zero():
    # Keras: TimeDistributedTest.test_with_mask_zero (Embedding(mask_zero) then a
    # TimeDistributed softmax Dense, trained one epoch).
    rng = np.random.default_rng(0)
    model = fd.Sequential([layers.Input(shape=(20,)),
                           layers.Embedding(input_dim=10, output_dim=5, mask_zero=True),
                           layers.TimeDistributed(layers.Dense(units=5, activation="softmax"))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(rng.uniform(1, 10, size=(22, 20)), rng.integers(1, 2, size=(22, 20)),
                        epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("mask_shape", [(4, 5), (4, 5, 1), (4, 5, 2), None])
def test_time_distributed_mask_validation_accepts(mask_shape):
    # Keras: test_mask_validation_with_correct_shape / _with_3d_mask / _with_none_mask.
    td = layers.TimeDistributed(layers.Dense(units=5, activation="softmax"))
    mask = None if mask_shape is None else np.ones(mask_shape, bool)
    assert td.forward(np.zeros((4, 5, 3)), mask=mask).shape == (4, 5, 5)


@pytest.mark.parametrize("mask_shape", [(4, 6), (5, 5), (4, 6, 2), (5, 6)])
def test_time_distributed_mask_validation_refuses(mask_shape):
    # Keras: test_mask_validation_with_mismatched_timesteps / _batch_size / 3d mismatch /
    # both mismatched.
    td = layers.TimeDistributed(layers.Dense(units=5, activation="softmax"))
    with pytest.raises(ValueError, match="mask"):
        td.forward(np.zeros((4, 5, 3)), mask=np.ones(mask_shape, bool))
