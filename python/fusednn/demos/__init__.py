"""Demos behind `fusednn demo NAME`: small models trained on real data shipped inside PyPI
packages (scikit-learn's digits, statsmodels' sunspots) or on a generated task, each
printing its model, a progress bar and its final metric next to a simple baseline,
and writing a PNG.

    from fusednn import demos
    result = demos.run("cnn", device="cpu", epochs=None, out_dir="fusednn-demos")

Each demo module has TITLE, REQUIRES (optional packages, imported lazily),
DEFAULT_EPOCHS and run(device, epochs, out_dir) -> Result.
"""
from __future__ import annotations

import importlib

from ._common import MissingDependency, Result, missing_packages, INSTALL_HINT

# In the order `fusednn demo all` runs them.
NAMES = ("cnn", "lstm", "gru", "autoencoder", "denoising", "gan", "wgan", "seq2seq")


def module(name: str):
    """The demo module for `name` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"unknown demo {name!r}; the demos are: {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")


def check_requirements(names) -> None:
    """Raises MissingDependency, before any training, if a demo in `names` lacks a package."""
    needed = []
    for name in names:
        for package in module(name).REQUIRES:
            if package not in needed:
                needed.append(package)
    missing = missing_packages(needed)
    if missing:
        raise MissingDependency(f"the demos {', '.join(names)} need {', '.join(missing)}, which "
                                f"{'is' if len(missing) == 1 else 'are'} not installed; "
                                f"{INSTALL_HINT}")


def run(name: str, device: str = "cpu", epochs=None, out_dir: str = ".") -> Result:
    """Runs one demo and returns its Result (with .seconds set); prints as it goes."""
    from .. import utils
    from ._common import Timer

    demo = module(name)
    utils.clear_session()  # layer names start again at dense, dense_1, ... in every demo
    with Timer() as timer:
        result = demo.run(device=device, epochs=epochs, out_dir=out_dir)
    result.seconds = timer.seconds
    print(result.report(), flush=True)
    print(f"[{name}] took {timer.seconds:.1f} s", flush=True)
    return result


__all__ = ["NAMES", "MissingDependency", "Result", "check_requirements", "module", "run"]
