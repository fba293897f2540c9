"""fd.info(): what this build is and what it can use."""
from __future__ import annotations

import os
import platform

from . import _C, backend, distribute, shared_cores


def info(print_fn=print) -> dict:
    """Prints and returns the version, build flags, CPU SIMD level and threads,
    whether CUDA kernels were compiled (and for which architectures), and the GPU."""
    build = dict(_C.build_info())
    details = {
        "version": build["version"],
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "build": f"{build['build_type']}, {build['cxx_compiler']}"
                 + (", -march=native" if build["native_arch"] else ""),
        # The chosen path's GEMM micro-kernel ("avx512", "avx2", "vec128"), its
        # instruction set (FUSEDNN_CPU_ISA forces a lower one) and all those built.
        "cpu_simd": build["simd"],
        "cpu_isa": build["cpu_isa"],
        "cpu_isas_compiled": ", ".join(build["cpu_isas_compiled"]),
        # What the CPU GEMM's block sizes follow (csrc/cpu/gemm_kernels.h).
        "cpu_caches": _caches(build),
        "openmp": build["openmp"],
        "threads": build["max_threads"],
        "cuda_compiled": build["cuda_compiled"],
        "cuda_build_version": build["cuda_version"] or None,
        "cuda_archs": build["cuda_archs"] or None,
        "cuda_runtime": _C.cuda_runtime_version() or None,
        "cuda_driver": _C.cuda_driver_version() or None,
        "gpus": [_C.cuda_device_description(i) for i in range(_C.cuda_device_count())],
        "cupy": None,
        "has_cuda": backend.has_cuda(),
        # fd.distribute's communicator (MPI, NCCL or a single process), this rank, the size.
        "distributed": distribute.environment.description(),
    }
    cp = backend.cupy_module() if details["gpus"] else None
    if cp is not None:
        details["cupy"] = cp.__version__
    # Where the count comes from, when not the core count: fd.set_num_threads
    # (per Python thread) overrides OMP_NUM_THREADS.
    env_threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env_threads:
        source = ("OMP_NUM_THREADS" if env_threads == str(details["threads"])
                  else f"fd.set_num_threads; OMP_NUM_THREADS={env_threads}")
        details["threads"] = f"{details['threads']} ({source})"
    monitor = shared_cores.MONITOR
    if monitor.quota is not None:
        details["threads"] = (f"{details['threads']} (kernels on at most "
                              f"{monitor.quota_threads}: a CPU quota of {monitor.quota:g} cores)")
    if print_fn is not None:
        width = max(len(k) for k in details)
        for key, value in details.items():
            if key == "gpus":
                value = "; ".join(value) if value else "none usable"
            print_fn(f"{key:<{width}}  {value}")
    return details


def _caches(build: dict) -> str:
    sizes = ", ".join(f"{name} {build[key] >> 10} KiB" for name, key in
                      (("L1d", "cpu_cache_l1d"), ("L2", "cpu_cache_l2"),
                       ("L3 per core", "cpu_cache_l3_per_core")))
    return sizes if build["cpu_caches_measured"] else f"{sizes} (not reported: typical sizes)"
