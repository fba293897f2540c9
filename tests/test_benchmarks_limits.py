"""The CPU limits the benchmark rows are fractions of (fusednn.bench.limits) and --compare
(fusednn.bench.compare): the FMA pipes table, the peak's factors, the fraction
arithmetic, the clock measured against an independent chain of another instruction, the
copy bandwidth's units, and matching results (recorded ones included) row by row.
Measurements are checked for sense only (ranges any CPU lies in), never for speed."""
from __future__ import annotations

import json
import pathlib
import platform
import shutil
import subprocess
import sys
import time

import pytest

from fusednn.bench import compare, limits

REPO = pathlib.Path(__file__).resolve().parents[1]
X86_UNIX = platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32"


# ----- FMA pipes and the peak ------------------------------------------------------------

@pytest.mark.parametrize("isa, vendor, family, pipes", [
    ("avx512", "GenuineIntel", 6, 2),   # Xeon Skylake-SP and later
    ("avx512", "AuthenticAMD", 0x19, 1),  # Zen 4: 512-bit FMA as two halves
    ("avx512", "AuthenticAMD", 0x1A, 2),  # Zen 5
    ("avx2", "AuthenticAMD", 0x19, 2),
    ("avx2", "GenuineIntel", 6, 2),
    ("portable", None, None, 1),
])
def test_fma_pipes_table(isa, vendor, family, pipes):
    assert limits.fma_pipes(isa, vendor, family)[0] == pipes


def test_every_isa_has_an_fma_pipes_entry_and_unknown_ones_are_named():
    for isa in limits.LANES_FP32:
        pipes, note = limits.fma_pipes(isa, "SomeVendor", 99)
        assert pipes >= 1 and note
    with pytest.raises(ValueError, match=r"no FMA pipes entry for ISA 'sve'; expected one of"):
        limits.fma_pipes("sve", None, None)


def _no_fma_loop(threads, isa):
    raise limits.ClockUnavailable("stand-in: no FMA loop")


