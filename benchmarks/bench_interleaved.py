"""The lecture CNN's inference next to PyTorch in one process, and at a new batch size:
fusednn with its buffer pool, fusednn without it (the allocation before the pool),
and torch, side by side, in time and in page faults per call.

Every scenario runs in fresh processes (`--processes`, taking turns), each of which
first takes training steps of both libraries at batch 64 (bench_conv's lecture CNN
training step), as a training script would, then builds new models for batch-256
inference (fusednn's predict, torch's grad-enabled forward):
- alone: one library's inference called over and over (`--repeats` rounds);
- interleaved: rounds of torch's forward (whose tensors torch frees when it
  returns) followed by fusednn's predict, each timed;
- first call at a new batch size: the first and the second batch-256 inference,
  and the first and the second predict of 1,000 samples at batch 256 (its last
  batch holds 232).
Page faults: the process's minor faults (getrusage ru_minflt) during the call; unlike
times they do not depend on the load of a shared machine. Fresh memory faults once
per page (or huge page) on its first write, which is what the pool avoids.

Medians over all rounds of all processes; the ratio is torch time / fusednn time
(> 1: fusednn faster). Writes benchmarks/results/interleaved-cpu-<date>.json and .md
unless --no-write.
    python benchmarks/bench_interleaved.py [--repeats 20] [--processes 3]
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
    Returns label -> [(seconds, faults)] of the timed rounds."""
    for _, fn in sequence:
        fn()
    samples = {label: [] for label, _ in sequence}
    for _ in range(repeats):
        for label, fn in sequence:
            samples[label].append(measured(fn))
    return samples


def scenario(name: str, pool: str, repeats: int, with_torch: bool) -> dict:
    """In this (fresh) process, after training steps at batch 64: {(case, library):
    [(seconds, faults)]} of one scenario, fusednn's pool on or off."""
    torch = common.import_torch(common.thread_count(), not with_torch)
    if pool == "off":
        buffer_pool.set_limit(0)
    calls, model, x = inference_calls(torch)
    fused = f"fusednn (pool {pool})"
    if name == "alone":
        return {("alone", fused): rounds([(fused, calls["fusednn"])], repeats)[fused]}
    if name == "alone torch":
        return {("alone", "torch"): rounds([("torch", calls["torch"])], repeats)["torch"]}
    if name == "interleaved":
        both = rounds([("torch", calls["torch"]), ("fusednn", calls["fusednn"])], repeats)
        return {(f"interleaved, fusednn pool {pool}", library): runs
                for library, runs in both.items()}
    library = "torch" if name == "first call torch" else fused
    call = calls["torch" if library == "torch" else "fusednn"]
    out = {("first batch 256", library): [measured(call)],
           ("second batch 256", library): [measured(call)]}
    if library != "torch":
        many = np.concatenate([x] * 4)[:SAMPLES_WITH_SHORT_LAST_BATCH]
        for when in ("first", "second"):
            out[(f"{when} predict of {SAMPLES_WITH_SHORT_LAST_BATCH}", library)] = [measured(
                lambda: model.predict(many, batch_size=BATCH))]
    return out


SCENARIOS = [("alone", "off"), ("alone", "on"), ("alone torch", "on"), ("interleaved", "off"),
             ("interleaved", "on"), ("first call", "off"), ("first call", "on"),
             ("first call torch", "on")]


def all_rows(processes: int, repeats: int, with_torch: bool) -> dict:
    """(case, library) -> (median ms, median faults) over `processes` fresh processes per
    scenario, the scenarios taking turns."""
    samples = {}
    for _ in range(processes):
        for name, pool in SCENARIOS:
            if not with_torch and ("torch" in name or name == "interleaved"):
                continue
            child = [sys.executable, __file__, "--child", name, pool, str(repeats),
                     "torch" if with_torch else "no-torch"]
            done = subprocess.run(child, check=True, capture_output=True, text=True)
            for case, library, runs in json.loads(done.stdout.splitlines()[-1]):
                samples.setdefault((case, library), []).extend(runs)
    return {key: (1e3 * statistics.median(s for s, _ in runs),
                  statistics.median(f for _, f in runs)) for key, runs in samples.items()}


def markdown(info: dict, rows: dict) -> str:
    lines = ["# fusednn next to PyTorch in one process: the lecture CNN's inference\n",
             f"{info['date']}, {info['cpu']}, {info['threads']} threads, torch {info['torch']}, "
             f"load average before {info['load_average_before']}, after "
             f"{info['load_average_after']}. Each scenario in {info['processes']} fresh "
             f"processes ({info['repeats']} rounds each for the steady rows); medians.\n"]
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
    parser.add_argument("--repeats", type=int, default=20, help="rounds per process")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh processes per scenario")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, pool, repeats, torch_wanted = args.child
        rows = scenario(name, pool, int(repeats), torch_wanted == "torch")
        print(json.dumps([[case, library, runs] for (case, library), runs in rows.items()]))
        return

    threads = common.thread_count()
    torch = common.import_torch(threads, args.no_torch)
    info = common.run_info(threads, torch)
    info.update(repeats=args.repeats, processes=args.processes,
                load_average_before=common.load_average())
    rows = all_rows(args.processes, args.repeats, torch is not None)
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
