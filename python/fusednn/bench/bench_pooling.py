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
torch time / fusednn time (> 1: fusednn is faster). Every row shows the bytes
the op must move per second (pooling_bytes) as a fraction of the measured copy
bandwidth (see limits.py); the smaller shapes fit in the caches and can exceed it.

GPU rows (--device cuda): the same ops on larger batches (the lecture pools at
batch 256, the overlapping pool at 128, the large image at 64), fusednn on CuPy
arrays vs torch CUDA channels_last tensors, each checked against torch first
(max pooling exactly, average pooling to 1e-5 relative) and shown as a
fraction of the measured copy bandwidth, for the bytes the op must move (see
pooling_bytes).

Writes <--out>/pooling-cpu-<date>.json and .md unless --no-write
(pooling-cpu-<date>-<n>threads.* when OMP_NUM_THREADS is below the core count;
pooling-<gpu>-<date>.* for the GPU rows).
    python -m fusednn.bench.bench_pooling [--repeats 50] [--device cuda [--quick]]
"""
from __future__ import annotations

import os

import numpy as np

from . import common, cpu, gpu, limits

from fusednn import ops

DEVICES = ("cpu", "cuda")

# (name, (N, H, W, C), pool, stride)
SHAPES = [
    ("lecture CNN pool 1: 26x26x32 -> 13x13", (64, 26, 26, 32), 2, 2),
    ("lecture CNN pool 2: 11x11x64 -> 5x5", (64, 11, 11, 64), 2, 2),
    ("overlapping 3x3/2: 27x27x64 -> 13x13", (32, 27, 27, 64), 3, 2),
    ("large 2x2: 112x112x64 -> 56x56", (16, 112, 112, 64), 2, 2),
]

# GPU rows: larger batches, so that the larger images are well past the L2 cache.
GPU_BATCHES = (256, 256, 128, 64)


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


def main(argv=None):
    parser = common.suite_parser(
        __doc__.split("\n\n")[0], repeats=50, warmup=5,
        quick_help="GPU rows of the first and last shape only (the CPU rows are unchanged)")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        gpu.main_or_exit(run_gpu, args)
        return

    threads, torch, info = cpu.start(args, args.no_torch)
    info["dtype"] = "float32"
    hardware = info["limits"]

    rng = np.random.default_rng(0)
    rows = []
    for name, shape, pool, stride in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        out_shape = ops.avg_pool2d(x, pool, stride).shape
        dy = rng.standard_normal(out_shape).astype(np.float32)
        for (mode, direction), calls in runners(x, dy, pool, stride, torch).items():
            median = common.time_interleaved(calls, warmup=args.warmup, repeats=args.repeats)
            row = {"shape": name, "input": list(shape), "output": list(out_shape), "pool": pool,
                   "stride": stride, "op": mode, "pass": direction}
            for lib, seconds in median.items():
                row[f"{lib}_ms"] = seconds * 1e3
            if "torch" in median:
                row["torch_over_fusednn"] = median["torch"] / median["fusednn"]
            rows.append(limits.fill(row, median, hardware, bytes_moved=pooling_bytes(
                mode, direction, shape, out_shape)))
            print(format_row(row))
    info["load_average_after"] = common.load_average()
    print(f"load after: {info['load_average_after']}")

    # A run with fewer threads than cores keeps its own file beside the default one.
    tag = "" if threads == os.cpu_count() else f"{threads}threads"
    paths = common.write_results(args, "pooling-cpu", {"info": info, "results": rows},
                                 markdown(info, rows), tag)
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths))


def format_row(row):
    text = (f"{row['shape']:40s} {row['op']} {row['pass']:8s} "
            f"fusednn {row['fusednn_ms']:8.3f} ms")
    if "torch_ms" in row:
        text += f"  torch {row['torch_ms']:8.3f} ms  x{row['torch_over_fusednn']:.2f}"
    return text + f"  ({common.percent(row['fusednn_fraction'])} of {row['ceiling']})"


def markdown(info, rows):
    has_torch = any("torch_ms" in r for r in rows)
    header = ["shape", "op", "pass", "fusednn ms"] + (["torch ms", "ratio"] if has_torch else [])
    header += ["fusednn of limit", "torch of limit", "limit"]
    table = []
    for r in rows:
        line = [r["shape"], r["op"], r["pass"], f"{r['fusednn_ms']:.3f}"]
        if has_torch:
            line += [f"{r['torch_ms']:.3f}", f"{r['torch_over_fusednn']:.2f}"]
        table.append(line + common.fraction_cells(r))
    return (f"# CPU pooling, {info['date']}\n\n{info['cpu']}, {info['threads']} threads; "
            f"fusednn {info['fusednn']}; torch {info['torch']} (channels_last). float32. Load "
            f"average before {info['load_average_before']}, after {info['load_average_after']}. "
            f"Median of {info['repeats']} interleaved repeats. Ratio = torch time / fusednn time "
            f"(> 1: fusednn is faster). {limits.describe(info['limits'])}\n\n"
            + common.markdown_table(header, table, "lllr" + "rr" * has_torch + "rrl"))


# ----- GPU rows -------------------------------------------------------------------
def pooling_bytes(mode, direction, input_shape, output_shape, index_bytes=4) -> int:
    """The fewest bytes a float32 pooling op moves: each input read once, each output
    written once (max forward writes y and its argmax; max backward reads dy and argmax
    and writes dx)."""
    inputs, outputs = 4 * int(np.prod(input_shape)), int(np.prod(output_shape))
    if direction == "forward":
        return inputs + outputs * (4 + (index_bytes if mode == "max" else 0))
    return outputs * (4 + (index_bytes if mode == "max" else 0)) + inputs


def gpu_shapes(quick: bool) -> list:
    shapes = [(f"{name}, batch {batch}", (batch,) + shape[1:], pool, stride)
              for (name, shape, pool, stride), batch in zip(SHAPES, GPU_BATCHES)]
    return [shapes[0], shapes[-1]] if quick else shapes


def gpu_pairs(cp, torch, x, dy, pool, stride):
    """{(mode, direction): make} for gpu.measure_row, each checked against torch."""
    aten = torch.ops.aten
    cx, cdy = cp.asarray(x), cp.asarray(dy)
    tx = gpu.torch_copy(torch, x).permute(0, 3, 1, 2)  # channels_last views
    tdy = gpu.torch_copy(torch, dy).permute(0, 3, 1, 2)
    k, s, p, d = [pool, pool], [stride, stride], [0, 0], [1, 1]
    ty, tindices = aten.max_pool2d_with_indices(tx, k, s, p, d, False)
    _, argmax = ops.max_pool2d(cx, pool, stride)
    nhwc = lambda t: t.permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731
    shape = x.shape

    def pair(ours, theirs, reference, tolerance):
        def check():
            result = ours()
            result = result[0] if isinstance(result, tuple) else result
            if tolerance == 0:
                if not np.array_equal(cp.asnumpy(result), reference):
                    raise AssertionError("max pooling differs from torch (it selects: exactly)")
                return "exact"
            return gpu.check_close({"out": (cp.asnumpy(result), reference)}, tolerance)
        return lambda: ({"fusednn": ours, "torch": theirs}, check)

    return {
        ("max", "forward"): pair(lambda: ops.max_pool2d(cx, pool, stride),
                                 lambda: aten.max_pool2d_with_indices(tx, k, s, p, d, False),
                                 nhwc(ty), 0),
        ("max", "backward"): pair(
            lambda: ops.max_pool2d_backward(cdy, argmax, shape, pool, stride),
            lambda: aten.max_pool2d_with_indices_backward(tdy, tx, k, s, p, d, False, tindices),
            nhwc(aten.max_pool2d_with_indices_backward(tdy, tx, k, s, p, d, False, tindices)),
            1e-6),
        ("avg", "forward"): pair(lambda: ops.avg_pool2d(cx, pool, stride),
                                 lambda: aten.avg_pool2d(tx, k, s, p, False, True, None),
                                 nhwc(aten.avg_pool2d(tx, k, s, p, False, True, None)), 1e-5),
        ("avg", "backward"): pair(
            lambda: ops.avg_pool2d_backward(cdy, shape, pool, stride),
            lambda: aten.avg_pool2d_backward(tdy, tx, k, s, p, False, True, None),
            nhwc(aten.avg_pool2d_backward(tdy, tx, k, s, p, False, True, None)), 1e-5),
    }


def run_gpu(cp, torch, args) -> int:
    info = gpu.start(cp, torch, args, "float32")
    flush = gpu.l2_flush(cp)
    rng = np.random.default_rng(0)
    rows = []
    for name, shape, pool, stride in gpu_shapes(args.quick):
        x = rng.standard_normal(shape, dtype=np.float32)
        out_shape = ops.avg_pool2d(x[:1], pool, stride).shape[1:]
        dy = rng.standard_normal((shape[0],) + out_shape, dtype=np.float32)
        for (mode, direction), make in gpu_pairs(cp, torch, x, dy, pool, stride).items():
            row = {"name": name, "pass": f"{mode} {direction}", "input": list(shape),
                   "pool": pool, "stride": stride}
            moved = pooling_bytes(mode, direction, shape, (shape[0],) + out_shape)
            rows.append(gpu.measure_row(row, make, warmup=args.warmup, repeats=args.repeats,
                                        flush=flush, bytes_moved=moved,
                                        ceiling=info["ceilings"]))
            print(gpu.format_row(rows[-1]), flush=True)
    return gpu.report("pooling", "GPU max and average pooling: fusednn vs torch (cuDNN/CUDA, "
                      "channels_last)", info, rows, args,
                      notes=" Bytes: each input read once, each output written once (argmax "
                            "as int32).")


if __name__ == "__main__":
    main()
