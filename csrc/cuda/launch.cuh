// One way to launch a kernel: launch_kernel(kernel, grid, block, shared_bytes,
// stream, args...) instead of kernel<<<grid, block, shared_bytes, stream>>>(args...).
// It goes through cudaLaunchKernel, a plain function of the runtime API, so the
// same sources also build against the CUDA-on-CPU emulator of tests/cuda_emu/,
// which cannot parse <<<...>>>. FUSEDNN_DYNAMIC_SHARED declares a kernel's
// dynamic shared memory for the same reason (the emulator defines its own).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <tuple>
#include <type_traits>

#include "fusednn/cuda_check.h"

#ifndef FUSEDNN_DYNAMIC_SHARED
#define FUSEDNN_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

namespace fusednn::cuda {

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
        FUSEDNN_CUDA_CHECK(cudaLaunchKernel(kernel, grid, block, pointers, shared_bytes, stream));
      },
      values);
}

}  // namespace fusednn::cuda
