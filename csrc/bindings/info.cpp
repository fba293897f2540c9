// Build and device information for fd.info() and fd.has_cuda().
#include <nanobind/stl/string.h>

#include "bindings.h"
#include "fusednn/common.h"
#include "fusednn/device.h"

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
    d["native_arch"] = b.native_arch;
    d["openmp"] = b.openmp;
    d["max_threads"] = b.max_threads;
    d["cuda_compiled"] = b.cuda_compiled;
    d["cuda_version"] = b.cuda_version;
    d["cuda_archs"] = b.cuda_archs;
    return d;
  }, "What the extension was compiled with.");
  m.def("cuda_device_count", &cuda::device_count, "Usable CUDA devices (0 without GPU or driver).");
  m.def("cuda_device_description", &cuda::device_description, nb::arg("index"));
  m.def("cuda_runtime_version", &cuda::runtime_version);
  m.def("cuda_driver_version", &cuda::driver_version);
}

}  // namespace fusednn::bindings
