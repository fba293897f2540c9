"""The GPU side of the benchmarks: timing on the device, the measured ceilings
each row is a fraction of, what the device is, and the GPU rows' tables.

fusednn runs on CuPy arrays, the peer (cuDNN, cuBLAS, torch's fused kernels) on
torch CUDA tensors; both queue their work on the legacy default stream (CuPy's
Stream.null, torch's default stream), which require_gpu checks, so one pair of
CUDA events on that stream brackets whichever library runs between them.

Ceilings (measured once per process, METHOD.md's two numbers): the bandwidth of
a 1 GiB device-to-device copy, counting bytes read plus bytes written, and the
rate of an 8192^3 float32 matrix product through torch (cuBLAS) with TF32 off
and on. Memory-bound rows show bytes / time as a fraction of the copy
bandwidth; arithmetic-bound rows FLOP / time as a fraction of the product's
rate in the same precision.
"""
from __future__ import annotations

import re

import numpy as np
from fusednn import backend
from fusednn.backend import cupy_module

from . import common

COPY_BYTES = 1 << 30
GEMM_SIZE = 8192
# Written between timed calls so that no input is still in L2 (60 MB on an H200):
# every row reads its operands from device memory, as a large model's layers do.
L2_FLUSH_BYTES = 256 << 20

# Where the torch side runs: 'cuda' (the tests point it at 'cpu', with CuPy stand-ins).
TORCH_DEVICE = "cuda"

_ceilings = {}


class GpuUnavailable(Exception):
    """No usable GPU for the GPU rows; the message says what is missing."""


def require_gpu():
    """(cupy, torch) with a GPU usable by both, each on the legacy default stream."""
    try:
        backend.check_device("cuda")
    except RuntimeError as e:
        raise GpuUnavailable(str(e)) from None
    try:
        import torch
    except ImportError:
        raise GpuUnavailable("PyTorch is not installed; it is the reference (cuDNN)") from None
    if not torch.cuda.is_available():
        raise GpuUnavailable(f"this PyTorch ({torch.__version__}) sees no GPU; the GPU rows need "
                             "a CUDA build of torch as the reference")
    cp = cupy_module()
    if cp.cuda.get_current_stream().ptr != 0 or torch.cuda.current_stream().cuda_stream != 0:
        raise GpuUnavailable("CuPy and torch must both run on the legacy default stream (is "
                             "CUPY_CUDA_PER_THREAD_DEFAULT_STREAM set?)")
    return cp, torch


def _tf32_settings(torch) -> list:
    """(object, attribute) of each of torch's TF32 switches: the fp32_precision settings
    where this torch has them (mixing them with the older allow_tf32 flags is an error in
    torch >= 2.9), else the allow_tf32 flags."""
    backends = torch.backends
    if hasattr(backends.cuda.matmul, "fp32_precision"):
        return [(backends.cuda.matmul, "fp32_precision"), (backends.cudnn.conv, "fp32_precision"),
                (backends.cudnn.rnn, "fp32_precision")]
    return [(backends.cuda.matmul, "allow_tf32"), (backends.cudnn, "allow_tf32")]


def torch_copy(torch, array):
    """A copy of a NumPy array on torch's device (never a view: torch's updates must not
    reach the arrays fusednn's inputs are copied from)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(TORCH_DEVICE, copy=True)


def set_tf32(torch, enabled: bool) -> None:
    """TF32 on or off for torch's float32 matrix products, convolutions and RNNs."""
    for owner, name in _tf32_settings(torch):
        setattr(owner, name, ("tf32" if enabled else "ieee") if name == "fp32_precision"
                else enabled)


def tf32_state(torch) -> list:
    return [getattr(owner, name) for owner, name in _tf32_settings(torch)]


def restore_tf32(torch, state: list) -> None:
    for (owner, name), value in zip(_tf32_settings(torch), state):
        setattr(owner, name, value)


def time_interleaved(contenders: dict, *, warmup: int, repeats: int, flush=None) -> dict:
    """contenders: name -> zero-argument callable queueing GPU work. Returns name -> median
    seconds between CUDA events recorded before and after each call, in interleaved rounds
    as common.time_interleaved does; flush() runs untimed before each call."""
    cp = cupy_module()
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    cp.cuda.runtime.deviceSynchronize()
    stream = cp.cuda.Stream.null
    start, end = cp.cuda.Event(), cp.cuda.Event()
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            if flush is not None:
                flush()
            start.record(stream)
            fn()
            end.record(stream)
            end.synchronize()
            samples[name].append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    cp.cuda.runtime.deviceSynchronize()
    return {name: float(np.median(times)) for name, times in samples.items()}


def l2_flush(cp):
    """A callable that overwrites a buffer several times the size of L2."""
    buffer = cp.empty(L2_FLUSH_BYTES, dtype=cp.uint8)
    return lambda: buffer.fill(1)


