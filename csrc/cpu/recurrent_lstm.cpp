// LSTM over a whole sequence on the CPU (contract in fusednn/recurrent.h).
// Per step: the recurrent GEMM accumulates h_{t-1} R onto the step's slice of
// the input projection, then one pointwise pass per batch row adds the bias,
// applies the gates, updates c and h, writes the outputs and (in training)
// overwrites the slice with the activated gates for the backward pass.
#include <algorithm>
#include <cstdint>

#include "recurrent_common.h"

namespace fusednn::cpu {

namespace {

using namespace recurrent_detail;

template <typename Real, bool kTraining, bool kMasked, bool kRecurrentMask>
void lstm_forward_impl(const RecurrentShape& s, const Real* x, const Real* h0, const Real* c0,
                       const Real* kernel, const Real* recurrent_kernel, const Real* bias,
                       const std::uint8_t* mask, const Real* recurrent_mask, Real* y, Real* h_T,
                       Real* c_T, Real* gates, Real* cell, Real* h_in) {
  const Index N = s.N, T = s.T, U = s.U, G = 4 * U;
  input_projection(s, G, x, kernel, gates);
  Feed<Real> feed = make_feed<Real, kTraining, kRecurrentMask>(s, h_in, h_T);
  start_state<Real, kTraining, kRecurrentMask>(s, h0, recurrent_mask, h_T, feed);
  std::copy(c0, c0 + N * U, c_T);
  const Real *b_i = bias, *b_f = bias + U, *b_g = bias + 2 * U, *b_o = bias + 3 * U;
  const PackedMatrix<Real> recurrent_packed = pack_columns(s, G, G, recurrent_kernel);

  // One team for the sequence: each thread computes its columns of the step's
  // product, then (after all have read h_{t-1}) its batch rows' update.
  in_team(recurrent_packed.useful_threads(N), [&](int part, int parts) {
    const auto columns = recurrent_packed.part_columns(part, parts);
    const Index n0 = N * part / parts, n1 = N * (part + 1) / parts;
    for (Index t = 0; t < T; ++t) {
      gemm_packed_columns<Real>(N, feed.step(t), feed.ld, recurrent_packed, Real(1),
                                gates + t * G, T * G, columns);
#pragma omp barrier
      // In training the last step has no next GEMM input to write.
      Real* next_feed = kTraining ? (t + 1 < T ? feed.step(t + 1) : nullptr) : feed.step(0);
      for (Index n = n0; n < n1; ++n) {
        const Index nt = n * T + t;
        Real* h = h_T + n * U;
        Real* c = c_T + n * U;
        Real* y_nt = y + nt * U;
        if (step_is_valid<kMasked>(mask, T, n, t)) {
          Real* gi = gates + nt * G;
          Real *gf = gi + U, *gg = gi + 2 * U, *go = gi + 3 * U;
#pragma omp simd
          for (Index j = 0; j < U; ++j) {
            const Real i = sigmoid(gi[j] + b_i[j]);
            const Real f = sigmoid(gf[j] + b_f[j]);
            const Real g = recurrent_detail::tanh(gg[j] + b_g[j]);
            const Real o = sigmoid(go[j] + b_o[j]);
            const Real c_new = f * c[j] + i * g;
            const Real h_new = o * recurrent_detail::tanh(c_new);
            c[j] = c_new;
            h[j] = h_new;
            y_nt[j] = h_new;
            if constexpr (kTraining) {
              gi[j] = i;
              gf[j] = f;
              gg[j] = g;
              go[j] = o;
            }
          }
        } else {
          repeat_previous_output(y_nt, t, U);
        }
        if constexpr (kTraining) std::copy(c, c + U, cell + nt * U);
        if ((kTraining || kRecurrentMask) && next_feed != nullptr) {
          write_feed<Real, kRecurrentMask>(next_feed + n * feed.ld, h,
                                           kRecurrentMask ? recurrent_mask + n * U : nullptr, U);
        }
      }
#pragma omp barrier
    }
  });
}

template <typename Real, bool kMasked, bool kRecurrentMask>
void lstm_backward_impl(const RecurrentShape& s, const Real* x, const Real* c0,
                        const Real* kernel, const Real* recurrent_kernel,
                        const std::uint8_t* mask, const Real* recurrent_mask, const Real* gates,
                        const Real* cell, const Real* h_in, const Real* dy, const Real* dh_T,
                        const Real* dc_T, Real* dx, Real* dh0, Real* dc0, Real* dkernel,
                        Real* drecurrent_kernel, Real* dbias, Real* dgates) {
  const Index N = s.N, T = s.T, U = s.U, G = 4 * U;
  BackwardState<Real> state(s, kMasked, dh_T);
  const PackedMatrix<Real> recurrent_packed_t = pack_columns_transposed(s, G, G, recurrent_kernel);
  // dc0 holds the running gradient w.r.t. the cell state.
  if (dc_T != nullptr) {
    std::copy(dc_T, dc_T + N * U, dc0);
  } else {
    std::fill(dc0, dc0 + N * U, Real(0));
  }

  for (Index t = T - 1; t >= 0; --t) {
    for_each_row(N, G, [&](Index n) {
      const Index nt = n * T + t;
      const Real* dy_nt = dy + nt * U;
      Real* dg_i = dgates + nt * G;
      if (!step_is_valid<kMasked>(mask, T, n, t)) {
        masked_step_backward<Real, kRecurrentMask>(state, recurrent_mask, dy_nt, n, U, dg_i, G);
        return;
      }
      // The total gradient w.r.t. this step's new h, built in the carry row,
      // which a valid LSTM step then clears (nothing bypasses the GEMM).
      Real* dh = state.carry.data() + n * U;
      valid_step_output_gradient<Real, kMasked, kRecurrentMask>(state, recurrent_mask, dy_nt, n,
                                                               U, dh);
      const Real* gi = gates + nt * G;
      const Real *gf = gi + U, *gg = gi + 2 * U, *go = gi + 3 * U;
      const Real* c = cell + nt * U;
      const Real* c_prev = t > 0 ? cell + (nt - 1) * U : c0 + n * U;
      Real* dc = dc0 + n * U;
      Real *dg_f = dg_i + U, *dg_g = dg_i + 2 * U, *dg_o = dg_i + 3 * U;
#pragma omp simd
      for (Index j = 0; j < U; ++j) {
        const Real i = gi[j], f = gf[j], g = gg[j], o = go[j];
        const Real tanh_c = recurrent_detail::tanh(c[j]);
        const Real dh_j = dh[j];
        const Real dc_total = dc[j] + dh_j * o * (Real(1) - tanh_c * tanh_c);
        dg_i[j] = dc_total * g * i * (Real(1) - i);
        dg_f[j] = dc_total * c_prev[j] * f * (Real(1) - f);
        dg_g[j] = dc_total * i * (Real(1) - g * g);
        dg_o[j] = dh_j * tanh_c * o * (Real(1) - o);
        dc[j] = dc_total * f;
        dh[j] = Real(0);
      }
    });
    recurrent_backward_gemm<Real>(s, G, dgates + t * G, recurrent_packed_t, Real(0),
                                  state.from_gemm.data());
  }

  finish_dh0<Real, kRecurrentMask>(s, state, recurrent_mask, dh0);
  input_gradients(s, G, x, kernel, dgates, dx, dkernel);
  recurrent_kernel_gradient(s, G, G, h_in, dgates, drecurrent_kernel);
  column_sums(N * T, G, dgates, dbias);
}

}  // namespace

template <typename Real>
void lstm_forward(const RecurrentShape& shape, const Real* x, const Real* h0, const Real* c0,
                  const Real* kernel, const Real* recurrent_kernel, const Real* bias,
                  const std::uint8_t* mask, const Real* recurrent_mask, Real* y, Real* h_T,
                  Real* c_T, Real* gates, Real* cell, Real* h_in) {
  with_flags(
      [&](auto training, auto masked, auto recurrent_masked) {
        lstm_forward_impl<Real, decltype(training)::value, decltype(masked)::value,
                          decltype(recurrent_masked)::value>(shape, x, h0, c0, kernel,
                                                             recurrent_kernel, bias, mask,
                                                             recurrent_mask, y, h_T, c_T, gates,
                                                             cell, h_in);
      },
      cell != nullptr, mask != nullptr, recurrent_mask != nullptr);
}

template <typename Real>
void lstm_backward(const RecurrentShape& shape, const Real* x, const Real* c0, const Real* kernel,
                   const Real* recurrent_kernel, const std::uint8_t* mask,
                   const Real* recurrent_mask, const Real* gates, const Real* cell,
                   const Real* h_in, const Real* dy, const Real* dh_T, const Real* dc_T, Real* dx,
                   Real* dh0, Real* dc0, Real* dkernel, Real* drecurrent_kernel, Real* dbias,
                   Real* dgates) {
  with_flags(
      [&](auto masked, auto recurrent_masked) {
        lstm_backward_impl<Real, decltype(masked)::value, decltype(recurrent_masked)::value>(
            shape, x, c0, kernel, recurrent_kernel, mask, recurrent_mask, gates, cell, h_in, dy,
            dh_T, dc_T, dx, dh0, dc0, dkernel, drecurrent_kernel, dbias, dgates);
      },
      mask != nullptr, recurrent_mask != nullptr);
}

template void lstm_forward<float>(const RecurrentShape&, const float*, const float*, const float*,
                                  const float*, const float*, const float*, const std::uint8_t*,
                                  const float*, float*, float*, float*, float*, float*, float*);
template void lstm_forward<double>(const RecurrentShape&, const double*, const double*,
                                   const double*, const double*, const double*, const double*,
                                   const std::uint8_t*, const double*, double*, double*, double*,
                                   double*, double*, double*);
template void lstm_backward<float>(const RecurrentShape&, const float*, const float*, const float*,
                                   const float*, const std::uint8_t*, const float*, const float*,
                                   const float*, const float*, const float*, const float*,
                                   const float*, float*, float*, float*, float*, float*, float*,
                                   float*);
template void lstm_backward<double>(const RecurrentShape&, const double*, const double*,
                                    const double*, const double*, const std::uint8_t*,
                                    const double*, const double*, const double*, const double*,
                                    const double*, const double*, const double*, double*, double*,
                                    double*, double*, double*, double*, double*);

}  // namespace fusednn::cpu
