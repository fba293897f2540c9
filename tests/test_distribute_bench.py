"""fusednn bench --suite distributed: the ring-allreduce model against hand-computed
values, the rows from stand-in measurements, and a real --quick run of 1 and 2 ranks."""
from __future__ import annotations

import importlib.util

import pytest

from fusednn.bench import bench_distributed as suite
from fusednn.distribute import environment


def test_ring_allreduce_model():
    # 8 ranks, 1 GB/s, 10 us, 2 buckets: 2*7/8 * 1e6 B / 1e9 B/s + 2*7 * 10 us * 2.
    assert suite.ring_allreduce_s(8, 10**6, 1e9, 1e-5, 2) == pytest.approx(1.75e-3 + 2.8e-4)
    assert suite.ring_allreduce_s(1, 10**6, 1e9, 1e-5, 1) == 0.0


def _job(ranks, step_s, allreduce_s, latency_probe_s=2e-5):
    entry = {"batch_per_rank": 16, "step_s": step_s, "allreduce_s": allreduce_s,
             "step_overlapped_s": step_s - allreduce_s / 2,
             "bytes": 4_000_000, "buckets": 1}
    return {"ranks": ranks, "backend": "stand-in", "latency_probe_s": latency_probe_s,
            **{name: dict(entry) for name in suite.MODELS}}


def test_rows_from_measurements():
    jobs = {1: _job(1, 0.050, 0.0), 2: _job(2, 0.060, 0.004)}
    independent = [_job(1, 0.055, 0.0), _job(1, 0.058, 0.0)]
    measured, modelled = suite.rows_for(jobs, independent, latency_us=5.0)
    row = measured[0]
    assert row["step_2_independent_ms"] == pytest.approx(58.0)   # the slower process
    assert row["efficiency_2_ranks"] == pytest.approx(0.050 / 0.060)
    assert row["compute_2_ranks_ms"] == pytest.approx(56.0)
    assert row["step_2_ranks_overlapped_ms"] == pytest.approx(58.0)
    # Loopback: latency 20 us / 2 messages; 4 MB in 4 ms - 2 x 10 us = 3.98 ms.
    assert row["loopback_latency_us"] == pytest.approx(10.0)
    assert row["loopback_gbit_s"] == pytest.approx(8 * 4e6 / 3.98e-3 / 1e9)
    # The 2-rank prediction from the fitted loopback gives back the measured allreduce.
    assert row["modelled_step_2_ranks_ms"] == pytest.approx(50.0 + 4.0)
    cell = next(r for r in modelled if (r["ranks"], r["link_gbit_s"]) == (64, 100))
    comm = 2 * 63 / 64 * 4e6 / 12.5e9 + 2 * 63 * 5e-6
    assert cell["allreduce_ms"] == pytest.approx(1e3 * comm)
    assert cell["efficiency"] == pytest.approx(0.050 / (0.050 + comm))
    assert len(modelled) == len(suite.MODELS) * 9


def test_gpu_request_is_answered_in_one_line():
    with pytest.raises(SystemExit, match="^--device cuda: .* has CPU \\(MPI\\) rows only$"):
        suite.main(["--device", "cuda", "--no-write"])


@pytest.mark.skipif(environment.find_mpiexec() is None
                    or importlib.util.find_spec("mpi4py") is None, reason="needs mpiexec and mpi4py: pip install 'fusednn[distributed]'")
def test_quick_run_measures_one_and_two_ranks(capsys):
    suite.main(["--quick", "--no-write"])
    out = capsys.readouterr().out
    assert "| lecture CNN | 32 | 0.37 MB | 1 |" in out      # 93,322 float32 gradients
    assert "| lecture LSTM | 16 | 3.22 MB | 1 |" in out     # 806,017 float32 gradients
    assert "512 ranks, 400 Gb/s" in out and "load average before" in out
