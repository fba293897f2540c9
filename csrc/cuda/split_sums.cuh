// Partial sums added in a fixed order: kernels that split a reduction over
// blocks write one slice of partial sums per split (into a StreamBuffer), and
// sum_splits adds the slices in split order, so the result does not depend on
// the order the blocks ran in (conv's deterministic mode, column_sums).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "launch.cuh"

namespace fusednn::cuda {

namespace {

constexpr int kSumSplitsThreads = 256;

// out[i] = partials[i] + partials[count + i] + ... over `splits` slices.
__global__ void __launch_bounds__(kSumSplitsThreads)
    sum_splits_kernel(const float* __restrict__ partials, std::int64_t splits,
                      std::int64_t count, float* __restrict__ out) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kSumSplitsThreads + threadIdx.x;
  if (i >= count) return;
  float sum = partials[i];
  for (std::int64_t z = 1; z < splits; ++z) sum += partials[z * count + i];
  out[i] = sum;
}

}  // namespace

inline void sum_splits(const float* partials, std::int64_t splits, std::int64_t count, float* out,
                       cudaStream_t stream) {
  if (count == 0) return;
  const auto blocks = static_cast<unsigned>((count + kSumSplitsThreads - 1) / kSumSplitsThreads);
  launch_kernel(sum_splits_kernel, blocks, kSumSplitsThreads, 0, stream, partials, splits, count,
                out);
}

}  // namespace fusednn::cuda
