"""The benchmarks' GPU rows without a GPU: their pure parts (byte and FLOP counts,
slugs, errors, fractions, tables, the runner's arguments) and a run of every
suite's GPU code with CuPy replaced by NumPy and torch's CUDA tensors by CPU
ones, so that the code a GPU session runs for the first time has run once.
Those runs check plumbing, never speed; the kernels themselves are the cuda
tests' business."""
from __future__ import annotations

import importlib
import json
import sys
import time
import types

import numpy as np
import pytest


@pytest.fixture
def bench():
    """Imports a module of fusednn.bench by name."""
    def load(name):
        return importlib.import_module(f"fusednn.bench.{name}")
    return load


# ----- pure parts -------------------------------------------------------------------------

def test_gpu_slug_and_cuda_versions(bench):
    gpu = bench("gpu")
    assert gpu.gpu_slug("NVIDIA H200") == "h200"
    assert gpu.gpu_slug("NVIDIA H100 80GB HBM3") == "h100-80gb-hbm3"
    assert gpu.gpu_slug("NVIDIA") == "gpu"
    assert gpu.version_text(13000) == "13.0" and gpu.version_text(12080) == "12.8"


def test_relative_error_and_check_close(bench):
    gpu = bench("gpu")
    reference = np.array([3.0, 4.0])
    assert gpu.relative_error(reference, reference) == 0
    assert gpu.relative_error(np.array([3.0, 4.5]), reference) == pytest.approx(0.1)
    assert gpu.check_close({"a": (reference * (1 + 1e-6), reference)}, 1e-5).startswith("rel err")
    with pytest.raises(AssertionError, match="b: relative error 1.00e-01 above 1e-02"):
        gpu.check_close({"a": (reference, reference), "b": ([3.0, 4.5], reference)}, 1e-2)
    with pytest.raises(AssertionError, match="nan"):  # NaN never passes
        gpu.check_close({"a": ([np.nan, 4.0], reference)}, 1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        gpu.relative_error(np.zeros(3), reference)


def test_times_ratio_and_fractions(bench):
    gpu = bench("gpu")
    ceiling = {"copy_GBps": 4000.0, "gemm_fp32_TFLOPs": 50.0, "gemm_tf32_TFLOPs": 400.0}
    # 2 GB moved in 1 ms = 2000 GB/s = half the copy bandwidth; torch twice as slow.
    row = gpu.fill_times({"name": "x", "pass": "p", "check": "ok"},
                         {"fusednn": 1e-3, "torch": 2e-3}, bytes_moved=2e9, ceiling=ceiling)
    assert row["fusednn_fraction"] == pytest.approx(0.5)
    assert row["torch_fraction"] == pytest.approx(0.25)
    assert row["torch_over_fusednn"] == pytest.approx(2.0) and row["ceiling"] == "copy"
    # 4e11 FLOP in 10 ms = 40 TFLOP/s: 80% of fp32, 10% of tf32.
    for precision, expected in (("fp32", 0.8), ("tf32", 0.1)):
        row = gpu.fill_times({"name": "x", "pass": "p", "check": "ok"}, {"fusednn": 1e-2},
                             flops=4e11, precision=precision, ceiling=ceiling)
        assert row["fusednn_fraction"] == pytest.approx(expected)
        assert row["ceiling"] == f"{precision} GEMM" and "torch_over_fusednn" not in row
    common = bench("common")
    assert common.fraction(1.0, 1.0, 0) is None and common.percent(None) == ""


def test_table_shows_failed_rows(bench):
    gpu = bench("gpu")
    ceiling = {"copy_GBps": 1000.0}
    good = gpu.fill_times({"name": "pool", "pass": "max forward", "check": "exact"},
                          {"fusednn": 1e-3, "torch": 1.5e-3}, bytes_moved=5e8, ceiling=ceiling)
    bad = {"name": "pool", "pass": "avg forward", "error": "CUDARuntimeError: illegal | address"}
    table = gpu.markdown_table([good, bad])
    lines = table.strip().splitlines()
    assert len(lines) == 4
    assert lines[2] == "| pool | max forward | 1.000 | 1.500 | 1.50 | 50% | 33% | copy | exact |"
    assert "FAILED: CUDARuntimeError: illegal / address" in lines[3]
    assert "FAILED" in gpu.format_row(bad) and "x1.50" in gpu.format_row(good)


def test_measure_row_records_a_failure_and_times_nothing(bench):
    gpu = bench("gpu")
    timed = []

    def make():
        def check():
            raise AssertionError("dx: relative error 3.00e-01 above 1e-04")
        return {"fusednn": lambda: timed.append(1)}, check

    row = gpu.measure_row({"name": "n", "pass": "p"}, make, warmup=1, repeats=1, flush=None,
                          flops=1.0, ceiling={})
    assert row["error"] == "AssertionError: dx: relative error 3.00e-01 above 1e-04"
    assert timed == []


def test_byte_and_flop_counts(bench):
    conv, pooling, ops, recurrent = (bench(f"bench_{n}")
                                     for n in ("conv", "pooling", "ops", "recurrent"))
    # 3x3x64 -> 64 at 56x56 'same', batch 32: 2 * 32*56*56*64 outputs * 576 multiply-adds.
    assert conv.conv_flops((32, 56, 56, 64), (3, 3, 64, 64), (32, 56, 56, 64)) == \
        2.0 * 32 * 56 * 56 * 64 * 576
    # 2x2 max pool of (1, 4, 4, 2): 32 floats in, 8 out (+ 8 int32 argmax).
    assert pooling.pooling_bytes("max", "forward", (1, 4, 4, 2), (1, 2, 2, 2)) == 128 + 64
    assert pooling.pooling_bytes("max", "backward", (1, 4, 4, 2), (1, 2, 2, 2)) == 64 + 128
    assert pooling.pooling_bytes("avg", "forward", (1, 4, 4, 2), (1, 2, 2, 2)) == 128 + 32
    assert ops.ce_bytes(10, 100, "sparse labels") == 4000 * 2 + 40 + 80
    assert ops.ce_bytes(10, 100, "probability targets") == 4000 * 3 + 40
    # LSTM: 4 gates, (F + U) * 4U multiply-adds per sample and step.
    assert recurrent.rnn_flops("lstm", "inference", 2, 3, 5, 7) == 2.0 * 2 * 3 * 12 * 28
    assert recurrent.rnn_flops("gru", "training", 2, 3, 5, 7) == 3 * 2.0 * 2 * 3 * 12 * 21


def test_gpu_shape_lists(bench):
    conv, pooling = bench("bench_conv"), bench("bench_pooling")
    layers = conv.gpu_convs(quick=False)
    batches = sorted({shape[0] for _, shape, _, _ in layers})
    assert batches == [32, 64, 128, 256] and len(layers) == 14
    assert ("resnet 3x3 7x7x512 -> 512 (same), batch 128", (128, 7, 7, 512), (3, 3, 512),
            "same") in layers
    assert len(conv.gpu_convs(quick=True)) == 7
    assert [s[1][0] for s in pooling.gpu_shapes(False)] == [256, 256, 128, 64]
    assert len(pooling.gpu_shapes(True)) == 2


def test_runner_gives_gpu_suites_their_device_and_quick_arguments(bench):
    run = bench("run")
    parse = run.build_parser().parse_args
    assert run.suite_arguments("conv", "cuda", parse(["--quick", "--no-write"])) == \
        ["--device", "cuda", "--quick", "--repeats", "5", "--warmup", "2", "--out",
         "fusednn-bench", "--no-write"]
    assert run.suite_arguments("conv", "cpu", parse(["--quick", "--out", "r"])) == \
        ["--repeats", "3", "--warmup", "1", "--out", "r"]
    assert run.suite_arguments("gemm", "cpu", parse(["--no-write", "--fma-pipes", "1"])) == \
        ["--out", "fusednn-bench", "--no-write", "--fma-pipes", "1"]
    for name in run.suite_names():
        module = run.load_suite(name)
        if "cuda" in getattr(module, "DEVICES", ()):
            assert name in run.QUICK_GPU_ARGS


@pytest.mark.parametrize("suite", ["conv", "pooling", "ops", "recurrent"])
def test_suite_without_gpu_says_so_in_one_line(bench, suite, capsys):
    backend = pytest.importorskip("fusednn.backend")
    if backend.has_cuda():
        pytest.skip("a GPU is usable here")
    module = bench(f"bench_{suite}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--device", "cuda", "--no-write"])
    assert str(exit_info.value).startswith("--device cuda: device 'cuda' requested but CUDA "
                                           "is unavailable")


