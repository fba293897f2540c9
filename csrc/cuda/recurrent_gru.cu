// GRU launchers on the GPU (contract in fusednn/recurrent.h). reset_after runs
// on the shared sequence drivers (GruCell); reset_after=False needs r before
// the candidate's recurrent product, so each step is GEMM (z, r columns) ->
// gate kernel (z, r, r*h) -> GEMM (candidate columns) -> candidate kernel, and
// it has no persistent form.
#include <cuda_runtime.h>

#include <cstdint>

#include "fusednn/cuda_check.h"
#include "recurrent_launchers.h"
#include "recurrent_sequence.cuh"

namespace fusednn::cuda {

using namespace recurrent_detail;
using fusednn::recurrent_detail::with_flags;

namespace {

// z and r of every row, in place, and r * h_in, the candidate GEMM's input.
__global__ void __launch_bounds__(kThreads)
    gru_reset_gates_kernel(ForwardArgs a, Index t, const float* __restrict__ feed_t,
                           Index feed_ld, float* __restrict__ reset_h, Index reset_ld) {
  const Index U = a.U, G = 3 * U;
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < a.N * U;
       e += Index(gridDim.x) * blockDim.x) {
    const Index n = e / U, j = e % U;
    float* g = a.gates + (n * a.T + t) * G + j;
    const float r = sigmoid(g[U] + a.bias[U + j]);
    g[0] = sigmoid(g[0] + a.bias[j]);
    g[U] = r;
    reset_h[n * reset_ld + j] = r * feed_t[n * feed_ld + j];
  }
}

template <bool kTraining, bool kMasked, bool kRecurrentMask>
__global__ void __launch_bounds__(kThreads)
    gru_candidate_kernel(ForwardArgs a, Index t, float* next_feed, Index feed_ld) {
  const Index U = a.U, G = 3 * U;
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < a.N * U;
       e += Index(gridDim.x) * blockDim.x) {
    const Index n = e / U, j = e % U, nt = n * a.T + t;
    float h = a.h[e];
    if (step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      float* g = a.gates + nt * G + j;
      const float hh = tanhf(g[2 * U] + a.bias[2 * U + j]);
      const float z = g[0];
      if constexpr (kTraining) {
        g[2 * U] = hh;
        if constexpr (kRecurrentMask) a.h_prev[nt * U + j] = h;
      }
      h = z * h + (1.f - z) * hh;
      a.y[nt * U + j] = h;
    } else {
      repeat_previous_output(a, t, nt, j);
    }
    finish_forward_element<kTraining, kRecurrentMask>(a, nt, e, n, j, h, next_feed, feed_ld);
  }
}

// dz and dhh of a step (the update and candidate pre-activation gradients).
template <bool kMasked, bool kRecurrentMask>
__global__ void __launch_bounds__(kThreads) gru_update_backward_kernel(BackwardArgs a, Index t) {
  const Index U = a.U, G = 3 * U;
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < a.N * U;
       e += Index(gridDim.x) * blockDim.x) {
    const Index n = e / U, j = e % U, nt = n * a.T + t;
    float* dg = a.dgates + nt * G + j;
    if (!step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      masked_step_backward<kRecurrentMask>(a, nt, e, j);
      dg[0] = dg[U] = dg[2 * U] = 0.f;
      continue;
    }
    const float dh = valid_step_output_gradient<kMasked, kRecurrentMask>(a, nt, e, j);
    const float* g = a.gates + nt * G + j;
    const float z = g[0], hh = g[2 * U];
    dg[0] = dh * (a.h_before[nt * U + j] - hh) * z * (1.f - z);
    dg[2 * U] = dh * (1.f - z) * (1.f - hh * hh);
    a.carry[e] = dh * z;
  }
}

