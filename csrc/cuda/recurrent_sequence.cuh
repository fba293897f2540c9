// The per-step path of the CUDA recurrent kernels and the sequence drivers the
// launchers (recurrent_lstm.cu, recurrent_gru.cu, recurrent_simple_rnn.cu)
// share: the input-projection GEMM, the step loop (recurrent GEMM, then one
// fused pointwise kernel per step, or the persistent kernel for all steps), the
// reverse step loop of the backward and the whole-sequence weight gradients.
// Internal to those files (everything in an unnamed namespace).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "fusednn/cuda_check.h"
#include "fusednn/cuda_gemm.h"
#include "fusednn/recurrent.h"
#include "device_facts.cuh"
#include "launch.cuh"
#include "recurrent_common.cuh"
#include "recurrent_persistent.cuh"
#include "split_sums.cuh"
#include "stream_buffer.cuh"

namespace fusednn::cuda::recurrent_detail {

namespace {

constexpr int kThreads = 256;
constexpr Index kMaxBlocks = 8192;  // element loops are grid-stride

// Workspace layout (float elements, see workspace_elements in recurrent_lstm.cu).
// Forward: [0, 2NU) the recurrent GEMM input when it is not a cache (one
// buffer per step, or the persistent kernel's ping-pong pair); [2NU, 5NU) the
// (N, 3U) recurrent products of a GRU step; [5NU, 6NU) a GRU's r * h.
// Backward: carry, from_gemm, pending, and a GRU's d(r * h), N*U each.
constexpr Index kForwardWorkspaceUnits = 6;
constexpr Index kBackwardWorkspaceUnits = 4;

inline unsigned blocks_for(Index count) {
  return static_cast<unsigned>(std::min((count + kThreads - 1) / kThreads, kMaxBlocks));
}

inline void gemm_on(cudaStream_t stream, bool trans_a, bool trans_b, Index M, Index N, Index K,
                    const float* A, Index lda, const float* B, Index ldb, float beta, float* C,
                    Index ldc) {
  gemm(trans_a, trans_b, M, N, K, 1.f, A, lda, B, ldb, beta, C, ldc,
       reinterpret_cast<std::uintptr_t>(stream));
}

// dst[n * dst_ld + j] = src[n * U + j] * recurrent_mask[n * U + j] (or src).
template <bool kRecurrentMask>
__global__ void __launch_bounds__(kThreads)
    write_feed_kernel(Index N, Index U, const float* __restrict__ src,
                      const float* __restrict__ recurrent_mask, float* __restrict__ dst,
                      Index dst_ld) {
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < N * U;
       e += Index(gridDim.x) * blockDim.x) {
    const float h = src[e];
    dst[(e / U) * dst_ld + e % U] = kRecurrentMask ? h * recurrent_mask[e] : h;
  }
}

template <typename Cell, bool kTraining, bool kMasked, bool kRecurrentMask>
__global__ void __launch_bounds__(kThreads)
    forward_step_kernel(ForwardArgs a, Index t, const float* __restrict__ projected,
                        float* next_feed, Index feed_ld) {
  constexpr int kGates = Cell::kGates;
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < a.N * a.U;
       e += Index(gridDim.x) * blockDim.x) {
    const Index n = e / a.U, j = e % a.U;
    float recurrent[kGates];
#pragma unroll
    for (int g = 0; g < kGates; ++g) {
      recurrent[g] = Cell::kAccumulates ? 0.f : projected[n * kGates * a.U + g * a.U + j];
    }
    Cell::template forward<kTraining, kMasked, kRecurrentMask>(a, t, n, j, recurrent, next_feed,
                                                               feed_ld);
  }
}

template <typename Cell, bool kMasked, bool kRecurrentMask>
__global__ void __launch_bounds__(kThreads) backward_step_kernel(BackwardArgs a, Index t) {
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < a.N * a.U;
       e += Index(gridDim.x) * blockDim.x) {
    Cell::template backward<kMasked, kRecurrentMask>(a, t, e / a.U, e % a.U);
  }
}

