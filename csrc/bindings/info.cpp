// Build and device information for fd.info() and fd.has_cuda(); the CPU kernels' thread
// count for fd.set_num_threads() / fd.get_num_threads().
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>

#include "bindings.h"
#include "fusednn/common.h"
#include "fusednn/cpu_caches.h"
#include "fusednn/cpu_isa.h"
#include "fusednn/device.h"

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

namespace nb = nanobind;

namespace fusednn::bindings {

void bind_info(nb::module_& m) {
  m.def("build_info", [] {
    BuildInfo b = build_info();
    nb::dict d;
    d["version"] = b.version;
    d["build_type"] = b.build_type;
    d["cxx_compiler"] = b.cxx_compiler;
    d["simd"] = b.simd;
    d["cpu_isa"] = cpu::isa_name(cpu::chosen_isa());
    d["cpu_isas_compiled"] = cpu::compiled_isas();
    const cpu::CacheSizes& caches = cpu::cache_sizes();
    d["cpu_cache_l1d"] = caches.l1d;
    d["cpu_cache_l2"] = caches.l2;
    d["cpu_cache_l3_per_core"] = caches.l3_per_core;
    d["cpu_caches_measured"] = caches.measured;
    d["native_arch"] = b.native_arch;
    d["openmp"] = b.openmp;
    d["max_threads"] = b.max_threads;
    d["cuda_compiled"] = b.cuda_compiled;
    d["cuda_version"] = b.cuda_version;
    d["cuda_archs"] = b.cuda_archs;
    return d;
  }, "What the extension was compiled with.");
  // OpenMP keeps the count per calling thread: it applies to the kernels that thread runs.
  // Without OpenMP the kernels run on one thread and setting the count does nothing.
  m.def("set_num_threads", [](int n) {
    if (n < 1) {
      const std::string message = "set_num_threads: expected n >= 1, got " + std::to_string(n);
      throw nb::value_error(message.c_str());
    }
#ifdef FUSEDNN_OPENMP
    omp_set_num_threads(n);
#endif
  }, nb::arg("n"), "Threads for the CPU kernels run from the calling thread.");
  m.def("get_num_threads", [] {
#ifdef FUSEDNN_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  }, "Threads the CPU kernels run from the calling thread use.");
  m.def("cuda_device_count", &cuda::device_count, "Usable CUDA devices (0 without GPU or driver).");
  m.def("cuda_device_description", &cuda::device_description, nb::arg("index"));
  m.def("cuda_runtime_version", &cuda::runtime_version);
  m.def("cuda_driver_version", &cuda::driver_version);
}

}  // namespace fusednn::bindings
