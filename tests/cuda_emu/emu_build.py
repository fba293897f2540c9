"""Builds the emulator's driver programs (tests/cuda_emu/drivers/) with g++: the
kernel file of csrc/cuda/ compiled as host C++ against tests/cuda_emu/include/,
its CPU twin from csrc/cpu/, the driver and the emulator runtime. Objects are
cached per build directory, so each file compiles once per session and build.

Builds: "plain", "thread" (ThreadSanitizer) and "address" (AddressSanitizer and
UndefinedBehaviorSanitizer)."""

import os
import pathlib
import platform
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parents[2]
EMU = ROOT / "tests" / "cuda_emu"
CUDA = ROOT / "csrc" / "cuda"
CPU = ROOT / "csrc" / "cpu"

# The CPU GEMM, packed GEMM, its packed operand and the cache sizes its blocking
# follows (several twins call them).
_CPU_GEMM = ["gemm.cpp", "gemm_packed.cpp", "gemm_packed_matrix.cpp", "cpu_caches.cpp"]

# driver name -> (kernel files of csrc/cuda, CPU twins in csrc/cpu)
PROGRAMS = {
    "cross_entropy": (["cross_entropy.cu"], ["cross_entropy.cpp"]),
    "optimizers": (["optimizers.cu"], ["optimizers.cpp"]),
    "pooling": (["pooling.cu"], ["pooling.cpp"]),
    "conv": (["conv.cu"], ["conv.cpp", *_CPU_GEMM]),
    "conv_pool": (["conv_pool.cu"], ["conv.cpp", *_CPU_GEMM, "pooling.cpp"]),
    "gemm": (["gemm.cu"], []),
    # launch.cuh's checks (FUSEDNN_CUDA_SYNC) on a kernel of the driver's own.
    "launch": ([], []),
    # The entry points (recurrent_entry.cu, recurrent.cpp, which also holds
    # cache_layout) over the cells' launchers; these run their GEMMs through gemm.cu.
    "recurrent": (["recurrent_entry.cu", "recurrent_lstm.cu", "recurrent_gru.cu",
                   "recurrent_simple_rnn.cu", "gemm.cu"],
                  ["recurrent.cpp", "recurrent_layout.cpp", "recurrent_lstm.cpp",
                   "recurrent_gru.cpp", "recurrent_simple_rnn.cpp", *_CPU_GEMM]),
}

BUILDS = ("plain", "thread", "address")

_COMMON = ["-std=c++17", "-O1", "-g", "-Wno-unknown-pragmas",
           f"-I{EMU / 'include'}", f"-I{ROOT / 'csrc' / 'include'}", f"-I{CUDA}"]
# Sanitizer flags of the kernels, drivers and CPU twins; the emulator runtime
# itself is not instrumented for ThreadSanitizer (its bookkeeping is not the
# kernels' memory), only told to annotate.
_SANITIZE = {"plain": [], "thread": ["-fsanitize=thread"],
             "address": ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]}
_RUNTIME = {"plain": [], "thread": ["-DCUDA_EMU_TSAN"], "address": _SANITIZE["address"]}
# Device code sees __CUDA_ARCH__ as on an sm_80 GPU (atomics, TF32 wmma).
_DEVICE = ["-D__CUDA_ARCH__=800", "-x", "c++"]


def unavailable_reason():
    """Why the emulator cannot be built here, or None."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the emulator's context switch is x86-64 only, this is {platform.machine()}"
    if shutil.which("g++") is None:
        return "needs g++"
    return None


def sanitizer_works(build, work):
    """Whether g++ can link a program with this build's sanitizer."""
    if build == "plain":
        return True
    probe = work / f"probe_{build}.cpp"
    probe.write_text("int main() { return 0; }\n")
    result = subprocess.run(["g++", *_SANITIZE[build], str(probe), "-o", str(work / f"probe_{build}")],
                            capture_output=True)
    return result.returncode == 0


class Builder:
    def __init__(self, work: pathlib.Path, build: str, jobs: int = 2):
        assert build in BUILDS
        self.work = work / build
        self.work.mkdir(parents=True, exist_ok=True)
        self.build = build
        self.jobs = jobs
        self._lock = threading.Lock()
        self._objects = {}

    def _compile(self, source: pathlib.Path, flags, tag: str) -> pathlib.Path:
        key = (str(source), tag)
        with self._lock:
            if key in self._objects:
                return self._objects[key]
        out = self.work / f"{tag}_{source.stem}.o"
        result = subprocess.run(["g++", *_COMMON, *flags, "-c", str(source), "-o", str(out)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {source} failed:\n{result.stderr[-4000:]}")
        with self._lock:
            self._objects[key] = out
        return out

    def program(self, name: str, kernel_dir: pathlib.Path = None, tag: str = "") -> pathlib.Path:
        """The driver program `name`, with its kernel files taken from `kernel_dir`
        (default csrc/cuda; a mutant's directory, whose objects `tag` keeps apart)."""
        kernels, twins = PROGRAMS[name]
        kernel_dir = kernel_dir or CUDA
        sanitize = _SANITIZE[self.build]
        jobs = [(kernel_dir / kernel, [*sanitize, *_DEVICE], f"kernel{tag}") for kernel in kernels]
        jobs += [(EMU / "drivers" / f"{name}.cpp", sanitize, "driver"),
                 (EMU / "emu.cpp", _RUNTIME[self.build], "runtime")]
        jobs += [(CPU / twin, sanitize, "cpu") for twin in twins]
        with ThreadPoolExecutor(self.jobs) as pool:
            objects = list(pool.map(lambda job: self._compile(*job), jobs))
        out = self.work / f"{name}{tag}"
        # -rdynamic: the emulator's cudaFuncGetName names kernels through dladdr.
        result = subprocess.run(["g++", *sanitize, "-rdynamic", *map(str, objects), "-o", str(out),
                                 "-lpthread", "-ldl"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"linking {name} failed:\n{result.stderr[-4000:]}")
        return out


def run(program: pathlib.Path, *args, seed: int = 1, timeout: float = 300, env=None):
    """Runs a driver with the emulator's scheduling seed `seed` (and `env` added
    to the environment)."""
    env = dict(os.environ, **(env or {}), CUDA_EMU_SEED=str(seed),
               TSAN_OPTIONS="halt_on_error=1:exitcode=66",
               ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    return subprocess.run([str(program), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


# One builder per build for the whole session, shared by the test modules.
_builders = {}


def builder_fixture(tmp_path_factory, build=None):
    """The body of the test modules' session fixtures: the Builder of `build`
    (default: the one CUDA_EMU_BUILD names, else plain). Skips where the emulator
    cannot be built, unless CUDA_EMU_REQUIRED=1 (CI), which makes that a failure."""
    import pytest

    build = build or current_build()
    if build not in BUILDS:
        pytest.fail(f"CUDA_EMU_BUILD must be one of {BUILDS}, got {build!r}")
    if build not in _builders:
        work = tmp_path_factory.mktemp(f"cuda_emu_{build}")
        reason = unavailable_reason()
        if reason is None and not sanitizer_works(build, work):
            reason = f"g++ cannot link a {build}-sanitized program"
        if reason is not None:
            if os.environ.get("CUDA_EMU_REQUIRED") == "1":
                pytest.fail(f"CUDA_EMU_REQUIRED=1 but {reason}")
            pytest.skip(reason)
        _builders[build] = Builder(work, build)
    return _builders[build]


def current_build():
    return os.environ.get("CUDA_EMU_BUILD", "plain")
