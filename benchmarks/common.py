"""Timing and reporting helpers shared by the benchmarks in this folder.

Every benchmark runs its contenders side by side in one process on the same
inputs: warm-up calls, then rounds that time each contender once per round,
interleaved, so that a change of load on the machine hits all of them alike;
the median over rounds is reported.
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

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def time_interleaved(contenders: dict, *, warmup: int, repeats: int) -> dict:
    """contenders: name -> zero-argument callable. Returns name -> median seconds."""
    samples = interleaved_samples(contenders, warmup=warmup, repeats=repeats)
    return {name: statistics.median(times) for name, times in samples.items()}


def interleaved_samples(contenders: dict, *, warmup: int, repeats: int) -> dict:
    """contenders: name -> zero-argument callable. Returns name -> the `repeats` seconds
    of its timed calls."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f.startswith(("avx", "fma", "sse4")))
    except OSError:
        pass
    return []


def thread_count() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))


def load_average() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def suite_parser(description: str, *, repeats: int, warmup: int, quick_help: str):
    """The options conv and pooling share: --repeats, --warmup, --no-torch, --no-write,
    --device (cpu or cuda) and --quick (a smaller GPU set)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def import_torch(threads: int, leave_out: bool = False):
    """PyTorch on `threads` threads, or None when left out or not installed."""
    if leave_out:
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def run_info(threads: int, torch) -> dict:
    """When and on what a CPU run ran: date, CPU, cores, threads, fusednn and its CPU
    build, NumPy and torch versions."""
    import fusednn
    import fusednn._C as _C

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "fusednn": fusednn.__version__,
        "fusednn_build": {k: v for k, v in _C.build_info().items() if not k.startswith("cuda")},
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
    }


def machine_info() -> dict:
    import fusednn._C as _C

    info = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "threads": thread_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fusednn_build": _C.build_info(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    return info


def write_results(stem: str, payload: dict, markdown: str, tag: str = "") -> list:
    """Writes results/<stem>-<date>[-<tag>].json and .md; returns the two paths."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = f"{stem}-{datetime.date.today().isoformat()}" + (f"-{tag}" if tag else "")
    json_path = RESULTS_DIR / f"{name}.json"
    md_path = RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(markdown)
    return [json_path, md_path]


def markdown_table(header: list, rows: list, align: str = "") -> str:
    """A Markdown table; align holds one letter per column, 'r' for right-aligned
    (default: all left)."""
    align = align or "l" * len(header)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
