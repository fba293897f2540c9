// The LSTM cell of the CPU sequence loops (recurrent_sequence.h; contract in
// fusednn/recurrent.h). Forward: the step's recurrent product accumulates
// h_{t-1} R onto its slice of the input projection, then one pointwise pass per
// batch row adds the bias, applies the gates, updates c and h, writes the
// outputs and (in training) overwrites the slice with the activated gates.
#include <algorithm>
#include <cstdint>

#include "recurrent_cells.h"
#include "recurrent_sequence.h"

FUSEDNN_CPU_BEGIN namespace recurrent_detail {

namespace {

template <typename Real, bool kTraining>
struct LstmForwardCell : CellPolicy<4> {
  RecurrentShape s;
  const Real* bias;
  Real* gates;
  Real* c_T;
  Real* cell;  // the cache, training only
  PackedMatrix<Real> recurrent_packed;

  const PackedMatrix<Real>& packed(int) const { return recurrent_packed; }

  StepProduct<Real> product(int, Index t, const Real* feed_t, Index feed_ld) const {
    return {feed_t, feed_ld, Real(1), gates + t * 4 * s.U, s.T * 4 * s.U};
  }

  void update(Index t, Index n, Real* h, Real* y_nt) const {
    const Index U = s.U;
    const Real *b_i = bias, *b_f = bias + U, *b_g = bias + 2 * U, *b_o = bias + 3 * U;
    Real* c = c_T + n * U;
    Real* gi = gates + (n * s.T + t) * 4 * U;
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
  }

  // The cell cache holds c after every step, carried over on masked ones.
  void carried(Index t, Index n) const {
    if constexpr (kTraining) {
      const Real* c = c_T + n * s.U;
      std::copy(c, c + s.U, cell + (n * s.T + t) * s.U);
    }
  }
};

template <typename Real>
struct LstmBackwardCell : CellPolicy<4> {
  RecurrentShape s;
  const Real* gates;
  const Real* cell;
  const Real* c0;
  Real* dc;  // (N, U) the running gradient w.r.t. the cell state
  Real* dgates;
  PackedMatrix<Real> recurrent_packed_t;

  const PackedMatrix<Real>& packed(int) const { return recurrent_packed_t; }

  StepProduct<Real> product(int, Index t, BackwardState<Real>& state) const {
    return {dgates + t * 4 * s.U, s.T * 4 * s.U, Real(0), state.from_gemm.data(), s.U};
  }

  void update(Index t, Index n, Real* dh) const {
    const Index U = s.U, nt = n * s.T + t;
    const Real* gi = gates + nt * 4 * U;
    const Real *gf = gi + U, *gg = gi + 2 * U, *go = gi + 3 * U;
    const Real* c = cell + nt * U;
    const Real* c_prev = t > 0 ? cell + (nt - 1) * U : c0 + n * U;
    Real* dc_n = dc + n * U;
    Real* dg_i = dgates + nt * 4 * U;
    Real *dg_f = dg_i + U, *dg_g = dg_i + 2 * U, *dg_o = dg_i + 3 * U;
#pragma omp simd
    for (Index j = 0; j < U; ++j) {
      const Real i = gi[j], f = gf[j], g = gg[j], o = go[j];
      const Real tanh_c = recurrent_detail::tanh(c[j]);
      const Real dh_j = dh[j];
      const Real dc_total = dc_n[j] + dh_j * o * (Real(1) - tanh_c * tanh_c);
      dg_i[j] = dc_total * g * i * (Real(1) - i);
      dg_f[j] = dc_total * c_prev[j] * f * (Real(1) - f);
      dg_g[j] = dc_total * i * (Real(1) - g * g);
      dg_o[j] = dh_j * tanh_c * o * (Real(1) - o);
      dc_n[j] = dc_total * f;
      dh[j] = Real(0);  // nothing bypasses the recurrent product
    }
  }
};

}  // namespace

template <typename Real>
void lstm_forward(const RecurrentSpec&, const RecurrentShape& s,
                  const RecurrentInputs<Real>& in, const RecurrentWeights<Real>& w,
                  const RecurrentOutputs<Real>& out, const RecurrentCache<Real>& cache) {
  std::copy(in.c0, in.c0 + s.N * s.U, out.c_T);
  with_flags(
      [&](auto training, auto masked, auto recurrent_masked) {
        constexpr bool kTraining = decltype(training)::value;
        LstmForwardCell<Real, kTraining> cell{
            {}, s, w.bias, cache.gates, out.c_T, cache.cell,
            pack_columns(s, 4 * s.U, 4 * s.U, w.recurrent_kernel)};
        forward_sequence<Real, kTraining, decltype(masked)::value,
                         decltype(recurrent_masked)::value>(s, in, w.kernel, out, cache.gates,
                                                            cache.h_in, cell);
      },
      cache.h_in != nullptr, in.mask != nullptr, in.recurrent_mask != nullptr);
}

template <typename Real>
void lstm_backward(const RecurrentSpec&, const RecurrentShape& s,
                   const RecurrentInputs<Real>& in, const RecurrentWeights<Real>& w,
                   const RecurrentCache<const Real>& cache,
                   const RecurrentOutputGradients<Real>& out_grads,
                   const RecurrentGradients<Real>& grads, Real* workspace) {
  const Index G = 4 * s.U;
  // dc0 holds the running gradient w.r.t. the cell state.
  if (out_grads.dc_T != nullptr) {
    std::copy(out_grads.dc_T, out_grads.dc_T + s.N * s.U, grads.dc0);
  } else {
    std::fill(grads.dc0, grads.dc0 + s.N * s.U, Real(0));
  }
  Real* dgates = workspace;
  LstmBackwardCell<Real> cell{{}, s, cache.gates, cache.cell, in.c0, grads.dc0, dgates,
                              pack_columns_transposed(s, G, G, w.recurrent_kernel)};
  with_flags(
      [&](auto masked, auto recurrent_masked) {
        backward_sequence<Real, decltype(masked)::value, decltype(recurrent_masked)::value>(
            s, in, w.kernel, out_grads.dy, out_grads.dh_T, grads, dgates, cell);
      },
      in.mask != nullptr, in.recurrent_mask != nullptr);
  recurrent_kernel_gradient(s, G, G, cache.h_in, dgates, grads.drecurrent_kernel);
  column_sums(s.N * s.T, G, dgates, grads.dbias);
}

FUSEDNN_RECURRENT_CELL_INSTANCES(lstm)

}  // namespace recurrent_detail
FUSEDNN_CPU_END
