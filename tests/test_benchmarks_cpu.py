"""The CPU benchmarks' model rows build the models they claim to time: the lecture's
LSTM model with its 806,017 parameters in fusednn and the same layers in torch, and
one training step of each moves the weights and returns a finite loss. Plumbing
only: the times belong to the benchmarks, never to tests."""
from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import statistics

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


# ----- every CPU suite's rows carry their fraction of the hardware limit -------------------

LIMITS = {"isa": "avx2", "lanes_fp32": 8, "threads": 1, "fma_pipes": 2,
          "fma_pipes_source": "table", "clock_GHz": 3.0, "clock_note": "stand-in",
          "fma_fp32_GFLOPs": 96.0, "fma_fp64_GFLOPs": 48.0, "copy_GBps": 20.0}
FAST = ["--no-write", "--repeats", "1", "--warmup", "0"]


@pytest.fixture
def stand_in_limits(monkeypatch):
    """The CPU's limits as fixed numbers (no measuring), and the suites' results."""
    from fusednn.bench import common, limits

    monkeypatch.setattr(limits, "cpu_limits", lambda threads, pipes=None: LIMITS)
    monkeypatch.setattr(common, "produced", [])
    return common.produced


def _check_fractions(produced, kinds):
    """Every row's fractions, recomputed from its work and times: FLOP over the FMA peak
    of its dtype or bytes over the copy bandwidth (LIMITS)."""
    (entry,) = produced
    rows = entry["payload"]["results"]
    assert rows and "Hardware limits: FMA peak 1 threads" in entry["markdown"]
    for row in rows:
        assert row["ceiling"] in kinds, row
        if row["ceiling"] == "copy":
            per_second = row["bytes"] / (LIMITS["copy_GBps"] * 1e9)
        else:
            per_second = row["flop"] / (LIMITS[f"fma_{row['ceiling'][:4]}_GFLOPs"] * 1e9)
        for lib in ("fusednn", "torch"):
            expected = per_second / (row[f"{lib}_ms"] / 1e3)
            assert row[f"{lib}_fraction"] == pytest.approx(expected, rel=1e-9), row
    return rows


def test_conv_rows_fractions(stand_in_limits, monkeypatch):
    pytest.importorskip("torch")
    from fusednn.bench import bench_conv
    monkeypatch.setattr(bench_conv, "CONVS", [("tiny", (2, 6, 6, 3), (3, 3, 4), "same")])
    bench_conv.main(FAST)
    rows = _check_fractions(stand_in_limits, {"fp32 FMA peak"})
    assert [r["pass"] for r in rows] == ["forward", "backward", "forward+backward", "step"]


def test_pooling_rows_fractions(stand_in_limits, monkeypatch):
    pytest.importorskip("torch")
    from fusednn.bench import bench_pooling
    monkeypatch.setattr(bench_pooling, "SHAPES", [("tiny", (2, 6, 6, 3), 2, 2)])
    bench_pooling.main(FAST)
    assert len(_check_fractions(stand_in_limits, {"copy"})) == 4


def test_gemm_rows_fractions_by_dtype(stand_in_limits, monkeypatch):
    pytest.importorskip("torch")
    from fusednn.bench import bench_gemm
    monkeypatch.setattr(bench_gemm, "SHAPES", [("tiny", 8, 5, 3, False, True)])
    bench_gemm.main(FAST[:3] + ["--settle", "0", "--rounds", "1",
                                "--dtype", "float32", "float64"])
    rows = _check_fractions(stand_in_limits, {"fp32 FMA peak", "fp64 FMA peak"})
    assert [r["ceiling"] for r in rows] == ["fp32 FMA peak", "fp64 FMA peak"]