// dh0 = carry + from_gemm * recurrent_mask.
template <bool kRecurrentMask>
__global__ void __launch_bounds__(kThreads) finish_dh0_kernel(BackwardArgs a, float* dh0) {
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < a.N * a.U;
       e += Index(gridDim.x) * blockDim.x) {
    dh0[e] = state_gradient<kRecurrentMask>(a, e);
  }
}

// out (cols,) = column sums of data (rows, cols): a block owns 32 columns of
// rows_per_block rows (grid y), its 16 row lanes stride down the rows
// (coalesced across the columns) and meet in shared memory; block y writes
// row y of out. rows == 0 writes zeros.
constexpr int kSumColumns = 32;
constexpr int kSumLanes = 16;

__global__ void __launch_bounds__(kSumColumns * kSumLanes)
    column_sums_kernel(Index rows, Index cols, Index rows_per_block,
                       const float* __restrict__ data, float* __restrict__ out) {
  __shared__ float partial[kSumLanes][kSumColumns + 1];
  const Index col = Index(blockIdx.x) * kSumColumns + threadIdx.x;
  const Index row_begin = Index(blockIdx.y) * rows_per_block;
  const Index row_end = row_begin + rows_per_block < rows ? row_begin + rows_per_block : rows;
  float sum = 0.f;
  if (col < cols) {
    for (Index r = row_begin + threadIdx.y; r < row_end; r += kSumLanes) {
      sum += data[r * cols + col];
    }
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = 0.f;
#pragma unroll
    for (int lane = 0; lane < kSumLanes; ++lane) total += partial[lane][threadIdx.x];
    out[Index(blockIdx.y) * cols + col] = total;
  }
}

// Few columns (a bias gradient: G / 32 blocks, 32 for G = 1024, on 132 SMs)
// split the rows too, into at least 4 blocks per SM of at least 512 rows;
// the row blocks' partial sums are added in a fixed order (split_sums.cuh).
inline void column_sums(Index rows, Index cols, const float* data, float* out,
                        cudaStream_t stream) {
  if (cols == 0) return;
  const dim3 block(kSumColumns, kSumLanes);
  const Index column_blocks = (cols + kSumColumns - 1) / kSumColumns;
  const Index wanted = std::min<Index>(
      65535, (4 * Index(current_device_facts().multiprocessors) + column_blocks - 1) /
                 column_blocks);
  const Index rows_per_block = std::max<Index>(kSumLanes * 32, (rows + wanted - 1) / wanted);
  const Index row_blocks = std::max<Index>(1, (rows + rows_per_block - 1) / rows_per_block);
  const dim3 grid(static_cast<unsigned>(column_blocks), static_cast<unsigned>(row_blocks));
  if (row_blocks == 1) {
    launch_kernel(column_sums_kernel, grid, block, 0, stream, rows, cols, rows_per_block, data,
                  out);
    return;
  }
  const StreamBuffer<float> partials(row_blocks * cols, stream);
  launch_kernel(column_sums_kernel, grid, block, 0, stream, rows, cols, rows_per_block, data,
                partials.get());
  sum_splits(partials.get(), row_blocks, cols, out, stream);
}

inline void copy_async(float* dst, const float* src, Index count, cudaStream_t stream) {
  if (count > 0) {
    FUSEDNN_CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                       stream));
  }
}

// dst = src, or zeros where src is nullptr.
inline void copy_or_zero(float* dst, const float* src, Index count, cudaStream_t stream) {
  if (count == 0) return;
  if (src != nullptr) {
    copy_async(dst, src, count, stream);
  } else {
    FUSEDNN_CUDA_CHECK(cudaMemsetAsync(dst, 0, count * sizeof(float), stream));
  }
}

template <bool kRecurrentMask>
void write_feed(Index N, Index U, const float* h, const float* recurrent_mask, float* dst,
                Index dst_ld, cudaStream_t stream) {
  if (N * U == 0) return;
  launch_kernel(write_feed_kernel<kRecurrentMask>, blocks_for(N * U), kThreads, 0, stream, N, U, h,
                recurrent_mask, dst, dst_ld);
}

