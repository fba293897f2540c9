"""Every benchmark suite in one run: fusednn side by side with PyTorch CPU and, on a GPU,
with cuDNN (through PyTorch).

    fusednn bench [--cpu] [--gpu] [--quick] [--suite NAME ...] [--out DIR] [--no-write]
                  [--fma-pipes N] [--compare FILE]
    python -m fusednn.bench ...          (the same)

A suite is a bench_<name>.py module of this package with main(argv); it prints its
table and writes <--out>/<name>-...json and .md itself (common.write_results). This
runner measures the CPU's limits first (limits.py), passes --out, --no-write and
--fma-pipes on, gives --quick suites a few repeats and their own smaller mode where they
have one, and afterwards writes <--out>/summary-<date>.md and .json with what this run
produced; --compare puts this run's rows beside an earlier results file's (compare.py).

Devices: with neither flag, the CPU rows, and the GPU rows as well where
fusednn.has_cuda(); --cpu / --gpu pick one. A suite with GPU (cuDNN/CUDA) rows
declares DEVICES = ("cpu", "cuda") and takes --device cuda for them.
PyTorch is the reference everywhere, so it must be installed (the bench extra).
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import pathlib
import pkgutil
import sys
import time
import traceback

from . import common, compare, limits

# --quick: each suite's own small mode where it has one, else fewer repeats and warm-ups.
QUICK_ARGS = {
    "conv": ["--repeats", "3", "--warmup", "1"],
    "distributed": ["--quick"],
    "gemm": ["--repeats", "3", "--dtype", "float32"],
    "interleaved": ["--quick"],
    "ops": ["--quick", "--repeats", "5"],
    "pooling": ["--repeats", "5", "--warmup", "1"],
    "recurrent": ["--quick", "--repeats", "3"],
    "shared_cores": ["--quick"],
}
# --quick on the GPU: the suites' smaller GPU sets, with enough repeats for a median.
QUICK_GPU_ARGS = {name: ["--quick", "--repeats", "5", "--warmup", "2"]
                  for name in ("conv", "ops", "pooling", "recurrent")}

TORCH_HINT = ('the benchmarks compare against PyTorch, which is not installed; install the '
              'bench extra: pip install "fusednn[bench]" (it brings PyTorch)')


def suite_names() -> list[str]:
    package = pathlib.Path(__file__).resolve().parent
    return sorted(module.name[len("bench_"):] for module in pkgutil.iter_modules([str(package)])
                  if module.name.startswith("bench_"))


def build_parser(prog=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Runs the benchmark suites (fusednn vs PyTorch CPU, and vs "
                                "cuDNN on a GPU), prints their tables, each row with its "
                                "fraction of the measured hardware limit, and writes them "
                                "as JSON and Markdown to --out.")
    parser.add_argument("--cpu", action="store_true", help="only the CPU rows")
    parser.add_argument("--gpu", action="store_true",
                        help="only the GPU rows (cuDNN/CUDA); needs a usable GPU")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few repeats, small sizes where a suite has them")
    parser.add_argument("--suite", nargs="+", metavar="NAME", choices=suite_names(),
                        help=f"run only these suites (of: {', '.join(suite_names())})")
    common.add_run_options(parser)
    parser.add_argument("--compare", metavar="FILE",
                        help="earlier results (a suite's JSON, or the summary-<date>.json of "
                             "a whole run) to show this run beside")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    return parser


class BenchError(Exception):
    """The run cannot start (no PyTorch, no GPU for --gpu, an unreadable --compare file):
    printed, exit status 1."""


def devices_to_run(args) -> list[str]:
    """['cpu'], ['cuda'] or both, from the flags and whether the GPU rows can run: fusednn's
    GPU, CuPy, and a CUDA build of torch (gpu.require_gpu)."""
    from . import gpu

    if args.cpu and not args.gpu:
        return ["cpu"]
    try:
        gpu.require_gpu()
    except gpu.GpuUnavailable as e:
        if args.gpu:
            raise BenchError(f"--gpu needs a usable GPU ({e}); run the CPU benchmarks with "
                             "--cpu") from None
        if gpu.backend.has_cuda():  # a GPU, but not one every GPU row can use
            print(f"GPU rows left out: {e}", flush=True)
        return ["cpu"]
    return ["cpu", "cuda"] if args.cpu or not args.gpu else ["cuda"]


def load_suite(name: str):
    return importlib.import_module(f"{__package__}.bench_{name}")


def run_suite(module, arguments: list[str]) -> None:
    """Calls module.main(arguments); a non-zero SystemExit becomes RuntimeError."""
    try:
        module.main(arguments)
    except SystemExit as e:
        if e.code not in (None, 0):
            raise RuntimeError(f"{module.__name__} exited: {e.code}") from None


def suite_arguments(name: str, device: str, args) -> list[str]:
    """The command line a suite gets for its rows on `device`."""
    quick_args = (QUICK_GPU_ARGS if device == "cuda" else QUICK_ARGS).get(name, [])
    return (["--device", "cuda"] if device == "cuda" else []) \
        + (quick_args if args.quick else []) + ["--out", str(args.out)] \
        + (["--no-write"] if args.no_write else []) \
        + (["--fma-pipes", str(args.fma_pipes)] if args.fma_pipes else [])


def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    names = args.suite or suite_names()
    if args.list:
        for name in names:
            module = load_suite(name)
            summary = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
            devices = ", ".join(getattr(module, "DEVICES", ("cpu",)))
            print(f"{name:<12} [{devices}] {summary}")
        return 0
    try:
        if importlib.util.find_spec("torch") is None:
            raise BenchError(TORCH_HINT)
        devices = devices_to_run(args)
        before = compare.load(args.compare) if args.compare else None
    except (BenchError, compare.CompareError) as e:
        print(f"{prog or 'fusednn bench'}: error: {e}", file=sys.stderr)
        return 1
    if "cpu" in devices:
        # Measured once here; the suites of this process reuse it.
        hardware = limits.cpu_limits(common.thread_count(), args.fma_pipes)
        print(limits.describe(hardware), flush=True)

    started = time.time()
    common.produced.clear()
    failed, ran = [], []
    for device in devices:
        for name in names:
            module = load_suite(name)
            if device not in getattr(module, "DEVICES", ("cpu",)):
                continue
            arguments = suite_arguments(name, device, args)
            print(f"\n===== {name} ({device}) {' '.join(arguments)} =====", flush=True)
            try:
                run_suite(module, arguments)
                ran.append(f"{name} ({device})")
            except Exception:
                traceback.print_exc()
                failed.append(f"{name} ({device})")
    if "cuda" in devices and not any("(cuda)" in item for item in ran + failed):
        print("\nNo suite has GPU (cuDNN/CUDA) rows yet; only the CPU rows were run.")

    print(f"\nran {len(ran)} suite(s) in {time.time() - started:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    comparison = None
    if before is not None:
        now = {compare.series(entry["name"]): compare.rows_of(entry["payload"])
               for entry in common.produced}
        comparison = compare.markdown(*compare.compare(before, now), args.compare)
        print("\n" + comparison)
    if not args.no_write:
        for path in write_summary(pathlib.Path(args.out), comparison):
            print(f"wrote {path}")
    return 1 if failed else 0


def write_summary(out: pathlib.Path, comparison) -> list:
    """<out>/summary-<date>.md (every table of this run, then the comparison) and .json
    (every suite's results, the machine and its limits: what --compare reads)."""
    if not common.produced:
        return []
    out.mkdir(parents=True, exist_ok=True)
    date = datetime.date.today().isoformat()
    parts = [f"# fusednn benchmarks, {date}\n"]
    for entry in common.produced:
        text = entry["markdown"].strip()
        # Each suite's own title becomes a section.
        parts.append("#" + text if text.startswith("# ") else text)
        parts.append(f"\n(from `{entry['name']}.md`)\n")
    if comparison is not None:
        parts.append("#" + comparison)
    markdown_path, json_path = out / f"summary-{date}.md", out / f"summary-{date}.json"
    markdown_path.write_text("\n".join(parts) + "\n")
    summary = {"date": date, "machine": common.machine_info(),
               "runs": [{"name": e["name"], "payload": e["payload"]} for e in common.produced]}
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return [markdown_path, json_path]


if __name__ == "__main__":
    sys.exit(main())
