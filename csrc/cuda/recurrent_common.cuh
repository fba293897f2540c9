// Device code shared by the CUDA recurrent kernels (recurrent_sequence.cuh:
// the per-step path; recurrent_persistent.cuh: the persistent forward kernel):
// the per-element forward and backward of each cell, so both forward
// algorithms run literally the same update code, and the argument structs.
//
// Elements are (n, j) pairs: batch row n, unit j, e = n * U + j. Arrays of
// (N, T, .) shape are batch-major, row n * T + t, as on the CPU. Everything
// here is also host code, so a test can run the cells' CUDA code on the CPU
// (tests/test_ops_recurrent.py compiles a host simulation with nvcc).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fusednn/recurrent.h"

namespace fusednn::cuda::recurrent_detail {

using Index = std::int64_t;

__host__ __device__ __forceinline__ float sigmoid(float x) {
  // exp of a non-positive argument only: no overflow, full relative accuracy.
  const float e = expf(-fabsf(x));
  const float s = 1.f / (1.f + e);
  return x >= 0.f ? s : e * s;
}

template <bool kMasked>
__host__ __device__ __forceinline__ bool step_is_valid(const std::uint8_t* mask, Index T,
                                                       Index n, Index t) {
  if constexpr (kMasked) {
    return mask[n * T + t] != 0;
  } else {
    return true;
  }
}

// What a forward step reads and writes (see fusednn/recurrent.h for shapes).
struct ForwardArgs {
  Index N, T, U;
  const float* bias;            // (gU,), GRU reset_after (2, gU)
  const std::uint8_t* mask;     // (N, T) or nullptr
  const float* recurrent_mask;  // (N, U) or nullptr
  float* gates;                 // (N, T, gU): input projection in, activated gates out (training)
  float* h;                     // (N, U) running state, ends as h_T
  float* c;                     // (N, U) LSTM running cell state, ends as c_T
  float* y;                     // (N, T, U)
  float* cell;                  // LSTM cache (training)
  float* h_prev;                // GRU cache (training with recurrent mask)
  float* recurrent_h;           // GRU cache (training)
};

// Everything after the gate math of a forward element: outputs, caches, the
// next recurrent GEMM input (next_feed, rows feed_ld apart, nullptr if none).
template <bool kTraining, bool kRecurrentMask>
__host__ __device__ __forceinline__ void finish_forward_element(const ForwardArgs& a, Index nt,
                                                                Index e, Index n, Index j,
                                                                float h, float* next_feed,
                                                                Index feed_ld) {
  a.h[e] = h;
  if (next_feed != nullptr) {
    next_feed[n * feed_ld + j] = kRecurrentMask ? h * a.recurrent_mask[e] : h;
  }
}

// y of a masked step: the previous output, zeros before the first.
__host__ __device__ __forceinline__ void repeat_previous_output(const ForwardArgs& a, Index t,
                                                                Index nt, Index j) {
  float* y = a.y + nt * a.U + j;
  *y = t > 0 ? y[-a.U] : 0.f;
}

// What a backward step reads and writes. carry / from_gemm / pending: the
// backward state of the CPU kernels (cpu/recurrent_common.h, BackwardState):
// the gradient w.r.t. h_t is carry + from_gemm * recurrent_mask.
struct BackwardArgs {
  Index N, T, U;
  const std::uint8_t* mask;
  const float* recurrent_mask;
  const float* gates;        // activated gates of the forward
  const float* cell;         // LSTM cache
  const float* c0;           // LSTM (N, U)
  const float* h_before;     // GRU: the state before each step (h_prev, or h_in)
  const float* h_in;         // (N, T, U) recurrent GEMM inputs
  const float* recurrent_h;  // GRU cache
  const float* dy;           // (N, T, U)
  float* dgates;             // (N, T, gU) out
  float* dgates_recurrent;   // GRU reset_after (N, T, gU) out
  float* carry;              // (N, U)
  float* from_gemm;          // (N, U)
  float* pending;            // (N, U), masked only
  float* dc;                 // LSTM (N, U): running cell gradient, ends as dc0
};

template <bool kRecurrentMask>
__host__ __device__ __forceinline__ float state_gradient(const BackwardArgs& a, Index e) {
  return a.carry[e] + a.from_gemm[e] * (kRecurrentMask ? a.recurrent_mask[e] : 1.f);
}

// A masked step of element e: its output gradient is owed to an earlier step,
// the state gradient passes through; the caller zeroes its gate gradients.
template <bool kRecurrentMask>
__host__ __device__ __forceinline__ void masked_step_backward(const BackwardArgs& a, Index nt,
                                                              Index e, Index j) {
  a.pending[e] += a.dy[nt * a.U + j];
  a.carry[e] = state_gradient<kRecurrentMask>(a, e);
}

// The total gradient w.r.t. the new h of a valid step; clears what it consumed.
template <bool kMasked, bool kRecurrentMask>
__host__ __device__ __forceinline__ float valid_step_output_gradient(const BackwardArgs& a,
                                                                     Index nt, Index e,
                                                                     Index j) {
  float g = state_gradient<kRecurrentMask>(a, e) + a.dy[nt * a.U + j];
  if constexpr (kMasked) {
    g += a.pending[e];
    a.pending[e] = 0.f;
  }
  return g;
}

// ---------------------------------------------------------------------------
// Cells. forward(): `recurrent` holds this element's recurrent products per
// gate (zeros where the per-step GEMM already accumulated them into gates).

struct LstmCell {
  static constexpr int kGates = 4;
  // The per-step GEMM adds h R onto the input projection (beta 1).
  static constexpr bool kAccumulates = true;

