"""LSTM, GRU and SimpleRNN against the literal values of Keras 3's tests (v3.15.1):
keras/src/layers/rnn/{lstm,gru,simple_rnn}_test.py: test_correctness, test_pass_initial_state,
test_pass_return_state and test_masking (statefulness is in test_keras_recurrent.py).
Every case uses Keras's constant initializers (kernel 0.01, recurrent 0.02, bias 0.03) on
np.arange inputs; Keras compares with atol = rtol = 1e-5, and so do these (float32)."""
import numpy as np
import pytest

from fusednn import initializers, layers

TOL = dict(atol=1e-5, rtol=1e-5)


def _layer(cls, units, **kwargs):
    return cls(units, kernel_initializer=initializers.Constant(0.01),
               recurrent_initializer=initializers.Constant(0.02),
               bias_initializer=initializers.Constant(0.03), **kwargs)


def _rows(*values, width):
    return np.array([[v] * width for v in values])


# (class, units, input (batch, steps, features) of np.arange, keyword arguments, output)
CORRECTNESS = [
    (layers.LSTM, 3, (3, 6, 4), {}, _rows(0.6288687, 0.86899155, 0.9460773, width=3)),
    (layers.LSTM, 3, (3, 6, 4), {"go_backwards": True},
     _rows(0.35622165, 0.74789524, 0.8872726, width=3)),
    (layers.LSTM, 3, (3, 6, 4), {"unroll": True},
     _rows(0.6288687, 0.86899155, 0.9460773, width=3)),
    (layers.LSTM, 3, (3, 6, 4), {"unit_forget_bias": False},
     _rows(0.57019705, 0.8661914, 0.9459622, width=3)),
    (layers.LSTM, 3, (3, 6, 4), {"use_bias": False},
     _rows(0.54986924, 0.86226785, 0.9443936, width=3)),
    (layers.GRU, 3, (3, 6, 4), {}, _rows(0.5217289, 0.6371659, 0.39384964, width=3)),
    (layers.GRU, 3, (3, 6, 4), {"go_backwards": True},
     _rows(0.24406259, 0.611516, 0.3928808, width=3)),
    (layers.GRU, 3, (3, 6, 4), {"unroll": True}, _rows(0.5217289, 0.6371659, 0.39384964, width=3)),
    (layers.GRU, 3, (3, 6, 4), {"reset_after": False},
     _rows(0.51447755, 0.6426879, 0.40208298, width=3)),
    (layers.GRU, 3, (3, 6, 4), {"use_bias": False},
     _rows(0.49988455, 0.64701194, 0.4103359, width=3)),
    (layers.SimpleRNN, 4, (2, 3, 4), {}, _rows(0.405432, 0.73605347, width=4)),
    (layers.SimpleRNN, 4, (2, 3, 4), {"unroll": True}, _rows(0.405432, 0.73605347, width=4)),
    (layers.SimpleRNN, 4, (2, 3, 4), {"go_backwards": True},
     _rows(0.11144729, 0.5528889, width=4)),
    (layers.SimpleRNN, 4, (2, 3, 4), {"go_backwards": True, "unroll": True},
     _rows(0.11144729, 0.5528889, width=4)),
]


@pytest.mark.parametrize("cls, units, shape, kwargs, expected", CORRECTNESS,
                         ids=[f"{c[0].__name__}-{c[3]}" for c in CORRECTNESS])
def test_correctness(cls, units, shape, kwargs, expected):
    sequence = np.arange(np.prod(shape)).reshape(shape).astype(np.float32)
    np.testing.assert_allclose(_layer(cls, units, **kwargs).forward(sequence), expected, **TOL)


SEQUENCE = np.arange(24).reshape((2, 4, 3)).astype(np.float32)
STATE2 = np.arange(4).reshape((2, 2)).astype(np.float32)