# ----- every suite's GPU code on stand-ins ---------------------------------------------------

class _Event:
    def record(self, stream=None):
        self.at = time.perf_counter()

    def synchronize(self):
        pass


class _Buffer:
    """What ceilings() needs of a CuPy array: a device pointer and a size."""

    def __init__(self, size):
        self.nbytes = 4 * size
        self.data = types.SimpleNamespace(ptr=0)


def _fake_cupy():
    """CuPy's names the benchmarks use, on NumPy arrays (so fusednn runs its CPU kernels)."""
    runtime = types.SimpleNamespace(
        deviceSynchronize=lambda: None, memcpyDeviceToDevice=3,
        memcpyAsync=lambda dst, src, size, kind, stream: None,
        driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13000,
        getDeviceProperties=lambda device: {
            "name": b"NVIDIA Stand-in", "major": 9, "minor": 0, "multiProcessorCount": 132,
            "totalGlobalMem": 141 << 30, "l2CacheSize": 60 << 20})
    cuda = types.SimpleNamespace(
        runtime=runtime, Event=_Event, Stream=types.SimpleNamespace(null=None),
        Device=lambda: types.SimpleNamespace(id=0),
        get_elapsed_time=lambda start, end: (end.at - start.at) * 1e3)
    return types.SimpleNamespace(
        cuda=cuda, asarray=lambda a: np.array(a), asnumpy=np.asarray, empty=np.empty,
        from_dlpack=np.from_dlpack,
        empty_like=lambda a: _Buffer(a.nbytes // 4), zeros_like=np.zeros_like,
        uint8=np.uint8, float32=np.float32, __version__="stand-in",
        random=types.SimpleNamespace(standard_normal=lambda size, dtype: _Buffer(size)),
        get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None))


