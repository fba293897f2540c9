"""The cache sizes the CPU GEMM's blocking follows (csrc/cpu/cpu_caches.cpp), read
independently here from Linux's sysfs, which the extension reads first."""
import pathlib
import sys

import pytest

from fusednn import _C

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


@pytest.mark.skipif(not sys.platform.startswith("linux") or not SYSFS.is_dir(),
                    reason="needs Linux's /sys/devices/system/cpu/cpu0/cache")
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
