"""Recurrent-layer features from Keras 3's tests (keras/src/layers/rnn/lstm_test.py,
gru_test.py, bidirectional_test.py, rnn_test.py): stateful layers with their literal
values, zero_output_for_mask, and the arguments Keras scripts pass (unroll, ...)."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import initializers, layers

from gradcheck import check_layer_gradients

CONSTANTS = dict(kernel_initializer=initializers.Constant(0.01),
                 recurrent_initializer=initializers.Constant(0.02),
                 bias_initializer=initializers.Constant(0.03))


def test_lstm_statefulness():
    # Keras: LSTMTest.test_statefulness (the second call starts from the first's states;
    # after reset_state the same two calls give the same values again).
    sequence = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = layers.LSTM(4, stateful=True, **CONSTANTS)
    expected = np.array([[0.3124785] * 4, [0.6863672] * 4])
    layer(sequence)
    np.testing.assert_allclose(layer(sequence), expected, rtol=1e-5, atol=1e-6)
    layer.reset_state()
    layer(sequence)
    np.testing.assert_allclose(layer(sequence), expected, rtol=1e-5, atol=1e-6)


def test_bidirectional_statefulness():
    # Keras: BidirectionalTest.test_statefulness.
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    layer = layers.Bidirectional(layers.LSTM(2, stateful=True, **CONSTANTS))
    expected = np.array([[0.26234663, 0.26234663, 0.16959146, 0.16959146],
                         [0.6137073, 0.6137073, 0.5381646, 0.5381646]])
    layer(sequence)
    np.testing.assert_allclose(layer(sequence), expected, rtol=1e-5, atol=1e-6)
    layer.reset_state()
    layer(sequence)
    np.testing.assert_allclose(layer(sequence), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.LSTM, layers.GRU])
def test_stateful_halves_equal_one_pass_over_the_whole_sequence(cls):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8, 5)).astype(np.float32)
    whole = cls(4, return_sequences=True, seed=1)
    halves = cls(4, return_sequences=True, stateful=True)
    y = whole.forward(x)
    halves.build_for(x.shape)
    halves.set_weights(whole.get_weights())
    y_halves = np.concatenate([halves.forward(x[:, :4]), halves.forward(x[:, 4:])], axis=1)
    np.testing.assert_allclose(y_halves, y, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="same batch size"):
        halves.forward(x[:2, :4])
    halves.reset_states()
    np.testing.assert_allclose(halves.forward(x[:2, :4]), whole.forward(x[:2, :4]),
                               rtol=1e-5, atol=1e-6)


def test_stateful_sequential_resets_its_layers():
    model = fd.Sequential([layers.GRU(3, stateful=True, input_shape=(None, 2)),
                           layers.Dense(1)])
    x = np.ones((2, 5, 2), np.float32)
    first = model.predict(x, verbose=0)
    assert not np.allclose(model.predict(x, verbose=0), first)  # started from kept states
    model.reset_states()
    np.testing.assert_allclose(model.predict(x, verbose=0), first, rtol=1e-6)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_zero_output_for_mask(go_backwards):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 3))
    mask = np.array([[True, True, True, False, False], [False, True, True, True, True]])
    plain = layers.LSTM(4, return_sequences=True, go_backwards=go_backwards, dtype="float64")
    zeroed = layers.LSTM(4, return_sequences=True, go_backwards=go_backwards,
                         zero_output_for_mask=True, dtype="float64")
    y = plain.forward(x, mask=mask)
    zeroed.build_for(x.shape)
    zeroed.set_weights(plain.get_weights())
    y_zeroed = zeroed.forward(x, mask=mask)
    order = mask[:, ::-1] if go_backwards else mask  # outputs come in processing order
    np.testing.assert_allclose(y_zeroed, y * order[:, :, None], rtol=1e-12)
    check_layer_gradients(zeroed, x, mask=mask)


def test_keras_script_arguments_are_accepted():
    layer = layers.LSTM(3, unroll=True, implementation=2, use_cudnn=False,
                        zero_output_for_mask=True, stateful=True)
    config = layer.get_config()
    assert (config["unroll"], config["use_cudnn"], config["zero_output_for_mask"],
            config["stateful"]) == (True, False, True, True)
    rebuilt = layers.LSTM.from_config(config)
    assert rebuilt.stateful and rebuilt.unroll and rebuilt.zero_output_for_mask
