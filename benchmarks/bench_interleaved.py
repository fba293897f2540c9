"""The lecture CNN's inference next to PyTorch in one process, and at a new batch size:
fusednn with its buffer pool, fusednn without it (the allocation before the pool),
and torch, side by side, in time and in page faults per call.

Rows (batch-256 inference, after training steps at batch 64):
- alone: each library's predict called over and over;
- interleaved: rounds of a grad-enabled torch forward (whose tensors torch frees
  when it returns) followed by fusednn's predict, each timed; torch's calls in
  those rounds give its interleaved row;
- first call at a new batch size: in a fresh process per repeat, training steps
  of both libraries at batch 64 (bench_conv's lecture CNN training step), then the
  first, and then the second, batch-256 inference of a new model; and a predict of
  1,000 samples at batch 256 (its last batch holds 232) the first and the second time.
Page faults: the process's minor faults (getrusage ru_minflt) during the call; unlike
times they do not depend on the load of a shared machine. Fresh memory faults once
per page (or huge page) on its first write, which is what the pool avoids.

Medians over rounds; the ratio is torch time / fusednn time (> 1: fusednn faster).
Writes benchmarks/results/interleaved-cpu-<date>.json and .md unless --no-write.
    python benchmarks/bench_interleaved.py [--repeats 30] [--fresh-processes 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_conv  # noqa: E402
import common  # noqa: E402

from fusednn import buffer_pool  # noqa: E402

BATCH = 256
SAMPLES_WITH_SHORT_LAST_BATCH = 1000


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measured(fn):
    """(seconds, minor page faults) of one call."""
    faults, start = minor_faults(), time.perf_counter()
    fn()
    return time.perf_counter() - start, minor_faults() - faults


def inference_calls(torch):
    """{library: predict at batch 256} after three training steps of each at batch 64."""
    train = bench_conv.training_contenders(torch)
    for step in train.values():
        for _ in range(3):
            step()
    x = np.random.default_rng(1).random((BATCH, 28, 28, 1), dtype=np.float32)
    model = bench_conv.lecture_cnn()
    calls = {"fusednn": lambda: model.predict(x, batch_size=BATCH)}
    if torch is not None:
        net = bench_conv.torch_lecture_cnn(torch)
        tx = torch.from_numpy(x).permute(0, 3, 1, 2)
        calls["torch"] = lambda: net(tx)  # grad-enabled, as a training script's evaluation
    return calls, model, x


def rounds(sequence, repeats: int) -> dict:
    """sequence: [(label, call)], run in order `repeats` times after one warm-up round.
    Returns label -> (median ms, median faults)."""
    for _, fn in sequence:
        fn()
    samples = {label: [] for label, _ in sequence}
    for _ in range(repeats):
        for label, fn in sequence:
            samples[label].append(measured(fn))
    return {label: (1e3 * statistics.median(s for s, _ in runs),
                    statistics.median(f for _, f in runs)) for label, runs in samples.items()}


def steady_rows(torch, repeats: int) -> dict:
    calls, _, _ = inference_calls(torch)
    pool_limit = buffer_pool.limit()
    results = {}
    for pool in ("off", "on"):  # off first: the allocation fusednn had before the pool
        buffer_pool.set_limit(0 if pool == "off" else pool_limit)
        fused = f"fusednn (pool {pool})"
        results[("alone", fused)] = rounds([(fused, calls["fusednn"])], repeats)[fused]
        if torch is not None:
            both = rounds([("torch", calls["torch"]), ("fusednn", calls["fusednn"])], repeats)
            for library, row in both.items():
                results[(f"interleaved, fusednn pool {pool}", library)] = row
    if torch is not None:
        results[("alone", "torch")] = rounds([("torch", calls["torch"])], repeats)["torch"]
    return results


def first_call_child(library: str) -> dict:
    """In a fresh process: times and faults of the first and second batch-256 inference,
    and of the first and second predict of 1,000 samples."""
    torch = common.import_torch(common.thread_count())
    if library == "fusednn (pool off)":
        buffer_pool.set_limit(0)
    calls, model, x = inference_calls(torch)
    call = calls["torch" if library == "torch" else "fusednn"]
    out = {"first batch 256": measured(call), "second batch 256": measured(call)}
    if library != "torch":
        many = np.concatenate([x] * 4)[:SAMPLES_WITH_SHORT_LAST_BATCH]
        for when in ("first", "second"):
            out[f"{when} predict of {SAMPLES_WITH_SHORT_LAST_BATCH}"] = measured(
                lambda: model.predict(many, batch_size=BATCH))
    return out


def first_call_rows(libraries, processes: int) -> dict:
    samples = {}
    for _ in range(processes):
        for library in libraries:
            done = subprocess.run([sys.executable, __file__, "--first-call-child", library],
                                  check=True, capture_output=True, text=True)
            for case, sample in json.loads(done.stdout.splitlines()[-1]).items():
                samples.setdefault((case, library), []).append(sample)
    return {key: (1e3 * statistics.median(s for s, _ in runs),
                  statistics.median(f for _, f in runs)) for key, runs in samples.items()}


def markdown(info: dict, rows: dict) -> str:
    lines = [f"# fusednn next to PyTorch in one process: the lecture CNN's inference\n",
             f"{info['date']}, {info['cpu']}, {info['threads']} threads, torch {info['torch']}, "
             f"load average before {info['load_average_before']}, after "
             f"{info['load_average_after']}. {info['repeats']} rounds per steady row, "
             f"{info['fresh_processes']} fresh processes per first-call row; medians.\n"]
    table = []
    for (case, library), (ms, faults) in rows.items():
        ratio = ""
        torch_row = rows.get((case, "torch"))
        if library != "torch" and torch_row is not None:
            ratio = f"{torch_row[0] / ms:.2f}x"
        table.append([case, library, f"{ms:.2f}", f"{faults:.0f}", ratio])
    lines.append(common.markdown_table(["case", "library", "ms", "page faults", "torch / fusednn"],
                                       table, "llrrr"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--fresh-processes", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--first-call-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.first_call_child:
        print(json.dumps(first_call_child(args.first_call_child)))
        return

    threads = common.thread_count()
    torch = common.import_torch(threads, args.no_torch)
    info = common.run_info(threads, torch)
    info.update(repeats=args.repeats, fresh_processes=args.fresh_processes,
                load_average_before=common.load_average())
    rows = steady_rows(torch, args.repeats)
    libraries = ["fusednn (pool off)", "fusednn (pool on)"] + (["torch"] if torch else [])
    rows.update(first_call_rows(libraries, args.fresh_processes))
    info["load_average_after"] = common.load_average()
    text = markdown(info, rows)
    print(text)
    if not args.no_write:
        payload = {"info": info, "rows": [{"case": case, "library": library, "ms": ms,
                                           "page_faults": faults}
                                          for (case, library), (ms, faults) in rows.items()]}
        for path in common.write_results("interleaved-cpu", payload, text):
            print("wrote", path)


if __name__ == "__main__":
    main()
