"""Timing and reporting helpers shared by the benchmark suites.

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

# Results go to a folder in the current directory unless --out says otherwise (never into
# the installed package).
DEFAULT_OUT = "fusednn-bench"


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


def add_run_options(parser) -> None:
    """The options every suite and the runner share: where results go and the FMA pipes."""
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"folder for the JSON and Markdown results (default: ./{DEFAULT_OUT})")
    parser.add_argument("--no-write", action="store_true", help="print only; write no files")
    parser.add_argument("--fma-pipes", type=int, choices=range(1, 9), default=None, metavar="N",
                        help="FMA pipes per core for the CPU's FLOP peak, instead of the "
                             "table in fusednn.bench.limits")


def suite_parser(description: str, *, repeats: int, warmup: int, quick_help: str):
    """The options conv and pooling share: --repeats, --warmup, --no-torch, --device (cpu
    or cuda), --quick (a smaller GPU set) and the run options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    add_run_options(parser)
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


def machine_info() -> dict:
    """When and on what a CPU run ran: date, CPU, its flags, the ISA fusednn uses, cores,
    threads, load average, and the versions of Python, NumPy, fusednn (its build and where
    it was imported from) and torch."""
    import fusednn
    import fusednn._C as _C

    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_simd": fusednn.info(print_fn=None)["cpu_simd"],
        "logical_cores": os.cpu_count(),
        "threads": thread_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fusednn": fusednn.__version__,
        "fusednn_location": os.path.dirname(os.path.abspath(fusednn.__file__)),
        "fusednn_build": {k: v for k, v in _C.build_info().items() if not k.startswith("cuda")},
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    return info


# What this process wrote (or, with --no-write, would have): one entry per write_results
# call, for the runner's summary and --compare.
produced: list = []


def results_name(stem: str, tag: str = "") -> str:
    """<stem>-<date>[-<tag>]: e.g. conv-cpu-2026-12-06 or recurrent-cpu-2026-12-06-1thread."""
    return f"{stem}-{datetime.date.today().isoformat()}" + (f"-{tag}" if tag else "")


def write_results(args, stem: str, payload: dict, markdown: str, tag: str = "") -> list:
    """Records the results and, unless args.no_write, writes <args.out>/<results_name>.json
    and .md; returns the paths written."""
    name = results_name(stem, tag)
    produced.append({"name": name, "payload": payload, "markdown": markdown})
    if args.no_write:
        return []
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(markdown)
    return [json_path, md_path]


def print_and_write(args, stem: str, payload: dict, markdown: str) -> None:
    """Prints a suite's Markdown, then write_results and the paths written."""
    print(markdown)
    paths = write_results(args, stem, payload, markdown)
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths))


def fraction(work, seconds, limit_per_second):
    """Achieved rate (work / seconds) over the limit, or None when either is unknown."""
    if not work or not seconds or not limit_per_second:
        return None
    return work / seconds / limit_per_second


def add_fractions(row: dict, median: dict, work, limit_per_second, limit_name: str) -> dict:
    """row[<lib>_fraction] for each library's median seconds: work (FLOP or bytes) per
    second over limit_per_second; row['ceiling'] names the limit."""
    for lib, seconds in median.items():
        row[f"{lib.replace(' ', '_')}_fraction"] = fraction(work, seconds, limit_per_second)
    row["ceiling"] = limit_name
    return row


def percent(value) -> str:
    return "" if value is None else f"{100 * value:.0f}%"


def fraction_cells(row: dict) -> list:
    """The CPU tables' last three cells: fusednn's and torch's fraction of the limit, and
    which limit."""
    return [percent(row.get("fusednn_fraction")), percent(row.get("torch_fraction")),
            row.get("ceiling", "")]


def markdown_table(header: list, rows: list, align: str = "") -> str:
    """A Markdown table; align holds one letter per column, 'r' for right-aligned
    (default: all left)."""
    align = align or "l" * len(header)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