@pytest.fixture
def stand_ins(bench, monkeypatch):
    """(cupy stand-in, torch), gpu.py pointed at them and torch's side on the CPU."""
    torch = pytest.importorskip("torch")
    gpu = bench("gpu")
    cp = _fake_cupy()
    monkeypatch.setattr(gpu, "cupy_module", lambda: cp)
    monkeypatch.setattr(gpu, "L2_FLUSH_BYTES", 1024)
    monkeypatch.setattr(gpu, "GEMM_SIZE", 64)
    monkeypatch.setattr(gpu, "_ceilings", {})
    monkeypatch.setattr(gpu, "TORCH_DEVICE", "cpu")
    saved_tf32, benchmark = gpu.tf32_state(torch), torch.backends.cudnn.benchmark
    gpu.ceilings(cp, torch, repeats=2)  # measured once, here on the CPU
    yield cp, torch
    gpu.restore_tf32(torch, saved_tf32)
    torch.backends.cudnn.benchmark = benchmark


def _gpu_args(**extra):
    return types.SimpleNamespace(quick=True, repeats=1, warmup=1, no_write=True, features=0,
                                 out="unused", fma_pipes=None, **extra)


def _rows_ran(out, expected_rows):
    lines = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    rows = lines[1:]  # after the header
    assert len(rows) == expected_rows, out
    assert not any("FAILED" in row for row in rows), out
    return rows


