// The simple RNN cell, h' = act(x W + h R + b) with act tanh or relu, of the
// CPU sequence loops (recurrent_sequence.h; contract in fusednn/recurrent.h).
// Same step as the LSTM's: the recurrent product accumulates onto the input
// projection, then one pointwise pass per batch row.
#include <cstdint>

#include "recurrent_cells.h"
#include "recurrent_sequence.h"

FUSEDNN_CPU_BEGIN namespace recurrent_detail {

namespace {

template <RnnActivation kActivation, typename Real>
FUSEDNN_INLINE Real activate(Real v) {
  if constexpr (kActivation == RnnActivation::kTanh) {
    return recurrent_detail::tanh(v);
  } else {
    return relu(v);
  }
}

// d act / d pre, from the activation's output h.
template <RnnActivation kActivation, typename Real>
FUSEDNN_INLINE Real activation_slope(Real h) {
  if constexpr (kActivation == RnnActivation::kTanh) {
    return Real(1) - h * h;
  } else {
    return h > Real(0) ? Real(1) : Real(0);
  }
}

template <typename Real, RnnActivation kActivation, bool kTraining>
struct SimpleRnnForwardCell : CellPolicy<1> {
  RecurrentShape s;
  const Real* bias;
  Real* gates;
  PackedMatrix<Real> recurrent_packed;

  const PackedMatrix<Real>& packed(int) const { return recurrent_packed; }

  StepProduct<Real> product(int, Index t, const Real* feed_t, Index feed_ld) const {
    return {feed_t, feed_ld, Real(1), gates + t * s.U, s.T * s.U};
  }

  void update(Index t, Index n, Real* h, Real* y_nt) const {
    const Index U = s.U;
    Real* pre = gates + (n * s.T + t) * U;
#pragma omp simd
    for (Index j = 0; j < U; ++j) {
      const Real h_new = activate<kActivation>(pre[j] + bias[j]);
      if constexpr (kTraining) pre[j] = h_new;
      h[j] = h_new;
      y_nt[j] = h_new;
    }
  }
};

template <typename Real, RnnActivation kActivation>
struct SimpleRnnBackwardCell : CellPolicy<1> {
  RecurrentShape s;
  const Real* gates;  // the new h of every step
  Real* dgates;
  PackedMatrix<Real> recurrent_packed_t;

  const PackedMatrix<Real>& packed(int) const { return recurrent_packed_t; }

  StepProduct<Real> product(int, Index t, BackwardState<Real>& state) const {
    return {dgates + t * s.U, s.T * s.U, Real(0), state.from_gemm.data(), s.U};
  }

  void update(Index t, Index n, Real* dh) const {
    const Index U = s.U, nt = n * s.T + t;
    const Real* h = gates + nt * U;
    Real* dpre = dgates + nt * U;
#pragma omp simd
    for (Index j = 0; j < U; ++j) {
      dpre[j] = dh[j] * activation_slope<kActivation>(h[j]);
      dh[j] = Real(0);  // nothing bypasses the recurrent product
    }
  }
};

}  // namespace

template <typename Real>
void simple_rnn_forward(const RecurrentSpec& spec, const RecurrentShape& s,
                        const RecurrentInputs<Real>& in, const RecurrentWeights<Real>& w,
                        const RecurrentOutputs<Real>& out, const RecurrentCache<Real>& cache) {
  with_flags(
      [&](auto relu_flag, auto training, auto masked, auto recurrent_masked) {
        constexpr RnnActivation kActivation =
            decltype(relu_flag)::value ? RnnActivation::kRelu : RnnActivation::kTanh;
        constexpr bool kTraining = decltype(training)::value;
        SimpleRnnForwardCell<Real, kActivation, kTraining> cell{
            {}, s, w.bias, cache.gates, pack_columns(s, s.U, s.U, w.recurrent_kernel)};
        forward_sequence<Real, kTraining, decltype(masked)::value,
                         decltype(recurrent_masked)::value>(s, in, w.kernel, out, cache.gates,
                                                            cache.h_in, cell);
      },
      spec.activation == RnnActivation::kRelu, cache.h_in != nullptr, in.mask != nullptr,
      in.recurrent_mask != nullptr);
}

template <typename Real>
void simple_rnn_backward(const RecurrentSpec& spec, const RecurrentShape& s,
                         const RecurrentInputs<Real>& in, const RecurrentWeights<Real>& w,
                         const RecurrentCache<const Real>& cache,
                         const RecurrentOutputGradients<Real>& out_grads,
                         const RecurrentGradients<Real>& grads, Real* workspace) {
  Real* dgates = workspace;
  with_flags(
      [&](auto relu_flag, auto masked, auto recurrent_masked) {
        constexpr RnnActivation kActivation =
            decltype(relu_flag)::value ? RnnActivation::kRelu : RnnActivation::kTanh;
        SimpleRnnBackwardCell<Real, kActivation> cell{
            {}, s, cache.gates, dgates, pack_columns_transposed(s, s.U, s.U, w.recurrent_kernel)};
        backward_sequence<Real, decltype(masked)::value, decltype(recurrent_masked)::value>(
            s, in, w.kernel, out_grads.dy, out_grads.dh_T, grads, dgates, cell);
      },
      spec.activation == RnnActivation::kRelu, in.mask != nullptr,
      in.recurrent_mask != nullptr);
  recurrent_kernel_gradient(s, s.U, s.U, cache.h_in, dgates, grads.drecurrent_kernel);
  column_sums(s.N * s.T, s.U, dgates, grads.dbias);
}

FUSEDNN_RECURRENT_CELL_INSTANCES(simple_rnn)

}  // namespace recurrent_detail
FUSEDNN_CPU_END
