// Shared definitions for every fusednn op.
//
// Shape letters used in every declaration:
//   N batch, T time steps, F input features, U units (hidden size),
//   C channels or classes, H/W spatial height/width, K kernel extent,
//   P number of parameter elements.
// All arrays are C-contiguous, row-major, in the layouts of docs/ARCHITECTURE.md.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace fusednn {

// Raised by the CUDA launchers; nanobind turns it into RuntimeError.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the extension was compiled with, for fd.info().
struct BuildInfo {
  std::string version;
  std::string build_type;
  std::string cxx_compiler;
  std::string simd;         // cpu::gemm_simd_path(): "avx512", "avx2", "vec128" or "portable"
  bool native_arch;         // compiled with -march=native
  bool openmp;
  int max_threads;
  bool cuda_compiled;
  std::string cuda_version; // nvcc version the kernels were built with
  std::string cuda_archs;   // CMAKE_CUDA_ARCHITECTURES, comma separated
};

BuildInfo build_info();

}  // namespace fusednn
