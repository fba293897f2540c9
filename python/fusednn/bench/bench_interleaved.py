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
(> 1: fusednn faster); each row keeps its samples. CPU only. Writes
<--out>/interleaved-cpu-<date>.json and .md unless --no-write; --quick: one process
per scenario, 3 rounds.
    fusednn bench --cpu --suite interleaved [--quick]
    python -m fusednn.bench.bench_interleaved [--repeats 20] [--processes 3]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from . import bench_conv, common, cpu, limits

import fusednn
from fusednn import buffer_pool

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


def child_environment() -> dict:
    """This environment with the folder this fusednn was imported from first on PYTHONPATH,
    so that every scenario process measures the same fusednn as the parent (a checkout's
    python/ or an installed package)."""
    here = str(pathlib.Path(fusednn.__file__).resolve().parent.parent)
    paths = [here] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def all_samples(processes: int, repeats: int, with_torch: bool) -> dict:
    """(case, library) -> [(seconds, faults)] of every round of `processes` fresh processes
    per scenario, the scenarios taking turns."""
    samples = {}
    environment = child_environment()
    for _ in range(processes):
        for name, pool in SCENARIOS:
            if not with_torch and ("torch" in name or name == "interleaved"):
                continue
            # __spec__.name: this module's dotted name, also when it runs as __main__ (-m).
            child = [sys.executable, "-m", __spec__.name, "--child", name, pool, str(repeats),
                     "torch" if with_torch else "no-torch"]
            done = subprocess.run(child, capture_output=True, text=True, env=environment)
            if done.returncode:
                raise RuntimeError(f"scenario {name!r} (pool {pool}) failed with exit status "
                                   f"{done.returncode}:\n{done.stderr[-2000:]}")
            for case, library, runs in json.loads(done.stdout.splitlines()[-1]):
                samples.setdefault((case, library), []).extend(runs)
    return samples


def result_rows(samples: dict, hardware: dict) -> list:
    """One row per (case, library): median ms and page faults, their samples, torch /
    fusednn where the case has a torch row, and the library's fraction of the float32 FMA
    peak (`fusednn_fraction` or `torch_fraction`: the CNN's forward FLOP per second)."""
    medians = {key: 1e3 * statistics.median(s for s, _ in runs) for key, runs in samples.items()}
    rows = []
    for (case, library), runs in samples.items():
        row = {"case": case, "library": library, "ms": medians[(case, library)],
               "page_faults": statistics.median(f for _, f in runs),
               "samples_ms": [1e3 * s for s, _ in runs], "samples_page_faults": [f for _, f in runs]}
        torch_ms = medians.get((case, "torch"))
        if library != "torch" and torch_ms is not None:
            row["torch_over_fusednn"] = torch_ms / row["ms"]
        images = SAMPLES_WITH_SHORT_LAST_BATCH if "predict of" in case else BATCH
        rows.append(limits.fill(row, {_fraction_key(library): row["ms"] / 1e3}, hardware,
                                flops=bench_conv.lecture_cnn_inference_flops(images)))
    return rows


def _fraction_key(library: str) -> str:
    """'torch' or 'fusednn' (any pool setting): the prefix of the row's fraction field."""
    return "torch" if library == "torch" else "fusednn"


def markdown(info: dict, rows: list) -> str:
    lines = ["# fusednn next to PyTorch in one process: the lecture CNN's inference\n",
             f"{info['date']}, {info['cpu']} ({info['cpu_simd']}), {info['threads']} threads, "
             f"torch {info['torch']}, load average before {info['load_average_before']}, after "
             f"{info['load_average_after']}. Each scenario in {info['processes']} fresh "
             f"processes ({info['repeats']} rounds each for the steady rows); medians.\n"]
    table = [[row["case"], row["library"], f"{row['ms']:.2f}", f"{row['page_faults']:.0f}",
              f"{row['torch_over_fusednn']:.2f}x" if "torch_over_fusednn" in row else "",
              common.percent(row[f"{_fraction_key(row['library'])}_fraction"])]
             for row in rows]
    lines.append(common.markdown_table(["case", "library", "ms", "page faults", "torch / fusednn",
                                        "of fp32 FMA peak"], table, "llrrrr"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="rounds per process")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh processes per scenario")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: one process per scenario, 3 rounds")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    common.add_run_options(parser)
    args = parser.parse_args(argv)
    if args.device == "cuda":
        raise SystemExit("--device cuda: the interleaved suite has CPU rows only")
    if args.child:
        name, pool, repeats, torch_wanted = args.child
        rows = scenario(name, pool, int(repeats), torch_wanted == "torch")
        print(json.dumps([[case, library, runs] for (case, library), runs in rows.items()]))
        return
    if args.quick:
        args.processes, args.repeats = 1, 3

    _, torch, info = cpu.start(args, args.no_torch)
    info["processes"] = args.processes
    rows = result_rows(all_samples(args.processes, args.repeats, torch is not None),
                       info["limits"])
    info["load_average_after"] = common.load_average()
    common.print_and_write(args, "interleaved-cpu", {"info": info, "results": rows},
                           markdown(info, rows))


if __name__ == "__main__":
    main()
