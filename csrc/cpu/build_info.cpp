// What this extension was compiled with.
#include "fusednn/common.h"
#include "fusednn/gemm.h"

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

namespace fusednn {

BuildInfo build_info() {
  BuildInfo info;
  info.version = FUSEDNN_VERSION;
  info.build_type = FUSEDNN_BUILD_TYPE;
  info.cxx_compiler = FUSEDNN_CXX_COMPILER;
  info.simd = cpu::gemm_simd_path();
  info.native_arch = FUSEDNN_NATIVE_FLAG;
#ifdef FUSEDNN_OPENMP
  info.openmp = true;
  info.max_threads = omp_get_max_threads();
#else
  info.openmp = false;
  info.max_threads = 1;
#endif
  info.cuda_compiled = FUSEDNN_WITH_CUDA;
#if FUSEDNN_WITH_CUDA
  info.cuda_version = FUSEDNN_CUDA_VERSION;
#endif
  info.cuda_archs = FUSEDNN_CUDA_ARCHS;
  return info;
}

}  // namespace fusednn
