"""The emulator itself under test: deliberately broken copies of real kernels,
made by text edits of csrc/cuda/ at test time (so they follow the sources), that
the emulator must reject. A mutant passes its driver only if the emulator misses
the bug: that fails the test. Each edit must match the source exactly once, so a
source change that removes the pattern fails here too, and the mutant is updated
rather than silently dropped. Run in the plain step only (CUDA_EMU_BUILD unset
or plain); a mutant that needs ThreadSanitizer builds its own program."""

import re
import shutil
from dataclasses import dataclass

import pytest

from cuda_emu import emu_build

pytestmark = pytest.mark.cuda_emu


@dataclass(frozen=True)
class Mutant:
    name: str
    driver: str
    file: str  # in csrc/cuda/
    original: str
    replacement: str
    evidence: str  # a regular expression the driver's output must contain
    build: str = "plain"
    args: tuple = ()


MUTANTS = [
    # The block-wide merge reads shared[] before the other warps wrote it: the
    # poisoned (NaN) shared memory reaches the results.
    Mutant("removed __syncthreads", "cross_entropy", "cross_entropy.cu",
           "    if (threadIdx.x % kWarpSize == 0) shared[warp] = s;\n    __syncthreads();\n",
           "    if (threadIdx.x % kWarpSize == 0) shared[warp] = s;\n",
           r"FAIL .*C=1500"),
    # Lane 31 shuffles with a mask that leaves it out.
    Mutant("wrong shuffle mask", "cross_entropy", "cross_entropy.cu",
           "other.max = __shfl_xor_sync(0xffffffffu, s.max, offset);",
           "other.max = __shfl_xor_sync(0x7fffffffu, s.max, offset);",
           r"lane 31\) is not in its mask 0x7fffffff"),
    # The barrier moves into a branch that only some threads take.
    Mutant("__syncthreads in divergent code", "conv", "conv.cu",
           "  __syncthreads();\n  if (threadIdx.y == 0 && f < F) {\n",
           "  if (threadIdx.y == 0 && f < F) {\n    __syncthreads();\n",
           r"__syncthreads at .*conv\.cu:\d+: thread .* never arrives"),
    # matrix_a declared row-major while the tile is stored k-major.
    Mutant("wmma matrix_a with the wrong layout", "conv", "conv_implicit_gemm.cuh",
           "nvcuda::wmma::precision::tf32, nvcuda::wmma::col_major>;",
           "nvcuda::wmma::precision::tf32, nvcuda::wmma::row_major>;",
           r"FAIL .* tf32 y"),
    # A leading dimension of 130 floats: 520 bytes, not a multiple of 16.
    Mutant("wmma ldm not a multiple of 16 bytes", "conv", "conv_implicit_gemm.cuh",
           "load_matrix_sync(fa[i], a + kk * kLdA + wm + 16 * i, kLdA);",
           "load_matrix_sync(fa[i], a + kk * kLdA + wm + 16 * i, kLdA - 2);",
           r"ldm 130 is not a multiple of 16 bytes"),
    # Blocks of the persistent recurrent kernel run ahead into the next step
    # before the others wrote h_t.
    Mutant("removed grid.sync", "recurrent", "recurrent_persistent.cuh",
           "    grid.sync();  // h_t and the next input complete everywhere (a memory fence included)\n",
           "", r"FAIL .* persistent", args=("--small",)),
    # Inference writes the next step's input into the buffer this step reads.
    Mutant("broken ping-pong buffer", "recurrent", "recurrent_persistent.cuh",
           ": feed + ((t + 1) % 2) * N * U;", ": feed + (t % 2) * N * U;",
           r"FAIL .*inference persistent", args=("--small",)),
    # Deterministic mode falls back to the atomic sums of dw: two schedules
    # give different bits.
    Mutant("deterministic dw through atomics", "conv", "conv.cu",
           "if (deterministic && splits > 1) {", "if (false && splits > 1) {",
           r"FAIL .* deterministic dw bitwise equal"),
    # The next slice is staged while other threads still multiply the current
    # one: a race in shared memory that only ThreadSanitizer sees reliably.
    Mutant("race on the shared slices", "gemm", "gemm.cu",
           "        __syncthreads();  // the slices are overwritten next\n", "",
           r"ThreadSanitizer: data race", build="thread", args=("--small",)),
]


@pytest.mark.skipif(emu_build.current_build() != "plain",
                    reason="the mutants run in the plain step of CI")
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_emulator_rejects_mutant(tmp_path_factory, mutant):
    emu = emu_build.builder_fixture(tmp_path_factory, mutant.build)
    source = (emu_build.CUDA / mutant.file).read_text()
    assert source.count(mutant.original) == 1, f"the mutation no longer matches {mutant.file}"
    # The mutant's directory holds a copy of every kernel source with the one
    # edit, so quoted includes (also those inside headers) find the copies.
    work = tmp_path_factory.mktemp("mutant")
    for kernel_source in [*emu_build.CUDA.glob("*.cu"), *emu_build.CUDA.glob("*.cuh")]:
        shutil.copy(kernel_source, work / kernel_source.name)
    (work / mutant.file).write_text(source.replace(mutant.original, mutant.replacement))
    tag = "_" + re.sub(r"\W+", "_", mutant.name)
    program = emu.program(mutant.driver, kernel_dir=work, tag=tag)
    result = emu_build.run(program, *mutant.args)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"the emulator accepted the mutant:\n{output[-3000:]}"
    assert re.search(mutant.evidence, output), f"rejected for another reason:\n{output[-3000:]}"
