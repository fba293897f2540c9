// Simple RNN, h' = act(x W + h R + b) with act tanh or relu, over a whole
// sequence on the CPU (contract in fusednn/recurrent.h). Same step structure as
// the LSTM: the recurrent GEMM accumulates onto the input projection, then one
// pointwise pass per batch row.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "recurrent_common.h"

namespace fusednn::cpu {

namespace {

using namespace recurrent_detail;

template <RnnActivation kActivation, typename Real>
inline Real activate(Real v) {
  if constexpr (kActivation == RnnActivation::kTanh) {
    return recurrent_detail::tanh(v);
  } else {
    return relu(v);
  }
}

// d act / d pre, from the activation's output h.
template <RnnActivation kActivation, typename Real>
inline Real activation_slope(Real h) {
  if constexpr (kActivation == RnnActivation::kTanh) {
    return Real(1) - h * h;
  } else {
    return h > Real(0) ? Real(1) : Real(0);
  }
}

template <typename Real, RnnActivation kActivation, bool kTraining, bool kMasked,
          bool kRecurrentMask>
void simple_rnn_forward_impl(const RecurrentShape& s, const Real* x, const Real* h0,
                             const Real* kernel, const Real* recurrent_kernel, const Real* bias,
                             const std::uint8_t* mask, const Real* recurrent_mask, Real* y,
                             Real* h_T, Real* gates, Real* h_in) {
  const Index N = s.N, T = s.T, U = s.U;
  input_projection(s, U, x, kernel, gates);
  Feed<Real> feed = make_feed<Real, kTraining, kRecurrentMask>(s, h_in, h_T);
  start_state<Real, kTraining, kRecurrentMask>(s, h0, recurrent_mask, h_T, feed);
  const PackedMatrix<Real> recurrent_packed = pack_columns(s, U, U, recurrent_kernel);

  for (Index t = 0; t < T; ++t) {
    recurrent_forward_gemm<Real>(s, feed.step(t), feed.ld, recurrent_packed, Real(1),
                                 gates + t * U, T * U);
    Real* next_feed = kTraining ? (t + 1 < T ? feed.step(t + 1) : nullptr) : feed.step(0);
    for_each_row(N, U, [&](Index n) {
      const Index nt = n * T + t;
      Real* h = h_T + n * U;
      Real* y_nt = y + nt * U;
      if (step_is_valid<kMasked>(mask, T, n, t)) {
        Real* pre = gates + nt * U;
#pragma omp simd
        for (Index j = 0; j < U; ++j) {
          const Real h_new = activate<kActivation>(pre[j] + bias[j]);
          if constexpr (kTraining) pre[j] = h_new;
          h[j] = h_new;
          y_nt[j] = h_new;
        }
      } else {
        repeat_previous_output(y_nt, t, U);
      }
      if ((kTraining || kRecurrentMask) && next_feed != nullptr) {
        write_feed<Real, kRecurrentMask>(next_feed + n * feed.ld, h,
                                         kRecurrentMask ? recurrent_mask + n * U : nullptr, U);
      }
    });
  }
}

template <typename Real, RnnActivation kActivation, bool kMasked, bool kRecurrentMask>
void simple_rnn_backward_impl(const RecurrentShape& s, const Real* x, const Real* kernel,
                              const Real* recurrent_kernel, const std::uint8_t* mask,
                              const Real* recurrent_mask, const Real* gates, const Real* h_in,
                              const Real* dy, const Real* dh_T, Real* dx, Real* dh0,
                              Real* dkernel, Real* drecurrent_kernel, Real* dbias,
                              Real* dgates) {
  const Index N = s.N, T = s.T, U = s.U;
  BackwardState<Real> state(s, kMasked, dh_T);
  const PackedMatrix<Real> recurrent_packed_t = pack_columns_transposed(s, U, U, recurrent_kernel);

  for (Index t = T - 1; t >= 0; --t) {
    for_each_row(N, U, [&](Index n) {
      const Index nt = n * T + t;
      const Real* dy_nt = dy + nt * U;
      Real* dpre = dgates + nt * U;
      if (!step_is_valid<kMasked>(mask, T, n, t)) {
        masked_step_backward<Real, kRecurrentMask>(state, recurrent_mask, dy_nt, n, U, dpre, U);
        return;
      }
      Real* dh = state.carry.data() + n * U;
      valid_step_output_gradient<Real, kMasked, kRecurrentMask>(state, recurrent_mask, dy_nt, n,
                                                               U, dh);
      const Real* h = gates + nt * U;
#pragma omp simd
      for (Index j = 0; j < U; ++j) {
        dpre[j] = dh[j] * activation_slope<kActivation>(h[j]);
        dh[j] = Real(0);
      }
    });
    recurrent_backward_gemm<Real>(s, U, dgates + t * U, recurrent_packed_t, Real(0),
                                  state.from_gemm.data());
  }

  finish_dh0<Real, kRecurrentMask>(s, state, recurrent_mask, dh0);
  input_gradients(s, U, x, kernel, dgates, dx, dkernel);
  recurrent_kernel_gradient(s, U, U, h_in, dgates, drecurrent_kernel);
  column_sums(N * T, U, dgates, dbias);
}

}  // namespace

template <typename Real>
void simple_rnn_forward(const RecurrentShape& shape, RnnActivation activation, const Real* x,
                        const Real* h0, const Real* kernel, const Real* recurrent_kernel,
                        const Real* bias, const std::uint8_t* mask, const Real* recurrent_mask,
                        Real* y, Real* h_T, Real* gates, Real* h_in) {
  with_flags(
      [&](auto relu_flag, auto training, auto masked, auto recurrent_masked) {
        constexpr RnnActivation kActivation =
            decltype(relu_flag)::value ? RnnActivation::kRelu : RnnActivation::kTanh;
        simple_rnn_forward_impl<Real, kActivation, decltype(training)::value,
                                decltype(masked)::value, decltype(recurrent_masked)::value>(
            shape, x, h0, kernel, recurrent_kernel, bias, mask, recurrent_mask, y, h_T, gates,
            h_in);
      },
      activation == RnnActivation::kRelu, h_in != nullptr, mask != nullptr,
      recurrent_mask != nullptr);
}

template <typename Real>
void simple_rnn_backward(const RecurrentShape& shape, RnnActivation activation, const Real* x,
                         const Real* kernel, const Real* recurrent_kernel,
                         const std::uint8_t* mask, const Real* recurrent_mask, const Real* gates,
                         const Real* h_in, const Real* dy, const Real* dh_T, Real* dx, Real* dh0,
                         Real* dkernel, Real* drecurrent_kernel, Real* dbias, Real* dgates) {
  with_flags(
      [&](auto relu_flag, auto masked, auto recurrent_masked) {
        constexpr RnnActivation kActivation =
            decltype(relu_flag)::value ? RnnActivation::kRelu : RnnActivation::kTanh;
        simple_rnn_backward_impl<Real, kActivation, decltype(masked)::value,
                                 decltype(recurrent_masked)::value>(
            shape, x, kernel, recurrent_kernel, mask, recurrent_mask, gates, h_in, dy, dh_T, dx,
            dh0, dkernel, drecurrent_kernel, dbias, dgates);
      },
      activation == RnnActivation::kRelu, mask != nullptr, recurrent_mask != nullptr);
}

template void simple_rnn_forward<float>(const RecurrentShape&, RnnActivation, const float*,
                                        const float*, const float*, const float*, const float*,
                                        const std::uint8_t*, const float*, float*, float*,
                                        float*, float*);
template void simple_rnn_forward<double>(const RecurrentShape&, RnnActivation, const double*,
                                         const double*, const double*, const double*,
                                         const double*, const std::uint8_t*, const double*,
                                         double*, double*, double*, double*);
template void simple_rnn_backward<float>(const RecurrentShape&, RnnActivation, const float*,
                                         const float*, const float*, const std::uint8_t*,
                                         const float*, const float*, const float*, const float*,
                                         const float*, float*, float*, float*, float*, float*,
                                         float*);
template void simple_rnn_backward<double>(const RecurrentShape&, RnnActivation, const double*,
                                          const double*, const double*, const std::uint8_t*,
                                          const double*, const double*, const double*,
                                          const double*, const double*, double*, double*,
                                          double*, double*, double*, double*);

}  // namespace fusednn::cpu
