// Stand-in for <cuda_runtime.h> on the CPU (see cuda_emu.h for what is checked
// and what cannot be): the CUDA keywords, built-in variables, intrinsics and the
// part of the runtime API that csrc/cuda/ uses.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_emu.h"

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Static shared memory: one copy per OS thread, and the emulator runs each
// block on a fresh OS thread (poisoned first), so one copy per block.
#define __shared__ static thread_local
#define FUSEDNN_DYNAMIC_SHARED(T, name) T* const name = static_cast<T*>(::cuda_emu::dynamic_shared())

#define threadIdx (::cuda_emu::thread_idx())
#define blockIdx (::cuda_emu::block_idx())
#define blockDim (::cuda_emu::block_dim())
#define gridDim (::cuda_emu::grid_dim())
constexpr int warpSize = cuda_emu::kWarpSize;

#define __syncthreads() ::cuda_emu::syncthreads(CUDA_EMU_SITE)
// Ends the whole launch; the fault is reported asynchronously, as on a GPU.
#define __trap() ::cuda_emu::trap(CUDA_EMU_SITE)

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}

// Atomics through compare-and-swap on the bits, which ThreadSanitizer sees as
// atomic accesses.
template <typename T>
inline T cuda_emu_atomic_add(T* address, T v) {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(T) == sizeof(Bits), "32- or 64-bit atomics only");
  Bits* bits = reinterpret_cast<Bits*>(address);
  Bits expected = __atomic_load_n(bits, __ATOMIC_RELAXED);
  for (;;) {
    T old;
    std::memcpy(&old, &expected, sizeof(T));
    const T sum = old + v;
    Bits desired;
    std::memcpy(&desired, &sum, sizeof(T));
    if (__atomic_compare_exchange_n(bits, &expected, desired, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
      return old;
    }
  }
}
inline float atomicAdd(float* a, float v) { return cuda_emu_atomic_add(a, v); }
inline double atomicAdd(double* a, double v) { return cuda_emu_atomic_add(a, v); }
inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* a, unsigned v) {
  return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}

// ----- warp collectives ------------------------------------------------------
// `width` splits the warp into segments, as on the device.

template <typename T>
inline T cuda_emu_shuffle(unsigned mask, T v, int source, ::cuda_emu::Site site) {
  cuda_emu::LaneInput in;
  in.value = cuda_emu::to_bits(v);
  in.source = source;
  return cuda_emu::from_bits<T>(cuda_emu::warp_collective(mask, cuda_emu::WarpOp::kShuffle, in, site));
}
inline int cuda_emu_segment(int width) { return cuda_emu::lane_id() & ~(width - 1); }

#define __shfl_sync(mask, v, src, ...) cuda_emu_shfl_idx(mask, v, src, CUDA_EMU_SITE, ##__VA_ARGS__)
#define __shfl_xor_sync(mask, v, lanes, ...) \
  cuda_emu_shfl_xor(mask, v, lanes, CUDA_EMU_SITE, ##__VA_ARGS__)
#define __shfl_down_sync(mask, v, delta, ...) \
  cuda_emu_shfl_down(mask, v, delta, CUDA_EMU_SITE, ##__VA_ARGS__)
#define __shfl_up_sync(mask, v, delta, ...) \
  cuda_emu_shfl_up(mask, v, delta, CUDA_EMU_SITE, ##__VA_ARGS__)

template <typename T>
inline T cuda_emu_shfl_idx(unsigned mask, T v, int src, ::cuda_emu::Site site, int width = warpSize) {
  return cuda_emu_shuffle(mask, v, cuda_emu_segment(width) + (src & (width - 1)), site);
}
template <typename T>
inline T cuda_emu_shfl_xor(unsigned mask, T v, int lanes, ::cuda_emu::Site site, int width = warpSize) {
  const int lane = cuda_emu::lane_id();
  const int target = lane ^ lanes;
  // A target beyond the segment reads the caller's own value, as documented.
  const bool inside = (target & ~(width - 1)) == cuda_emu_segment(width);
  return cuda_emu_shuffle(mask, v, inside ? target : lane, site);
}
template <typename T>
inline T cuda_emu_shfl_down(unsigned mask, T v, unsigned delta, ::cuda_emu::Site site,
                            int width = warpSize) {
  const int lane = cuda_emu::lane_id();
  const int target = lane + static_cast<int>(delta);
  return cuda_emu_shuffle(mask, v, target < cuda_emu_segment(width) + width ? target : lane, site);
}
template <typename T>
inline T cuda_emu_shfl_up(unsigned mask, T v, unsigned delta, ::cuda_emu::Site site,
                          int width = warpSize) {
  const int lane = cuda_emu::lane_id();
  const int target = lane - static_cast<int>(delta);
  return cuda_emu_shuffle(mask, v, target >= cuda_emu_segment(width) ? target : lane, site);
}

inline unsigned cuda_emu_ballot(unsigned mask, bool predicate, ::cuda_emu::Site site) {
  cuda_emu::LaneInput in;
  in.value = predicate;
  return static_cast<unsigned>(
      cuda_emu::warp_collective(mask, cuda_emu::WarpOp::kBallot, in, site));
}
#define __ballot_sync(mask, p) cuda_emu_ballot(mask, (p), CUDA_EMU_SITE)
#define __any_sync(mask, p) (cuda_emu_ballot(mask, (p), CUDA_EMU_SITE) != 0u)
#define __all_sync(mask, p) (cuda_emu_ballot(mask, (p), CUDA_EMU_SITE) == (mask))

// ----- runtime API -------------------------------------------------------------

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorLaunchFailure = 719,
  cudaErrorCooperativeLaunchTooLarge = 720,
};
using cudaError = cudaError_t;
struct CUstream_st;
using cudaStream_t = CUstream_st*;

enum cudaDeviceAttr {
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrCooperativeLaunch = 95,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };

struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
  std::size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
};

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMallocAsync(void** p, std::size_t bytes, cudaStream_t stream);
// Memory pools: one per device, whose attributes change nothing here.
struct CUmemPoolHandle_st;
using cudaMemPool_t = CUmemPoolHandle_st*;
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attribute, void* value);
template <typename T>
cudaError_t cudaMallocAsync(T** p, std::size_t bytes, cudaStream_t stream) {
  return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, stream);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream);
