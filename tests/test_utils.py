"""fd.set_num_threads / fd.get_num_threads: the CPU kernels' OpenMP thread count.

Each test runs in a child process so the count it sets cannot leak into other tests;
a build without OpenMP always reports 1 thread and only validates the argument.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import fusednn as fd

OPENMP = fd.info(print_fn=None)["openmp"]


def _child(code: str, omp_num_threads: str = "3") -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=omp_num_threads)
    out = subprocess.run([sys.executable, "-c", "import json, fusednn as fd\n" + code],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_set_then_get_and_info_report_the_count():
    result = _child("""
import threading
from fusednn import ops
import numpy as np
start = fd.get_num_threads()
start_info = fd.info(print_fn=None)["threads"]
fd.set_num_threads(5)
after = fd.get_num_threads()
info = fd.info(print_fn=None)["threads"]
x = np.random.default_rng(0).standard_normal((8, 32, 32, 16)).astype(np.float32)
k = np.random.default_rng(1).standard_normal((3, 3, 16, 32)).astype(np.float32)
five = ops.conv2d(x, k, padding="same")
fd.set_num_threads(1)
one = ops.conv2d(x, k, padding="same")
other = []
thread = threading.Thread(target=lambda: other.append(fd.get_num_threads()))
thread.start(); thread.join()
print(json.dumps(dict(start=start, start_info=str(start_info), after=after, info=str(info),
                      last=fd.get_num_threads(), same=bool((five == one).all()),
                      other=other[0])))
""")
    expected = 5 if OPENMP else 1
    assert result["start"] == (3 if OPENMP else 1)  # OMP_NUM_THREADS=3 in the child
    assert result["after"] == expected
    assert result["info"].split()[0] == str(expected)
    # ... and says where the count came from.
    if OPENMP:
        assert result["start_info"] == "3 (OMP_NUM_THREADS)"
        assert result["info"] == "5 (fd.set_num_threads; OMP_NUM_THREADS=3)"
    assert result["last"] == 1
    # The convolution (37M multiply-adds, enough for several threads) gives each output
    # element to one thread, so the count must not change a single bit of the result.
    assert result["same"]
    # OpenMP keeps the count per thread: a thread started later still sees OMP_NUM_THREADS.
    assert result["other"] == (3 if OPENMP else 1)


@pytest.mark.parametrize("bad, error, fragment", [
    (0, ValueError, "got 0"), (-2, ValueError, "got -2"), (2**31, ValueError, "got 2147483648"),
    (1.0, TypeError, "float 1.0"), (True, TypeError, "bool True"), ("2", TypeError, "str '2'"),
    (None, TypeError, "NoneType None")])
def test_bad_counts_are_rejected_and_leave_the_count_alone(bad, error, fragment):
    before = fd.get_num_threads()
    with pytest.raises(error, match="set_num_threads: expected a positive int") as info:
        fd.set_num_threads(bad)
    assert fragment in str(info.value)
    assert fd.get_num_threads() == before


def test_numpy_integers_are_accepted():
    result = _child("import numpy as np\nfd.set_num_threads(np.int64(2))\n"
                    "print(json.dumps(dict(n=fd.get_num_threads())))")
    assert result["n"] == (2 if OPENMP else 1)


def test_the_binding_rejects_a_count_below_one_itself():
    from fusednn import _C
    with pytest.raises(ValueError, match="set_num_threads: expected n >= 1, got 0"):
        _C.set_num_threads(0)
