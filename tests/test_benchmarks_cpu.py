"""The CPU benchmarks' model rows build the models they claim to time: the lecture's
LSTM model with its 806,017 parameters in fusednn and the same layers in torch, and
one training step of each moves the weights and returns a finite loss. Plumbing
only: the times belong to the benchmarks, never to tests."""
from __future__ import annotations

import numpy as np
import pytest

from fusednn.bench import bench_recurrent


def test_lecture_lstm_model_step_without_torch():
    calls = bench_recurrent.lecture_model_contenders(None, batch=2)
    assert set(calls) == {"fusednn"}
    losses = [float(calls["fusednn"]()) for _ in range(2)]
    assert all(np.isfinite(losses)) and losses[0] != losses[1]


def test_lecture_lstm_model_step_against_torch():
    torch = pytest.importorskip("torch")
    calls = bench_recurrent.lecture_model_contenders(torch, batch=2)
    assert set(calls) == {"fusednn", "torch"}
    for name in ("fusednn", "torch"):
        losses = [float(calls[name]()) for _ in range(2)]
        assert all(np.isfinite(losses)) and losses[0] != losses[1], name
