"""The `fusednn` command (also `python -m fusednn`)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fusednn", description="fusednn command line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="version, build flags, CPU SIMD level, CUDA build and GPU")
    args = parser.parse_args(argv)
    if args.command == "info":
        from . import _info
        _info.info()
    return 0


if __name__ == "__main__":
    sys.exit(main())