def test_conv_gpu_rows_on_stand_ins(bench, stand_ins, monkeypatch, capsys):
    cp, torch = stand_ins
    conv = bench("bench_conv")
    small = [("small 3x3 valid, batch 2", (2, 7, 6, 3), (3, 3, 4), "valid"),
             ("small 3x3 same, batch 3", (3, 5, 5, 8), (3, 3, 8), "same")]
    monkeypatch.setattr(conv, "gpu_convs", lambda quick: small)
    assert conv.run_gpu(cp, torch, _gpu_args()) == 0
    # forward, backward and their sum, in float32 and TF32, per layer
    rows = _rows_ran(capsys.readouterr().out, 2 * 3 * 2)
    assert any("forward+backward tf32" in row for row in rows)


def test_pooling_gpu_rows_on_stand_ins(bench, stand_ins, monkeypatch, capsys):
    cp, torch = stand_ins
    pooling = bench("bench_pooling")
    monkeypatch.setattr(pooling, "gpu_shapes", lambda quick: [
        ("small 2x2", (2, 6, 6, 3), 2, 2), ("small 3x3/2", (2, 7, 7, 4), 3, 2)])
    assert pooling.run_gpu(cp, torch, _gpu_args()) == 0
    _rows_ran(capsys.readouterr().out, 2 * 4)


def test_ops_gpu_rows_on_stand_ins(bench, stand_ins, monkeypatch, capsys):
    cp, torch = stand_ins
    ops = bench("bench_ops")
    monkeypatch.setattr(ops, "GPU_CE_SHAPES", [(4, 3), (5, 7), (6, 11), (7, 13), (8, 17)])
    monkeypatch.setattr(ops, "GPU_OPTIMIZER_MODELS", {"3 tensors": [(5, 4), (4,), (3, 2)]})
    assert ops.run_gpu(cp, torch, _gpu_args()) == 0
    _rows_ran(capsys.readouterr().out, 2 * 2 + 2)


def test_recurrent_gpu_rows_on_stand_ins(bench, stand_ins, monkeypatch, capsys):
    cp, torch = stand_ins
    recurrent = bench("bench_recurrent")
    monkeypatch.setattr(recurrent, "GPU_QUICK_CASES", [(2, 3, 4)])
    assert recurrent.run_gpu(cp, torch, _gpu_args()) == 0
    rows = _rows_ran(capsys.readouterr().out, 2 * 2)
    assert all(row.endswith("| rel err " + row.split("rel err ")[1]) for row in rows)


def test_gpu_report_writes_results_named_after_the_gpu(bench, stand_ins, monkeypatch, tmp_path,
                                                        capsys):
    cp, torch = stand_ins
    pooling = bench("bench_pooling")
    monkeypatch.setattr(pooling, "gpu_shapes", lambda quick: [("small", (1, 4, 4, 2), 2, 2)])
    args = _gpu_args()
    args.no_write, args.out = False, tmp_path
    assert pooling.run_gpu(cp, torch, args) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert [name.rsplit("-", 3)[0] for name in written] == ["pooling-stand-in"] * 2
    payload = json.loads(next(tmp_path.glob("*.json")).read_text())
    info = payload["info"]
    assert info["gpu"] == "NVIDIA Stand-in" and info["compute_capability"] == "9.0"
    assert set(info["ceilings"]) == {"copy_GBps", "gemm_fp32_TFLOPs", "gemm_tf32_TFLOPs"}
    assert len(payload["results"]) == 4 and "wrote" in capsys.readouterr().out


def test_gpu_timer_brackets_each_call(bench, stand_ins):
    gpu = bench("gpu")
    calls = []
    median = gpu.time_interleaved({"a": lambda: (calls.append("a"), time.sleep(0.002)),
                                   "b": lambda: calls.append("b")},
                                  warmup=1, repeats=3, flush=lambda: calls.append("flush"))
    assert calls[:2] == ["a", "b"]  # warm-up, then interleaved rounds with a flush before each
    assert calls[2:] == ["flush", "a", "flush", "b"] * 3
    assert median["a"] >= 0.002 > median["b"]
    assert sys.modules["fusednn.bench.gpu"] is gpu