// From d(r * h_in): dr, and the h_in part that starts from_gemm.
template <bool kMasked>
__global__ void __launch_bounds__(kThreads)
    gru_reset_backward_kernel(BackwardArgs a, Index t, const float* __restrict__ d_reset_h) {
  const Index U = a.U, G = 3 * U;
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < a.N * U;
       e += Index(gridDim.x) * blockDim.x) {
    const Index n = e / U, j = e % U, nt = n * a.T + t;
    if (!step_is_valid<kMasked>(a.mask, a.T, n, t)) {
      a.from_gemm[e] = 0.f;  // its dr is already zero
      continue;
    }
    const float r = a.gates[nt * G + U + j];
    const float drh = d_reset_h[e];
    a.dgates[nt * G + U + j] = drh * a.h_in[nt * U + j] * r * (1.f - r);
    a.from_gemm[e] = drh * r;
  }
}

template <bool kTraining, bool kMasked, bool kRecurrentMask>
void gru_forward_reset_before(const RecurrentShape& s, const ForwardArgs& a, const float* x,
                              const float* kernel, const float* recurrent_kernel, float* h_in,
                              float* workspace, cudaStream_t stream) {
  const Index N = s.N, T = s.T, U = s.U, G = 3 * U;
  gemm_on(stream, false, false, N * T, G, s.F, x, s.F, kernel, G, 0.f, a.gates, G);
  if (N == 0) return;
  FeedLayout feed{a.h, U, 0};
  if (kTraining) {
    feed = {h_in, T * U, U};
  } else if (kRecurrentMask) {
    feed = {workspace, U, 0};
  }
  if (feed.data != a.h) {
    write_feed<kRecurrentMask>(N, U, a.h, a.recurrent_mask, feed.data, feed.ld, stream);
  }
  // r * h_in: the recurrent_h cache in training, else one step's buffer.
  const FeedLayout reset = kTraining ? FeedLayout{a.recurrent_h, T * U, U}
                                     : FeedLayout{workspace + 5 * N * U, U, 0};
  for (Index t = 0; t < T; ++t) {
    const float* feed_t = feed.data + t * feed.step_offset;
    float* reset_t = reset.data + t * reset.step_offset;
    gemm_on(stream, false, false, N, 2 * U, U, feed_t, feed.ld, recurrent_kernel, G, 1.f,
            a.gates + t * G, T * G);
    launch_kernel(gru_reset_gates_kernel, blocks_for(N * U), kThreads, 0, stream, a, t, feed_t,
                  feed.ld, reset_t, reset.ld);
    gemm_on(stream, false, false, N, U, U, reset_t, reset.ld, recurrent_kernel + 2 * U, G, 1.f,
            a.gates + t * G + 2 * U, T * G);
    float* next_feed = kTraining ? (t + 1 < T ? feed.data + (t + 1) * feed.step_offset : nullptr)
                                 : (feed.data == a.h ? nullptr : feed.data);
    launch_kernel(gru_candidate_kernel<kTraining, kMasked, kRecurrentMask>, blocks_for(N * U),
                  kThreads, 0, stream, a, t, next_feed, feed.ld);
  }
}

template <bool kMasked, bool kRecurrentMask>
void gru_backward_reset_before(const RecurrentShape& s, BackwardArgs a, const float* x,
                               const float* kernel, const float* recurrent_kernel,
                               const float* dh_T, float* dx, float* dh0, float* dkernel,
                               float* drecurrent_kernel, float* dbias, float* workspace,
                               cudaStream_t stream) {
  const Index N = s.N, T = s.T, U = s.U, G = 3 * U;
  start_backward_state(s, a, dh_T, workspace, stream);
  float* d_reset_h = workspace + 3 * N * U;
  if (N > 0) {
    for (Index t = T - 1; t >= 0; --t) {
      const float* dgates_t = a.dgates + t * G;
      launch_kernel(gru_update_backward_kernel<kMasked, kRecurrentMask>, blocks_for(N * U),
                    kThreads, 0, stream, a, t);
      gemm_on(stream, false, true, N, U, U, dgates_t + 2 * U, T * G, recurrent_kernel + 2 * U, G,
              0.f, d_reset_h, U);
      launch_kernel(gru_reset_backward_kernel<kMasked>, blocks_for(N * U), kThreads, 0, stream, a,
                    t, d_reset_h);
      gemm_on(stream, false, true, N, U, 2 * U, dgates_t, T * G, recurrent_kernel, G, 1.f,
              a.from_gemm, U);
    }
  }
  finish_dh0<kRecurrentMask>(s, a, dh0, stream);
  input_gradients(s, G, x, kernel, a.dgates, dx, dkernel, stream);
  recurrent_kernel_gradient(s, G, 2 * U, a.h_in, a.dgates, drecurrent_kernel, stream);
  recurrent_kernel_gradient(s, G, U, a.recurrent_h, a.dgates + 2 * U, drecurrent_kernel + 2 * U,
                            stream);
  column_sums(N * T, G, a.dgates, dbias, stream);
}

}  // namespace

