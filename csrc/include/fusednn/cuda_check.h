// Checking CUDA calls: every failure becomes a fusednn::CudaError (a Python
// RuntimeError), never an abort.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "fusednn/common.h"

namespace fusednn::cuda {

inline void check(cudaError_t status, const char* expr, const char* file, int line) {
  if (status != cudaSuccess) {
    throw CudaError(std::string("CUDA error '") + cudaGetErrorString(status) + "' from " +
                    expr + " at " + file + ":" + std::to_string(line));
  }
}

}  // namespace fusednn::cuda

#define FUSEDNN_CUDA_CHECK(expr) ::fusednn::cuda::check((expr), #expr, __FILE__, __LINE__)
// After a kernel launch: catches bad launch configurations at once.
#define FUSEDNN_CUDA_CHECK_LAUNCH() FUSEDNN_CUDA_CHECK(cudaGetLastError())