def ceilings(cp, torch, *, repeats: int = 10) -> dict:
    """{'copy_GBps', 'gemm_fp32_TFLOPs', 'gemm_tf32_TFLOPs'}: measured once per process."""
    if not _ceilings:
        src = cp.random.standard_normal(COPY_BYTES // 4, dtype=cp.float32)
        dst = cp.empty_like(src)

        def copy():
            cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, src.nbytes,
                                        cp.cuda.runtime.memcpyDeviceToDevice, 0)

        seconds = time_interleaved({"copy": copy}, warmup=3, repeats=repeats)["copy"]
        _ceilings["copy_GBps"] = 2 * src.nbytes / seconds / 1e9
        del src, dst
        # Random operands: zeros run faster on the tensor cores than real data.
        generator = torch.Generator(device=TORCH_DEVICE).manual_seed(0)
        a, b = (torch.randn(GEMM_SIZE, GEMM_SIZE, device=TORCH_DEVICE, generator=generator)
                for _ in range(2))
        c = torch.empty_like(a)
        saved = tf32_state(torch)
        for precision in ("fp32", "tf32"):
            set_tf32(torch, precision == "tf32")
            seconds = time_interleaved({"gemm": lambda: torch.matmul(a, b, out=c)}, warmup=3,
                                       repeats=repeats)["gemm"]
            _ceilings[f"gemm_{precision}_TFLOPs"] = 2.0 * GEMM_SIZE**3 / seconds / 1e12
        restore_tf32(torch, saved)
        del a, b, c
        if TORCH_DEVICE == "cuda":
            torch.cuda.empty_cache()
        cp.get_default_memory_pool().free_all_blocks()
    return dict(_ceilings)


def device_info(cp, torch) -> dict:
    """The GPU, driver, CUDA, cuDNN and library versions a GPU result must carry."""
    import fusednn._C as _C

    properties = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = properties.get("name", b"unknown GPU")
    name = name.decode() if isinstance(name, bytes) else str(name)
    runtime = cp.cuda.runtime
    return {
        "gpu": name,
        "gpu_slug": gpu_slug(name),
        "compute_capability": f"{properties.get('major')}.{properties.get('minor')}",
        "multiprocessors": properties.get("multiProcessorCount"),
        "memory_GiB": round(properties.get("totalGlobalMem", 0) / 2**30, 1),
        "l2_MiB": round(properties.get("l2CacheSize", 0) / 2**20, 1),
        "driver": version_text(runtime.driverGetVersion()),
        "cuda_runtime": version_text(runtime.runtimeGetVersion()),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cupy": cp.__version__,
        "fusednn_build": dict(_C.build_info()),
        "cpu": common.cpu_model(),
        "load_average_before": common.load_average(),
    }


def version_text(version: int) -> str:
    """CUDA's integer version (major * 1000 + minor * 10) as 'major.minor'."""
    return f"{version // 1000}.{version % 1000 // 10}"


def gpu_slug(name: str) -> str:
    """The GPU's name as a results-file word: 'NVIDIA H200' -> 'h200'."""
    words = re.sub(r"\bnvidia\b", "", name.lower())
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-") or "gpu"


def relative_error(ours, reference) -> float:
    """||ours - reference|| / ||reference|| in float64 (NaN anywhere gives NaN)."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"shapes differ: {ours.shape} and {reference.shape}")
    norm = np.linalg.norm(reference)
    return float(np.linalg.norm(ours - reference) / (norm if norm > 0 else 1.0))


def check_close(pairs: dict, tolerance: float) -> str:
    """pairs: name -> (ours, reference) host arrays. Returns 'rel err <worst>'; raises
    AssertionError naming the pair whose relative error is above tolerance or NaN."""
    worst = 0.0
    for name, (ours, reference) in pairs.items():
        error = relative_error(ours, reference)
        if not error <= tolerance:
            raise AssertionError(f"{name}: relative error {error:.2e} above {tolerance:.0e}")
        worst = max(worst, error)
    return f"rel err {worst:.1e}"


def measure_row(row: dict, make, *, warmup: int, repeats: int, flush, bytes_moved=None,
                flops=None, precision="fp32", ceiling: dict) -> dict:
    """Fills row (its name, pass and sizes already in) with times, ratio and fractions.

    make() -> (contenders {'fusednn': fn, 'torch': fn, ...}, check); check() compares
    the results (returns a short text, raises AssertionError) before anything is timed.
    An exception goes into row['error'] and nothing is timed: the suite carries on.
    """
    try:
        contenders, check = make()
        row["check"] = check()
        median = time_interleaved(contenders, warmup=warmup, repeats=repeats, flush=flush)
    except Exception as e:  # a kernel that never ran before may fail in any way
        row["error"] = f"{type(e).__name__}: {e}"
        return row
    fill_times(row, median, bytes_moved=bytes_moved, flops=flops, precision=precision,
               ceiling=ceiling)
    return row


def fill_times(row: dict, median: dict, *, bytes_moved=None, flops=None, precision="fp32",
               ceiling: dict) -> dict:
    """Adds <lib>_ms, the ratio torch / fusednn and each library's fraction of its ceiling:
    bytes over the copy bandwidth when bytes_moved is given, else FLOP over the matrix
    product's rate in `precision` ('fp32' or 'tf32')."""
    if bytes_moved:
        common.add_fractions(row, median, bytes_moved, ceiling.get("copy_GBps", 0) * 1e9, "copy")
    else:
        common.add_fractions(row, median, flops,
                             ceiling.get(f"gemm_{precision}_TFLOPs", 0) * 1e12,
                             f"{precision} GEMM")
    for lib, seconds in median.items():
        row[f"{lib.replace(' ', '_')}_ms"] = seconds * 1e3
    if "torch" in median:
        row["torch_over_fusednn"] = median["torch"] / median["fusednn"]
    return row


