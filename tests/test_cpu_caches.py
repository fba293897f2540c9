"""The cache sizes the CPU GEMM's blocking follows (csrc/cpu/cpu_caches.cpp), read
independently here from Linux's sysfs, which the extension reads first; the
FUSEDNN_CPU_CACHES override, and the GEMM's kernels with the blocking of a CPU with a
small L2 (the columns-first order, which this project's AVX-512 machines never take)."""
import os
import pathlib
import subprocess
import sys

import pytest

from fusednn import _C

ROOT = pathlib.Path(__file__).resolve().parents[1]

SYSFS = pathlib.Path("/sys/devices/system/cpu/cpu0/cache")


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def _cpus(shared: str) -> int:
    count = 0
    for part in shared.split(","):
        first, _, last = part.partition("-")
        count += int(last) - int(first) + 1 if last else 1
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux") or not SYSFS.is_dir()
                    or bool(os.environ.get("FUSEDNN_CPU_CACHES")),
                    reason="needs Linux's /sys/devices/system/cpu/cpu0/cache, not overridden")
def test_sizes_are_what_sysfs_says():
    expected = {}
    for index in sorted(SYSFS.glob("index*")):
        read = lambda name: (index / name).read_text().strip()
        if read("type") == "Instruction":
            continue
        size = _size(read("size"))
        expected[read("level")] = size // (_cpus(read("shared_cpu_list")) if read("level") == "3"
                                           else 1)
    build = _C.build_info()
    assert build["cpu_caches_measured"]
    assert build["cpu_cache_l1d"] == expected["1"]
    assert build["cpu_cache_l2"] == expected["2"]
    if "3" in expected:
        assert build["cpu_cache_l3_per_core"] == expected["3"]


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=120)


def test_override_replaces_the_reported_sizes():
    done = _run("from fusednn import _C; b = _C.build_info(); "
                "print(b['cpu_cache_l1d'], b['cpu_cache_l2'], b['cpu_cache_l3_per_core'], "
                "b['cpu_caches_measured'])", FUSEDNN_CPU_CACHES="32K,512K,4194304")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["32768", "524288", "4194304", "True"]


@pytest.mark.parametrize("value", ["32K,512K", "32K,512K,4M,1", "32X,512K,4M", "0,512K,4M",
                                   "32K,,4M", "32K,512K,2048M", "-1,512K,4M", "32KB,512K,4M"])
def test_bad_override_is_a_clear_error_at_import(value):
    done = _run("import fusednn", FUSEDNN_CPU_CACHES=value)
    assert done.returncode != 0
    assert "ValueError: FUSEDNN_CPU_CACHES: expected three sizes 'L1d,L2,L3 per core'" in done.stderr
    assert f"got '{value}'" in done.stderr


@pytest.mark.slow
def test_gemm_kernels_with_a_small_l2():
    """Zen 3's caches (32 KiB L1d, 512 KiB L2) on the AVX2 path: a B panel no longer fits
    half of L2, so the GEMM goes down the columns of C, K in blocks of 512, and (with 1 MiB
    of L3 per core here) N in panels of 512 columns; the GEMM, packed-GEMM and convolution
    tests cover those blocks."""
    env = dict(os.environ, FUSEDNN_CPU_CACHES="32K,512K,1M")
    if "avx2" in _C.build_info()["cpu_isas_compiled"] and _C.build_info()["cpu_isa"] != "sse2":
        env["FUSEDNN_CPU_ISA"] = "avx2"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         "tests/test_ops_gemm.py", "tests/test_gemm_packed.py", "tests/test_ops_conv.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
