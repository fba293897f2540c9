"""`fusednn bench` from an installed package, outside any checkout (issue 19): the package
is built and installed (pip install --target, CPU only) into a temporary folder once per
session, and its console script runs the quick ops suite from another folder. It must
write JSON and Markdown results there, with every row's fraction of the measured
hardware limit, and nothing into the installed package. The build takes a minute or two;
the test is skipped only where the build toolchain (cmake, a C++ compiler) is missing.
Plumbing only: the times it measures are never asserted."""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _missing_toolchain():
    if shutil.which("cmake") is None and importlib.util.find_spec("cmake") is None:
        return "no cmake"
    if not any(shutil.which(compiler) for compiler in ("c++", "g++", "clang++")):
        return "no C++ compiler"
    return None


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """(folder the package is installed in, its bin/ with the fusednn script)."""
    missing = _missing_toolchain()
    if missing:
        pytest.skip(f"cannot build fusednn here: {missing}")
    root = tmp_path_factory.mktemp("installed")
    target = root / "site"
    # The build's own requirements from this environment where it has them (no download).
    have_build_requirements = all(importlib.util.find_spec(name) is not None
                                  for name in ("scikit_build_core", "nanobind"))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--target", str(target), "-C", f"build-dir={root / 'build'}"]
    command += ["--no-build-isolation"] if have_build_requirements else []
    env = dict(os.environ, FUSEDNN_CUDA="OFF", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    result = subprocess.run(command + [str(REPO)], env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    return target, target / "bin"


def _run(installed, arguments, cwd):
    target, scripts = installed
    # Only the installed package: the checkout's python/ must not be on the path.
    env = dict(os.environ, PYTHONPATH=str(target))
    return subprocess.run([str(scripts / "fusednn"), *arguments], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _files(folder: pathlib.Path) -> set:
    return {path.relative_to(folder) for path in folder.rglob("*") if path.is_file()}


# slow: a build of minutes, which .ci/sanitize (-m "not slow") would run under ASan too.
@pytest.mark.slow
def test_bench_runs_from_an_installed_package_outside_a_checkout(installed, tmp_path):
    pytest.importorskip("torch")
    target, _ = installed
    assert (target / "fusednn" / "bench" / "bench_ops.py").is_file()
    assert not (target / "benchmarks").exists()  # the recorded results stay in the repository
    before = _files(target)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = _run(installed, ["bench", "--cpu", "--quick", "--suite", "ops", "--out",
                              "results/"], elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hardware limits:" in result.stdout
    assert _files(target) - before == set()  # nothing written into the installed package

    date = datetime.date.today().isoformat()
    results = elsewhere / "results"
    assert {p.name for p in results.iterdir()} == {
        f"{stem}-{date}.{ext}" for stem in ("ops-cpu", "summary") for ext in ("json", "md")}
    payload = json.loads((results / f"ops-cpu-{date}.json").read_text())
    info = payload["info"]
    # The installed package ran, not the checkout's sources.
    assert info["fusednn_location"].startswith(str(target))
    limits = info["limits"]
    assert limits["copy_GBps"] > 0 and limits["isa"] == info["cpu_simd"]
    for key in ("cpu", "logical_cores", "threads", "load_average_before", "numpy", "torch"):
        assert info[key] is not None, key
    assert len(payload["results"]) == 4  # --quick: one cross-entropy shape, one model
    for row in payload["results"]:
        assert row["ceiling"] == "copy" and row["bytes"] > 0
        for lib in ("fusednn", "torch"):
            # bytes / seconds / bandwidth, recomputed from what the row records (its times
            # in ms are the same medians, so only float rounding separates the two)
            expected = row["bytes"] / (row[f"{lib}_ms"] / 1e3) / (limits["copy_GBps"] * 1e9)
            assert row[f"{lib}_fraction"] == pytest.approx(expected, rel=1e-9)
    markdown = (results / f"ops-cpu-{date}.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert "fusednn of limit" in table[0]
    assert all(line.split("|")[-4].strip().endswith("%") for line in table[1:])
    summary = json.loads((results / f"summary-{date}.json").read_text())
    assert [run["name"] for run in summary["runs"]] == [f"ops-cpu-{date}"]