// Where a forward reads each step's recurrent GEMM input from.
struct FeedLayout {
  float* data;
  Index ld;           // between rows
  Index step_offset;  // between steps; 0: one buffer reused (or ping-pong when persistent)
};

// The algorithm to run: kPersistent where requested, or (kAuto) where it fits
// and auto_prefers it.
template <typename Cell, bool kTraining, bool kMasked, bool kRecurrentMask>
bool use_persistent(const RecurrentShape& s, RecurrentAlgorithm requested, PersistentPlan& plan) {
  if (requested == RecurrentAlgorithm::kPerStep || s.N == 0) return false;
  plan = plan_persistent<Cell, kTraining, kMasked, kRecurrentMask>(s);
  if (requested == RecurrentAlgorithm::kPersistent && !plan.fits) {
    throw CudaError("recurrent forward: the persistent kernel cannot run this problem: " +
                    plan.reason);
  }
  return requested == RecurrentAlgorithm::kPersistent || auto_prefers(plan);
}

// Forward of LSTM, GRU (reset_after) or SimpleRNN over the sequence.
// a.h (and a.c for the LSTM) must already hold the initial states.
template <typename Cell, bool kTraining, bool kMasked, bool kRecurrentMask>
RecurrentAlgorithm forward_sequence(const RecurrentShape& s, RecurrentAlgorithm requested,
                                    const ForwardArgs& a, const float* x, const float* kernel,
                                    const float* recurrent_kernel, float* h_in, float* workspace,
                                    cudaStream_t stream) {
  constexpr Index kGates = Cell::kGates;
  const Index N = s.N, T = s.T, U = s.U, G = kGates * U;
  PersistentPlan plan;
  const bool persistent =
      use_persistent<Cell, kTraining, kMasked, kRecurrentMask>(s, requested, plan);
  gemm_on(stream, false, false, N * T, G, s.F, x, s.F, kernel, G, 0.f, a.gates, G);
  if (N == 0) return RecurrentAlgorithm::kPerStep;

  FeedLayout feed{a.h, U, 0};  // inference without recurrent mask: the state itself
  if (kTraining) {
    feed = {h_in, T * U, U};
  } else if (persistent || kRecurrentMask) {
    feed = {workspace, U, 0};
  }
  if (feed.data != a.h) {
    write_feed<kRecurrentMask>(N, U, a.h, a.recurrent_mask, feed.data, feed.ld, stream);
  }
  if (persistent) {
    launch_persistent<Cell, kTraining, kMasked, kRecurrentMask>(
        plan, a, recurrent_kernel, feed.data, feed.ld, feed.step_offset, stream);
    return RecurrentAlgorithm::kPersistent;
  }

  float* projected = workspace + 2 * N * U;  // GRU: (N, 3U)
  for (Index t = 0; t < T; ++t) {
    const float* feed_t = feed.data + t * feed.step_offset;
    if (Cell::kAccumulates) {
      gemm_on(stream, false, false, N, G, U, feed_t, feed.ld, recurrent_kernel, G, 1.f,
              a.gates + t * G, T * G);
    } else {
      gemm_on(stream, false, false, N, G, U, feed_t, feed.ld, recurrent_kernel, G, 0.f,
              projected, G);
    }
    float* next_feed = kTraining ? (t + 1 < T ? feed.data + (t + 1) * feed.step_offset : nullptr)
                                 : (feed.data == a.h ? nullptr : feed.data);
    launch_kernel(forward_step_kernel<Cell, kTraining, kMasked, kRecurrentMask>,
                  blocks_for(N * U), kThreads, 0, stream, a, t, projected, next_feed, feed.ld);
  }
  return RecurrentAlgorithm::kPerStep;
}

