"""This CPU's limits, which every CPU row is shown as a fraction of.

- FMA peak = threads x FMA pipes per core x vector lanes of the ISA fusednn uses
  (fd.info()["cpu_simd"]) x 2 FLOP x measured clock. The clock is measured, not read
  from the OS (a VM's /proc/cpuinfo shows the nominal clock: 2.6 GHz where the cores ran
  at 4.15 GHz, 2026-12-06): each thread runs a chain of dependent 64-bit register adds,
  whose latency is one cycle on every x86-64 core, so cycles = adds. (Adds of an
  immediate do not work: Golden Cove's renamer folds them, which measured 22 GHz here.)
  The chain runs on all threads at once, so the clock is the all-core one (each thread's
  fastest of many 1 ms bursts, so that other processes' time slices on a shared machine
  do not count: 2.2 GHz for 40 ms runs with another job on the second core, 4.15 GHz
  for the best burst, 2026-12-06); code heavy in wide vectors may run slower, which
  makes the peak an upper bound. FMA pipes per core come from FMA_PIPES, a table by ISA
  and CPU family; --fma-pipes overrides it.
- Where fusednn runs AVX-512 or AVX2 on x86-64, the FMA peak is measured instead: every
  thread at once runs independent chains of the ISA's widest float32 FMA (16 zmm or 12
  ymm chains, more than pipes x latency, so the pipes never wait), and the best burst
  per thread counts. That is the rate wide FMAs really get, at the clock the core runs
  them at: on the Xeon above 245 GFLOP/s per thread, 94% of the table's 2 pipes x 16
  lanes x 2 x 4.09 GHz (2026-12-06). The table's figure is kept beside it.
- Copy bandwidth: the best of several 256 MiB float32 copies split over the threads
  (NumPy releases the GIL for it), counting bytes read plus bytes written, as the GPU
  rows count theirs. Rows whose data fit in the caches can exceed 100% of it.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import mmap
import platform
import re
import statistics
import sys
import time

import numpy as np

from . import common

# float32 lanes of each micro-kernel path fusednn can be built with; float64 has half.
LANES_FP32 = {"avx512": 16, "avx2": 8, "vec128": 4, "portable": 1}

# FMA pipes per core by (ISA, vendor, CPU family), first match wins (None: any). A pipe
# here is one vector FMA of the ISA's width per cycle.
FMA_PIPES = [
    # Zen 4 runs a 512-bit FMA as two halves on its two 256-bit pipes.
    ("avx512", "AuthenticAMD", 0x19, 1, "AMD Zen 4: 512-bit FMA in two 256-bit halves"),
    ("avx512", "AuthenticAMD", None, 2, "AMD Zen 5: two 512-bit FMA pipes"),
    # Xeon Bronze/Silver, Gold 5100/5200 and client Ice/Tiger Lake have one: --fma-pipes 1.
    ("avx512", None, None, 2, "Intel Xeon (Skylake-SP and later): two 512-bit FMA pipes"),
    # AMD Zen 1 has two 128-bit pipes, one 256-bit FMA per cycle: --fma-pipes 1.
    ("avx2", None, None, 2, "Intel Haswell and later, AMD Zen 2 and later: two 256-bit FMA "
                            "pipes"),
    # SSE2 has no FMA: multiplies and adds issue separately, two of them per cycle on
    # Intel (the two FMA ports), four on AMD Zen (two multiply and two add pipes).
    ("vec128", "AuthenticAMD", None, 2, "x86 SSE2 on AMD Zen: two multiply + two add pipes"),
    ("vec128", None, None, 2 if platform.machine().lower() in ("arm64", "aarch64") else 1,
     "128-bit: NEON two FMA pipes (Neoverse N1; V1 and Apple M1 have 4), x86 SSE2 on "
     "Intel: a multiply and an add per cycle"),
    ("portable", None, None, 1, "scalar code: one FMA per cycle"),
]

COPY_BYTES = 256 << 20
ADDS_PER_ITERATION = 8

# x86-64 System V machine code of uint64_t f(uint64_t n): 8 * n dependent register adds
# (rax += rdx, rdx = 1) in a loop; returns 8 * n, which proves the loop ran as written.
#   xor eax, eax / mov edx, 1 / loop: add rax, rdx (x8) / dec rdi / jnz loop / ret
_ADD_CHAIN = (bytes.fromhex("31c0" "ba01000000") + bytes.fromhex("4801d0") * ADDS_PER_ITERATION
              + bytes.fromhex("48ffcf") + bytes([0x75, -(3 * ADDS_PER_ITERATION + 5) & 0xFF])
              + bytes.fromhex("c3"))

# x86-64 System V machine code of uint64_t f(uint64_t n): n iterations of `chains`
# independent float32 FMAs (acc_i += a * b, all registers zeroed first, so no value
# ever becomes subnormal), returning n. Encodings as GNU as writes them for
#   vxorps xmm_i (all used registers) / [vpxord zmm30, zmm31] /
#   loop: vfmadd231ps acc_i, src1, src2 (i < chains) / dec rdi / jnz loop / vzeroupper / ret
def _fma_loop(isa: str) -> tuple:
    """(machine code, chains, float32 lanes per FMA) of the ISA's FMA loop."""
    zero = {i: ("c5" + format(0xf8 - 8 * i, "02x") + "57" + format(0xc0 + 9 * i, "02x")
                if i < 8 else "c441" + format(0x38 - 8 * (i - 8), "02x") + "57"
                + format(0xc0 + 9 * (i - 8), "02x")) for i in range(16)}
    if isa == "avx512":
        chains, lanes = 16, 16
        head = "".join(zero[i] for i in range(chains)) + "62010d40eff6" "62010540efff"
        fma = [("62920d40b8" if i < 8 else "62120d40b8") + format(0xc7 + 8 * (i % 8), "02x")
               for i in range(chains)]
    else:
        chains, lanes = 12, 8
        head = "".join(zero[i] for i in list(range(chains)) + [14, 15])
        fma = [("c4c20db8" if i < 8 else "c4420db8") + format(0xc7 + 8 * (i % 8), "02x")
               for i in range(chains)]
    body = bytes.fromhex("".join(fma) + "48ffcf")
    code = (bytes.fromhex("4889f8" + head) + body + bytes([0x75, -(len(body) + 2) & 0xFF])
            + bytes.fromhex("c5f877" "c3"))
    return code, chains, lanes


