// launch.cuh in the emulator, on a kernel of this driver's own that traps (a
// fault inside a kernel, reported asynchronously as on a GPU):
//  - a launch with a bad configuration names its kernel;
//  - with FUSEDNN_CUDA_SYNC=1 (set by tests/test_cuda_emu.py) the launch that
//    faults throws, naming the kernel;
//  - without it the launch returns and only the next synchronisation sees the
//    fault, with no kernel named: what FUSEDNN_CUDA_SYNC=1 is for.
#include <string>
#include <vector>

#include "check.h"
#include "launch.cuh"

__global__ void trapping_kernel(int* out, int trap_at) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i == trap_at) __trap();
  out[i] = i;
}

namespace {

// What launch_kernel threw, or "" when it returned.
template <typename... Args>
std::string launch_error(dim3 grid, dim3 block, Args... args) {
  try {
    fusednn::cuda::launch_kernel(trapping_kernel, grid, block, 0, nullptr, args...);
  } catch (const fusednn::CudaError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

int main() {
  const bool sync = fusednn::cuda::sync_after_every_launch();
  std::vector<int> out(256, -1);

  const std::string bad = launch_error(dim3(1), dim3(2048), out.data(), -1);
  driver::expect_true("a bad configuration names the kernel",
                      contains(bad, "invalid configuration") && contains(bad, "trapping_kernel"),
                      "got: " + bad);
  cudaGetLastError();

  const std::string fault = launch_error(dim3(4), dim3(64), out.data(), 77);
  const cudaError_t later = cudaDeviceSynchronize();
  if (sync) {
    driver::expect_true("FUSEDNN_CUDA_SYNC=1: the faulting launch names its kernel",
                        contains(fault, "unspecified launch failure") &&
                            contains(fault, "trapping_kernel(int*, int)"),
                        "got: " + fault);
  } else {
    driver::expect_true("without FUSEDNN_CUDA_SYNC the faulting launch returns", fault.empty(),
                        "got: " + fault);
  }
  driver::expect_true("the fault is sticky: the next synchronisation reports it",
                      later == cudaErrorLaunchFailure,
                      std::string("got: ") + cudaGetErrorString(later));
  return driver::result();
}