def test_recurrent_rows_fractions(stand_in_limits, monkeypatch):
    pytest.importorskip("torch")
    from fusednn.bench import bench_recurrent
    monkeypatch.setattr(bench_recurrent, "T", 3)
    monkeypatch.setattr(bench_recurrent, "LECTURE_BATCHES", (2,))
    bench_recurrent.main(FAST + ["--quick"])
    rows = _check_fractions(stand_in_limits, {"fp32 FMA peak"})
    assert len(rows) == 3 * 2 * 2 * 2 + 1  # cells x modes x batches x units, the model


# ----- the interleaved suite: scenarios in fresh processes, times and page faults -----------

def test_interleaved_rows_from_fresh_processes(stand_in_limits, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    from fusednn.bench import bench_conv, bench_interleaved
    # Four of the eight scenarios (each a process importing torch and training both models
    # for three steps): one with each kind of row, the ratios included.
    monkeypatch.setattr(bench_interleaved, "SCENARIOS", [
        ("alone", "on"), ("alone torch", "on"), ("interleaved", "on"), ("first call", "off")])
    bench_interleaved.main(["--processes", "1", "--repeats", "1", "--out", str(tmp_path)])
    (entry,) = stand_in_limits
    assert {p.name for p in tmp_path.iterdir()} == {f"{entry['name']}.json",
                                                    f"{entry['name']}.md"}
    rows = entry["payload"]["results"]
    by_key = {(row["case"], row["library"]): row for row in rows}
    assert set(by_key) == {
        ("alone", "fusednn (pool on)"), ("alone", "torch"),
        ("interleaved, fusednn pool on", "torch"), ("interleaved, fusednn pool on", "fusednn"),
        ("first batch 256", "fusednn (pool off)"), ("second batch 256", "fusednn (pool off)"),
        ("first predict of 1000", "fusednn (pool off)"),
        ("second predict of 1000", "fusednn (pool off)")}
    for row in rows:
        # One process, one round (first-call rows: one call each).
        assert len(row["samples_ms"]) == len(row["samples_page_faults"]) == 1, row
        assert all(isinstance(f, int) and f >= 0 for f in row["samples_page_faults"]), row
        assert all(ms > 0 for ms in row["samples_ms"]), row
        assert row["ms"] == statistics.median(row["samples_ms"])
        assert row["page_faults"] == statistics.median(row["samples_page_faults"])
        torch_row = by_key.get((row["case"], "torch"))
        if row["library"] == "torch" or torch_row is None:
            assert "torch_over_fusednn" not in row, row
        else:
            # The same two floats divided: exact up to one rounding.
            assert row["torch_over_fusednn"] == pytest.approx(torch_row["ms"] / row["ms"],
                                                              rel=1e-12)
    assert "page faults" in entry["markdown"] and entry["payload"]["info"]["processes"] == 1
    # Each row's fraction of the float32 FMA peak: the CNN's forward FLOP over the images
    # the case infers, per second of the row's median, over LIMITS' peak.
    forward_flop = {256: bench_conv.lecture_cnn_inference_flops(256),
                    1000: bench_conv.lecture_cnn_inference_flops(1000)}
    for row in rows:
        lib = "torch" if row["library"] == "torch" else "fusednn"
        flop = forward_flop[1000 if "predict of" in row["case"] else 256]
        assert row["flop"] == flop and row["ceiling"] == "fp32 FMA peak", row
        expected = flop / (row["ms"] / 1e3) / (LIMITS["fma_fp32_GFLOPs"] * 1e9)
        assert row[f"{lib}_fraction"] == pytest.approx(expected, rel=1e-12), row


@pytest.mark.parametrize("module", ["bench_interleaved", "bench_shared_cores"])
def test_cpu_only_suites_answer_a_gpu_request_in_one_line(module):
    import importlib
    suite = importlib.import_module(f"fusednn.bench.{module}")
    with pytest.raises(SystemExit, match="^--device cuda: .* has CPU rows only$"):
        suite.main(["--device", "cuda", "--no-write"])


# ----- the shared_cores suite: slowdowns beside busy-loop processes that always stop -------

def busy_loop_children() -> list:
    """Pids of this process's children running the shared_cores competitor (from /proc)."""
    from fusednn.bench.bench_shared_cores import BUSY_LOOP

    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
        if parent == os.getpid() and BUSY_LOOP.encode() in command:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def competitors_recorded(monkeypatch):
    """Every busy-loop process the suite starts, and none of them left afterwards."""
    if not pathlib.Path("/proc/self/stat").exists():
        pytest.skip("needs Linux's /proc to find child processes")
    from fusednn.bench import bench_shared_cores

    started, competitor = [], bench_shared_cores.competitor

    @contextlib.contextmanager
    def recording(*args):
        with competitor(*args) as busy:
            started.extend(busy)
            yield busy

    monkeypatch.setattr(bench_shared_cores, "competitor", recording)
    yield started
    assert all(process.returncode is not None for process in started)
    assert busy_loop_children() == []


def test_shared_cores_waits_for_calm_before_a_phase_alone(monkeypatch):
    """The pressure's 10-second average outlives a phase beside the competitor; the next
    phase alone starts once it is below CALM_PRESSURE, or unknown, or at the timeout."""
    from fusednn.bench import bench_shared_cores
    readings = iter([80.0, 40.0, bench_shared_cores.CALM_PRESSURE - 1, 99.0])
    monkeypatch.setattr(bench_shared_cores, "cpu_pressure", lambda: next(readings))
    bench_shared_cores.wait_for_calm(timeout_s=30.0, poll_s=0.0)
    assert next(readings) == 99.0  # stopped at the first reading below FREE
    monkeypatch.setattr(bench_shared_cores, "cpu_pressure", lambda: None)
    assert bench_shared_cores.wait_for_calm(timeout_s=30.0, poll_s=0.0) < 1.0
    monkeypatch.setattr(bench_shared_cores, "cpu_pressure", lambda: 100.0)
    waited = bench_shared_cores.wait_for_calm(timeout_s=0.2, poll_s=0.01)
    assert 0.2 <= waited < 5.0


def test_shared_cores_rows_and_no_competitor_left(stand_in_limits, competitors_recorded,
                                                   monkeypatch):
    pytest.importorskip("torch")
    from fusednn.bench import bench_conv, bench_recurrent, bench_shared_cores
    monkeypatch.setattr(bench_recurrent, "T", 3)  # a short sequence for the LSTM model
    commands, run_child = [], bench_shared_cores.run_child

    def recording(model, contender, steps, warmup_s, timeout_s):
        commands.append(bench_shared_cores.child_command(model, contender, steps, warmup_s))
        return run_child(model, contender, steps, warmup_s, timeout_s)

    monkeypatch.setattr(bench_shared_cores, "run_child", recording)
    bench_shared_cores.main(["--quick", "--processes", "2", "--no-write"])
    assert len(competitors_recorded) == 2  # one phase beside 2 processes
    # Each contender timed in a process of its own, alone and beside, on the short sequence.
    assert len(commands) == 2 * 2 * 3
    assert all(command[command.index("--sequence-length") + 1] == "3" for command in commands)
    (entry,) = stand_in_limits
    rows = entry["payload"]["results"]
    libraries = ["fusednn", "torch", "fusednn (fixed threads)"]
    assert [row["library"] for row in rows] == libraries * 2
    torch_slowdown = {row["model"]: row["slowdown"] for row in rows if row["library"] == "torch"}
    torch_slowdown_of_means = {row["model"]: row["slowdown_of_means"] for row in rows
                               if row["library"] == "torch"}
    for row in rows:
        for where in ("alone", "beside"):
            samples = row[f"samples_{where}_ms"]
            assert len(samples) == 2 and all(ms > 0 for ms in samples), row  # --quick: 2 calls
            assert row[f"{where}_ms"] == statistics.median(samples)
        # Ratios of the same floats: exact up to a rounding or two.
        assert row["slowdown"] == pytest.approx(row["beside_ms"] / row["alone_ms"], rel=1e-12)
        assert row["alone_mean_ms"] == pytest.approx(np.mean(row["samples_alone_ms"]))
        assert row["beside_mean_ms"] == pytest.approx(np.mean(row["samples_beside_ms"]))
        assert row["slowdown_of_means"] == pytest.approx(
            row["beside_mean_ms"] / row["alone_mean_ms"], rel=1e-12)
        if row["library"] == "torch":
            assert "slowdown_over_torch" not in row
        else:
            assert row["slowdown_over_torch"] == pytest.approx(
                row["slowdown"] / torch_slowdown[row["model"]], rel=1e-12)
            assert row["slowdown_of_means_over_torch"] == pytest.approx(
                row["slowdown_of_means"] / torch_slowdown_of_means[row["model"]], rel=1e-12)
        # Its fraction of the float32 FMA peak, alone: one step's FLOP per median second.
        lib = "torch" if row["library"] == "torch" else "fusednn"
        flop = (bench_conv.lecture_cnn_flops(64) if row["model"].startswith("lecture CNN")
                else bench_recurrent.lecture_model_flops(16))
        assert row["flop"] == flop and row["ceiling"] == "fp32 FMA peak", row
        expected = flop / (row["alone_ms"] / 1e3) / (LIMITS["fma_fp32_GFLOPs"] * 1e9)
        assert row[f"{lib}_fraction"] == pytest.approx(expected, rel=1e-12), row
    assert "busy-loop processes" in entry["markdown"]


def test_shared_cores_child_names_what_it_expected():
    from fusednn.bench import bench_shared_cores
    with pytest.raises(SystemExit, match="expected a model of .* got 'lecture GAN'"):
        bench_shared_cores.main(["--child", "lecture GAN", "torch"])
    with pytest.raises(SystemExit, match="and a contender of .* got .* and 'keras'"):
        bench_shared_cores.main(["--child", "lecture CNN training step, batch 64", "keras"])


def test_shared_cores_warms_up_for_calls_and_seconds():
    """At least 3 warm-up calls and warmup_s seconds of them, then `steps` timed calls."""
    import time
    from fusednn.bench import bench_shared_cores
    calls = []
    times = bench_shared_cores.time_steps(lambda: calls.append(time.sleep(0.01)), 4,
                                          warmup_s=0.1)
    assert len(times) == 4 and all(t >= 0.01 for t in times)
    assert len(calls) >= 4 + 10
    assert len(bench_shared_cores.time_steps(lambda: calls.append(None), 2, warmup_s=0.0)) == 2
    assert len(calls) >= 4 + 10 + 3 + 2


def test_competitors_stop_on_keyboard_interrupt(competitors_recorded):
    from fusednn.bench import bench_shared_cores
    with pytest.raises(KeyboardInterrupt):
        with bench_shared_cores.competitor(2, 600) as busy:
            assert [process.poll() for process in busy] == [None, None]  # spinning
            # The /proc look-up the fixture ends with finds them while they run.
            assert sorted(busy_loop_children()) == sorted(process.pid for process in busy)
            raise KeyboardInterrupt


def test_competitor_ends_itself_at_its_cpu_limit(competitors_recorded):
    """The kernel ends a busy loop after its CPU seconds even when nobody kills it; the
    phase it belonged to is then reported, not measured beside a missing competitor."""
    from fusednn.bench import bench_shared_cores
    with pytest.raises(bench_shared_cores.CompetitorStopped, match="competitor-cpu-seconds"):
        with bench_shared_cores.competitor(1, 1) as (process,):
            # 1 s of CPU; the wall time it takes grows with the machine's load.
            assert process.wait(timeout=120) in (-signal.SIGXCPU, -signal.SIGKILL)