  template <bool kTraining, bool kMasked, bool kRecurrentMask>
  __host__ __device__ static void forward(const ForwardArgs& a, Index t, Index n, Index j,
                                 const float* recurrent, float* next_feed, Index feed_ld) {
    const Index U = a.U, G = 4 * U, nt = n * a.T + t, e = n * U + j;
    float h = a.h[e], c = a.c[e];
    if (step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      float* g = a.gates + nt * G + j;
      const float* b = a.bias + j;
      const float i = sigmoid(g[0] + b[0] + recurrent[0]);
      const float f = sigmoid(g[U] + b[U] + recurrent[1]);
      const float gg = tanhf(g[2 * U] + b[2 * U] + recurrent[2]);
      const float o = sigmoid(g[3 * U] + b[3 * U] + recurrent[3]);
      c = f * c + i * gg;
      h = o * tanhf(c);
      a.y[nt * U + j] = h;
      a.c[e] = c;
      if constexpr (kTraining) {
        g[0] = i;
        g[U] = f;
        g[2 * U] = gg;
        g[3 * U] = o;
      }
    } else {
      repeat_previous_output(a, t, nt, j);
    }
    if constexpr (kTraining) a.cell[nt * U + j] = c;
    finish_forward_element<kTraining, kRecurrentMask>(a, nt, e, n, j, h, next_feed, feed_ld);
  }

  template <bool kMasked, bool kRecurrentMask>
  __host__ __device__ static void backward(const BackwardArgs& a, Index t, Index n, Index j) {
    const Index U = a.U, G = 4 * U, nt = n * a.T + t, e = n * U + j;
    float* dg = a.dgates + nt * G + j;
    if (!step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      masked_step_backward<kRecurrentMask>(a, nt, e, j);
      dg[0] = dg[U] = dg[2 * U] = dg[3 * U] = 0.f;
      return;
    }
    const float dh = valid_step_output_gradient<kMasked, kRecurrentMask>(a, nt, e, j);
    const float* g = a.gates + nt * G + j;
    const float i = g[0], f = g[U], gg = g[2 * U], o = g[3 * U];
    const float tanh_c = tanhf(a.cell[nt * U + j]);
    const float c_prev = t > 0 ? a.cell[(nt - 1) * U + j] : a.c0[e];
    const float dc = a.dc[e] + dh * o * (1.f - tanh_c * tanh_c);
    dg[0] = dc * gg * i * (1.f - i);
    dg[U] = dc * c_prev * f * (1.f - f);
    dg[2 * U] = dc * i * (1.f - gg * gg);
    dg[3 * U] = dh * tanh_c * o * (1.f - o);
    a.dc[e] = dc * f;
    a.carry[e] = 0.f;
  }
};

// GRU with reset_after: recurrent products of all three gates come apart from
// the input projection (r multiplies the candidate's), bias (2, 3U).
struct GruCell {
  static constexpr int kGates = 3;
  static constexpr bool kAccumulates = false;

