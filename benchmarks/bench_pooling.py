"""CPU max and average pooling, forward and backward: fusednn.ops vs PyTorch CPU
(channels_last tensors, so both read the same NHWC memory), side by side in one
process on the same inputs.

Shapes: the two pools of the lecture CNN at batch 64 (26x26x32 -> 13x13 and
11x11x64 -> 5x5, 2x2 windows), an overlapping 3x3 / stride 2 pool and a larger
image. Max pooling forward is timed with argmax on both sides (fusednn always
keeps it; torch's max_pool2d_with_indices, which is what autograd runs);
backward gets that argmax on both sides (aten's *_backward ops directly, so
no autograd bookkeeping is timed). Every library gets the same thread count
(OMP_NUM_THREADS, else all cores); warm-up calls, then `--repeats` rounds that
time each library once per round, interleaved, so that load changes on the
machine hit both alike; the median per library is reported, and the ratio
torch time / fusednn time (> 1: fusednn is faster).

Writes benchmarks/results/pooling-cpu-<date>.json and .md unless --no-write
(pooling-cpu-<date>-<n>threads.* when OMP_NUM_THREADS is below the core count).
    python benchmarks/bench_pooling.py [--repeats 50]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import time

import numpy as np

import fusednn
from fusednn import _C, ops

# (name, (N, H, W, C), pool, stride)
SHAPES = [
    ("lecture CNN pool 1: 26x26x32 -> 13x13", (64, 26, 26, 32), 2, 2),
    ("lecture CNN pool 2: 11x11x64 -> 5x5", (64, 11, 11, 64), 2, 2),
    ("overlapping 3x3/2: 27x27x64 -> 13x13", (32, 27, 27, 64), 3, 2),
    ("large 2x2: 112x112x64 -> 56x56", (16, 112, 112, 64), 2, 2),
]

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def thread_count() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def runners(x, dy, pool, stride, torch):
    """{(mode, direction): {library: zero-argument callable}} plus the outputs to compare."""
    shape = x.shape
    y_max, argmax = ops.max_pool2d(x, pool, stride)
    calls = {
        ("max", "forward"): {"fusednn": lambda: ops.max_pool2d(x, pool, stride)},
        ("max", "backward"): {
            "fusednn": lambda: ops.max_pool2d_backward(dy, argmax, shape, pool, stride)},
        ("avg", "forward"): {"fusednn": lambda: ops.avg_pool2d(x, pool, stride)},
        ("avg", "backward"): {"fusednn": lambda: ops.avg_pool2d_backward(dy, shape, pool, stride)},
    }
    if torch is None:
        return calls
    aten = torch.ops.aten
    nchw = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2)  # noqa: E731 (a channels_last view)
    tx, tdy = nchw(x), nchw(dy)
    assert tx.is_contiguous(memory_format=torch.channels_last)
    k, s, p, d = [pool, pool], [stride, stride], [0, 0], [1, 1]
    ty, tindices = aten.max_pool2d_with_indices(tx, k, s, p, d, False)
    # Same answer before timing (max pooling selects, so exactly).
    if not np.array_equal(ty.permute(0, 2, 3, 1).numpy(), y_max):
        raise SystemExit("fusednn and torch disagree on max pooling")
    calls[("max", "forward")]["torch"] = lambda: aten.max_pool2d_with_indices(tx, k, s, p, d, False)
    calls[("max", "backward")]["torch"] = lambda: aten.max_pool2d_with_indices_backward(
        tdy, tx, k, s, p, d, False, tindices)
    calls[("avg", "forward")]["torch"] = lambda: aten.avg_pool2d(tx, k, s, p, False, True, None)
    calls[("avg", "backward")]["torch"] = lambda: aten.avg_pool2d_backward(
        tdy, tx, k, s, p, False, True, None)
    return calls


def time_interleaved(calls, repeats, warmup):
    for _ in range(warmup):
        for call in calls.values():
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    threads = thread_count()
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            torch = None

    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "fusednn": fusednn.__version__,
        "fusednn_build": {k: v for k, v in _C.build_info().items() if not k.startswith("cuda")},
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "dtype": "float32",
        "repeats": args.repeats,
        "load_average_before": load_average(),
    }
    print(f"{info['cpu']}, {threads} threads, torch {info['torch']}, "
          f"load {info['load_average_before']}")

    rng = np.random.default_rng(0)
    rows = []
    for name, shape, pool, stride in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        out_shape = ops.avg_pool2d(x, pool, stride).shape
        dy = rng.standard_normal(out_shape).astype(np.float32)
        for (mode, direction), calls in runners(x, dy, pool, stride, torch).items():
            median = time_interleaved(calls, args.repeats, args.warmup)
            row = {"shape": name, "input": list(shape), "output": list(out_shape), "pool": pool,
                   "stride": stride, "op": mode, "pass": direction}
            for lib, seconds in median.items():
                row[f"{lib}_ms"] = seconds * 1e3
            if "torch" in median:
                row["torch_over_fusednn"] = median["torch"] / median["fusednn"]
            rows.append(row)
            print(format_row(row))
    info["load_average_after"] = load_average()
    print(f"load after: {info['load_average_after']}")

    if not args.no_write:
        RESULTS_DIR.mkdir(exist_ok=True)
        # A run with fewer threads than cores keeps its own file beside the default one.
        suffix = "" if threads == os.cpu_count() else f"-{threads}threads"
        stem = RESULTS_DIR / f"pooling-cpu-{datetime.date.today().isoformat()}{suffix}"
        stem.with_suffix(".json").write_text(
            json.dumps({"info": info, "results": rows}, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(info, rows))
        print(f"wrote {stem}.json and .md")


def format_row(row):
    text = (f"{row['shape']:40s} {row['op']} {row['pass']:8s} "
            f"fusednn {row['fusednn_ms']:8.3f} ms")
    if "torch_ms" in row:
        text += f"  torch {row['torch_ms']:8.3f} ms  x{row['torch_over_fusednn']:.2f}"
    return text


def markdown(info, rows):
    has_torch = any("torch_ms" in r for r in rows)
    lines = [
        f"# CPU pooling, {info['date']}",
        "",
        f"{info['cpu']}, {info['threads']} threads; fusednn {info['fusednn']}; torch "
        f"{info['torch']} (channels_last). float32. Load average before "
        f"{info['load_average_before']}, after {info['load_average_after']}. Median of "
        f"{info['repeats']} interleaved repeats. Ratio = torch time / fusednn time "
        "(> 1: fusednn is faster).",
        "",
        "| shape | op | pass | fusednn ms |" + (" torch ms | ratio |" if has_torch else ""),
        "|---|---|---|---:|" + ("---:|---:|" if has_torch else ""),
    ]
    for r in rows:
        line = f"| {r['shape']} | {r['op']} | {r['pass']} | {r['fusednn_ms']:.3f} |"
        if has_torch:
            line += f" {r['torch_ms']:.3f} | {r['torch_over_fusednn']:.2f} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
