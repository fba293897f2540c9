"""One build for every CPU: the instruction set the CPU kernels run is chosen at
import (the widest one compiled that the CPU runs), FUSEDNN_CPU_ISA forces a
lower one, the kernel tests pass on every compiled path this CPU runs, and the
linked extension never calls code compiled for a wider instruction set except
through the dispatch into that set's own namespace (csrc/include/fusednn/cpu_isa.h)."""
from __future__ import annotations

import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys

import pytest

from fusednn import _C

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The tests of every kernel that has a copy per instruction set.
KERNEL_TESTS = [
    "tests/test_ops_gemm.py",
    "tests/test_gemm_packed.py",
    "tests/test_ops_conv.py",
    "tests/test_ops_pooling.py",
    "tests/test_ops_cross_entropy.py",
    "tests/test_ops_dropout.py",
    "tests/test_ops_optimizer_updates.py",
    "tests/test_ops_nadam_adamax_lion.py",
    "tests/test_ops_recurrent.py",
]

# The GEMM micro-kernel (fd.info()["cpu_simd"]) each path uses.
SIMD_OF_ISA = {"avx512": "avx512", "avx2": "avx2", "sse2": "vec128", "neon": "vec128"}

# What each extra path needs, in /proc/cpuinfo's names.
CPU_FLAGS_OF_ISA = {
    "avx2": {"avx2", "fma"},
    "avx512": {"avx512f", "avx512vl", "avx512bw", "avx512dq"},
}

COMPILED = list(_C.build_info()["cpu_isas_compiled"])


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags as Linux reports them: a reference independent of
    the extension's own cpuid check."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else None


def cpu_runs(isa: str) -> bool:
    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    return CPU_FLAGS_OF_ISA.get(isa, set()) <= flags


def info_with(isa: str) -> subprocess.CompletedProcess:
    code = ("import json, fusednn as fd; d = fd.info(print_fn=None); "
            "print(json.dumps({k: d[k] for k in ('cpu_isa', 'cpu_simd', 'cpu_isas_compiled')}))")
    env = dict(os.environ, FUSEDNN_CPU_ISA=isa)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


def test_compiled_paths_are_listed_narrowest_first():
    assert COMPILED[0] in ("sse2", "neon", "native", "portable")
    if platform.machine() in ("x86_64", "AMD64") and COMPILED[0] != "native":
        assert COMPILED == ["sse2", "avx2", "avx512"]


def test_default_path_is_the_widest_the_cpu_runs():
    build = _C.build_info()
    forced = os.environ.get("FUSEDNN_CPU_ISA")
    expected = forced or [isa for isa in COMPILED if cpu_runs(isa)][-1]
    assert build["cpu_isa"] == expected
    if expected in SIMD_OF_ISA:
        assert build["simd"] == SIMD_OF_ISA[expected]


@pytest.mark.parametrize("isa", COMPILED)
def test_forced_path_is_the_one_used(isa):
    if not cpu_runs(isa):
        pytest.skip(f"this CPU cannot run {isa}")
    done = info_with(isa)
    assert done.returncode == 0, done.stderr
    reported = json.loads(done.stdout.strip().splitlines()[-1])
    assert reported["cpu_isa"] == isa
    if isa in SIMD_OF_ISA:
        assert reported["cpu_simd"] == SIMD_OF_ISA[isa]


def test_unknown_path_is_a_clear_error():
    done = info_with("avx1024")
    assert done.returncode != 0
    assert "ValueError" in done.stderr
    assert "expected one of the paths this build compiled" in done.stderr
    assert "got 'avx1024'" in done.stderr
    for isa in COMPILED:
        assert isa in done.stderr


@pytest.mark.parametrize("isa", COMPILED)
def test_path_the_cpu_lacks_is_a_clear_error(isa):
    if cpu_runs(isa):
        pytest.skip(f"this CPU runs {isa}")
    done = info_with(isa)
    assert done.returncode != 0
    assert f"FUSEDNN_CPU_ISA={isa}: this CPU cannot run that path" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("isa", COMPILED)
