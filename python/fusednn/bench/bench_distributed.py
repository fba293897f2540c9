"""Data-parallel training steps of the lecture models at 1 and 2 ranks (mpiexec, one thread
per rank, loopback), and a ring-allreduce model of larger clusters built on them.

Measured, per model (the lecture CNN at batch 32 per rank, the lecture LSTM model at batch
16 per rank; weak scaling: each rank keeps its batch): the median time of one training
step (fit's step with fd.distribute's DistributedOptimizer; at 2 ranks the slower rank's
time), averaging after the whole backward and overlapped with it as fit does
(distribute/overlap.py; --bucket-kib sets the bucket size), the bytes each step
allreduces (every trainable gradient, float32) in how many buckets, and the time of that allreduce alone, so compute = step - allreduce. Beside
them, the step of two independent 1-rank processes started together: where ranks share
the cores, that is what the sharing alone costs. The loopback's latency and bandwidth are
fitted from an 8-byte and the gradients' allreduce.

Modelled (not measured): a ring allreduce of the same bytes over p ranks,
    2 (p - 1) / p x bytes / bandwidth + 2 (p - 1) x latency x buckets,
added to the measured 1-rank compute (the model assumes no overlap with the backward: an
upper bound), for p = 8, 64, 512 at 25, 100 and 400 Gb/s with --latency-us per
message (default 5 us, an RDMA-class network); efficiency = compute / step time. As a
check, the same model with the loopback's fitted numbers predicts the 2-rank step.
Needs mpiexec and mpi4py (pip install "fusednn[distributed]"); without them it prints
why and writes nothing. Timings on a shared machine are indicative only: the load
average is recorded with them.
    fusednn bench --cpu --suite distributed [--quick]
    python -m fusednn.bench.bench_distributed [--repeats 10] [--bucket-kib 4096]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from fusednn.distribute import buckets as buckets_module, environment

from . import common

RANKS = (1, 2)
CLUSTER_RANKS = (8, 64, 512)
LINK_GBITS = (25, 100, 400)
MODELS = {"lecture CNN": 32, "lecture LSTM": 16}   # name -> batch per rank
BUCKET_KIB = buckets_module.BUCKET_BYTES >> 10
# A job of 2 ranks starts and trains both models within a minute on 2 loaded cores.
JOB_TIMEOUT_S = 600


# ----- the worker: one rank of a job -------------------------------------------------
def _model(name: str):
    from fusednn.demos import lstm

    from . import bench_conv

    if name == "lecture CNN":
        return bench_conv.lecture_cnn()
    model = lstm.lecture_lstm()
    model.compile(optimizer="adam", loss="mse")
    return model


def _batch(name: str, batch: int, rank: int):
    rng = np.random.default_rng(rank)
    if name == "lecture CNN":
        return (rng.random((batch, 28, 28, 1), dtype=np.float32),
                rng.integers(0, 10, batch))
    return (rng.standard_normal((batch, 60, 1)).astype(np.float32),
            rng.standard_normal((batch, 1)).astype(np.float32))


def _timed(comm, fn, warmup: int, repeats: int) -> list:
    """Seconds of fn per repeat, the slowest rank's: ranks start each repeat together."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        comm.allgather_object(None)   # a barrier
        start = time.perf_counter()
        fn()
        times.append(max(comm.allgather_object(time.perf_counter() - start)))
    return times


def worker(out: str, warmup: int, repeats: int, bucket_kib: int) -> None:
    import fusednn as fd
    from fusednn.distribute import overlap

    buckets_module.BUCKET_BYTES = bucket_kib << 10
    fd.distribute.initialize()
    comm = fd.distribute.environment.communicator()
    results = {"ranks": comm.size, "backend": comm.description}
    latency = np.zeros(2, np.float32)   # 8 bytes
    results["latency_probe_s"] = statistics.median(
        _timed(comm, lambda: comm.allreduce_sum(latency), warmup, repeats))
    for name, batch in MODELS.items():
        model = _model(name)
        fd.distribute.DistributedOptimizer(model.optimizer)
        fd.distribute.broadcast_variables(model)
        x, y = _batch(name, batch, comm.rank)
        step = _timed(comm, lambda: model.train_on_batch(x, y), warmup, repeats)
        overlap.attach(model)
        overlapped = _timed(comm, lambda: model.train_on_batch(x, y), warmup, repeats)
        overlap.detach(model)
        grads = [var.grad for var in model.trainable_variables]
        allreduce = _timed(comm, lambda: fd.distribute.allreduce_gradients(model), warmup,
                           repeats)
        results[name] = {"batch_per_rank": batch, "step_s": statistics.median(step),
                         "step_samples_s": step, "allreduce_s": statistics.median(allreduce),
                         "step_overlapped_s": statistics.median(overlapped),
                         "bytes": int(sum(g.nbytes for g in grads)),
                         "buckets": len(buckets_module.buckets(grads))}
    if comm.rank == 0:
        pathlib.Path(out).write_text(json.dumps(results))