_measured = {}


class ClockUnavailable(Exception):
    """The clock cannot be measured here; the message says why."""


def cpu_identity() -> tuple:
    """(vendor_id, cpu family) from /proc/cpuinfo, (None, None) where it says nothing."""
    vendor = family = None
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return vendor, family
    match = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
    vendor = match.group(1) if match else None
    match = re.search(r"^cpu family\s*:\s*(\d+)", text, re.M)
    family = int(match.group(1)) if match else None
    return vendor, family


def fma_pipes(isa: str, vendor, family) -> tuple:
    """(pipes, the table entry's note) for this ISA and CPU."""
    for entry_isa, entry_vendor, entry_family, pipes, note in FMA_PIPES:
        if entry_isa == isa and entry_vendor in (None, vendor) and entry_family in (None, family):
            return pipes, note
    raise ValueError(f"no FMA pipes entry for ISA {isa!r}; expected one of "
                     f"{sorted(LANES_FP32)}")


def machine_code(code: bytes):
    """(page, function): x86-64 code of uint64_t f(uint64_t) in an executable page, as a
    ctypes function (x86-64 Unix only); the page must outlive the calls."""
    if platform.machine().lower() not in ("x86_64", "amd64") or sys.platform == "win32":
        raise ClockUnavailable(f"the clock loop is x86-64 code for Unix; this is "
                               f"{platform.machine()} on {sys.platform}")
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE,
                         prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, AttributeError) as e:
        raise ClockUnavailable(f"no executable memory for the clock loop ({e})") from None
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    function = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(address)
    return page, function


