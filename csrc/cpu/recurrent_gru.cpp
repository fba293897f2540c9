// The GRU cells of the CPU sequence loops (recurrent_sequence.h; contract in
// fusednn/recurrent.h).
//
// reset_after (Keras's default, cuDNN's form): one recurrent product per step,
// h_{t-1} R, into a small buffer, because the candidate needs its h part apart
// (r multiplies it); one pointwise pass then forms z, r, hh, h.
// reset_after=False: r must be known before the candidate's recurrent product
// (r*h) Uh, so a step is product (z, r columns) -> pass (z, r, r*h) -> product
// (candidate columns) -> pass (hh, h).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "recurrent_cells.h"
#include "recurrent_sequence.h"

FUSEDNN_CPU_BEGIN namespace recurrent_detail {

namespace {

// One valid step's state update, shared by both forms: h = z*h + (1-z)*hh.
template <typename Real>
FUSEDNN_INLINE Real gru_update(Real z, Real h, Real hh) {
  return z * h + (Real(1) - z) * hh;
}

// The part of a valid step's backward both forms share: from the total
// gradient g w.r.t. the new h, dz_pre and dhh_pre (pre-activation gradients)
// and the direct path g*z into the carry.
template <typename Real>
FUSEDNN_INLINE void gru_update_backward(Real g, Real z, Real hh, Real h_before, Real& dz_pre,
                                        Real& dhh_pre, Real& carry) {
  dz_pre = g * (h_before - hh) * z * (Real(1) - z);
  dhh_pre = g * (Real(1) - z) * (Real(1) - hh * hh);
  carry = g * z;
}

template <typename Real, bool kTraining, bool kRecurrentMask>
struct GruResetAfterForwardCell : CellPolicy<3> {
  RecurrentShape s;
  const Real* bias;  // (2, 3U): input bias, recurrent bias
  Real* gates;
  Real* recurrent_h;  // caches, training only
  Real* h_prev;       // training with a recurrent mask only
  PackedMatrix<Real> recurrent_packed;
  std::vector<Real> projected_h;  // (N, 3U) h_{t-1} R of this step

  const PackedMatrix<Real>& packed(int) const { return recurrent_packed; }

  StepProduct<Real> product(int, Index, const Real* feed_t, Index feed_ld) {
    return {feed_t, feed_ld, Real(0), projected_h.data(), 3 * s.U};
  }

  void update(Index t, Index n, Real* h, Real* y_nt) {
    const Index U = s.U, G = 3 * U, nt = n * s.T + t;
    const Real* bias_in = bias;
    const Real* bias_rec = bias + G;
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
  }
};

template <typename Real, bool kTraining, bool kRecurrentMask>
struct GruResetBeforeForwardCell : CellPolicy<3, 2> {
  RecurrentShape s;
  const Real* bias;  // (3U,)
  Real* gates;
  Real* h_prev;  // training with a recurrent mask only
  PackedMatrix<Real> gates_packed;      // z, r columns
  PackedMatrix<Real> candidate_packed;  // the candidate's columns
  // r * h_in, the candidate product's input: the recurrent_h cache in
  // training, else one step's worth in `buffer`.
  std::vector<Real> buffer;
  Real* reset_h;
  Index reset_ld, reset_step;

  const PackedMatrix<Real>& packed(int k) const { return k == 0 ? gates_packed : candidate_packed; }

  StepProduct<Real> product(int k, Index t, const Real* feed_t, Index feed_ld) const {
    const Index G = 3 * s.U;
    if (k == 0) return {feed_t, feed_ld, Real(1), gates + t * G, s.T * G};
    return {reset_h + t * reset_step, reset_ld, Real(1), gates + t * G + 2 * s.U, s.T * G};
  }

  // z, r and r * h_in for every row (a masked row's values are not used, but
  // r * h_in enters the backward's dR product, so it stays finite).
  void between(int, Index t, Index n, const Real* h_feed) const {
    const Index U = s.U;
    Real* gz = gates + (n * s.T + t) * 3 * U;
    Real* gr = gz + U;
    Real* rh = reset_h + t * reset_step + n * reset_ld;
#pragma omp simd
    for (Index j = 0; j < U; ++j) {
      const Real r = sigmoid(gr[j] + bias[U + j]);
      gz[j] = sigmoid(gz[j] + bias[j]);
      gr[j] = r;
      rh[j] = r * h_feed[j];
    }
  }

  void update(Index t, Index n, Real* h, Real* y_nt) const {
    const Index U = s.U, nt = n * s.T + t;
    const Real* gz = gates + nt * 3 * U;
    Real* gh = gates + nt * 3 * U + 2 * U;
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
  }
};

template <typename Real>
struct GruResetAfterBackwardCell : CellPolicy<3> {
  RecurrentShape s;
  const Real* gates;
  const Real* h_before;  // the state before each step: h_prev, or h_in without a recurrent mask
  const Real* recurrent_h;
  Real* dgates;            // w.r.t. the input projection
  Real* dgates_recurrent;  // w.r.t. the recurrent projection (the h part times r)
  PackedMatrix<Real> recurrent_packed_t;

  const PackedMatrix<Real>& packed(int) const { return recurrent_packed_t; }

  StepProduct<Real> product(int, Index t, BackwardState<Real>& state) const {
    return {dgates_recurrent + t * 3 * s.U, s.T * 3 * s.U, Real(0), state.from_gemm.data(), s.U};
  }

  void update(Index t, Index n, Real* carry) const {
    const Index U = s.U, G = 3 * U, nt = n * s.T + t;
    const Real* gz = gates + nt * G;
    const Real *gr = gz + U, *gh = gz + 2 * U;
    const Real* hb = h_before + nt * U;
    const Real* hr = recurrent_h + nt * U;
    Real* dz = dgates + nt * G;
    Real *dr = dz + U, *dh = dz + 2 * U;
    Real* dz_rec = dgates_recurrent + nt * G;
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
  }

  void masked(Index t, Index n) const {
    Real* dz_rec = dgates_recurrent + (n * s.T + t) * 3 * s.U;
    std::fill(dz_rec, dz_rec + 3 * s.U, Real(0));
  }
};

template <typename Real>
struct GruResetBeforeBackwardCell : CellPolicy<3, 2> {
  RecurrentShape s;
  const Real* gates;
  const Real* h_before;
  const Real* h_in;
  Real* dgates;
  PackedMatrix<Real> candidate_packed_t;  // Uh^T
  PackedMatrix<Real> gates_packed_t;      // the z, r columns' R^T
  std::vector<Real> d_reset_h;            // (N, U) d(r * h_in) of one step

  const PackedMatrix<Real>& packed(int k) const {
    return k == 0 ? candidate_packed_t : gates_packed_t;
  }

  // First the candidate's gradient through Uh into d(r * h_in); then the z, r
  // columns' product adds onto the h_in part of it (between() put in from_gemm).
  StepProduct<Real> product(int k, Index t, BackwardState<Real>& state) {
    const Index G = 3 * s.U;
    if (k == 0) return {dgates + t * G + 2 * s.U, s.T * G, Real(0), d_reset_h.data(), s.U};
    return {dgates + t * G, s.T * G, Real(1), state.from_gemm.data(), s.U};
  }

  // dr from d(r * h_in), and its h_in part into from_gemm.
  void between(int, Index t, Index n, bool valid, BackwardState<Real>& state) const {
    const Index U = s.U, nt = n * s.T + t;
    Real* to_h_in = state.from_gemm.data() + n * U;
    if (!valid) {
      std::fill(to_h_in, to_h_in + U, Real(0));  // its dr is already zero
      return;
    }
    const Real* drh = d_reset_h.data() + n * U;
    Real* dr = dgates + nt * 3 * U + U;
    const Real* gr = gates + nt * 3 * U + U;
    const Real* hin = h_in + nt * U;
#pragma omp simd
    for (Index j = 0; j < U; ++j) {
      const Real r = gr[j];
      dr[j] = drh[j] * hin[j] * r * (Real(1) - r);
      to_h_in[j] = drh[j] * r;
    }
  }

  void update(Index t, Index n, Real* carry) const {
    const Index U = s.U, nt = n * s.T + t;
    const Real* gz = gates + nt * 3 * U;
    const Real* gh = gz + 2 * U;
    const Real* hb = h_before + nt * U;
    Real* dz = dgates + nt * 3 * U;
    Real* dh = dz + 2 * U;
#pragma omp simd
    for (Index j = 0; j < U; ++j) {
      gru_update_backward(carry[j], gz[j], gh[j], hb[j], dz[j], dh[j], carry[j]);
    }
  }
};

}  // namespace

template <typename Real>
void gru_forward(const RecurrentSpec& spec, const RecurrentShape& s,
                 const RecurrentInputs<Real>& in, const RecurrentWeights<Real>& w,
                 const RecurrentOutputs<Real>& out, const RecurrentCache<Real>& cache) {
  const Index N = s.N, T = s.T, U = s.U, G = 3 * U;
  with_flags(
      [&](auto after, auto training, auto masked, auto recurrent_masked) {
        constexpr bool kTraining = decltype(training)::value;
        constexpr bool kRecurrentMask = decltype(recurrent_masked)::value;
        const auto run = [&](auto& cell) {
          forward_sequence<Real, kTraining, decltype(masked)::value, kRecurrentMask>(
              s, in, w.kernel, out, cache.gates, cache.h_in, cell);
        };
        if constexpr (decltype(after)::value) {
          GruResetAfterForwardCell<Real, kTraining, kRecurrentMask> cell{
              {},
              s,
              w.bias,
              cache.gates,
              cache.recurrent_h,
              cache.h_prev,
              pack_columns(s, G, G, w.recurrent_kernel),
              std::vector<Real>(static_cast<std::size_t>(N * G))};
          run(cell);
        } else {
          GruResetBeforeForwardCell<Real, kTraining, kRecurrentMask> cell{
              {},
              s,
              w.bias,
              cache.gates,
              cache.h_prev,
              pack_columns(s, G, 2 * U, w.recurrent_kernel),
              pack_columns(s, G, U, w.recurrent_kernel + 2 * U),
              std::vector<Real>(kTraining ? 0 : static_cast<std::size_t>(N * U)),
              nullptr,
              kTraining ? T * U : U,
              kTraining ? U : 0};
          cell.reset_h = kTraining ? cache.recurrent_h : cell.buffer.data();
          run(cell);
        }
      },
      spec.reset_after, cache.h_in != nullptr, in.mask != nullptr,
      in.recurrent_mask != nullptr);
}

template <typename Real>
void gru_backward(const RecurrentSpec& spec, const RecurrentShape& s,
                  const RecurrentInputs<Real>& in, const RecurrentWeights<Real>& w,
                  const RecurrentCache<const Real>& cache,
                  const RecurrentOutputGradients<Real>& out_grads,
                  const RecurrentGradients<Real>& grads, Real* workspace) {
  const Index N = s.N, T = s.T, U = s.U, G = 3 * U;
  const Real* h_before = in.recurrent_mask != nullptr ? cache.h_prev : cache.h_in;
  Real* dgates = workspace;
  with_flags(
      [&](auto after, auto masked, auto recurrent_masked) {
        const auto run = [&](auto& cell) {
          backward_sequence<Real, decltype(masked)::value, decltype(recurrent_masked)::value>(
              s, in, w.kernel, out_grads.dy, out_grads.dh_T, grads, dgates, cell);
        };
        if constexpr (decltype(after)::value) {
          Real* dgates_recurrent = workspace + N * T * G;
          GruResetAfterBackwardCell<Real> cell{
              {}, s, cache.gates, h_before, cache.recurrent_h, dgates, dgates_recurrent,
              pack_columns_transposed(s, G, G, w.recurrent_kernel)};
          run(cell);
          recurrent_kernel_gradient(s, G, G, cache.h_in, dgates_recurrent,
                                    grads.drecurrent_kernel);
          column_sums(N * T, G, dgates, grads.dbias);
          column_sums(N * T, G, dgates_recurrent, grads.dbias + G);
        } else {
          GruResetBeforeBackwardCell<Real> cell{
              {},
              s,
              cache.gates,
              h_before,
              cache.h_in,
              dgates,
              pack_columns_transposed(s, G, U, w.recurrent_kernel + 2 * U),
              pack_columns_transposed(s, G, 2 * U, w.recurrent_kernel),
              std::vector<Real>(static_cast<std::size_t>(N * U))};
          run(cell);
          recurrent_kernel_gradient(s, G, 2 * U, cache.h_in, dgates, grads.drecurrent_kernel);
          recurrent_kernel_gradient(s, G, U, cache.recurrent_h, dgates + 2 * U,
                                    grads.drecurrent_kernel + 2 * U);
          column_sums(N * T, G, dgates, grads.dbias);
        }
      },
      spec.reset_after, in.mask != nullptr, in.recurrent_mask != nullptr);
}

FUSEDNN_RECURRENT_CELL_INSTANCES(gru)

}  // namespace recurrent_detail
FUSEDNN_CPU_END