def test_peak_is_the_product_of_its_factors(monkeypatch):
    monkeypatch.setattr(limits, "_measured", {})
    monkeypatch.setattr(limits, "measure_clock_GHz", lambda threads: 2.5)
    monkeypatch.setattr(limits, "measure_fma_GFLOPs", _no_fma_loop)
    monkeypatch.setattr(limits, "measure_copy_GBps", lambda threads: 40.0)
    measured = limits.cpu_limits(3, pipes_override=1)
    lanes = measured["lanes_fp32"]
    assert measured["fma_pipes"] == 1 and measured["fma_pipes_source"] == "--fma-pipes"
    assert measured["fma_fp32_GFLOPs"] == pytest.approx(3 * 1 * lanes * 2 * 2.5)
    assert measured["fma_fp64_GFLOPs"] == pytest.approx(3 * 1 * max(lanes // 2, 1) * 2 * 2.5)
    text = limits.describe(measured)
    assert "3 threads x 1 FMA pipes (--fma-pipes)" in text and "2.50 GHz" in text
    assert "copy bandwidth 40.0 GB/s" in text


def test_a_measured_fma_rate_is_the_peak_and_the_table_stays_beside_it(monkeypatch):
    monkeypatch.setattr(limits, "_measured", {})
    monkeypatch.setattr(limits, "measure_clock_GHz", lambda threads: 2.5)
    monkeypatch.setattr(limits, "measure_fma_GFLOPs", lambda threads, isa: 150.0)
    monkeypatch.setattr(limits, "measure_copy_GBps", lambda threads: 40.0)
    measured = limits.cpu_limits(2, pipes_override=2)
    lanes = measured["lanes_fp32"]
    assert measured["fma_fp32_GFLOPs"] == 150.0 and measured["fma_fp64_GFLOPs"] == 75.0
    assert measured["fma_table_fp32_GFLOPs"] == pytest.approx(2 * 2 * lanes * 2 * 2.5)
    text = limits.describe(measured)
    assert text.startswith("Hardware limits: FMA peak 150 GFLOP/s float32, 75 float64 "
                           "(measured: independent FMA chains")
    assert f"x 2 pipes x 2.50 GHz = {2 * 2 * lanes * 2 * 2.5:.0f})" in text


def test_without_a_clock_flop_rows_have_no_fraction(monkeypatch):
    def unavailable(threads):
        raise limits.ClockUnavailable("the clock loop is x86-64 code for Unix")
    monkeypatch.setattr(limits, "_measured", {})
    monkeypatch.setattr(limits, "measure_clock_GHz", unavailable)
    monkeypatch.setattr(limits, "measure_fma_GFLOPs", _no_fma_loop)
    monkeypatch.setattr(limits, "measure_copy_GBps", lambda threads: 40.0)
    measured = limits.cpu_limits(2)
    assert measured["fma_fp32_GFLOPs"] is None
    assert "no FMA peak (clock not measured: the clock loop is x86-64" in \
        limits.describe(measured)
    row = limits.fill({}, {"fusednn": 1e-3}, measured, flops=1e9)
    assert row["fusednn_fraction"] is None and row["ceiling"] == "fp32 FMA peak"
    # bytes rows keep theirs: 4e7 bytes in 1 ms = 40 GB/s = the whole bandwidth
    row = limits.fill({}, {"fusednn": 1e-3}, measured, bytes_moved=4e7)
    assert row["fusednn_fraction"] == pytest.approx(1.0) and row["ceiling"] == "copy"


def test_fractions_by_precision_and_kind():
    measured = {"fma_fp32_GFLOPs": 200.0, "fma_fp64_GFLOPs": 100.0, "copy_GBps": 50.0}
    # 1e9 FLOP in 10 ms = 100 GFLOP/s: half the float32 peak, all of the float64 one.
    row = limits.fill({}, {"fusednn": 0.01, "torch": 0.02}, measured, flops=1e9)
    assert row["fusednn_fraction"] == pytest.approx(0.5)
    assert row["torch_fraction"] == pytest.approx(0.25) and row["flop"] == 1e9
    row = limits.fill({}, {"fusednn": 0.01}, measured, flops=1e9, dtype="float64")
    assert row["fusednn_fraction"] == pytest.approx(1.0) and row["ceiling"] == "fp64 FMA peak"
    # 1e8 bytes in 4 ms = 25 GB/s = half the copy bandwidth.
    row = limits.fill({}, {"torch foreach": 0.004}, measured, bytes_moved=1e8)
    assert row["torch_foreach_fraction"] == pytest.approx(0.5) and row["bytes"] == 1e8


# ----- measurements ------------------------------------------------------------------------

@pytest.mark.skipif(not X86_UNIX, reason="the clock loop is x86-64 code for Unix")
def test_clock_agrees_with_a_chain_of_multiplies():
    # An independent reference: dependent 64-bit imul (latency 3 cycles on every x86-64
    # core since Nehalem and Zen), rax *= rdx with rdx = 1, 8 per iteration; returns 1.
    #   mov eax, 1 / mov edx, 1 / loop: imul rax, rdx (x8) / dec rdi / jnz loop / ret
    code = (bytes.fromhex("b801000000" "ba01000000") + bytes.fromhex("480fafc2") * 8
            + bytes.fromhex("48ffcf") + bytes([0x75, -(4 * 8 + 5) & 0xFF]) + b"\xc3")
    page, multiplies = limits.machine_code(code)
    best = 0.0
    for _ in range(40):  # the fastest 1 ms burst, as measure_clock_GHz does
        start = time.perf_counter()
        assert multiplies(150_000) == 1
        best = max(best, 3 * 8 * 150_000 / (time.perf_counter() - start) / 1e9)
    del multiplies
    page.close()
    clock = limits.measure_clock_GHz(1)
    assert 0.3 < clock < 7.0  # any x86-64 CPU; folded adds measured 22 "GHz"
    # Both are the fastest of 40 bursts; 25% leaves room for a shared machine's noise.
    assert clock == pytest.approx(best, rel=0.25)


@pytest.mark.parametrize("isa, register, chains", [("avx512", "zmm", 16), ("avx2", "ymm", 12)])
def test_fma_loop_is_the_instructions_it_claims(isa, register, chains, tmp_path):
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("needs binutils' objdump to decode the machine code")
    code, got_chains, lanes = limits._fma_loop(isa)
    (tmp_path / "loop.bin").write_bytes(code)
    listing = subprocess.run([objdump, "-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel",
                              str(tmp_path / "loop.bin")], capture_output=True, text=True,
                             check=True).stdout
    mnemonics = [line.split("\t")[2].split()[0] for line in listing.splitlines()
                 if line.count("\t") >= 2]
    fmas = [line.split("\t")[2] for line in listing.splitlines()
            if "vfmadd231ps" in line]
    assert got_chains == chains and lanes == (16 if isa == "avx512" else 8)
    # every chain its own accumulator, all of the ISA's width, then the loop and the return
    assert sorted(f.split()[1].split(",")[0] for f in fmas) == sorted(
        f"{register}{i}" for i in range(chains))
    assert mnemonics[0] == "mov" and mnemonics[-4:] == ["dec", "jne", "vzeroupper", "ret"]
    assert set(mnemonics[1:-4 - chains]) <= {"vxorps", "vpxord"}


@pytest.mark.skipif(not X86_UNIX, reason="the FMA loop is x86-64 code for Unix")
def test_fma_loop_runs_on_the_chosen_isa():
    import fusednn
    isa = fusednn.info(print_fn=None)["cpu_simd"]
    if isa not in ("avx512", "avx2"):
        pytest.skip(f"fusednn runs {isa} here: no FMA loop for it")
    rate = limits.measure_fma_GFLOPs(1, isa, iterations=20_000, bursts=5)
    # One core: at least 1 pipe at 0.3 GHz, at most 4 pipes at 7 GHz (a unit slip is 1000x).
    lanes = limits.LANES_FP32[isa]
    assert 1 * lanes * 2 * 0.3 < rate < 4 * lanes * 2 * 7.0


def test_copy_bandwidth_counts_bytes_read_and_written():
    measured = limits.measure_copy_GBps(1, nbytes=16 << 20, repeats=2)
    # Any machine copies between 0.1 GB/s and 10 TB/s; a unit slip (bytes vs GB,
    # seconds vs ms) lands outside by 1000x.
    assert 0.1 < measured < 10_000


# ----- --compare ---------------------------------------------------------------------------

def test_series_drops_the_date_only():
    assert compare.series("conv-cpu-2026-12-02") == "conv-cpu"
    assert compare.series("conv-cpu-2026-12-02-1threads") == "conv-cpu-1threads"
    assert compare.series("recurrent-cpu-1thread-2026-12-03") == "recurrent-cpu-1thread"
    assert compare.series("pooling-h200-2026-12-06") == "pooling-h200"


def test_a_recorded_result_compared_with_itself_matches_every_row():
    recorded = REPO / "benchmarks" / "results" / "recurrent-cpu-1thread-2026-12-03.json"
    if not recorded.exists():
        pytest.skip("not a checkout with the recorded results")
    before = compare.load(recorded)
    assert list(before) == ["recurrent-cpu-1thread"]
    rows = before["recurrent-cpu-1thread"]
    matched, unmatched = compare.compare(before, before)
    assert unmatched == 0 and len(matched) == len(rows) > 0
    assert {m["row"] for m in matched} == {compare.row_key(r) for r in rows}
    assert all(m["ratio_of_ratios"] == pytest.approx(1.0) for m in matched)
    assert "lstm, inference, N=1, U=64, F=64, T=60" in {m["row"] for m in matched}


def test_compare_counts_rows_without_a_partner(tmp_path):
    before = {"ops-cpu": [{"op": "Adam", "shape": "1M", "fusednn_ms": 4.0, "ratio": 2.0},
                          {"op": "SGD", "shape": "1M", "fusednn_ms": 1.0, "ratio": 1.0}],
              "gemm-cpu": [{"shape": "square", "dtype": "float32", "fusednn_ms": 1.0}]}
    now = {"ops-cpu": [{"op": "Adam", "shape": "1M", "fusednn_ms": 5.0, "ratio": 1.0,
                        "fusednn_fraction": 0.5},
                       {"op": "Adam", "shape": "10M", "fusednn_ms": 1.0, "ratio": 1.0}]}
    matched, unmatched = compare.compare(before, now)
    # one match; 10M (now only), SGD and the GEMM row (before only) have no partner
    assert unmatched == 3 and len(matched) == 1
    m = matched[0]
    assert m["fusednn_speedup"] == pytest.approx(0.8) and m["ratio_of_ratios"] == 0.5
    assert m["fusednn_fraction_before"] is None and m["fusednn_fraction_now"] == 0.5
    table = compare.markdown(matched, unmatched, "old.json")
    assert "| ops-cpu | Adam, 1M | 4.000 | 5.000 | 0.80 |  | 50% | 2.00 | 1.00 | 0.50 |" in table
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"runs": [{"name": "ops-cpu-2026-12-06",
                                             "payload": {"results": now["ops-cpu"]}}]}))
    assert compare.load(summary) == now