def measure_clock_GHz(threads: int, iterations: int = 500_000, bursts: int = 40) -> float:
    """The clock of `threads` cores busy at once: on each thread the fastest of `bursts`
    short runs of the add chain (cycles / seconds; about 1 ms each, so that on a shared
    machine some run between the other processes' time slices), averaged over the threads."""
    page, chain = machine_code(_ADD_CHAIN)

    def run_on_one_thread():
        best = 0.0
        for _ in range(bursts):
            start = time.perf_counter()
            adds = chain(iterations)  # ctypes releases the GIL: the threads run at once
            seconds = time.perf_counter() - start
            if adds != ADDS_PER_ITERATION * iterations:
                raise ClockUnavailable(f"the clock loop returned {adds}, expected "
                                       f"{ADDS_PER_ITERATION * iterations}")
            best = max(best, adds / seconds / 1e9)
        return best

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        clocks = list(pool.map(lambda _: run_on_one_thread(), range(threads)))
    page.close()
    return statistics.mean(clocks)


def measure_fma_GFLOPs(threads: int, isa: str, iterations: int = 100_000,
                       bursts: int = 40) -> float:
    """float32 GFLOP/s of `threads` threads running the ISA's FMA loop at once: on each
    thread the best of `bursts` runs (about 1 ms each, as for the clock), summed."""
    if isa not in ("avx512", "avx2"):
        raise ClockUnavailable(f"the FMA loop is AVX2 or AVX-512 code; fusednn runs {isa}")
    code, chains, lanes = _fma_loop(isa)
    page, loop = machine_code(code)

    def run_on_one_thread():
        best = 0.0
        for _ in range(bursts):
            start = time.perf_counter()
            done = loop(iterations)
            seconds = time.perf_counter() - start
            if done != iterations:
                raise ClockUnavailable(f"the FMA loop returned {done}, expected {iterations}")
            best = max(best, iterations * chains * lanes * 2 / seconds / 1e9)
        return best

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        rates = list(pool.map(lambda _: run_on_one_thread(), range(threads)))
    page.close()
    return sum(rates)


