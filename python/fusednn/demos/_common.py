"""What the demos share: optional imports with a clear error, the data sets, the
epoch-level progress bar, the result line against a baseline, and figure saving.

scikit-learn, statsmodels and matplotlib are imported here only when a demo asks
for them, so `import fusednn` (and `import fusednn.demos`) never needs them.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import time

import numpy as np

from .. import backend, distribute
from ..callbacks import Callback, Progbar

# Import name -> the distribution pip installs it from.
PACKAGES = {"sklearn": "scikit-learn", "statsmodels": "statsmodels", "matplotlib": "matplotlib"}

INSTALL_HINT = ('install the demo extra: pip install "fusednn[demo]" '
                '(from a source checkout: pip install ".[demo]")')

# Pictures are for a README gallery: small and legible.
FIGURE_DPI = 80


class MissingDependency(ImportError):
    """An optional package a demo needs is not installed; the message says what to install."""


def missing_packages(import_names) -> list[str]:
    """The pip names of the packages among `import_names` that cannot be imported."""
    return [PACKAGES.get(name, name) for name in import_names
            if importlib.util.find_spec(name) is None]


def require(import_name: str, what: str):
    """Imports the optional module `import_name`, or raises MissingDependency naming the extra.

    `what` says why it is needed, e.g. "the digits data set".
    """
    try:
        return importlib.import_module(import_name)
    except ImportError as e:
        package = PACKAGES.get(import_name.split(".")[0], import_name)
        raise MissingDependency(f"{package} is needed for {what} but cannot be imported ({e}); "
                                f"{INSTALL_HINT}") from None


# ----- data ------------------------------------------------------------------------

def digits_split(seed: int = 0):
    """scikit-learn's 1,797 handwritten digits (8x8, ink 0..16), scaled to [0, 1] and split
    75 / 25 with the classes in proportion: x_train (N, 8, 8), x_test, y_train (N,), y_test."""
    datasets = require("sklearn.datasets", "the digits data set")
    model_selection = require("sklearn.model_selection", "splitting the digits data set")
    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    return model_selection.train_test_split(images, digits.target, test_size=0.25,
                                            random_state=seed, stratify=digits.target)


def sunspots():
    """Yearly mean sunspot numbers 1700-2008 shipped with statsmodels: (years, values) float64."""
    sm = require("statsmodels.api", "the sunspots data set")
    frame = sm.datasets.sunspots.load_pandas().data
    return frame["YEAR"].to_numpy(np.float64), frame["SUNACTIVITY"].to_numpy(np.float64)


def pca(x_train, components: int):
    """scikit-learn's PCA fitted on x_train (N, D)."""
    decomposition = require("sklearn.decomposition", "the PCA baseline")
    return decomposition.PCA(components, random_state=0).fit(x_train)


# ----- devices -----------------------------------------------------------------------

def on_device(array, device: str):
    """`array` on 'cpu' (NumPy) or 'cuda' (CuPy) for hand-written loops; fit copies by itself."""
    return backend.to_device(array, device)


# ----- progress ---------------------------------------------------------------------

class EpochProgress(Callback):
    """One progress bar over all epochs of `fit` (many short epochs would print a bar each)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.progbar = Progbar(epochs, verbose=1, unit_name="epoch")

    def on_epoch_end(self, epoch, logs=None):
        values = [(k, v) for k, v in (logs or {}).items()]
        self.progbar.update(epoch + 1, values, finalize=epoch + 1 == self.progbar.target)


# ----- results ----------------------------------------------------------------------

class Result:
    """A demo's final metric next to its baseline, and the pictures it wrote."""

    def __init__(self, demo: str, metric: str, value: float, baseline: str,
                 baseline_value: float, higher_is_better: bool, images=(), details=""):
        self.demo, self.metric, self.value = demo, metric, float(value)
        self.baseline, self.baseline_value = baseline, float(baseline_value)
        self.higher_is_better = higher_is_better
        self.images = [str(p) for p in images]
        self.details = details
        self.seconds = None  # set by the runner

    @property
    def beats_baseline(self) -> bool:
        if self.higher_is_better:
            return self.value > self.baseline_value
        return self.value < self.baseline_value

    def verdict(self) -> str:
        return "PASS" if self.beats_baseline else "BELOW BASELINE"

    def report(self) -> str:
        """The lines a demo ends with: metric, baseline, verdict, pictures."""
        better = "higher" if self.higher_is_better else "lower"
        lines = [f"[{self.demo}] {self.metric}: {format_number(self.value)}   "
                 f"baseline ({self.baseline}): {format_number(self.baseline_value)}   "
                 f"({better} is better)"]
        if self.details:
            lines.append(f"[{self.demo}] {self.details}")
        if self.beats_baseline:
            lines.append(f"[{self.demo}] PASS: fusednn beats the baseline")
        else:
            lines.append(f"[{self.demo}] BELOW BASELINE: the model did not beat the baseline "
                         "(expected with very few epochs; the defaults beat it)")
        lines += [f"[{self.demo}] wrote {path}" for path in self.images]
        return "\n".join(lines)


def format_number(value: float) -> str:
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.3e}"
    return f"{value:.4f}"


def header(demo: str, text: str) -> None:
    print(f"\n=== fusednn demo {demo}: {text} ===", flush=True)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


# ----- figures ------------------------------------------------------------------------

def figure(width: float, height: float, **subplots):
    """(figure, axes) drawn off-screen with matplotlib's object API (no pyplot, no display)."""
    require("matplotlib", "the demo pictures")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI)
    if subplots:
        return fig, fig.subplots(**subplots)
    return fig, None


def save(fig, out_dir, name: str) -> str:
    """Writes `fig` as out_dir/name (PNG); returns the path. In a job of several ranks
    (mpiexec) only rank 0 writes."""
    path = os.path.join(out_dir, name)
    if distribute.rank() == 0:
        os.makedirs(out_dir, exist_ok=True)
        fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
    return path


def plot_history(ax, history: dict, keys, title: str, ylabel: str, log: bool = False,
                 labels=None, xlabel: str = "epoch") -> None:
    """Curves of `history` (fit's History.history or a dict of lists) for the given keys;
    `labels` renames keys in the legend."""
    labels = labels or {}
    for key in keys:
        if key in history and history[key]:
            values = history[key]
            ax.plot(np.arange(1, len(values) + 1), values,
                    label=labels.get(key, key.replace("_", " ")))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def image_rows(fig, rows, titles, columns_title=None) -> None:
    """A grid of grey images: `rows` is a list of arrays (k, H, W), one row of k pictures each,
    labelled with `titles`."""
    k = len(rows[0])
    axes = fig.subplots(len(rows), k, squeeze=False)
    for r, (images, title) in enumerate(zip(rows, titles)):
        for c in range(k):
            ax = axes[r][c]
            ax.imshow(images[c], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=9, rotation=0, ha="right", va="center")
    if columns_title:
        fig.suptitle(columns_title, fontsize=10)
