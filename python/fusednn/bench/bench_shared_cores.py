"""The lecture models' training steps alone and beside a CPU-bound competitor (one busy-loop
process per core): how much fusednn slows down against how much PyTorch does.

Rows: the lecture CNN's training step at batch 64 (bench_conv) and the lecture LSTM
model's training step at batch 16 (bench_recurrent); fusednn as it runs by default
(its kernels run on the cores the competitor leaves free: fusednn.shared_cores), fusednn
with that adaptation off ("fixed threads") and torch. Each contender runs in a process of
its own, as a user's training script would (in one process each contender's thread count
changed the next one's: the OpenMP worker it needs may be asleep and must be woken under
contention), and times `--repeats` steps after a warm-up of at least WARMUP_S seconds
(fusednn.shared_cores' first reading of the cores takes half a second). Phases alternate,
alone then beside the competitor, `--phases` times, so that a change of the machine's own
load hits both, with the contenders' order rotated from phase to phase.
Slowdowns: median beside / median alone, and mean beside / mean alone. Beside a competitor
a step is now and then 10-100x its median (a thread descheduled at a barrier), which the
median hides: the mean is what an epoch costs, so the slowdown of the means is the one the
target (no larger than torch's) is judged by, and the medians show the typical step.
fusednn's columns "/ torch" divide its slowdown by torch's (<= 1: fusednn degrades no
more than torch). Each phase alone starts once the CPU pressure's 10-second average has
fallen below CALM_PRESSURE (at most --calm-timeout seconds), so the competitor's tail does
not leak into it.
Every busy-loop process stops when its phase ends, also on an error or Ctrl-C, and at
the latest after --competitor-cpu-seconds of CPU time (the kernel's RLIMIT_CPU), even
if this process dies first. CPU only. Writes <--out>/shared-cores-cpu-<date>.json and
.md unless --no-write; --quick: one phase of 2 steps without the warm-up seconds.
    fusednn bench --cpu --suite shared_cores [--quick]
    python -m fusednn.bench.bench_shared_cores [--phases 2] [--repeats 100] [--processes N]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from . import bench_conv, bench_recurrent, common, cpu, limits

from fusednn import shared_cores

BUSY_LOOP = "while True: pass"
# A phase alone starts once the CPU pressure's 10-second average (PSI "some avg10", %) is
# below this, so the competitor's tail does not leak into it.
CALM_PRESSURE = 10.0
# A killed process is reaped within milliseconds; this only bounds a wait that would hang.
REAP_TIMEOUT_S = 10
# Each contender's warm-up lasts at least this long: fusednn.shared_cores reads the cores
# every half second, and its first reading has nothing to compare with.
WARMUP_S = 1.0
FIXED_THREADS = "fusednn (fixed threads)"
CONTENDERS = ("fusednn", "torch", FIXED_THREADS)
# name -> (its contenders given torch or None, the FLOP of one step)
MODELS = {"lecture CNN training step, batch 64":
              (bench_conv.training_contenders, lambda: bench_conv.lecture_cnn_flops(64)),
          "lecture LSTM training step, batch 16":
              (lambda torch: bench_recurrent.lecture_model_contenders(torch, 16),
               lambda: bench_recurrent.lecture_model_flops(16))}


class CompetitorStopped(RuntimeError):
    """A busy-loop process ended before its phase did: that phase was not measured beside
    a full competitor."""


def _cpu_time_limit(seconds: int):
    """For the child, before it runs: the kernel ends it (SIGXCPU, then SIGKILL) after
    `seconds` of CPU time, whatever happens to this process."""
    def limit():
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    return limit


@contextlib.contextmanager
def competitor(processes: int, cpu_seconds: int):
    """`processes` busy-loop Python processes for as long as the block runs; yields them.
    They are killed and reaped when the block ends, however it ends."""
    busy = []
    try:
        for _ in range(processes):
            busy.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP],
                                         preexec_fn=_cpu_time_limit(cpu_seconds)))
        time.sleep(0.3)  # let them start spinning
        yield busy
        if any(process.poll() is not None for process in busy):
            raise CompetitorStopped(f"a busy-loop process ended before its phase did (its "
                                    f"limit: {cpu_seconds} s of CPU); raise "
                                    "--competitor-cpu-seconds")
    finally:
        for process in busy:
            process.kill()
        for process in busy:
            process.wait(timeout=REAP_TIMEOUT_S)


def cpu_pressure(path: str = "/proc/pressure/cpu"):
    """The "some avg10" percentage of a PSI file (the share of the last 10 s in which a
    runnable task waited for a core), or None when it cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("some "):
                    fields = dict(item.split("=", 1) for item in line.split()[1:])
                    return float(fields["avg10"])
    except (OSError, ValueError, KeyError):
        pass
    return None