# ----- the suite: jobs of 1 and 2 ranks, then the model ------------------------------
def run_job(ranks: int, warmup: int, repeats: int, bucket_kib: int) -> dict:
    """Rank 0's results of a job of `ranks` (1: a plain process, no mpiexec)."""
    return _run_workers(ranks, warmup, repeats, bucket_kib, independent=False)[0]


def run_independent(processes: int, warmup: int, repeats: int, bucket_kib: int) -> list:
    """The results of `processes` single-rank workers started together: the same
    competition for the cores as a job of that many ranks, without any communication."""
    return _run_workers(processes, warmup, repeats, bucket_kib, independent=True)


def _run_workers(count: int, warmup: int, repeats: int, bucket_kib: int,
                 independent: bool) -> list:
    env = environment.local_job_environment(threads=1)
    with tempfile.TemporaryDirectory() as folder:
        outs = [pathlib.Path(folder) / f"worker{i}.json"
                for i in range(count if independent else 1)]
        commands = [[sys.executable, "-m", "fusednn.bench.bench_distributed", "--worker",
                     str(out), "--warmup", str(warmup), "--repeats", str(repeats),
                     "--bucket-kib", str(bucket_kib)]
                    for out in outs]
        if not independent and count > 1:
            commands = [[environment.find_mpiexec(), "-n", str(count)] + commands[0]]
        workers = [subprocess.Popen(command, env=env) for command in commands]
        try:
            for worker_process, command in zip(workers, commands):
                if worker_process.wait(timeout=JOB_TIMEOUT_S) != 0:
                    raise RuntimeError(f"{' '.join(command)} exited with status "
                                       f"{worker_process.returncode}")
        finally:
            for worker_process in workers:
                worker_process.kill()
                worker_process.wait()
        return [json.loads(out.read_text()) for out in outs]


def ring_allreduce_s(ranks: int, nbytes: int, bytes_per_s: float, latency_s: float,
                     buckets: int) -> float:
    """The ring allreduce's time: 2(p-1)/p x bytes / bandwidth + 2(p-1) x latency per bucket."""
    return (2 * (ranks - 1) / ranks * nbytes / bytes_per_s
            + 2 * (ranks - 1) * latency_s * buckets)


def loopback_fit(job: dict, name: str) -> dict:
    """Latency and bandwidth of the 2-rank loopback, from the 8-byte and the gradients'
    allreduce (2(p-1) = 2 messages of latency at p = 2, and 2(p-1)/p = 1 x bytes)."""
    latency = job["latency_probe_s"] / 2
    entry = job[name]
    transfer = max(entry["allreduce_s"] - 2 * latency * entry["buckets"], 1e-9)
    return {"latency_s": latency, "bytes_per_s": entry["bytes"] / transfer}


def rows_for(jobs: dict, independent: list, latency_us: float) -> tuple[list, list]:
    """The measured rows (with the step of two independent processes beside the 2-rank
    step: what sharing the cores alone costs) and the modelled cells."""
    measured, modelled = [], []
    one, two = jobs[1], jobs[2]
    for name in MODELS:
        single, pair = one[name], two[name]
        compute = single["step_s"]
        loop = loopback_fit(two, name)
        predicted_two = compute + ring_allreduce_s(2, pair["bytes"], loop["bytes_per_s"],
                                                   loop["latency_s"], pair["buckets"])
        measured.append({
            "model": name, "batch_per_rank": single["batch_per_rank"],
            "bytes_per_step": pair["bytes"], "buckets": pair["buckets"],
            "step_1_rank_ms": 1e3 * compute, "step_2_ranks_ms": 1e3 * pair["step_s"],
            "step_2_ranks_overlapped_ms": 1e3 * pair["step_overlapped_s"],
            "allreduce_2_ranks_ms": 1e3 * pair["allreduce_s"],
            "compute_2_ranks_ms": 1e3 * (pair["step_s"] - pair["allreduce_s"]),
            "step_2_independent_ms": 1e3 * max(run[name]["step_s"] for run in independent),
            "efficiency_2_ranks": compute / pair["step_s"],
            "loopback_latency_us": 1e6 * loop["latency_s"],
            "loopback_gbit_s": 8 * loop["bytes_per_s"] / 1e9,
            "modelled_step_2_ranks_ms": 1e3 * predicted_two})
        for gbits in LINK_GBITS:
            for ranks in CLUSTER_RANKS:
                comm = ring_allreduce_s(ranks, pair["bytes"], gbits * 1e9 / 8,
                                        latency_us * 1e-6, pair["buckets"])
                modelled.append({"model": name, "ranks": ranks, "link_gbit_s": gbits,
                                 "allreduce_ms": 1e3 * comm,
                                 "step_ms": 1e3 * (compute + comm),
                                 "efficiency": compute / (compute + comm)})
    return measured, modelled


