// One way to launch a kernel: launch_kernel(kernel, grid, block, shared_bytes,
// stream, args...) instead of kernel<<<grid, block, shared_bytes, stream>>>(args...).
// It goes through cudaLaunchKernel, a plain function of the runtime API, so the
// same sources also build against the CUDA-on-CPU emulator of tests/cuda_emu/,
// which cannot parse <<<...>>>. FUSEDNN_DYNAMIC_SHARED declares a kernel's
// dynamic shared memory for the same reason (the emulator defines its own).
//
// Every launch (also the cooperative one of recurrent_persistent.cuh) ends in
// check_launch: a bad configuration names the kernel, and with the environment
// variable FUSEDNN_CUDA_SYNC=1 the stream is synchronised after every launch,
// so a fault inside a kernel (an illegal address, a trap), which the GPU
// reports asynchronously at some later call, is reported by the launch that
// caused it, with the kernel's name. A debugging mode: it serialises the host
// with the GPU.
#pragma once

#include <cuda_runtime.h>
#include <cxxabi.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>

#include "fusednn/cuda_check.h"

#ifndef FUSEDNN_DYNAMIC_SHARED
#define FUSEDNN_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

namespace fusednn::cuda {

// FUSEDNN_CUDA_SYNC=1, read once (at the first launch of the process).
inline bool sync_after_every_launch() {
  static const bool enabled = [] {
    const char* value = std::getenv("FUSEDNN_CUDA_SYNC");
    return value != nullptr && std::strcmp(value, "1") == 0;
  }();
  return enabled;
}

// The kernel's name (cudaFuncGetName, CUDA 12.3 and later; demangled), for
// error messages only.
inline std::string kernel_name(const void* kernel) {
  const char* mangled = nullptr;
  if (cudaFuncGetName(&mangled, kernel) != cudaSuccess || mangled == nullptr) {
    cudaGetLastError();  // the name is optional: do not leave its error behind
    return "(a kernel cudaFuncGetName cannot name)";
  }
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> readable(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && readable ? readable.get() : mangled;
}

// The launch's own result, then (FUSEDNN_CUDA_SYNC=1) the kernel's.
inline void check_launch(cudaError_t launched, const void* kernel, cudaStream_t stream) {
  if (launched != cudaSuccess) {
    throw CudaError(std::string("CUDA error '") + cudaGetErrorString(launched) +
                    "' launching kernel " + kernel_name(kernel));
  }
  if (!sync_after_every_launch()) return;
  const cudaError_t finished = cudaStreamSynchronize(stream);
  if (finished != cudaSuccess) {
    throw CudaError(std::string("CUDA error '") + cudaGetErrorString(finished) +
                    "' in kernel " + kernel_name(kernel) +
                    " (FUSEDNN_CUDA_SYNC=1 synchronised after its launch)");
  }
}

// Each argument is converted to the kernel's parameter type first, as the
// <<<...>>> syntax does; cudaLaunchKernel then copies the values.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes,
                   cudaStream_t stream, const Args&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "one argument per kernel parameter");
  std::tuple<std::decay_t<Params>...> values{static_cast<std::decay_t<Params>>(args)...};
  std::apply(
      [&](auto&... value) {
        void* pointers[] = {static_cast<void*>(&value)..., nullptr};
        check_launch(cudaLaunchKernel(kernel, grid, block, pointers, shared_bytes, stream),
                     reinterpret_cast<const void*>(kernel), stream);
      },
      values);
}

}  // namespace fusednn::cuda