def measure_copy_GBps(threads: int, nbytes: int = COPY_BYTES, repeats: int = 8) -> float:
    """The best of `repeats` bandwidths (bytes read + written per second) of a copy split
    over `threads` threads: the limit is what the machine can do, not its average under
    another process's load."""
    source = np.ones(nbytes // 4, np.float32)
    target = np.empty_like(source)
    bounds = np.linspace(0, source.size, threads + 1).astype(int)
    parts = [(target[a:b], source[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    best = float("inf")
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats + 1):  # the first copy touches the target's pages: warm-up
            start = time.perf_counter()
            list(pool.map(lambda part: np.copyto(*part), parts))
            best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best / 1e9


def cpu_limits(threads: int, pipes_override=None) -> dict:
    """The CPU's limits for `threads` threads, measured once per process: isa, lanes,
    fma_pipes (and where the number comes from), clock_GHz, fma_fp32_GFLOPs,
    fma_fp64_GFLOPs (None where the clock could not be measured), copy_GBps, and
    clock_note / fma_pipes_source saying how."""
    import fusednn

    key = (threads, pipes_override)
    if key in _measured:
        return dict(_measured[key])
    isa = fusednn.info(print_fn=None)["cpu_simd"]
    vendor, family = cpu_identity()
    if pipes_override is not None:
        pipes, source = pipes_override, "--fma-pipes"
    else:
        pipes, note = fma_pipes(isa, vendor, family)
        source = f"table: {note}"
    limits = {"isa": isa, "lanes_fp32": LANES_FP32[isa], "threads": threads,
              "fma_pipes": pipes, "fma_pipes_source": source, "cpu_vendor": vendor,
              "cpu_family": family}
    try:
        limits["clock_GHz"] = measure_clock_GHz(threads)
        limits["clock_note"] = ("dependent 64-bit register adds (1 cycle each) on every "
                                "thread at once")
    except ClockUnavailable as e:
        limits["clock_GHz"] = None
        limits["clock_note"] = f"not measured: {e}"
    for name, lanes in (("fp32", LANES_FP32[isa]), ("fp64", max(LANES_FP32[isa] // 2, 1))):
        limits[f"fma_{name}_GFLOPs"] = (threads * pipes * lanes * 2 * limits["clock_GHz"]
                                        if limits["clock_GHz"] else None)
    limits["fma_table_fp32_GFLOPs"] = limits["fma_fp32_GFLOPs"]
    try:
        measured = measure_fma_GFLOPs(threads, isa)
    except ClockUnavailable as e:
        limits["fma_peak_note"] = f"from the table (not measured: {e})"
    else:
        # float64 FMAs run on the same pipes with half the lanes.
        limits["fma_fp32_GFLOPs"], limits["fma_fp64_GFLOPs"] = measured, measured / 2
        limits["fma_peak_note"] = "measured: independent FMA chains on every thread at once"
    limits["copy_GBps"] = measure_copy_GBps(threads)
    _measured[key] = limits
    return dict(limits)


def fill(row: dict, median: dict, limits: dict, *, flops=None, bytes_moved=None,
         dtype: str = "float32") -> dict:
    """row[<lib>_fraction] from each library's median seconds: FLOP over the FMA peak of
    dtype, or bytes over the copy bandwidth; row['flop'] or row['bytes'] records the work."""
    if bytes_moved is not None:
        row["bytes"] = bytes_moved
        return common.add_fractions(row, median, bytes_moved, limits["copy_GBps"] * 1e9,
                                    "copy")
    row["flop"] = flops
    precision = "fp64" if dtype == "float64" else "fp32"
    peak = limits[f"fma_{precision}_GFLOPs"]
    return common.add_fractions(row, median, flops, peak * 1e9 if peak else None,
                                f"{precision} FMA peak")


def describe(limits: dict) -> str:
    """One sentence for the results: the peak's factors and the copy bandwidth."""
    if limits.get("fma_peak_note", "").startswith("measured"):
        table = limits["fma_table_fp32_GFLOPs"]
        peak = (f"FMA peak {limits['fma_fp32_GFLOPs']:.0f} GFLOP/s float32, "
                f"{limits['fma_fp64_GFLOPs']:.0f} float64 ({limits['fma_peak_note']}; "
                f"{limits['threads']} threads x {limits['lanes_fp32']} float32 lanes "
                f"({limits['isa']}) x 2 FLOP"
                + (f", table: x {limits['fma_pipes']} pipes x {limits['clock_GHz']:.2f} GHz "
                   f"= {table:.0f})" if table else ")"))
    elif limits["clock_GHz"]:
        peak = (f"FMA peak {limits['threads']} threads x {limits['fma_pipes']} FMA pipes "
                f"({limits['fma_pipes_source']}) x {limits['lanes_fp32']} float32 lanes "
                f"({limits['isa']}) x 2 FLOP x {limits['clock_GHz']:.2f} GHz (measured: "
                f"{limits['clock_note']}) = {limits['fma_fp32_GFLOPs']:.0f} GFLOP/s float32, "
                f"{limits['fma_fp64_GFLOPs']:.0f} float64")
    else:
        peak = f"no FMA peak (clock {limits['clock_note']}): FLOP rows show no fraction"
    return (f"Hardware limits: {peak}; copy bandwidth {limits['copy_GBps']:.1f} GB/s "
            f"(read + write, {COPY_BYTES >> 20} MiB on {limits['threads']} threads).")