RecurrentAlgorithm gru_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                               bool reset_after, const float* x, const float* h0,
                               const float* kernel, const float* recurrent_kernel,
                               const float* bias, const std::uint8_t* mask,
                               const float* recurrent_mask, float* y, float* h_T, float* gates,
                               float* h_in, float* h_prev, float* recurrent_h, float* workspace,
                               std::uintptr_t stream) {
  if (!reset_after && requested == RecurrentAlgorithm::kPersistent) {
    throw CudaError("gru_forward: reset_after=False has no persistent kernel (its candidate "
                    "needs r of every unit before the recurrent product); use per_step or auto");
  }
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  copy_async(h_T, h0, shape.N * shape.U, s);
  const ForwardArgs args{shape.N, shape.T, shape.U, bias, mask, recurrent_mask, gates, h_T,
                         nullptr, y, nullptr, h_prev, recurrent_h};
  RecurrentAlgorithm ran = RecurrentAlgorithm::kPerStep;
  with_flags(
      [&](auto after, auto training, auto masked, auto recurrent_masked) {
        constexpr bool kTraining = decltype(training)::value;
        constexpr bool kMasked = decltype(masked)::value;
        constexpr bool kRecurrentMask = decltype(recurrent_masked)::value;
        if constexpr (decltype(after)::value) {
          ran = forward_sequence<GruCell, kTraining, kMasked, kRecurrentMask>(
              shape, requested, args, x, kernel, recurrent_kernel, h_in, workspace, s);
        } else {
          gru_forward_reset_before<kTraining, kMasked, kRecurrentMask>(
              shape, args, x, kernel, recurrent_kernel, h_in, workspace, s);
        }
      },
      reset_after, h_in != nullptr, mask != nullptr, recurrent_mask != nullptr);
  return ran;
}

void gru_backward(const RecurrentShape& shape, bool reset_after, const float* x,
                  const float* kernel, const float* recurrent_kernel, const std::uint8_t* mask,
                  const float* recurrent_mask, const float* gates, const float* h_in,
                  const float* h_prev, const float* recurrent_h, const float* dy,
                  const float* dh_T, float* dx, float* dh0, float* dkernel,
                  float* drecurrent_kernel, float* dbias, float* dgates, float* dgates_recurrent,
                  float* workspace, std::uintptr_t stream) {
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  BackwardArgs args{};
  args.N = shape.N;
  args.T = shape.T;
  args.U = shape.U;
  args.mask = mask;
  args.recurrent_mask = recurrent_mask;
  args.gates = gates;
  args.h_before = recurrent_mask != nullptr ? h_prev : h_in;
  args.h_in = h_in;
  args.recurrent_h = recurrent_h;
  args.dy = dy;
  args.dgates = dgates;
  args.dgates_recurrent = dgates_recurrent;
  with_flags(
      [&](auto after, auto masked, auto recurrent_masked) {
        constexpr bool kMasked = decltype(masked)::value;
        constexpr bool kRecurrentMask = decltype(recurrent_masked)::value;
        if constexpr (decltype(after)::value) {
          backward_sequence<GruCell, kMasked, kRecurrentMask>(
              shape, args, x, kernel, recurrent_kernel, dh_T, dx, dh0, dkernel,
              drecurrent_kernel, dbias, workspace, s);
        } else {
          gru_backward_reset_before<kMasked, kRecurrentMask>(
              shape, args, x, kernel, recurrent_kernel, dh_T, dx, dh0, dkernel,
              drecurrent_kernel, dbias, workspace, s);
        }
      },
      reset_after, mask != nullptr, recurrent_mask != nullptr);
}

}  // namespace fusednn::cuda
