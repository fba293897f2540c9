// The persistent forward kernel: all T steps of LSTM / GRU (reset_after) /
// SimpleRNN in one cooperative launch.
//
// The units are split into equal slices, one per block (at most one block per
// SM). A block loads the recurrent-kernel columns of its units, all gates,
// (U, gates * slice) into shared memory once and keeps them for the whole
// sequence. Each step it
//   1. forms the recurrent products of its columns for every batch row,
//      h_{t-1} * recurrent_mask (N, U) x its weights, staging h through shared
//      memory in chunks of kChunk columns. A thread owns one column and up to
//      kMaxOutputs rows of it (accumulated in registers), so each weight it
//      loads from shared memory serves all its rows; the staged rows of h are
//      kChunkPitch = kChunk + 1 floats apart, so the rows a warp reads at once
//      start in different banks (at a pitch of 32 every row began in bank 0:
//      up to 32-way conflicts);
//   2. runs the cells' per-element forward (recurrent_common.cuh) for its
//      units, writing h_t and the next step's GEMM input to global memory;
//   3. waits at a grid-wide barrier, after which every block sees all of h_t.
// The next step's input goes to a different buffer than the current one (the
// h_in cache in training, a ping-pong pair in inference), so a fast block never
// overwrites what a slow one still reads; it is read with __ldcg (L2, never a
// possibly stale L1 line). One barrier per step replaces the two launches per
// step of the per-step path and the weights are read from DRAM only once.
#pragma once

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "device_facts.cuh"
#include "fusednn/cuda_check.h"
#include "launch.cuh"
#include "recurrent_common.cuh"

