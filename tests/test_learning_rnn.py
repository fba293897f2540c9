"""Learning tests for the recurrent layers: every script in examples/sequence_patterns/
(the lectures' sequence patterns, the adding problem and sunspot forecasting) run with
its own settings and held to a learning criterion against a baseline that a broken
kernel, gradient or mask could not beat. Runtimes on a 2-core CPU: each pattern a few
seconds, the adding problem about 25 s for its three models."""
import importlib
import pathlib
import sys

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples" / "sequence_patterns"


def _example(name):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def test_sequence_to_sequence_same_length():
    result = _example("seq2seq_next_step").run()
    # Persistence MSE is about 0.034; the GRU learns the wave's recurrence.
    assert result["model_mse"] < 0.1 * result["persistence_mse"], result


def test_sequence_to_vector_with_padding_mask():
    result = _example("seq2vec_sentiment").run()
    assert result["majority"] < 0.6
    assert result["accuracy"] > 0.9, result


def test_vector_to_sequence():
    result = _example("vec2seq_waves").run()
    assert result["model_mse"] < 0.05 * result["mean_wave_mse"], result


def test_encoder_decoder_different_lengths():
    result = _example("encoder_decoder_reverse").run()
    # Whole unseen strings right (chance 1e-5); needs the state hand-over and its gradient.
    assert result["sequence_accuracy"] > 0.9, result


def test_stacked_bidirectional_uses_the_future():
    result = _example("stacked_bidirectional").run()
    assert result["bidirectional_mse"] < 0.05, result
    # Without the future the best guess of x_(t+1) is 0: MSE about var(x) = 1.
    assert result["forward_only_mse"] > 0.8, result


def test_adding_problem_gates_beat_simple_rnn():
    example = _example("adding_problem")
    result = example.run()
    print({name: f"MSE {mse:.4f}, {seconds:.1f} s" for name, (mse, seconds) in result.items()})
    assert result["LSTM"][0] < 0.01, result
    assert result["GRU"][0] < 0.01, result
    # SimpleRNN stays near the mean-predicting baseline of 1/6.
    assert 0.6 * example.BASELINE_MSE < result["SimpleRNN"][0] < 1.5 * example.BASELINE_MSE, result


def test_lstm_forecasts_sunspots_better_than_persistence():
    pytest.importorskip("statsmodels")
    result = _example("forecast_sunspots").run()
    assert result["model_mse"] < 0.8 * result["persistence_mse"], result
