"""CPU GEMM: fusednn.ops.gemm.matmul vs numpy.matmul (its BLAS, usually OpenBLAS)
and, when installed, torch.matmul, side by side in one process on the same inputs.

Shapes: a square 1024^3 product, the im2col GEMMs of a small CNN (batch 64) and
the projections of an LSTM with 256 units (batch 64, 60 steps), forward and
backward. Every library gets the same thread count (OMP_NUM_THREADS, else all
cores). The libraries take turns in `--rounds` rounds, each timing a block of
calls after a pause that lets the previous library's thread pool go idle (see
time_in_rounds), so a load change on the machine hits all of them alike; the
median per library is reported as GFLOP/s (2*M*N*K / time) and as a fraction
of the CPU's FMA peak in the row's precision (see limits.py).

Writes <--out>/gemm-cpu-<date>[-<tag>].json and .md unless --no-write.
    python -m fusednn.bench.bench_gemm [--repeats 30] [--dtype float32 float64] [--tag TAG]
OpenBLAS chooses its kernels from the CPU it detects and may fall back to older
ones on a CPU it does not know; OPENBLAS_CORETYPE=SkylakeX (for example) forces
its AVX-512 kernels, and the results record the setting.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from . import common, cpu, limits

from fusednn import _C
from fusednn.ops import gemm

# (name, M, N, K, trans_a, trans_b)
SHAPES = [
    ("square 1024^3", 1024, 1024, 1024, False, False),
    ("square 1024^3, a.T @ b.T", 1024, 1024, 1024, True, True),
    ("conv 28x28x1 -> 26x26x32, 3x3 (im2col)", 64 * 26 * 26, 32, 9, False, False),
    ("conv 13x13x32 -> 11x11x64, 3x3", 64 * 11 * 11, 64, 288, False, False),
    ("conv 5x5x64 -> 3x3x64, 3x3", 64 * 3 * 3, 64, 576, False, False),
    ("conv 11x11x64 dW = cols.T @ dy", 576, 64, 64 * 11 * 11, True, False),
    ("conv 11x11x64 dcols = dy @ W.T", 64 * 11 * 11, 288, 64, False, True),
    ("lstm 256 recurrent h @ U", 64, 1024, 256, False, False),
    ("lstm 256 input x @ W (T=60, F=1)", 64 * 60, 1024, 1, False, False),
    ("lstm 256 dU = h.T @ dgates", 256, 1024, 64, True, False),
    ("lstm 256 dh = dgates @ U.T", 64, 256, 1024, False, True),
]

def numpy_blas() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


def make_operands(rng, M, N, K, trans_a, trans_b, dtype):
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    return a, b


def runners(a, b, trans_a, trans_b, torch):
    """name -> zero-argument callable computing op(a) @ op(b) into a preallocated output."""
    M = a.shape[1] if trans_a else a.shape[0]
    N = b.shape[0] if trans_b else b.shape[1]
    out_fd = np.empty((M, N), a.dtype)
    out_np = np.empty((M, N), a.dtype)
    # Transposed views, which NumPy hands to BLAS as transpose flags, not copies.
    a_np = a.T if trans_a else a
    b_np = b.T if trans_b else b
    calls = {
        "fusednn": lambda: gemm.matmul(a, b, out=out_fd, trans_a=trans_a, trans_b=trans_b),
        "numpy": lambda: np.matmul(a_np, b_np, out=out_np),
    }
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ta, tb = (ta.T if trans_a else ta), (tb.T if trans_b else tb)
        out_t = torch.empty((M, N), dtype=ta.dtype)
        calls["torch"] = lambda: torch.matmul(ta, tb, out=out_t)
    return calls, out_fd, out_np


def time_in_rounds(calls, repeats, rounds, settle):
    """Median seconds per call for each library.

    Each round times every library in turn, a block of repeats/rounds calls each
    after one untimed call. Between blocks the process sleeps `settle` seconds:
    a BLAS thread pool keeps spinning on the cores for a while after its last
    call (OpenBLAS's workers for tens of milliseconds), which would slow down
    whichever library ran next if calls of different libraries alternated.
    """
    per_block = max(1, repeats // rounds)
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            time.sleep(settle)
            call()
            for _ in range(per_block):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per library")
    parser.add_argument("--rounds", type=int, default=3,
                        help="blocks per library the repeats are spread over")
    parser.add_argument("--settle", type=float, default=0.3,
                        help="seconds of sleep between blocks, for idle thread pools")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                        choices=["float32", "float64"])
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--tag", default="", help="appended to the results file name")
    common.add_run_options(parser)
    args = parser.parse_args(argv)

    threads, torch, info = cpu.start(args, args.no_torch)
    hardware = info["limits"]
    info.update({
        "fusednn_gemm_simd": _C.gemm_simd_path(),
        "numpy_blas": numpy_blas(),
        # OpenBLAS picks its kernels from the CPU it detects; OPENBLAS_CORETYPE overrides
        # that (e.g. SkylakeX for its AVX-512 kernels where detection falls back to Haswell).
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "rounds": args.rounds,
        "settle_s": args.settle,
    })
    print(f"fusednn {info['fusednn_gemm_simd']}, NumPy {info['numpy']} ({info['numpy_blas']}, "
          f"OPENBLAS_CORETYPE={info['openblas_coretype']})")

    rng = np.random.default_rng(0)
    rows = []
    for dtype_name in args.dtype:
        dtype = np.dtype(dtype_name)
        for name, M, N, K, trans_a, trans_b in SHAPES:
            a, b = make_operands(rng, M, N, K, trans_a, trans_b, dtype)
            calls, out_fd, out_np = runners(a, b, trans_a, trans_b, torch)
            calls["fusednn"]()
            calls["numpy"]()
            # Same answer before timing: K * eps relative to the largest |entry|.
            scale = max(float(np.abs(out_np).max()), 1.0)
            if not np.allclose(out_fd, out_np, rtol=0, atol=4 * K * np.finfo(dtype).eps * scale):
                raise SystemExit(f"fusednn and NumPy disagree on {name} {dtype_name}")
            median = time_in_rounds(calls, args.repeats, args.rounds, args.settle)
            flops = 2.0 * M * N * K
            row = {"shape": name, "M": M, "N": N, "K": K, "trans_a": trans_a,
                   "trans_b": trans_b, "dtype": dtype_name}
            for lib, seconds in median.items():
                row[f"{lib}_ms"] = seconds * 1e3
                row[f"{lib}_gflops"] = flops / seconds / 1e9
            row["fusednn_vs_numpy"] = median["numpy"] / median["fusednn"]
            if "torch" in median:
                row["fusednn_vs_torch"] = median["torch"] / median["fusednn"]
            rows.append(limits.fill(row, median, hardware, flops=flops, dtype=dtype_name))
            print(format_row(row))
    info["load_average_after"] = common.load_average()
    print(f"load after: {info['load_average_after']}")

    paths = common.write_results(args, "gemm-cpu", {"info": info, "results": rows},
                                 markdown(info, rows), args.tag)
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths))


def format_row(row):
    text = (f"{row['dtype']:7s} {row['shape']:40s} M={row['M']:6d} N={row['N']:5d} "
            f"K={row['K']:5d}  fusednn {row['fusednn_gflops']:7.1f} "
            f"({common.percent(row['fusednn_fraction'])})  numpy {row['numpy_gflops']:7.1f}")
    if "torch_gflops" in row:
        text += f"  torch {row['torch_gflops']:7.1f}"
    text += f"  GFLOP/s   x{row['fusednn_vs_numpy']:.2f} vs numpy"
    if "fusednn_vs_torch" in row:
        text += f"  x{row['fusednn_vs_torch']:.2f} vs torch"
    return text


def markdown(info, rows):
    has_torch = any("torch_gflops" in r for r in rows)
    header = ["dtype", "shape", "M", "N", "K", "fusednn GFLOP/s", "NumPy GFLOP/s",
              "fusednn / NumPy"] + (["torch GFLOP/s", "fusednn / torch"] if has_torch else [])
    header += ["NumPy of limit", "fusednn of limit", "torch of limit", "limit"]
    table = []
    for r in rows:
        line = [r["dtype"], r["shape"], r["M"], r["N"], r["K"], f"{r['fusednn_gflops']:.1f}",
                f"{r['numpy_gflops']:.1f}", f"{r['fusednn_vs_numpy']:.2f}"]
        if has_torch:
            line += [f"{r['torch_gflops']:.1f}", f"{r['fusednn_vs_torch']:.2f}"]
        table.append(line + [common.percent(r.get("numpy_fraction"))]
                     + common.fraction_cells(r))
    return (
        f"# CPU GEMM, {info['date']}\n\n"
        f"{info['cpu']}, {info['threads']} threads; fusednn {info['fusednn']} "
        f"({info['fusednn_gemm_simd']} micro-kernel); NumPy {info['numpy']} with "
        f"{info['numpy_blas']} (OPENBLAS_CORETYPE={info['openblas_coretype']}); "
        f"torch {info['torch']}. Load average before "
        f"{info['load_average_before']}, after {info['load_average_after']}. "
        f"Median of {info['repeats']} calls per library in {info['rounds']} alternating blocks. "
        f"Ratios > 1: fusednn is faster. {limits.describe(info['limits'])}\n\n"
        + common.markdown_table(header, table, "llrrrrrr" + "rr" * has_torch + "rrrl"))


if __name__ == "__main__":
    main()
