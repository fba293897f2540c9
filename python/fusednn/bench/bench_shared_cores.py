"""The lecture models' training steps alone and beside a CPU-bound competitor (one busy-loop
process per core): how much fusednn slows down against how much PyTorch does, in one
process on the same inputs.

Rows: the lecture CNN's training step at batch 64 (bench_conv) and the lecture LSTM
model's training step at batch 16 (bench_recurrent); fusednn as it runs by default
(its kernels drop to one thread while the cores are crowded: fusednn.shared_cores)
and with that adaptation off ("fixed threads"). Phases alternate, alone then
beside the competitor, `--phases` times, so that a change of the machine's own load
hits both; each phase times every contender `--repeats` times, interleaved. The
slowdown is the median beside / the median alone; the last column is fusednn's
slowdown / torch's (<= 1: fusednn degrades no more than torch).
Writes benchmarks/results/shared-cores-cpu-<date>.json and .md unless --no-write.
    python benchmarks/bench_shared_cores.py [--phases 3] [--repeats 5]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_conv  # noqa: E402
import bench_recurrent  # noqa: E402
import common  # noqa: E402

from fusednn import shared_cores  # noqa: E402

BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def competitor(processes: int):
    """`processes` busy-loop Python processes for as long as the block runs."""
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(processes)]
    try:
        time.sleep(0.3)  # let them start spinning
        yield
    finally:
        for process in busy:
            process.kill()
        for process in busy:
            process.wait()


def with_fixed_threads(fn):
    """fn with fusednn.shared_cores' adaptation off while it runs."""
    def call():
        shared_cores.set_enabled(False)
        try:
            return fn()
        finally:
            shared_cores.set_enabled(True)
    return call


def measure(models: dict, phases: int, repeats: int, processes: int) -> dict:
    """(model, library) -> {'alone': [seconds], 'beside': [seconds]}."""
    samples = {}
    for _ in range(phases):
        for where in ("alone", "beside"):
            with competitor(processes) if where == "beside" else contextlib.nullcontext():
                for model, calls in models.items():
                    for library, times in common.interleaved_samples(
                            calls, warmup=1, repeats=repeats).items():
                        samples.setdefault((model, library), {"alone": [], "beside": []})
                        samples[(model, library)][where] += times
    return samples


def markdown(info: dict, samples: dict) -> str:
    rows = []
    slowdowns = {key: statistics.median(s["beside"]) / statistics.median(s["alone"])
                 for key, s in samples.items()}
    for (model, library), s in samples.items():
        torch_slowdown = slowdowns.get((model, "torch"))
        versus = (f"{slowdowns[(model, library)] / torch_slowdown:.2f}"
                  if library != "torch" and torch_slowdown else "")
        rows.append([model, library, f"{1e3 * statistics.median(s['alone']):.1f}",
                     f"{1e3 * statistics.median(s['beside']):.1f}",
                     f"{slowdowns[(model, library)]:.2f}x", versus])
    header = (f"# The lecture models beside {info['competitor_processes']} busy-loop processes\n\n"
              f"{info['date']}, {info['cpu']}, {info['threads']} threads, torch {info['torch']}, "
              f"OpenMP wait: {info['openmp_wait']}; load average before "
              f"{info['load_average_before']}, after {info['load_average_after']}, CPU pressure "
              f"(PSI some avg10, %) before {info['cpu_pressure_before']}, after "
              f"{info['cpu_pressure_after']} (the machine's own load included). "
              f"{info['phases']} alternating phases x {info['repeats']} calls; medians.\n\n")
    return header + common.markdown_table(
        ["model", "library", "alone ms", "beside ms", "slowdown", "fusednn / torch slowdown"],
        rows, "llrrrr")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="busy-loop processes (default: one per core)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    threads = common.thread_count()
    torch = common.import_torch(threads, args.no_torch)
    info = common.run_info(threads, torch)
    info.update(phases=args.phases, repeats=args.repeats, competitor_processes=args.processes,
                openmp_wait=", ".join(f"{k}={os.environ.get(k, 'unset')}"
                                      for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")),
                load_average_before=common.load_average(),
                cpu_pressure_before=shared_cores.cpu_pressure())
    models = {"lecture CNN training step, batch 64": bench_conv.training_contenders(torch),
              "lecture LSTM training step, batch 16":
                  bench_recurrent.lecture_model_contenders(torch, 16)}
    for calls in models.values():
        calls["fusednn (fixed threads)"] = with_fixed_threads(calls["fusednn"])
    samples = measure(models, args.phases, args.repeats, args.processes)
    info["load_average_after"] = common.load_average()
    info["cpu_pressure_after"] = shared_cores.cpu_pressure()
    text = markdown(info, samples)
    print(text)
    if not args.no_write:
        payload = {"info": info, "samples_seconds": [
            {"model": model, "library": library, **s} for (model, library), s in samples.items()]}
        for path in common.write_results("shared-cores-cpu", payload, text):
            print("wrote", path)


if __name__ == "__main__":
    main()