  template <bool kTraining, bool kMasked, bool kRecurrentMask>
  __host__ __device__ static void forward(const ForwardArgs& a, Index t, Index n, Index j,
                                 const float* recurrent, float* next_feed, Index feed_ld) {
    const Index U = a.U, G = 3 * U, nt = n * a.T + t, e = n * U + j;
    float h = a.h[e];
    if (step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      float* g = a.gates + nt * G + j;
      const float* b_in = a.bias + j;
      const float* b_rec = a.bias + G + j;
      const float z = sigmoid(g[0] + b_in[0] + recurrent[0] + b_rec[0]);
      const float r = sigmoid(g[U] + b_in[U] + recurrent[1] + b_rec[U]);
      const float hr = recurrent[2] + b_rec[2 * U];
      const float hh = tanhf(g[2 * U] + b_in[2 * U] + r * hr);
      if constexpr (kTraining) {
        g[0] = z;
        g[U] = r;
        g[2 * U] = hh;
        a.recurrent_h[nt * U + j] = hr;
        if constexpr (kRecurrentMask) a.h_prev[nt * U + j] = h;
      }
      h = z * h + (1.f - z) * hh;
      a.y[nt * U + j] = h;
    } else {
      repeat_previous_output(a, t, nt, j);
    }
    finish_forward_element<kTraining, kRecurrentMask>(a, nt, e, n, j, h, next_feed, feed_ld);
  }

  template <bool kMasked, bool kRecurrentMask>
  __host__ __device__ static void backward(const BackwardArgs& a, Index t, Index n, Index j) {
    const Index U = a.U, G = 3 * U, nt = n * a.T + t, e = n * U + j;
    float* dg = a.dgates + nt * G + j;
    float* dg_rec = a.dgates_recurrent + nt * G + j;
    if (!step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      masked_step_backward<kRecurrentMask>(a, nt, e, j);
      dg[0] = dg[U] = dg[2 * U] = 0.f;
      dg_rec[0] = dg_rec[U] = dg_rec[2 * U] = 0.f;
      return;
    }
    const float dh = valid_step_output_gradient<kMasked, kRecurrentMask>(a, nt, e, j);
    const float* g = a.gates + nt * G + j;
    const float z = g[0], r = g[U], hh = g[2 * U];
    const float dz = dh * (a.h_before[nt * U + j] - hh) * z * (1.f - z);
    const float dhh = dh * (1.f - z) * (1.f - hh * hh);
    const float dr = dhh * a.recurrent_h[nt * U + j] * r * (1.f - r);
    dg[0] = dg_rec[0] = dz;
    dg[U] = dg_rec[U] = dr;
    dg[2 * U] = dhh;
    dg_rec[2 * U] = dhh * r;
    a.carry[e] = dh * z;
  }
};

template <RnnActivation kActivation>
struct SimpleRnnCell {
  static constexpr int kGates = 1;
  static constexpr bool kAccumulates = true;

  __host__ __device__ static float activate(float v) {
    if constexpr (kActivation == RnnActivation::kTanh) {
      return tanhf(v);
    } else {
      return v < 0.f ? 0.f : v;  // fmaxf would turn NaN into 0
    }
  }

  // d act / d pre from the activation's output.
  __host__ __device__ static float slope(float h) {
    if constexpr (kActivation == RnnActivation::kTanh) {
      return 1.f - h * h;
    } else {
      return h > 0.f ? 1.f : 0.f;
    }
  }

  template <bool kTraining, bool kMasked, bool kRecurrentMask>
  __host__ __device__ static void forward(const ForwardArgs& a, Index t, Index n, Index j,
                                 const float* recurrent, float* next_feed, Index feed_ld) {
    const Index U = a.U, nt = n * a.T + t, e = n * U + j;
    float h = a.h[e];
    if (step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      float* pre = a.gates + nt * U + j;
      h = activate(*pre + a.bias[j] + recurrent[0]);
      if constexpr (kTraining) *pre = h;
      a.y[nt * U + j] = h;
    } else {
      repeat_previous_output(a, t, nt, j);
    }
    finish_forward_element<kTraining, kRecurrentMask>(a, nt, e, n, j, h, next_feed, feed_ld);
  }

  template <bool kMasked, bool kRecurrentMask>
  __host__ __device__ static void backward(const BackwardArgs& a, Index t, Index n, Index j) {
    const Index U = a.U, nt = n * a.T + t, e = n * U + j;
    float* dpre = a.dgates + nt * U + j;
    if (!step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      masked_step_backward<kRecurrentMask>(a, nt, e, j);
      *dpre = 0.f;
      return;
    }
    const float dh = valid_step_output_gradient<kMasked, kRecurrentMask>(a, nt, e, j);
    *dpre = dh * slope(a.gates[nt * U + j]);
    a.carry[e] = 0.f;
  }
};

}  // namespace fusednn::cuda::recurrent_detail