def test_kernel_tests_pass_on_every_path(isa):
    """The process's own path runs these tests in the main session; the others here."""
    if isa == _C.build_info()["cpu_isa"]:
        pytest.skip(f"{isa} is this process's path: the kernel tests run on it directly")
    if not cpu_runs(isa):
        pytest.skip(f"this CPU cannot run {isa}")
    env = dict(os.environ, FUSEDNN_CPU_ISA=isa)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *KERNEL_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_baseline_code_reaches_wider_code_only_through_the_dispatch():
    """Disassembles the extension and follows the direct calls and tail jumps from
    every fusednn function outside the avx2 / avx512 namespaces (the baseline:
    bindings, the kernels' baseline copies, their helpers), stopping where a call
    enters one of those namespaces (the dispatch). No function reached may hold
    AVX instructions (VEX or EVEX encoded: a v-mnemonic, ymm/zmm or mask
    registers): a copy of shared inline or std:: code compiled for a wider set
    that the linker had picked for the baseline's calls fails it."""
    objdump = shutil.which("objdump")
    if objdump is None or platform.machine() != "x86_64" or len(COMPILED) < 2:
        pytest.skip("needs objdump and an x86-64 build with several paths")
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", _C.__file__],
                             capture_output=True, text=True, check=True).stdout
    # Functions by address: a local copy (from an instruction set's object) and a
    # global one of the same name are different functions.
    start = re.compile(r"^([0-9a-f]+) <(.+)>:$")
    insn = re.compile(r"^\s+[0-9a-f]+:\s+(\S+)\s*(.*)$")
    direct = re.compile(r"^([0-9a-f]+) <([^+>]+)>$")
    name: dict[int, str] = {}
    wide: dict[int, bool] = {}
    calls: dict[int, set[int]] = {}
    plt: dict[int, str] = {}
    current = None
    for line in listing.splitlines():
        m = start.match(line)
        if m:
            current = int(m.group(1), 16)
            name[current] = m.group(2)
            wide[current] = False
            calls[current] = set()
            if m.group(2).endswith("@plt"):
                plt[current] = m.group(2).removesuffix("@plt")
            continue
        m = insn.match(line)
        if m is None or current is None:
            continue
        mnemonic, operands = m.group(1), m.group(2)
        if mnemonic.startswith("v") or re.search(r"%[yz]mm|%k[0-7]\b", operands):
            wide[current] = True
        target = direct.match(operands.strip()) if mnemonic in ("call", "jmp") else None
        if target and int(target.group(1), 16) != current:
            calls[current].add(int(target.group(1), 16))
    # A call through the PLT reaches the extension's own global definition, if any.
    nm = subprocess.run([shutil.which("nm") or "nm", "--defined-only", _C.__file__],
                        capture_output=True, text=True, check=True).stdout
    global_address = {}
    for line in nm.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "TW":
            global_address[fields[2]] = int(fields[0], 16)
    for stub, symbol in plt.items():
        if symbol in global_address:
            calls[stub].add(global_address[symbol])

    isa_namespaces = ("_ZN7fusednn3cpu4avx2", "_ZN7fusednn3cpu6avx512")
    roots = [f for f in calls
             if name[f].startswith("_ZN7fusednn") and not name[f].startswith(isa_namespaces)]
    assert len(roots) > 100, "the extension's function symbols are missing (stripped?)"
    reached, entered, todo = set(roots), set(), list(roots)
    while todo:
        for callee in calls.get(todo.pop(), ()):
            if name.get(callee, "").startswith(isa_namespaces):
                entered.add(name[callee])
            elif callee not in reached:
                reached.add(callee)
                todo.append(callee)
    assert sorted(name.get(f, hex(f)) for f in reached if wide.get(f, False)) == []
    # The walk saw the dispatch: calls from the baseline into both namespaces.
    for namespace in isa_namespaces:
        assert any(f.startswith(namespace) for f in entered), namespace
