import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import fusednn as fd


def pytest_collection_modifyitems(config, items):
    if fd.has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU, CUDA kernels and CuPy (fd.has_cuda() is False)")
    for item in items:
        # The marker itself: item.keywords also holds the directory names, so a
        # checkout in a folder named "cuda" would skip every test.
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def compile_cuda_for_host(tmp_path_factory):
    """compile(source, needs, name) -> path of a program built by nvcc from the .cu text
    `source` as HOST code, so a test replays a kernel's __host__ __device__ phases thread
    by thread on the CPU. Skips where nvcc or csrc/cuda/<needs> is missing."""
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if pathlib.Path("/usr/local/cuda/bin/nvcc").exists() else None)
    kernel_dir = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "cuda"

    def compile(source: str, needs: str, name: str) -> pathlib.Path:
        if nvcc is None or not (kernel_dir / needs).exists():
            pytest.skip("needs nvcc and the CUDA sources")
        work = tmp_path_factory.mktemp(name)
        (work / f"{name}.cu").write_text(source)
        program = work / name
        subprocess.run([nvcc, "-std=c++17", "--expt-relaxed-constexpr", "-O1", "-arch=sm_80",
                        f"-I{kernel_dir}", f"-I{kernel_dir.parent / 'include'}",
                        str(work / f"{name}.cu"), "-o", str(program)],
                       check=True, capture_output=True)
        return program
    return compile
