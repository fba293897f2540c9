"""The `fusednn` command (also `python -m fusednn`).

    fusednn info                         version, build flags, CPU SIMD level and threads, CUDA
    fusednn demo NAME... [--device cpu|cuda] [--epochs N] [--out DIR]
                                         train a demo model and plot it (NAME: a demo or all)
    fusednn bench [--cpu] [--gpu] [--quick] [--out DIR] [--compare FILE] ...
                                         benchmarks against PyTorch CPU (and cuDNN on a GPU),
                                         each row a fraction of the hardware limit
                                         (fusednn.bench.run)

Usage errors exit with 2 (argparse), missing packages, a missing GPU and the like
with 1, each with a message that says what to do.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

DEFAULT_DEMO_DIR = "fusednn-demos"


class CommandError(Exception):
    """A problem with the environment (not the arguments): printed, exit status 1."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import demos

    parser = argparse.ArgumentParser(
        prog="fusednn", description="fusednn: deep learning on hand-written C++ and CUDA kernels")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("info", help="version, build flags, CPU SIMD level and threads, CUDA "
                                     "build and GPU",
                        description="Prints what this build of fusednn is and what it can use.")

    names = list(demos.NAMES) + ["all"]
    demo = commands.add_parser(
        "demo", help="train a demo model on real data and compare it with a baseline",
        description="Trains demo models on data shipped inside PyPI packages (scikit-learn's "
                    "digits, statsmodels' sunspots) or on a generated task; prints each model's "
                    "summary, a progress bar and its final metric next to a simple baseline, "
                    "and writes PNG pictures. Needs the demo extra: "
                    'pip install "fusednn[demo]".')
    demo.add_argument("names", nargs="+", choices=names, metavar="NAME",
                      help=f"one or more of: {', '.join(names)}")
    demo.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                      help="cpu (default) or cuda (needs a GPU, fusednn built with CUDA, CuPy)")
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help="training epochs for every demo given (default: each demo's own, "
                           "chosen to beat its baseline)")
    demo.add_argument("--out", default=DEFAULT_DEMO_DIR, metavar="DIR",
                      help=f"folder for the PNG pictures (default: ./{DEFAULT_DEMO_DIR})")

    commands.add_parser(
        "bench", add_help=False,
        help="benchmarks against PyTorch CPU and, on a GPU, cuDNN, with each row's fraction "
             "of the hardware limit",
        description="Runs fusednn.bench.run; every argument is passed on (see fusednn bench "
                    "--help).")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    # Everything after `bench` belongs to fusednn.bench.run, which parses it.
    args, bench_args = parser.parse_known_args(argv)
    if bench_args and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(bench_args)}")
    try:
        if args.command == "info":
            from . import _info
            _info.info()
            return 0
        if args.command == "demo":
            return _demo(args)
        return _bench(bench_args)
    except CommandError as e:
        print(f"fusednn {args.command}: error: {e}", file=sys.stderr)
        return 1


# ----- demo ------------------------------------------------------------------------------

def _demo(args) -> int:
    from . import backend, demos, distribute

    # Under mpiexec the demos' fit trains data-parallel; only rank 0 prints and writes
    # the pictures (a no-op in one process).
    distribute.initialize()
    if distribute.rank() != 0:
        with contextlib.redirect_stdout(io.StringIO()):
            return _run_demos(args, backend, demos)
    return _run_demos(args, backend, demos)


def _run_demos(args, backend, demos) -> int:

    names = []
    for name in args.names:
        for expanded in (demos.NAMES if name == "all" else (name,)):
            if expanded not in names:
                names.append(expanded)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"--out {args.out!r} exists and is not a folder")
    try:
        demos.check_requirements(names)
    except demos.MissingDependency as e:
        raise CommandError(str(e)) from None
    if args.device == "cuda":
        try:
            backend.check_device("cuda")
        except RuntimeError as e:
            raise CommandError(f"--device cuda cannot be used: {e}. Run the demos on the CPU "
                               "(--device cpu), or see fusednn info") from None

    results = []
    for name in names:
        try:
            results.append(demos.run(name, device=args.device, epochs=args.epochs,
                                     out_dir=args.out))
        except demos.MissingDependency as e:
            raise CommandError(str(e)) from None
    if len(results) > 1:
        _print_demo_table(results)
    return 0


def _print_demo_table(results) -> None:
    from .demos._common import format_number

    rows = [["demo", "metric", "fusednn", "baseline", "value", "result", "time"]]
    for r in results:
        rows.append([r.demo, r.metric, format_number(r.value), r.baseline,
                     format_number(r.baseline_value), r.verdict(), f"{r.seconds:.0f} s"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * width for width in widths))
    total = sum(r.seconds for r in results)
    beaten = sum(r.beats_baseline for r in results)
    print(f"\n{beaten} of {len(results)} demos beat their baseline; {total:.0f} s in all. "
          f"Pictures: {os.path.abspath(os.path.dirname(results[0].images[0]))}")


# ----- bench -----------------------------------------------------------------------------

def _bench(bench_args) -> int:
    from .bench import run

    return run.main(bench_args, prog="fusednn bench")


if __name__ == "__main__":
    sys.exit(main())
