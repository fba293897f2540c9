"""python -m fusednn.bench: the same as fusednn bench."""
import sys

from .run import main

sys.exit(main(prog="python -m fusednn.bench"))
