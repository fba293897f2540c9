// GRU over a whole sequence on the CPU (contract in fusednn/recurrent.h).
//
// reset_after (Keras's default, cuDNN's form): one recurrent GEMM per step,
// h_{t-1} R + recurrent bias, into a small buffer, because the candidate needs
// its h part apart (r multiplies it); one pointwise pass then forms z, r, hh, h.
// reset_after=False: r must be known before the candidate's recurrent product
// (r*h) Uh, so a step is GEMM (z, r columns) -> pass (z, r, r*h) -> GEMM
// (candidate column block) -> pass (hh, h).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "recurrent_common.h"

namespace fusednn::cpu {

namespace {

using namespace recurrent_detail;

// One valid step's state update, shared by both forms: h = z*h + (1-z)*hh.
template <typename Real>
inline Real gru_update(Real z, Real h, Real hh) {
  return z * h + (Real(1) - z) * hh;
}

template <typename Real, bool kTraining, bool kMasked, bool kRecurrentMask>
void gru_forward_reset_after(const RecurrentShape& s, const Real* x, const Real* h0,
                             const Real* kernel, const Real* recurrent_kernel, const Real* bias,
                             const std::uint8_t* mask, const Real* recurrent_mask, Real* y,
                             Real* h_T, Real* gates, Real* h_in, Real* h_prev,
                             Real* recurrent_h) {
  const Index N = s.N, T = s.T, U = s.U, G = 3 * U;
  input_projection(s, G, x, kernel, gates);
  Feed<Real> feed = make_feed<Real, kTraining, kRecurrentMask>(s, h_in, h_T);
  start_state<Real, kTraining, kRecurrentMask>(s, h0, recurrent_mask, h_T, feed);
  std::vector<Real> projected_h(static_cast<std::size_t>(N * G));  // h_{t-1} R of this step
  const Real* bias_in = bias;
  const Real* bias_rec = bias + G;
  const PackedMatrix<Real> recurrent_packed = pack_columns(s, G, G, recurrent_kernel);

  for (Index t = 0; t < T; ++t) {
    recurrent_forward_gemm<Real>(s, feed.step(t), feed.ld, recurrent_packed, Real(0),
                                 projected_h.data(), G);
    Real* next_feed = kTraining ? (t + 1 < T ? feed.step(t + 1) : nullptr) : feed.step(0);
    for_each_row(N, G, [&](Index n) {
      const Index nt = n * T + t;
      Real* h = h_T + n * U;
      Real* y_nt = y + nt * U;
      if (step_is_valid<kMasked>(mask, T, n, t)) {
        Real* gz = gates + nt * G;
        Real *gr = gz + U, *gh = gz + 2 * U;
        const Real* pz = projected_h.data() + n * G;
        const Real *pr = pz + U, *ph = pz + 2 * U;
        Real* hr_cache = kTraining ? recurrent_h + nt * U : nullptr;
        Real* h_prev_cache = kTraining && kRecurrentMask ? h_prev + nt * U : nullptr;
#pragma omp simd
        for (Index j = 0; j < U; ++j) {
          const Real z = sigmoid(gz[j] + bias_in[j] + pz[j] + bias_rec[j]);
          const Real r = sigmoid(gr[j] + bias_in[U + j] + pr[j] + bias_rec[U + j]);
          const Real hr = ph[j] + bias_rec[2 * U + j];
          const Real hh = recurrent_detail::tanh(gh[j] + bias_in[2 * U + j] + r * hr);
          const Real h_new = gru_update(z, h[j], hh);
          if constexpr (kTraining) {
            gz[j] = z;
            gr[j] = r;
            gh[j] = hh;
            hr_cache[j] = hr;
            if constexpr (kRecurrentMask) h_prev_cache[j] = h[j];
          }
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

template <typename Real, bool kTraining, bool kMasked, bool kRecurrentMask>
void gru_forward_reset_before(const RecurrentShape& s, const Real* x, const Real* h0,
                              const Real* kernel, const Real* recurrent_kernel, const Real* bias,
                              const std::uint8_t* mask, const Real* recurrent_mask, Real* y,
                              Real* h_T, Real* gates, Real* h_in, Real* h_prev,
                              Real* recurrent_h) {
  const Index N = s.N, T = s.T, U = s.U, G = 3 * U;
  input_projection(s, G, x, kernel, gates);
  Feed<Real> feed = make_feed<Real, kTraining, kRecurrentMask>(s, h_in, h_T);
  start_state<Real, kTraining, kRecurrentMask>(s, h0, recurrent_mask, h_T, feed);
  // r * h_in, the candidate GEMM's input: the cache in training, else one step's worth.
  std::vector<Real> reset_buffer(kTraining ? 0 : static_cast<std::size_t>(N * U));
  Real* const reset_h = kTraining ? recurrent_h : reset_buffer.data();
  const Index reset_ld = kTraining ? T * U : U;
  const Index reset_step = kTraining ? U : 0;
  const PackedMatrix<Real> gates_packed = pack_columns(s, G, 2 * U, recurrent_kernel);
  const PackedMatrix<Real> candidate_packed = pack_columns(s, G, U, recurrent_kernel + 2 * U);

  for (Index t = 0; t < T; ++t) {
    const Real* feed_t = feed.step(t);
    Real* reset_h_t = reset_h + t * reset_step;
    // z and r columns accumulate onto the input projection.
    recurrent_forward_gemm<Real>(s, feed_t, feed.ld, gates_packed, Real(1), gates + t * G,
                                 T * G);
    // z, r for every row (a masked row's values are simply not used).
    for_each_row(N, 2 * U, [&](Index n) {
      Real* gz = gates + (n * T + t) * G;
      Real* gr = gz + U;
      const Real* h_feed = feed_t + n * feed.ld;
      Real* rh = reset_h_t + n * reset_ld;
#pragma omp simd
      for (Index j = 0; j < U; ++j) {
        const Real r = sigmoid(gr[j] + bias[U + j]);
        gz[j] = sigmoid(gz[j] + bias[j]);
        gr[j] = r;
        rh[j] = r * h_feed[j];
      }
    });
    recurrent_forward_gemm<Real>(s, reset_h_t, reset_ld, candidate_packed, Real(1),
                                 gates + t * G + 2 * U, T * G);
    Real* next_feed = kTraining ? (t + 1 < T ? feed.step(t + 1) : nullptr) : feed.step(0);
    for_each_row(N, G, [&](Index n) {
      const Index nt = n * T + t;
      Real* h = h_T + n * U;
      Real* y_nt = y + nt * U;
      if (step_is_valid<kMasked>(mask, T, n, t)) {
        const Real* gz = gates + nt * G;
        Real* gh = gates + nt * G + 2 * U;
        Real* h_prev_cache = kTraining && kRecurrentMask ? h_prev + nt * U : nullptr;
#pragma omp simd
        for (Index j = 0; j < U; ++j) {
          const Real hh = recurrent_detail::tanh(gh[j] + bias[2 * U + j]);
          const Real h_new = gru_update(gz[j], h[j], hh);
          if constexpr (kTraining) {
            gh[j] = hh;
            if constexpr (kRecurrentMask) h_prev_cache[j] = h[j];
          }
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

// The part of a valid step's backward both forms share: from the total
// gradient g w.r.t. the new h, dz_pre and dhh_pre (pre-activation gradients)
// and the direct path g*z into the carry.
template <typename Real>
inline void gru_update_backward(Real g, Real z, Real hh, Real h_before, Real& dz_pre,
                                Real& dhh_pre, Real& carry) {
  dz_pre = g * (h_before - hh) * z * (Real(1) - z);
  dhh_pre = g * (Real(1) - z) * (Real(1) - hh * hh);
  carry = g * z;
}

template <typename Real, bool kMasked, bool kRecurrentMask>
void gru_backward_reset_after(const RecurrentShape& s, const Real* x, const Real* kernel,
                              const Real* recurrent_kernel, const std::uint8_t* mask,
                              const Real* recurrent_mask, const Real* gates, const Real* h_in,
                              const Real* h_prev, const Real* recurrent_h, const Real* dy,
                              const Real* dh_T, Real* dx, Real* dh0, Real* dkernel,
                              Real* drecurrent_kernel, Real* dbias, Real* dgates,
                              Real* dgates_recurrent) {
  const Index N = s.N, T = s.T, U = s.U, G = 3 * U;
  BackwardState<Real> state(s, kMasked, dh_T);
  const PackedMatrix<Real> recurrent_packed_t = pack_columns_transposed(s, G, G, recurrent_kernel);
  const Real* h_before_step = kRecurrentMask ? h_prev : h_in;

  for (Index t = T - 1; t >= 0; --t) {
    for_each_row(N, G, [&](Index n) {
      const Index nt = n * T + t;
      const Real* dy_nt = dy + nt * U;
      Real* dz = dgates + nt * G;
      Real* dz_rec = dgates_recurrent + nt * G;
      if (!step_is_valid<kMasked>(mask, T, n, t)) {
        masked_step_backward<Real, kRecurrentMask>(state, recurrent_mask, dy_nt, n, U, dz, G);
        std::fill(dz_rec, dz_rec + G, Real(0));
        return;
      }
      Real* carry = state.carry.data() + n * U;
      valid_step_output_gradient<Real, kMasked, kRecurrentMask>(state, recurrent_mask, dy_nt, n,
                                                               U, carry);
      const Real* gz = gates + nt * G;
      const Real *gr = gz + U, *gh = gz + 2 * U;
      const Real* hb = h_before_step + nt * U;
      const Real* hr = recurrent_h + nt * U;
      Real *dr = dz + U, *dh = dz + 2 * U;
      Real *dr_rec = dz_rec + U, *dh_rec = dz_rec + 2 * U;
#pragma omp simd
      for (Index j = 0; j < U; ++j) {
        const Real r = gr[j];
        Real dz_pre, dhh_pre;
        gru_update_backward(carry[j], gz[j], gh[j], hb[j], dz_pre, dhh_pre, carry[j]);
        const Real dr_pre = dhh_pre * hr[j] * r * (Real(1) - r);
        dz[j] = dz_pre;
        dr[j] = dr_pre;
        dh[j] = dhh_pre;
        dz_rec[j] = dz_pre;
        dr_rec[j] = dr_pre;
        dh_rec[j] = dhh_pre * r;
      }
    });
    recurrent_backward_gemm<Real>(s, G, dgates_recurrent + t * G, recurrent_packed_t, Real(0),
                                  state.from_gemm.data());
  }

  finish_dh0<Real, kRecurrentMask>(s, state, recurrent_mask, dh0);
  input_gradients(s, G, x, kernel, dgates, dx, dkernel);
  recurrent_kernel_gradient(s, G, G, h_in, dgates_recurrent, drecurrent_kernel);
  column_sums(N * T, G, dgates, dbias);
  column_sums(N * T, G, dgates_recurrent, dbias + G);
}

template <typename Real, bool kMasked, bool kRecurrentMask>
void gru_backward_reset_before(const RecurrentShape& s, const Real* x, const Real* kernel,
                               const Real* recurrent_kernel, const std::uint8_t* mask,
                               const Real* recurrent_mask, const Real* gates, const Real* h_in,
                               const Real* h_prev, const Real* recurrent_h, const Real* dy,
                               const Real* dh_T, Real* dx, Real* dh0, Real* dkernel,
                               Real* drecurrent_kernel, Real* dbias, Real* dgates) {
  const Index N = s.N, T = s.T, U = s.U, G = 3 * U;
  BackwardState<Real> state(s, kMasked, dh_T);
  const PackedMatrix<Real> gates_packed_t = pack_columns_transposed(s, G, 2 * U, recurrent_kernel);
  const PackedMatrix<Real> candidate_packed_t =
      pack_columns_transposed(s, G, U, recurrent_kernel + 2 * U);
  const Real* h_before_step = kRecurrentMask ? h_prev : h_in;
  // d(r * h_in) of one step: the candidate's gradient through Uh.
  std::vector<Real> d_reset_h(static_cast<std::size_t>(N * U));

  for (Index t = T - 1; t >= 0; --t) {
    for_each_row(N, G, [&](Index n) {
      const Index nt = n * T + t;
      const Real* dy_nt = dy + nt * U;
      Real* dz = dgates + nt * G;
      if (!step_is_valid<kMasked>(mask, T, n, t)) {
        masked_step_backward<Real, kRecurrentMask>(state, recurrent_mask, dy_nt, n, U, dz, G);
        return;
      }
      Real* carry = state.carry.data() + n * U;
      valid_step_output_gradient<Real, kMasked, kRecurrentMask>(state, recurrent_mask, dy_nt, n,
                                                               U, carry);
      const Real* gz = gates + nt * G;
      const Real* gh = gz + 2 * U;
      const Real* hb = h_before_step + nt * U;
      Real* dh = dz + 2 * U;
#pragma omp simd
      for (Index j = 0; j < U; ++j) {
        gru_update_backward(carry[j], gz[j], gh[j], hb[j], dz[j], dh[j], carry[j]);
      }
    });
    const Real* dgates_t = dgates + t * G;
    recurrent_backward_gemm<Real>(s, G, dgates_t + 2 * U, candidate_packed_t, Real(0),
                                  d_reset_h.data());
    // dr from d(r*h_in); the h_in part of d(r*h_in) starts from_gemm, onto
    // which the z, r columns' product is added.
    for_each_row(N, U, [&](Index n) {
      const Index nt = n * T + t;
      const Real* drh = d_reset_h.data() + n * U;
      Real* to_h_in = state.from_gemm.data() + n * U;
      Real* dr = dgates + nt * G + U;
      if (!step_is_valid<kMasked>(mask, T, n, t)) {
        std::fill(to_h_in, to_h_in + U, Real(0));
        return;
      }
      const Real* gr = gates + nt * G + U;
      const Real* hin = h_in + nt * U;
#pragma omp simd
      for (Index j = 0; j < U; ++j) {
        const Real r = gr[j];
        dr[j] = drh[j] * hin[j] * r * (Real(1) - r);
        to_h_in[j] = drh[j] * r;
      }
    });
    recurrent_backward_gemm<Real>(s, G, dgates_t, gates_packed_t, Real(1),
                                  state.from_gemm.data());
  }

  finish_dh0<Real, kRecurrentMask>(s, state, recurrent_mask, dh0);
  input_gradients(s, G, x, kernel, dgates, dx, dkernel);
  recurrent_kernel_gradient(s, G, 2 * U, h_in, dgates, drecurrent_kernel);
  recurrent_kernel_gradient(s, G, U, recurrent_h, dgates + 2 * U, drecurrent_kernel + 2 * U);
  column_sums(N * T, G, dgates, dbias);
}

}  // namespace

template <typename Real>
void gru_forward(const RecurrentShape& shape, bool reset_after, const Real* x, const Real* h0,
                 const Real* kernel, const Real* recurrent_kernel, const Real* bias,
                 const std::uint8_t* mask, const Real* recurrent_mask, Real* y, Real* h_T,
                 Real* gates, Real* h_in, Real* h_prev, Real* recurrent_h) {
  with_flags(
      [&](auto after, auto training, auto masked, auto recurrent_masked) {
        constexpr bool kAfter = decltype(after)::value;
        constexpr bool kTraining = decltype(training)::value;
        constexpr bool kMasked = decltype(masked)::value;
        constexpr bool kRecurrentMask = decltype(recurrent_masked)::value;
        if constexpr (kAfter) {
          gru_forward_reset_after<Real, kTraining, kMasked, kRecurrentMask>(
              shape, x, h0, kernel, recurrent_kernel, bias, mask, recurrent_mask, y, h_T, gates,
              h_in, h_prev, recurrent_h);
        } else {
          gru_forward_reset_before<Real, kTraining, kMasked, kRecurrentMask>(
              shape, x, h0, kernel, recurrent_kernel, bias, mask, recurrent_mask, y, h_T, gates,
              h_in, h_prev, recurrent_h);
        }
      },
      reset_after, h_in != nullptr, mask != nullptr, recurrent_mask != nullptr);
}

template <typename Real>
void gru_backward(const RecurrentShape& shape, bool reset_after, const Real* x,
                  const Real* kernel, const Real* recurrent_kernel, const std::uint8_t* mask,
                  const Real* recurrent_mask, const Real* gates, const Real* h_in,
                  const Real* h_prev, const Real* recurrent_h, const Real* dy, const Real* dh_T,
                  Real* dx, Real* dh0, Real* dkernel, Real* drecurrent_kernel, Real* dbias,
                  Real* dgates, Real* dgates_recurrent) {
  with_flags(
      [&](auto after, auto masked, auto recurrent_masked) {
        constexpr bool kMasked = decltype(masked)::value;
        constexpr bool kRecurrentMask = decltype(recurrent_masked)::value;
        if constexpr (decltype(after)::value) {
          gru_backward_reset_after<Real, kMasked, kRecurrentMask>(
              shape, x, kernel, recurrent_kernel, mask, recurrent_mask, gates, h_in, h_prev,
              recurrent_h, dy, dh_T, dx, dh0, dkernel, drecurrent_kernel, dbias, dgates,
              dgates_recurrent);
        } else {
          gru_backward_reset_before<Real, kMasked, kRecurrentMask>(
              shape, x, kernel, recurrent_kernel, mask, recurrent_mask, gates, h_in, h_prev,
              recurrent_h, dy, dh_T, dx, dh0, dkernel, drecurrent_kernel, dbias, dgates);
        }
      },
      reset_after, mask != nullptr, recurrent_mask != nullptr);
}

template void gru_forward<float>(const RecurrentShape&, bool, const float*, const float*,
                                 const float*, const float*, const float*, const std::uint8_t*,
                                 const float*, float*, float*, float*, float*, float*, float*);
template void gru_forward<double>(const RecurrentShape&, bool, const double*, const double*,
                                  const double*, const double*, const double*,
                                  const std::uint8_t*, const double*, double*, double*, double*,
                                  double*, double*, double*);
template void gru_backward<float>(const RecurrentShape&, bool, const float*, const float*,
                                  const float*, const std::uint8_t*, const float*, const float*,
                                  const float*, const float*, const float*, const float*,
                                  const float*, float*, float*, float*, float*, float*, float*,
                                  float*);
template void gru_backward<double>(const RecurrentShape&, bool, const double*, const double*,
                                   const double*, const std::uint8_t*, const double*,
                                   const double*, const double*, const double*, const double*,
                                   const double*, const double*, double*, double*, double*,
                                   double*, double*, double*, double*);

}  // namespace fusednn::cpu
