// The CPU entry points of the recurrent ops, which pick the cell (contract in
// fusednn/recurrent.h); compiled once per instruction set (fusednn/cpu_isa.h).
#include "fusednn/recurrent.h"
#include "recurrent_cells.h"

FUSEDNN_CPU_BEGIN

using namespace recurrent_detail;

template <typename Real>
void recurrent_forward(const RecurrentSpec& spec, const RecurrentShape& shape,
                       const RecurrentInputs<Real>& inputs, const RecurrentWeights<Real>& weights,
                       const RecurrentOutputs<Real>& outputs, bool training, Real* cache) {
  FUSEDNN_DISPATCH(recurrent_forward<Real>(spec, shape, inputs, weights, outputs, training, cache));
  const RecurrentCache<Real> arrays(
      cache_layout(spec, shape, training, inputs.recurrent_mask != nullptr), cache);
  switch (spec.cell) {
    case RecurrentCell::kLstm:
      return lstm_forward(spec, shape, inputs, weights, outputs, arrays);
    case RecurrentCell::kGru:
      return gru_forward(spec, shape, inputs, weights, outputs, arrays);
    case RecurrentCell::kSimpleRnn:
      return simple_rnn_forward(spec, shape, inputs, weights, outputs, arrays);
  }
}

template <typename Real>
void recurrent_backward(const RecurrentSpec& spec, const RecurrentShape& shape,
                        const RecurrentInputs<Real>& inputs, const RecurrentWeights<Real>& weights,
                        const Real* cache, const RecurrentOutputGradients<Real>& output_gradients,
                        const RecurrentGradients<Real>& gradients, Real* workspace) {
  FUSEDNN_DISPATCH(recurrent_backward<Real>(spec, shape, inputs, weights, cache, output_gradients,
                                            gradients, workspace));
  const RecurrentCache<const Real> arrays(
      cache_layout(spec, shape, true, inputs.recurrent_mask != nullptr), cache);
  switch (spec.cell) {
    case RecurrentCell::kLstm:
      return lstm_backward(spec, shape, inputs, weights, arrays, output_gradients, gradients,
                           workspace);
    case RecurrentCell::kGru:
      return gru_backward(spec, shape, inputs, weights, arrays, output_gradients, gradients,
                          workspace);
    case RecurrentCell::kSimpleRnn:
      return simple_rnn_backward(spec, shape, inputs, weights, arrays, output_gradients,
                                 gradients, workspace);
  }
}

#define FUSEDNN_RECURRENT_ENTRY_INSTANCES(Real)                                                  \
  template void recurrent_forward<Real>(const RecurrentSpec&, const RecurrentShape&,            \
                                        const RecurrentInputs<Real>&,                           \
                                        const RecurrentWeights<Real>&,                          \
                                        const RecurrentOutputs<Real>&, bool, Real*);            \
  template void recurrent_backward<Real>(                                                       \
      const RecurrentSpec&, const RecurrentShape&, const RecurrentInputs<Real>&,               \
      const RecurrentWeights<Real>&, const Real*, const RecurrentOutputGradients<Real>&,        \
      const RecurrentGradients<Real>&, Real*);
FUSEDNN_RECURRENT_ENTRY_INSTANCES(float)
FUSEDNN_RECURRENT_ENTRY_INSTANCES(double)
#undef FUSEDNN_RECURRENT_ENTRY_INSTANCES

FUSEDNN_CPU_END
