"""Every kernel file of csrc/cuda/ runs, unchanged, in the CUDA-on-CPU emulator
(tests/cuda_emu/) against its CPU twin or float64. The drivers in
tests/cuda_emu/drivers/ hold the cases and their tolerances; a driver exits
non-zero on a mismatch or when the emulator rejects what a kernel does. The
build comes from CUDA_EMU_BUILD: plain (the default: full cases, two scheduling
seeds), thread or address (the sanitizers: the drivers' --small cases)."""

import os
import pathlib

import pytest

from cuda_emu import emu_build

pytestmark = pytest.mark.cuda_emu

# Kernel files without kernels.
NO_KERNELS = {"device.cu"}


@pytest.fixture(scope="session")
def emu(tmp_path_factory):
    return emu_build.builder_fixture(tmp_path_factory)


def test_every_kernel_file_has_a_driver():
    files = {p.name for p in emu_build.CUDA.glob("*.cu")} - NO_KERNELS
    covered = {kernel for kernels, _ in emu_build.PROGRAMS.values() for kernel in kernels}
    assert files <= covered, f"kernel files no driver runs: {sorted(files - covered)}"


@pytest.mark.parametrize("name", sorted(emu_build.PROGRAMS))
def test_kernel_file_matches_its_reference(emu, name):
    program = emu.program(name)
    plain = emu.build == "plain"
    # Different seeds: other block orders, fiber interleavings and wmma layouts.
    for seed in (1, 2) if plain else (1,):
        result = emu_build.run(program, *([] if plain else ["--small"]), seed=seed)
        report = f"seed {seed}\n{result.stdout}\n{result.stderr[-6000:]}"
        assert result.returncode == 0, report
        assert result.stdout.rstrip().endswith("all cases passed"), report


def test_cuda_sync_names_the_faulting_kernel(emu):
    # The launch driver checks itself against the variable: without it (the
    # run above) the fault surfaces at the next synchronisation only; with it
    # the launch that faults throws and names its kernel.
    result = emu_build.run(emu.program("launch"), env={"FUSEDNN_CUDA_SYNC": "1"})
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}"
    assert "ok   FUSEDNN_CUDA_SYNC=1: the faulting launch names its kernel" in result.stdout
