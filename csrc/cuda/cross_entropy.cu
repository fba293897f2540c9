// Fused softmax cross-entropy on the GPU. A "row group" of kRowThreads threads
// owns one row at a time: a warp (32) for C <= kWarpRowMaxClasses, else a whole
// block. Pass 1 reads the row once and keeps an online softmax state per
// thread (running max, sum of exp relative to it, and for dense targets the
// target sum and sum of t * (x - max)); the states are merged with warp
// shuffles (and shared memory across warps). Pass 2 re-reads the row (mostly
// from cache) and writes dlogits; the softmax is never stored.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "fusednn/cross_entropy.h"
#include "fusednn/cuda_check.h"
#include "launch.cuh"

namespace fusednn::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kThreadsPerBlock = 256;
constexpr std::int64_t kWarpRowMaxClasses = 1024;
// Grid-stride loops cover any N; the grid itself stays within limits.
constexpr std::int64_t kMaxBlocks = 1 << 20;

// Online softmax state of a set of logits (and of their targets, when dense).
// The state functions are also host functions so that they can be checked on a
// machine without a GPU.
struct RowState {
  float max;          // running maximum of the logits
  float sum;          // sum of exp(x - max)
  float target_sum;   // sum of targets
  float target_dot;   // sum of t * (x - max), <= 0
};

__host__ __device__ __forceinline__ RowState empty_state() { return {-INFINITY, 0.f, 0.f, 0.f}; }

// Re-expresses a state relative to a new maximum `m` >= state.max. Equal maxima
// (including -inf == -inf) need no rescaling, which keeps all -inf rows NaN-free
// until the end.
template <bool kDense>
__host__ __device__ __forceinline__ RowState rebase(RowState s, float m) {
  if (s.max == m) return s;
  s.sum *= expf(s.max - m);
  if (kDense && s.target_sum != 0.f) s.target_dot -= s.target_sum * (m - s.max);
  s.max = m;
  return s;
}

template <bool kDense>
__host__ __device__ __forceinline__ RowState merge(RowState a, RowState b) {
  const float m = fmaxf(a.max, b.max);
  a = rebase<kDense>(a, m);
  b = rebase<kDense>(b, m);
  return {m, a.sum + b.sum, a.target_sum + b.target_sum, a.target_dot + b.target_dot};
}

template <bool kDense>
__host__ __device__ __forceinline__ RowState add_element(RowState s, float x, float t) {
  if (x > s.max) s = rebase<kDense>(s, x);
  const float shifted = x == s.max ? 0.f : x - s.max;
  s.sum += expf(shifted);
  if (kDense) {
    s.target_sum += t;
    // A zero target on a masked (-inf) logit contributes 0, not 0 * -inf.
    s.target_dot += t == 0.f ? 0.f : t * shifted;
  }
  return s;
}

template <bool kDense>
__device__ __forceinline__ RowState warp_merge(RowState s) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    RowState other;
    other.max = __shfl_xor_sync(0xffffffffu, s.max, offset);
    other.sum = __shfl_xor_sync(0xffffffffu, s.sum, offset);
    other.target_sum = kDense ? __shfl_xor_sync(0xffffffffu, s.target_sum, offset) : 0.f;
    other.target_dot = kDense ? __shfl_xor_sync(0xffffffffu, s.target_dot, offset) : 0.f;
    s = merge<kDense>(s, other);
  }
  return s;
}

// Every thread of the row group returns the merged state of the whole row.
template <int kRowThreads, bool kDense>
__device__ __forceinline__ RowState group_merge(RowState s, RowState* shared) {
  s = warp_merge<kDense>(s);
  if constexpr (kRowThreads > kWarpSize) {
    constexpr int kWarps = kRowThreads / kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    if (threadIdx.x % kWarpSize == 0) shared[warp] = s;
    __syncthreads();
    s = shared[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) s = merge<kDense>(s, shared[w]);
    __syncthreads();  // `shared` is reused by the next row
  }
  return s;
}

