// Scratch memory for one launcher call, ordered on its stream: allocated with
// cudaMallocAsync and freed with cudaFreeAsync after the work queued before
// the destructor (also when a later launch throws). The device's default
// memory pool keeps what it holds across synchronisations (release threshold
// raised once per process and device), so a call in a training loop reuses the
// pool's memory instead of mapping new pages each step.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>

#include "fusednn/cuda_check.h"

namespace fusednn::cuda {

inline void keep_pool_memory(int device) {
  static std::mutex mutex;
  static std::set<int> done;
  const std::lock_guard<std::mutex> lock(mutex);
  if (!done.insert(device).second) return;
  cudaMemPool_t pool;
  FUSEDNN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  std::uint64_t threshold = UINT64_MAX;
  FUSEDNN_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
}

template <typename T>
class StreamBuffer {
 public:
  StreamBuffer(std::size_t count, cudaStream_t stream) : stream_(stream) {
    int device = 0;
    FUSEDNN_CUDA_CHECK(cudaGetDevice(&device));
    keep_pool_memory(device);
    FUSEDNN_CUDA_CHECK(cudaMallocAsync(&data_, count * sizeof(T), stream));
  }
  ~StreamBuffer() { cudaFreeAsync(data_, stream_); }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  T* get() const { return data_; }

 private:
  T* data_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace fusednn::cuda