INITIAL_STATE = [
    (layers.LSTM, 2, [STATE2, STATE2], {}, [[0.20574439, 0.3558822], [0.64930826, 0.66276]]),
    (layers.LSTM, 2, [STATE2, STATE2], {"go_backwards": True},
     [[0.13281618, 0.2790356], [0.5839337, 0.5992567]]),
    (layers.GRU, 2, STATE2, {}, [[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
    (layers.GRU, 2, STATE2, {"go_backwards": True},
     [[0.13486053, 0.23261218], [0.78257304, 0.9691353]]),
    (layers.SimpleRNN, 4, np.arange(8).reshape((2, 4)).astype(np.float32), {},
     _rows(0.33621645, 0.6262637, width=4)),
    (layers.SimpleRNN, 4, np.arange(8).reshape((2, 4)).astype(np.float32),
     {"go_backwards": True}, _rows(0.07344437, 0.43043602, width=4)),
]


@pytest.mark.parametrize("cls, units, state, kwargs, expected", INITIAL_STATE,
                         ids=[f"{c[0].__name__}-{c[3]}" for c in INITIAL_STATE])
def test_pass_initial_state(cls, units, state, kwargs, expected):
    output = _layer(cls, units, **kwargs).forward(SEQUENCE, initial_state=state)
    np.testing.assert_allclose(output, expected, **TOL)


@pytest.mark.parametrize("go_backwards, expected", [
    (False, [[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
    (True, [[0.13486053, 0.23261218], [0.78257304, 0.9691353]])])
def test_gru_pass_return_state(go_backwards, expected):
    # Keras: GRUTest.test_pass_return_state (the state equals the last output).
    layer = _layer(layers.GRU, 2, return_state=True, go_backwards=go_backwards)
    output, state = layer.forward(SEQUENCE, initial_state=STATE2)
    np.testing.assert_allclose(output, expected, **TOL)
    np.testing.assert_allclose(state, output, **TOL)


LSTM_MASK = np.array([[True, True, True, False], [True, True, False, False]])
OTHER_MASK = np.array([[True, True, False, True], [True, False, False, True]])

# (class, units, mask, kwargs, expected output; for return_sequences the two samples)
MASKING = [
    (layers.LSTM, 2, LSTM_MASK, {"unroll": True},
     [[0.11755939, 0.11755939], [0.28556206, 0.28556206]]),
    (layers.LSTM, 2, LSTM_MASK, {"return_sequences": True},
     [_rows(0.01588910, 0.05552048, 0.11755939, 0.11755939, width=2),
      _rows(0.14185596, 0.28556206, 0.28556206, 0.28556206, width=2)]),
    (layers.LSTM, 2, LSTM_MASK, {"return_sequences": True, "zero_output_for_mask": True},
     [_rows(0.01588910, 0.05552048, 0.11755939, 0.0, width=2),
      _rows(0.14185596, 0.28556206, 0.0, 0.0, width=2)]),
    (layers.LSTM, 2, np.array([[False, True, True, True], [False, False, True, True]]),
     {"go_backwards": True}, [[0.15341201, 0.15341201], [0.3844719, 0.3844719]]),
    (layers.GRU, 2, OTHER_MASK, {"unroll": True},
     [[0.19393763, 0.19393763], [0.30818558, 0.30818558]]),
    (layers.GRU, 2, OTHER_MASK, {"return_sequences": True},
     [_rows(0.03606692, 0.09497581, 0.09497581, 0.19393763, width=2),
      _rows(0.16051409, 0.16051409, 0.16051409, 0.30818558, width=2)]),
    (layers.GRU, 2, OTHER_MASK, {"return_sequences": True, "zero_output_for_mask": True},
     [_rows(0.03606692, 0.09497581, 0.0, 0.19393763, width=2),
      _rows(0.16051409, 0.0, 0.0, 0.30818558, width=2)]),
    (layers.GRU, 2, OTHER_MASK, {"go_backwards": True},
     [[0.11669192, 0.11669192], [0.28380975, 0.28380975]]),
    (layers.SimpleRNN, 4, OTHER_MASK, {"unroll": True}, _rows(0.32951632, 0.61799484, width=4)),
    (layers.SimpleRNN, 2, OTHER_MASK, {"return_sequences": True},
     [_rows(0.0599281, 0.15122814, 0.15122814, 0.32394567, width=2),
      _rows(0.3969304, 0.3969304, 0.3969304, 0.608085, width=2)]),
    (layers.SimpleRNN, 2, OTHER_MASK, {"return_sequences": True, "zero_output_for_mask": True},
     [_rows(0.0599281, 0.15122814, 0.0, 0.32394567, width=2),
      _rows(0.3969304, 0.0, 0.0, 0.608085, width=2)]),
    (layers.SimpleRNN, 4, OTHER_MASK, {"go_backwards": True},
     _rows(0.07376196, 0.43645123, width=4)),
]


@pytest.mark.parametrize("cls, units, mask, kwargs, expected", MASKING,
                         ids=[f"{c[0].__name__}-{c[3]}" for c in MASKING])
def test_masking(cls, units, mask, kwargs, expected):
    output = _layer(cls, units, **kwargs).forward(SEQUENCE, mask=mask)
    np.testing.assert_allclose(output, np.asarray(expected), **TOL)