// kDense = false: `labels` used, `targets` unused; kDense = true: the reverse.
template <int kRowThreads, bool kDense>
__global__ void __launch_bounds__(kThreadsPerBlock)
    softmax_cross_entropy_kernel(const float* __restrict__ logits,
                                 const std::int64_t* __restrict__ labels,
                                 const float* __restrict__ targets, float* __restrict__ losses,
                                 float* __restrict__ dlogits, std::int64_t N, std::int64_t C,
                                 float grad_scale) {
  constexpr int kRowsPerBlock = kThreadsPerBlock / kRowThreads;
  __shared__ RowState shared[kRowThreads > kWarpSize ? kRowThreads / kWarpSize : 1];
  const int lane = threadIdx.x % kRowThreads;
  const std::int64_t first_row =
      static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kRowThreads;
  const std::int64_t row_stride = static_cast<std::int64_t>(gridDim.x) * kRowsPerBlock;

  // Every thread of a row group runs the same number of iterations, so the
  // shuffles and barriers inside see all of their threads.
  for (std::int64_t row = first_row; row < N; row += row_stride) {
    const float* x = logits + row * C;
    const float* t = kDense ? targets + row * C : nullptr;
    float* dx = dlogits + row * C;
    const std::int64_t label = kDense ? 0 : labels[row];
    if (!kDense && (label < 0 || label >= C)) {
      // The caller checks labels; this keeps a bad one from reading out of bounds.
      for (std::int64_t c = lane; c < C; c += kRowThreads) dx[c] = NAN;
      if (lane == 0) losses[row] = NAN;
      continue;
    }

    RowState s = empty_state();
    for (std::int64_t c = lane; c < C; c += kRowThreads) {
      s = add_element<kDense>(s, x[c], kDense ? t[c] : 0.f);
    }
    s = group_merge<kRowThreads, kDense>(s, shared);

    const float inverse_sum = 1.f / s.sum;
    if (kDense) {
      const float softmax_factor = grad_scale * s.target_sum * inverse_sum;
      for (std::int64_t c = lane; c < C; c += kRowThreads) {
        dx[c] = expf(x[c] - s.max) * softmax_factor - t[c] * grad_scale;
      }
      if (lane == 0) losses[row] = logf(s.sum) * s.target_sum - s.target_dot;
    } else {
      const float softmax_factor = grad_scale * inverse_sum;
      for (std::int64_t c = lane; c < C; c += kRowThreads) {
        dx[c] = expf(x[c] - s.max) * softmax_factor - (c == label ? grad_scale : 0.f);
      }
      if (lane == 0) losses[row] = logf(s.sum) - (x[label] - s.max);
    }
  }
}

template <bool kDense>
void launch(const float* logits, const std::int64_t* labels, const float* targets, float* losses,
            float* dlogits, std::int64_t N, std::int64_t C, float grad_scale,
            std::uintptr_t stream) {
  if (N == 0) return;
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  if (C <= kWarpRowMaxClasses) {
    constexpr std::int64_t kRowsPerBlock = kThreadsPerBlock / kWarpSize;
    const std::int64_t blocks = std::min((N + kRowsPerBlock - 1) / kRowsPerBlock, kMaxBlocks);
    launch_kernel(softmax_cross_entropy_kernel<kWarpSize, kDense>, static_cast<unsigned>(blocks),
                  kThreadsPerBlock, 0, s, logits, labels, targets, losses, dlogits, N, C,
                  grad_scale);
  } else {
    const std::int64_t blocks = std::min(N, kMaxBlocks);
    launch_kernel(softmax_cross_entropy_kernel<kThreadsPerBlock, kDense>,
                  static_cast<unsigned>(blocks), kThreadsPerBlock, 0, s, logits, labels, targets,
                  losses, dlogits, N, C, grad_scale);
  }
}

}  // namespace

void sparse_softmax_cross_entropy(const float* logits, const std::int64_t* labels, float* losses,
                                  float* dlogits, std::int64_t N, std::int64_t C,
                                  float grad_scale, std::uintptr_t stream) {
  launch<false>(logits, labels, nullptr, losses, dlogits, N, C, grad_scale, stream);
}

void softmax_cross_entropy(const float* logits, const float* targets, float* losses,
                           float* dlogits, std::int64_t N, std::int64_t C, float grad_scale,
                           std::uintptr_t stream) {
  launch<true>(logits, nullptr, targets, losses, dlogits, N, C, grad_scale, stream);
}

}  // namespace fusednn::cuda