namespace fusednn::cuda::recurrent_detail {

namespace {

constexpr int kPersistentThreads = 256;
constexpr int kMaxOutputs = 8;  // recurrent products per thread and step
constexpr int kChunk = 32;      // columns of h staged per round
constexpr int kChunkPitch = kChunk + 1;
// kAuto takes the persistent kernel only while a thread's FMAs per step
// (rows per thread x U) stay at most this: about 2.4 us at one FMA per cycle
// and 1.7 GHz, the order of the two launches per step that the per-step path
// pays and the persistent kernel saves. A conservative estimate, not a
// measurement: no GPU has timed the two paths yet (benchmarks/NOTES.md);
// algorithm='persistent' still runs it wherever it fits.
constexpr Index kAutoMaxFmasPerThreadStep = 4096;

// Room the persistent kernel needs for a problem.
struct PersistentPlan {
  bool fits = false;
  int blocks = 0;  // grid size: one slice of units per block
  int units_per_block = 0;
  std::size_t shared_bytes = 0;
  Index fmas_per_thread_step = 0;
  std::string reason;  // why it does not fit
};

// Whether kAuto runs a plan that fits (kAutoMaxFmasPerThreadStep).
inline bool auto_prefers(const PersistentPlan& plan) {
  return plan.fits && plan.fmas_per_thread_step <= kAutoMaxFmasPerThreadStep;
}

template <typename Cell, bool kTraining, bool kMasked, bool kRecurrentMask>
__global__ void __launch_bounds__(kPersistentThreads)
    persistent_forward_kernel(ForwardArgs a, const float* __restrict__ recurrent_kernel,
                              float* feed, Index feed_ld, Index feed_step_offset,
                              int units_per_block) {
  namespace cg = cooperative_groups;
  cg::grid_group grid = cg::this_grid();
  FUSEDNN_DYNAMIC_SHARED(float, shared);
  constexpr int kGates = Cell::kGates;
  const Index N = a.N, T = a.T, U = a.U, G = kGates * U;
  const int slice = units_per_block;
  const int cols = kGates * slice;  // local column c: gate c / slice, unit j0 + c % slice
  const Index j0 = Index(blockIdx.x) * slice;
  float* weights = shared;                     // (U, cols)
  float* h_chunk = weights + U * cols;         // (N, kChunkPitch)
  float* products = h_chunk + N * kChunkPitch;  // (N, cols)
  const int tid = threadIdx.x;
  // This thread's products: column c of rows n0, n0 + row_step, ... (the
  // planner keeps cols <= kPersistentThreads and N <= kMaxOutputs * row_step).
  const int row_step = kPersistentThreads / cols;
  const int c = tid % cols;
  const int n0 = tid / cols;
  const bool computes = tid < row_step * cols;

  for (Index e = tid; e < U * cols; e += kPersistentThreads) {
    const Index k = e / cols;
    const int c = static_cast<int>(e % cols);
    const Index j = j0 + c % slice;
    weights[e] = j < U ? recurrent_kernel[k * G + (c / slice) * U + j] : 0.f;
  }

  for (Index t = 0; t < T; ++t) {
    // Training: the h_in cache, one slice per step; inference: a ping-pong pair.
    const bool training_feed = feed_step_offset != 0;
    const float* feed_t = training_feed ? feed + t * feed_step_offset : feed + (t % 2) * N * U;
    float* next_feed = training_feed ? (t + 1 < T ? feed + (t + 1) * feed_step_offset : nullptr)
                                     : feed + ((t + 1) % 2) * N * U;

    float acc[kMaxOutputs];
#pragma unroll
    for (int q = 0; q < kMaxOutputs; ++q) acc[q] = 0.f;
    for (Index k0 = 0; k0 < U; k0 += kChunk) {
      const int width = static_cast<int>(U - k0 < kChunk ? U - k0 : kChunk);
      __syncthreads();  // the previous chunk (and the weights on the first pass) are done
      for (Index e = tid; e < N * kChunk; e += kPersistentThreads) {
        const Index n = e / kChunk;
        const int kk = static_cast<int>(e % kChunk);
        h_chunk[n * kChunkPitch + kk] = kk < width ? __ldcg(feed_t + n * feed_ld + k0 + kk) : 0.f;
      }
      __syncthreads();
      if (computes) {
        const float* w = weights + k0 * cols + c;
        for (int kk = 0; kk < width; ++kk) {
          const float weight = w[kk * cols];  // one shared load for all the thread's rows
#pragma unroll
          for (int r = 0; r < kMaxOutputs; ++r) {
            const Index n = n0 + Index(r) * row_step;
            if (n < N) acc[r] = fmaf(h_chunk[n * kChunkPitch + kk], weight, acc[r]);
          }
        }
      }
    }
    if (computes) {
#pragma unroll
      for (int r = 0; r < kMaxOutputs; ++r) {
        const Index n = n0 + Index(r) * row_step;
        if (n < N) products[n * cols + c] = acc[r];
      }
    }
    __syncthreads();

    for (Index p = tid; p < N * slice; p += kPersistentThreads) {
      const Index n = p / slice;
      const int jj = static_cast<int>(p % slice);
      const Index j = j0 + jj;
      if (j >= U) continue;
      float recurrent[kGates];
#pragma unroll
      for (int g = 0; g < kGates; ++g) recurrent[g] = products[n * cols + g * slice + jj];
      Cell::template forward<kTraining, kMasked, kRecurrentMask>(a, t, n, j, recurrent,
                                                                 next_feed, feed_ld);
    }
    grid.sync();  // h_t and the next input complete everywhere (a memory fence included)
  }
}

// Plans of one persistent kernel per (device, N, U), remembered: a layer plans
// the same shape at every forward. The kernel's dynamic shared memory limit is
// only ever raised, so every remembered plan stays launchable.
struct PersistentPlans {
  std::mutex mutex;
  std::map<std::tuple<int, Index, Index>, PersistentPlan> plans;
  std::map<int, Index> shared_allowed;  // per device
};

// Whether the persistent kernel of Cell can run this problem on `device`: the
// register tile, shared memory (opt-in limit) and co-residency of the whole
// grid (occupancy), with the reason when it cannot. Called with the lock of
// `known` held.
template <typename Cell, bool kTraining, bool kMasked, bool kRecurrentMask>
PersistentPlan new_persistent_plan(const RecurrentShape& s, int device, PersistentPlans& known) {
  PersistentPlan plan;
  const DeviceFacts& facts = device_facts(device);
  const int sms = facts.multiprocessors;
  const int shared_optin = facts.shared_optin;
  if (!facts.cooperative_launch) {
    plan.reason = "the device does not support cooperative launches";
    return plan;
  }
  const Index slice = (s.U + sms - 1) / sms;
  const Index blocks = (s.U + slice - 1) / slice;
  const Index cols = Cell::kGates * slice;
  const Index row_step = cols <= kPersistentThreads ? kPersistentThreads / cols : 0;
  if (row_step == 0 || s.N > kMaxOutputs * row_step) {
    plan.reason = "gates * units per block = " + std::to_string(cols) + " columns of " +
                  std::to_string(s.N) + " rows exceed the register tile (" +
                  std::to_string(kMaxOutputs) + " rows of one column per thread, " +
                  std::to_string(kPersistentThreads) + " threads)";
    return plan;
  }
  const Index bytes = (s.U * cols + s.N * kChunkPitch + s.N * cols) * Index(sizeof(float));
  if (bytes > shared_optin) {
    plan.reason = "needs " + std::to_string(bytes) + " bytes of shared memory per block, " +
                  "the device allows " + std::to_string(shared_optin);
    return plan;
  }
  auto kernel = persistent_forward_kernel<Cell, kTraining, kMasked, kRecurrentMask>;
  Index& allowed = known.shared_allowed[device];
  if (bytes > allowed) {
    FUSEDNN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
    allowed = bytes;
  }
  int per_sm = 0;
  FUSEDNN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, kernel, kPersistentThreads, static_cast<std::size_t>(bytes)));
  if (Index(per_sm) * sms < blocks) {
    plan.reason = std::to_string(blocks) + " blocks cannot all be resident (" +
                  std::to_string(per_sm) + " per SM on " + std::to_string(sms) + " SMs)";
    return plan;
  }
  plan.fits = true;
  plan.blocks = static_cast<int>(blocks);
  plan.units_per_block = static_cast<int>(slice);
  plan.shared_bytes = static_cast<std::size_t>(bytes);
  plan.fmas_per_thread_step = (s.N + row_step - 1) / row_step * s.U;
  return plan;
}