// The mangled name of a kernel with external linkage (dladdr: the programs are
// linked with -rdynamic); cudaErrorInvalidDeviceFunction for others.
cudaError_t cudaFuncGetName(const char** name, const void* kernel);
template <typename... Params>
cudaError_t cudaFuncGetName(const char** name, void (*kernel)(Params...)) {
  return cudaFuncGetName(name, reinterpret_cast<const void*>(kernel));
}
// The launch result, also kept for cudaGetLastError.
cudaError_t cuda_emu_record(int error);

template <typename... Params>
cudaError_t cudaFuncSetAttribute(void (*kernel)(Params...), cudaFuncAttribute attribute, int value) {
  cuda_emu::note_host_query();
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      value > cuda_emu::kOptinSharedBytes) {
    return cuda_emu_record(cudaErrorInvalidValue);
  }
  cuda_emu::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
  return cudaSuccess;
}

template <typename... Params>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, void (*kernel)(Params...),
                                                          int block_threads,
                                                          std::size_t dynamic_shared_bytes) {
  cuda_emu::note_host_query();
  *blocks = cuda_emu::occupancy(reinterpret_cast<const void*>(kernel), block_threads,
                                dynamic_shared_bytes);
  return cudaSuccess;
}

namespace cuda_emu {

// Every thread calls the kernel with its own copies of the arguments, as each
// GPU thread has its own parameter values.
template <typename... Params>
struct KernelCall {
  void (*kernel)(Params...);
  void** args;

  template <std::size_t... I>
  void run(std::index_sequence<I...>) const {
    kernel(*static_cast<std::decay_t<Params>*>(args[I])...);
  }
  static void body(const void* self) {
    static_cast<const KernelCall*>(self)->run(std::index_sequence_for<Params...>());
  }
};

template <typename... Params>
cudaError_t launch_call(void (*kernel)(Params...), dim3 grid, dim3 block, void** args,
                        std::size_t shared_bytes, bool cooperative) {
  const KernelCall<Params...> call{kernel, args};
  return cuda_emu_record(launch({reinterpret_cast<const void*>(kernel), grid, block, shared_bytes,
                                 cooperative, &KernelCall<Params...>::body, &call}));
}

}  // namespace cuda_emu

template <typename... Params>
cudaError_t cudaLaunchKernel(void (*kernel)(Params...), dim3 grid, dim3 block, void** args,
                             std::size_t shared_bytes = 0, cudaStream_t = nullptr) {
  return cuda_emu::launch_call(kernel, grid, block, args, shared_bytes, false);
}

template <typename... Params>
cudaError_t cudaLaunchCooperativeKernel(void (*kernel)(Params...), dim3 grid, dim3 block,
                                        void** args, std::size_t shared_bytes = 0,
                                        cudaStream_t = nullptr) {
  return cuda_emu::launch_call(kernel, grid, block, args, shared_bytes, true);
}