def format_row(row: dict) -> str:
    """One console line per row."""
    text = f"{row['name']:44s} {row['pass']:22s}"
    if "error" in row:
        return text + f" FAILED {row['error']}"
    percent = common.percent
    text += f" fusednn {row['fusednn_ms']:9.3f} ms ({percent(row['fusednn_fraction']):>4s})"
    if "torch_ms" in row:
        text += (f"  torch {row['torch_ms']:9.3f} ms ({percent(row['torch_fraction']):>4s})"
                 f"  x{row['torch_over_fusednn']:.2f}")
    return text + f"  [{row['check']}]"


def markdown_table(rows: list) -> str:
    """The GPU rows as one table: times, ratio, fractions of the ceiling, and the check."""
    header = ["layer / op", "pass", "fusednn ms", "torch ms", "torch / fusednn",
              "fusednn of ceiling", "torch of ceiling", "ceiling", "check"]
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["name"], r["pass"], "", "", "", "", "", "",
                          "FAILED: " + r["error"].replace("|", "/")])
            continue
        table.append([r["name"], r["pass"], f"{r['fusednn_ms']:.3f}",
                      f"{r['torch_ms']:.3f}" if "torch_ms" in r else "",
                      f"{r['torch_over_fusednn']:.2f}" if "torch_over_fusednn" in r else "",
                      common.percent(r.get("fusednn_fraction")),
                      common.percent(r.get("torch_fraction")),
                      r.get("ceiling", ""), r["check"]])
    return common.markdown_table(header, table)


def report(suite: str, title: str, info: dict, rows: list, args, notes: str = "") -> int:
    """Prints and (unless args.no_write) saves <args.out>/<suite>-<gpu>-<date>.json and .md;
    returns the exit status: 1 when a row failed its check or raised, else 0."""
    info["load_average_after"] = common.load_average()
    ceiling = info["ceilings"]
    markdown = (
        f"# {title}\n\n{info['gpu']} (compute capability {info['compute_capability']}, "
        f"{info['multiprocessors']} SMs, {info['l2_MiB']} MiB L2), driver {info['driver']}, "
        f"CUDA runtime {info['cuda_runtime']}; torch {info['torch']} (CUDA {info['torch_cuda']}, "
        f"cuDNN {info['cudnn']}), CuPy {info['cupy']}; fusednn built for "
        f"{info['fusednn_build'].get('cuda_archs')}. Measured ceilings: copy "
        f"{ceiling['copy_GBps']:.0f} GB/s (read + write), {GEMM_SIZE}^3 float32 GEMM "
        f"{ceiling['gemm_fp32_TFLOPs']:.1f} TFLOP/s (TF32 off), "
        f"{ceiling['gemm_tf32_TFLOPs']:.1f} TFLOP/s (TF32 on). Median of {info['repeats']} "
        "interleaved repeats timed with CUDA events, L2 flushed before each; load average "
        f"before {info['load_average_before']}, after {info['load_average_after']}. "
        "Ratio = torch time / fusednn time (> 1: fusednn is faster)." + notes + "\n\n"
        + markdown_table(rows))
    print()
    print(markdown)
    paths = common.write_results(args, f"{suite}-{info['gpu_slug']}",
                                 {"info": info, "results": rows}, markdown)
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths))
    failed = [r for r in rows if "error" in r]
    if failed:
        print(f"{len(failed)} of {len(rows)} GPU rows FAILED", flush=True)
    return 1 if failed else 0


def start(cp, torch, args, precision_note: str) -> dict:
    """The info every GPU suite records, ceilings included, printed as one line."""
    info = device_info(cp, torch)
    info["ceilings"] = ceilings(cp, torch)
    info.update(dtype="float32", repeats=args.repeats, warmup=args.warmup,
                cudnn_benchmark=bool(torch.backends.cudnn.benchmark), precision=precision_note)
    c = info["ceilings"]
    print(f"{info['gpu']}, driver {info['driver']}, torch {info['torch']} (cuDNN {info['cudnn']}), "
          f"copy {c['copy_GBps']:.0f} GB/s, GEMM fp32 {c['gemm_fp32_TFLOPs']:.1f} / tf32 "
          f"{c['gemm_tf32_TFLOPs']:.1f} TFLOP/s, load {info['load_average_before']}", flush=True)
    return info


def main_or_exit(run_gpu, args) -> None:
    """Runs a suite's GPU rows; a missing GPU is one clear line (exit 1), not a traceback."""
    try:
        cp, torch = require_gpu()
    except GpuUnavailable as e:
        raise SystemExit(f"--device cuda: {e}") from None
    status = run_gpu(cp, torch, args)
    if status:
        raise SystemExit(status)
