"""Every benchmark suite in this folder in one run: fusednn side by side with PyTorch CPU
and, on a GPU, with cuDNN (through PyTorch).

    python benchmarks/run.py [--cpu] [--gpu] [--quick] [--suite NAME ...] [--no-write]
    fusednn bench ...            (the same, from a source checkout)

A suite is a bench_<name>.py file here with main(argv) (an older main() that reads
sys.argv works too); it prints its table and writes benchmarks/results/<name>-...json
and .md itself. This runner passes --no-write on, gives --quick suites a few
repeats and their own smaller mode where they have one, and afterwards writes
results/summary-<date>.md with the tables this run produced.

Devices: with neither flag, the CPU rows, and the GPU rows as well where
fusednn.has_cuda(); --cpu / --gpu pick one. A suite with GPU (cuDNN/CUDA) rows
declares DEVICES = ("cpu", "cuda") and takes --device cuda for them.
PyTorch is the reference everywhere, so it must be installed (the test extra).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import inspect
import pathlib
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"

# --quick: each suite's own small mode where it has one, else fewer repeats and warm-ups.
QUICK_ARGS = {
    "conv": ["--repeats", "3", "--warmup", "1"],
    "gemm": ["--repeats", "3", "--dtype", "float32"],
    "ops": ["--quick", "--repeats", "5"],
    "pooling": ["--repeats", "5", "--warmup", "1"],
    "recurrent": ["--quick", "--repeats", "3"],
}
# --quick on the GPU: the suites' smaller GPU sets, with enough repeats for a median.
QUICK_GPU_ARGS = {name: ["--quick", "--repeats", "5", "--warmup", "2"]
                  for name in ("conv", "ops", "pooling", "recurrent")}

TORCH_HINT = ('the benchmarks compare against PyTorch, which is not installed; install the test '
              'extra: pip install ".[test]" (it brings PyTorch CPU)')


def suite_names() -> list[str]:
    return sorted(path.stem[len("bench_"):] for path in HERE.glob("bench_*.py"))


def build_parser(prog=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Runs the benchmark suites (fusednn vs PyTorch CPU, and vs "
                               "cuDNN on a GPU), prints their tables and writes the results.")
    parser.add_argument("--cpu", action="store_true", help="only the CPU rows")
    parser.add_argument("--gpu", action="store_true",
                        help="only the GPU rows (cuDNN/CUDA); needs a usable GPU")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few repeats, small sizes where a suite has them")
    parser.add_argument("--suite", nargs="+", metavar="NAME", choices=suite_names(),
                        help=f"run only these suites (of: {', '.join(suite_names())})")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; write no results files")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    return parser


class BenchError(Exception):
    """The run cannot start (no PyTorch, no GPU for --gpu): printed, exit status 1."""


def devices_to_run(args) -> list[str]:
    """['cpu'], ['cuda'] or both, from the flags and whether a GPU is usable."""
    import fusednn.backend as backend

    if args.gpu:
        try:
            backend.check_device("cuda")
        except RuntimeError as e:
            raise BenchError(f"--gpu needs a usable GPU ({e}); run the CPU benchmarks with "
                             "--cpu") from None
    if args.cpu and args.gpu:
        return ["cpu", "cuda"]
    if args.cpu:
        return ["cpu"]
    if args.gpu:
        return ["cuda"]
    return ["cpu", "cuda"] if backend.has_cuda() else ["cpu"]


def load_suite(name: str):
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # the suites import their helpers as `common`
    return importlib.import_module(f"bench_{name}")


@contextlib.contextmanager
def _argv(program: str, arguments: list[str]):
    saved = sys.argv
    sys.argv = [program] + arguments
    try:
        yield
    finally:
        sys.argv = saved


def run_suite(module, arguments: list[str]) -> None:
    """Calls module.main with `arguments`; a non-zero SystemExit becomes RuntimeError."""
    takes_argv = bool(inspect.signature(module.main).parameters)
    try:
        if takes_argv:
            module.main(arguments)
        else:
            with _argv(module.__file__, arguments):
                module.main()
    except SystemExit as e:
        if e.code not in (None, 0):
            raise RuntimeError(f"{module.__name__} exited: {e.code}") from None


def suite_arguments(name: str, device: str, quick: bool, no_write: bool) -> list[str]:
    """The command line a suite gets for its rows on `device`."""
    quick_args = (QUICK_GPU_ARGS if device == "cuda" else QUICK_ARGS).get(name, [])
    return (["--device", "cuda"] if device == "cuda" else []) \
        + (quick_args if quick else []) + (["--no-write"] if no_write else [])


def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    names = args.suite or suite_names()
    if args.list:
        for name in names:
            module = load_suite(name)
            summary = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
            devices = ", ".join(getattr(module, "DEVICES", ("cpu",)))
            print(f"{name:<10} [{devices}] {summary}")
        return 0
    try:
        if importlib.util.find_spec("torch") is None:
            raise BenchError(TORCH_HINT)
        devices = devices_to_run(args)
    except BenchError as e:
        print(f"{prog or 'run.py'}: error: {e}", file=sys.stderr)
        return 1

    started = time.time()
    failed, ran = [], []
    for device in devices:
        for name in names:
            module = load_suite(name)
            if device not in getattr(module, "DEVICES", ("cpu",)):
                continue
            arguments = suite_arguments(name, device, args.quick, args.no_write)
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
    if not args.no_write:
        summary = write_summary(started)
        if summary is not None:
            print(f"wrote {summary}")
    return 1 if failed else 0


def write_summary(since: float):
    """results/summary-<date>.md: the Markdown tables the suites wrote since `since`."""
    tables = sorted(path for path in RESULTS_DIR.glob("*.md")
                    if path.stat().st_mtime >= since and not path.name.startswith("summary-"))
    if not tables:
        return None
    path = RESULTS_DIR / f"summary-{datetime.date.today().isoformat()}.md"
    parts = [f"# fusednn benchmarks, {datetime.date.today().isoformat()}\n"]
    for table in tables:
        text = table.read_text().strip()
        # Each suite's own title becomes a section.
        parts.append("#" + text if text.startswith("# ") else text)
        parts.append(f"\n(from `{table.relative_to(HERE)}`)\n")
    path.write_text("\n".join(parts) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
