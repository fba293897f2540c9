"""The start of every suite's CPU rows."""
from __future__ import annotations

from . import common, limits


def start(args, leave_out_torch: bool = False) -> tuple:
    """(threads, torch or None, info) for a suite's CPU rows: torch on the threads fusednn
    uses, and info = common.machine_info() with the CPU's limits (measured once per
    process), the repeats and the load average before; printed as two lines."""
    threads = common.thread_count()
    torch = common.import_torch(threads, leave_out_torch)
    info = {**common.machine_info(), "limits": limits.cpu_limits(threads, args.fma_pipes),
            "repeats": args.repeats, "load_average_before": common.load_average()}
    print(f"{info['cpu']} ({info['cpu_simd']}), {threads} threads, torch {info['torch']}, "
          f"load {info['load_average_before']}")
    print(limits.describe(info["limits"]), flush=True)
    return threads, torch, info
