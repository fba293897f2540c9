"""The CPU benchmarks' model rows build the models they claim to time: the lecture's
LSTM model with its 806,017 parameters in fusednn and the same layers in torch, and
one training step of each moves the weights and returns a finite loss. Plumbing
only: the times belong to benchmarks/, never to tests."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_recurrent(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("bench_recurrent")


def test_lecture_lstm_model_step_without_torch(bench_recurrent):
    calls = bench_recurrent.lecture_model_contenders(None, batch=2)
    assert set(calls) == {"fusednn"}
    losses = [float(calls["fusednn"]()) for _ in range(2)]
    assert all(np.isfinite(losses)) and losses[0] != losses[1]


def test_lecture_lstm_model_step_against_torch(bench_recurrent):
    torch = pytest.importorskip("torch")
    calls = bench_recurrent.lecture_model_contenders(torch, batch=2)
    assert set(calls) == {"fusednn", "torch"}
    for name in ("fusednn", "torch"):
        losses = [float(calls[name]()) for _ in range(2)]
        assert all(np.isfinite(losses)) and losses[0] != losses[1], name