template <typename Cell, bool kTraining, bool kMasked, bool kRecurrentMask>
PersistentPlan plan_persistent(const RecurrentShape& s) {
  static PersistentPlans known;
  const int device = current_device();
  const std::lock_guard<std::mutex> lock(known.mutex);
  const auto key = std::make_tuple(device, Index(s.N), Index(s.U));
  const auto found = known.plans.find(key);
  if (found != known.plans.end()) return found->second;
  const PersistentPlan plan =
      new_persistent_plan<Cell, kTraining, kMasked, kRecurrentMask>(s, device, known);
  known.plans.emplace(key, plan);
  return plan;
}

// All T steps in one cooperative launch. feed holds the GEMM input of step 0
// (written by the caller); feed_step_offset 0 means inference, where the
// kernel ping-pongs between feed and feed + N * U (rows U apart).
template <typename Cell, bool kTraining, bool kMasked, bool kRecurrentMask>
void launch_persistent(const PersistentPlan& plan, ForwardArgs args,
                       const float* recurrent_kernel, float* feed, Index feed_ld,
                       Index feed_step_offset, cudaStream_t stream) {
  int units_per_block = plan.units_per_block;
  void* kernel_args[] = {&args, &recurrent_kernel, &feed, &feed_ld, &feed_step_offset,
                         &units_per_block};
  auto kernel = persistent_forward_kernel<Cell, kTraining, kMasked, kRecurrentMask>;
  check_launch(cudaLaunchCooperativeKernel(kernel, dim3(plan.blocks), dim3(kPersistentThreads),
                                           kernel_args, plan.shared_bytes, stream),
               reinterpret_cast<const void*>(kernel), stream);
}

}  // namespace

}  // namespace fusednn::cuda::recurrent_detail