def wait_for_calm(timeout_s: float, poll_s: float = 1.0) -> float:
    """Waits until the CPU pressure is unknown or below CALM_PRESSURE, at most
    timeout_s; returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        pressure = cpu_pressure()
        if pressure is None or pressure < CALM_PRESSURE:
            break
        time.sleep(poll_s)
    return time.monotonic() - start


def child_command(model: str, contender: str, steps: int, warmup_s: float) -> list:
    """The command that times `steps` steps of one contender in a process of its own (the
    LSTM's sequence length passed on: the tests shorten it)."""
    return [sys.executable, "-m", f"{__package__}.bench_shared_cores", "--child", model, contender,
            "--repeats", str(steps), "--warmup-seconds", str(warmup_s),
            "--sequence-length", str(bench_recurrent.T)]


def run_child(model: str, contender: str, steps: int, warmup_s: float,
              timeout_s: float) -> list:
    """Seconds of each of the `steps` timed steps, from a child process."""
    done = subprocess.run(child_command(model, contender, steps, warmup_s), capture_output=True,
                          text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"timing {contender} on the {model} failed (exit status "
                           f"{done.returncode}):\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_steps(step, steps: int, warmup_s: float = WARMUP_S, warmup_steps: int = 3) -> list:
    """Seconds of each of `steps` calls of step, after at least warmup_steps calls and
    warmup_s seconds of them."""
    start = time.perf_counter()
    calls = 0
    while calls < warmup_steps or time.perf_counter() - start < warmup_s:
        step()
        calls += 1
    return common.interleaved_samples({"step": step}, warmup=0, repeats=steps)["step"]


def child_main(model: str, contender: str, steps: int, warmup_s: float,
               sequence_length: int) -> None:
    """In the child: builds the one contender (torch imported only for torch), times it
    and prints its seconds as one JSON line."""
    if model not in MODELS or contender not in CONTENDERS:
        raise SystemExit(f"--child: expected a model of {sorted(MODELS)} and a contender "
                         f"of {list(CONTENDERS)}, got {model!r} and {contender!r}")
    bench_recurrent.T = sequence_length
    if contender == FIXED_THREADS:
        shared_cores.set_enabled(False)
    torch = common.import_torch(common.thread_count(), leave_out=contender != "torch")
    if contender == "torch" and torch is None:
        raise SystemExit("--child torch: PyTorch is not installed")
    calls = MODELS[model][0](torch)
    print(json.dumps(time_steps(calls["torch" if contender == "torch" else "fusednn"],
                                steps, warmup_s)), flush=True)


def measure(contenders: list, phases: int, repeats: int, processes: int, cpu_seconds: int,
            calm_timeout_s: float = 0.0, warmup_s: float = WARMUP_S,
            child_timeout_s: float = 900.0) -> dict:
    """(model, library) -> {'alone': [seconds], 'beside': [seconds]}; each contender timed
    in a process of its own, their order rotated from phase to phase."""
    samples = {(model, library): {"alone": [], "beside": []}
               for model in MODELS for library in contenders}
    for phase in range(phases):
        order = contenders[phase % len(contenders):] + contenders[:phase % len(contenders)]
        for where in ("alone", "beside"):
            if where == "alone":
                wait_for_calm(calm_timeout_s)
            with competitor(processes, cpu_seconds) if where == "beside" \
                    else contextlib.nullcontext():
                for model in MODELS:
                    for library in order:
                        samples[(model, library)][where] += run_child(
                            model, library, repeats, warmup_s, child_timeout_s)
    return samples


def result_rows(samples: dict, flops: dict, hardware: dict) -> list:
    """One row per (model, library): median and mean ms alone and beside, their samples, the
    slowdown of the medians and that of the means (median beside / median alone, mean beside
    / mean alone), for fusednn each over torch's, and the library's fraction of the float32
    FMA peak alone (`fusednn_fraction` or `torch_fraction`; flops: model -> FLOP of one step).
    Both: beside a competitor a step is now and then 10-100x its median (threads descheduled
    at a barrier), which the median hides and the mean, what a whole epoch costs, shows."""
    rows = []
    for (model, library), s in samples.items():
        rows.append({"model": model, "library": library,
                     "alone_ms": 1e3 * statistics.median(s["alone"]),
                     "beside_ms": 1e3 * statistics.median(s["beside"]),
                     "alone_mean_ms": 1e3 * statistics.fmean(s["alone"]),
                     "beside_mean_ms": 1e3 * statistics.fmean(s["beside"]),
                     "samples_alone_ms": [1e3 * t for t in s["alone"]],
                     "samples_beside_ms": [1e3 * t for t in s["beside"]]})
        rows[-1]["slowdown"] = rows[-1]["beside_ms"] / rows[-1]["alone_ms"]
        rows[-1]["slowdown_of_means"] = rows[-1]["beside_mean_ms"] / rows[-1]["alone_mean_ms"]
        key = "torch" if library == "torch" else "fusednn"
        limits.fill(rows[-1], {key: rows[-1]["alone_ms"] / 1e3}, hardware, flops=flops[model])
    torch_rows = {row["model"]: row for row in rows if row["library"] == "torch"}
    for row in rows:
        torch_row = torch_rows.get(row["model"])
        if row["library"] != "torch" and torch_row is not None:
            row["slowdown_over_torch"] = row["slowdown"] / torch_row["slowdown"]
            row["slowdown_of_means_over_torch"] = (row["slowdown_of_means"]
                                                   / torch_row["slowdown_of_means"])
    return rows


def markdown(info: dict, rows: list) -> str:
    table = [[row["model"], row["library"], f"{row['alone_ms']:.1f}", f"{row['beside_ms']:.1f}",
              f"{row['slowdown']:.2f}x",
              f"{row['slowdown_over_torch']:.2f}" if "slowdown_over_torch" in row else "",
              f"{row['alone_mean_ms']:.1f}", f"{row['beside_mean_ms']:.1f}",
              f"{row['slowdown_of_means']:.2f}x",
              f"{row['slowdown_of_means_over_torch']:.2f}"
              if "slowdown_of_means_over_torch" in row else "",
              common.percent(row.get("fusednn_fraction", row.get("torch_fraction")))]
             for row in rows]
    header = (f"# The lecture models beside {info['competitor_processes']} busy-loop processes\n\n"
              f"{info['date']}, {info['cpu']} ({info['cpu_simd']}), {info['threads']} threads, "
              f"torch {info['torch']}, "
              f"OpenMP wait: {info['openmp_wait']}; load average before "
              f"{info['load_average_before']}, after {info['load_average_after']}, CPU pressure "
              f"(PSI some avg10, %) before {info['cpu_pressure_before']}, after "
              f"{info['cpu_pressure_after']} (the machine's own load included). "
              f"{info['phases']} alternating phases x {info['repeats']} steps, each contender in "
              "a process of its own; medians (the typical step), and means (what an epoch "
              "costs, with the rare steps 10-100x the median: the target, no larger slowdown "
              "than torch's, is judged by the means).\n\n")
    return header + common.markdown_table(
        ["model", "library", "alone ms", "beside ms", "slowdown", "fusednn / torch slowdown",
         "alone mean ms", "beside mean ms", "slowdown of means", "fusednn / torch, means",
         "alone, of fp32 FMA peak"], table, "llrrrrrrrrr")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100,
                        help="steps each contender times in each phase")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="busy-loop processes (default: one per core)")
    parser.add_argument("--competitor-cpu-seconds", type=int, default=1200,
                        help="CPU time after which the kernel ends a busy-loop process "
                             "(longer than any phase)")
    parser.add_argument("--calm-timeout", type=float, default=60.0,
                        help="seconds to wait at most, before each phase alone, for the CPU "
                             "pressure to fall below CALM_PRESSURE")
    parser.add_argument("--child-timeout", type=float, default=900.0,
                        help="seconds one contender's process may take at most")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: one phase, 2 steps, no warm-up beyond 3 steps, "
                             "no wait for calm")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    # How the suite runs one contender in a process of its own (child_command).
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "CONTENDER"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--sequence-length", type=int, default=bench_recurrent.T,
                        help=argparse.SUPPRESS)
    parser.add_argument("--warmup-seconds", type=float, default=WARMUP_S,
                        help=argparse.SUPPRESS)
    common.add_run_options(parser)
    args = parser.parse_args(argv)
    if args.device == "cuda":
        raise SystemExit("--device cuda: the shared_cores suite has CPU rows only")
    if args.child:
        child_main(*args.child, args.repeats, args.warmup_seconds, args.sequence_length)
        return
    if args.quick:
        args.phases, args.repeats, args.calm_timeout, args.warmup_seconds = 1, 2, 0.0, 0.0

    _, torch, info = cpu.start(args, args.no_torch)
    info.update(phases=args.phases, competitor_processes=args.processes,
                competitor_cpu_seconds=args.competitor_cpu_seconds,
                openmp_wait=", ".join(f"{k}={os.environ.get(k, 'unset')}"
                                      for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")),
                cpu_pressure_before=cpu_pressure())
    contenders = [c for c in CONTENDERS if torch is not None or c != "torch"]
    samples = measure(contenders, args.phases, args.repeats, args.processes,
                      args.competitor_cpu_seconds, args.calm_timeout, args.warmup_seconds,
                      args.child_timeout)
    rows = result_rows(samples, {model: flop() for model, (_, flop) in MODELS.items()},
                       info["limits"])
    info["load_average_after"] = common.load_average()
    info["cpu_pressure_after"] = cpu_pressure()
    common.print_and_write(args, "shared-cores-cpu", {"info": info, "results": rows},
                           markdown(info, rows))


if __name__ == "__main__":
    main()