def markdown(info: dict, measured: list, modelled: list) -> str:
    head = (f"# Data-parallel training steps (fd.distribute), measured and modelled\n\n"
            f"{info['date']}, {info['cpu']}, {info['logical_cores']} cores, one thread per "
            f"rank, {info['backend']} over loopback; load average before "
            f"{info['load_average_before']}, after {info['load_average_after']} (a shared "
            f"machine: indicative only). {info['repeats']} steps per figure, medians; at 2 "
            f"ranks each step's slower rank.\n\n## Measured\n\n")
    table = [[r["model"], r["batch_per_rank"], f"{r['bytes_per_step'] / 1e6:.2f} MB",
              r["buckets"], f"{r['step_1_rank_ms']:.1f}", f"{r['step_2_ranks_ms']:.1f}",
              f"{r['step_2_ranks_overlapped_ms']:.1f}",
              f"{r['compute_2_ranks_ms']:.1f}", f"{r['allreduce_2_ranks_ms']:.2f}",
              f"{r['step_2_independent_ms']:.1f}",
              f"{100 * r['efficiency_2_ranks']:.0f}%",
              f"{r['modelled_step_2_ranks_ms']:.1f}"] for r in measured]
    text = head + common.markdown_table(
        ["model", "batch / rank", "allreduced / step", "buckets", "step, 1 rank ms",
         "step, 2 ranks ms", "step, 2 ranks, overlapped ms", "compute, 2 ranks ms",
         "allreduce, 2 ranks ms", "step, 2 independent processes ms", "efficiency, 2 ranks",
         "modelled step, 2 ranks ms"], table, "lrrrrrrrrrrr")
    text += ("\n2 ranks: gradients averaged after the whole backward; overlapped: each "
             f"bucket ({info['bucket_kib']} KiB at most) started as soon as backward made it, "
             "as fit does. 2 independent processes: two 1-rank runs started together, no "
             "communication: what sharing this machine's cores costs by itself.\n")
    loop = ", ".join(f"{r['model']}: {r['loopback_latency_us']:.0f} us, "
                     f"{r['loopback_gbit_s']:.1f} Gb/s" for r in measured)
    text += (f"\nLoopback fitted from the 8-byte and the gradients' allreduce ({loop}); the "
             "modelled 2-rank step is the 1-rank step plus the ring model with those.\n\n"
             f"## Modelled (ring allreduce, {info['latency_us']:g} us per message, no overlap "
             "with the backward; compute: the measured 1-rank step)\n\n")
    columns = [f"{ranks} ranks, {gbits} Gb/s" for gbits in LINK_GBITS for ranks in CLUSTER_RANKS]
    table = []
    for name in MODELS:
        cells = {(r["ranks"], r["link_gbit_s"]): r for r in modelled if r["model"] == name}
        table.append([name] + [f"{cells[(ranks, gbits)]['step_ms']:.1f} ms, "
                               f"{100 * cells[(ranks, gbits)]['efficiency']:.0f}%"
                               for gbits in LINK_GBITS for ranks in CLUSTER_RANKS])
    return text + common.markdown_table(["model"] + columns, table, "l" + "r" * len(columns))


def main(argv=None):
    # --no-torch is accepted as by the other suites; this one has no PyTorch rows.
    parser = common.suite_parser(__doc__.split("\n\n")[0], repeats=10, warmup=2,
                                 quick_help="a smoke run: 3 steps, 1 warm-up")
    parser.add_argument("--latency-us", type=float, default=5.0,
                        help="per-message latency of the modelled network (default 5 us)")
    parser.add_argument("--bucket-kib", type=int, default=BUCKET_KIB,
                        help=f"gradient bucket size in KiB (default {BUCKET_KIB})")
    parser.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.warmup, args.repeats, args.bucket_kib)
    if args.device == "cuda":
        raise SystemExit("--device cuda: the distributed suite has CPU (MPI) rows only")
    if args.quick:
        args.repeats, args.warmup = 3, 1
    if environment.find_mpiexec() is None or importlib.util.find_spec("mpi4py") is None:
        print('distributed: needs mpiexec and mpi4py (pip install "fusednn[distributed]"); '
              "nothing measured")
        return None
    info = {**common.machine_info(), "repeats": args.repeats, "latency_us": args.latency_us,
            "bucket_kib": args.bucket_kib, "load_average_before": common.load_average()}
    jobs = {ranks: run_job(ranks, args.warmup, args.repeats, args.bucket_kib)
            for ranks in RANKS}
    independent = run_independent(2, args.warmup, args.repeats, args.bucket_kib)
    info["backend"] = jobs[2]["backend"]
    info["load_average_after"] = common.load_average()
    measured, modelled = rows_for(jobs, independent, args.latency_us)
    common.print_and_write(args, "distributed-cpu",
                           {"info": info, "jobs": {str(k): v for k, v in jobs.items()},
                            "independent": independent, "results": measured,
                            "modelled": modelled},
                           markdown(info, measured, modelled))
    return None


if __name__ == "__main__":
    main()