// Points a backward's carry / from_gemm / pending at the workspace and starts
// them: carry = dh_T (or 0), the others 0.
inline void start_backward_state(const RecurrentShape& s, BackwardArgs& a, const float* dh_T,
                                 float* workspace, cudaStream_t stream) {
  const Index NU = s.N * s.U;
  a.carry = workspace;
  a.from_gemm = workspace + NU;
  a.pending = workspace + 2 * NU;
  copy_or_zero(a.carry, dh_T, NU, stream);
  copy_or_zero(a.from_gemm, nullptr, NU, stream);
  copy_or_zero(a.pending, nullptr, NU, stream);
}

template <bool kRecurrentMask>
void finish_dh0(const RecurrentShape& s, const BackwardArgs& a, float* dh0, cudaStream_t stream) {
  if (s.N * s.U == 0) return;
  launch_kernel(finish_dh0_kernel<kRecurrentMask>, blocks_for(s.N * s.U), kThreads, 0, stream, a,
                dh0);
}

// dx (N*T, F) = dgates x kernel^T (unless dx is nullptr); dkernel (F, gU) = x^T x dgates.
inline void input_gradients(const RecurrentShape& s, Index G, const float* x,
                            const float* kernel, const float* dgates, float* dx, float* dkernel,
                            cudaStream_t stream) {
  const Index rows = s.N * s.T;
  if (dx != nullptr) gemm_on(stream, false, true, rows, s.F, G, dgates, G, kernel, G, 0.f, dx, s.F);
  gemm_on(stream, true, false, s.F, G, rows, x, s.F, dgates, G, 0.f, dkernel, G);
}

// drecurrent_kernel[:, cols] (U, width) = inputs^T x dgates[:, cols] (rows gU apart).
inline void recurrent_kernel_gradient(const RecurrentShape& s, Index G, Index width,
                                      const float* inputs, const float* dgates,
                                      float* drecurrent_kernel, cudaStream_t stream) {
  gemm_on(stream, true, false, s.U, width, s.N * s.T, inputs, s.U, dgates, G, 0.f,
          drecurrent_kernel, G);
}

// Backward of LSTM, GRU (reset_after) or SimpleRNN: a's caches, dy, dgates
// (and a.dc for the LSTM, already started) set by the caller.
template <typename Cell, bool kMasked, bool kRecurrentMask>
void backward_sequence(const RecurrentShape& s, BackwardArgs a, const float* x,
                       const float* kernel, const float* recurrent_kernel, const float* dh_T,
                       float* dx, float* dh0, float* dkernel, float* drecurrent_kernel,
                       float* dbias, float* workspace, cudaStream_t stream) {
  constexpr Index kGates = Cell::kGates;
  // GRU (reset_after): the recurrent products have their own gradient and bias half.
  constexpr bool kSplitRecurrent = !Cell::kAccumulates;
  const Index N = s.N, T = s.T, U = s.U, G = kGates * U;
  start_backward_state(s, a, dh_T, workspace, stream);
  const float* dgates_recurrent = kSplitRecurrent ? a.dgates_recurrent : a.dgates;
  if (N > 0) {
    for (Index t = T - 1; t >= 0; --t) {
      launch_kernel(backward_step_kernel<Cell, kMasked, kRecurrentMask>, blocks_for(N * U),
                    kThreads, 0, stream, a, t);
      gemm_on(stream, false, true, N, U, G, dgates_recurrent + t * G, T * G, recurrent_kernel, G,
              0.f, a.from_gemm, U);
    }
  }
  finish_dh0<kRecurrentMask>(s, a, dh0, stream);
  input_gradients(s, G, x, kernel, a.dgates, dx, dkernel, stream);
  recurrent_kernel_gradient(s, G, G, a.h_in, dgates_recurrent, drecurrent_kernel, stream);
  column_sums(N * T, G, a.dgates, dbias, stream);
  if (kSplitRecurrent) column_sums(N * T, G, a.dgates_recurrent, dbias + G, stream);
}

}  // namespace

}  // namespace fusednn::cuda::recurrent_detail
