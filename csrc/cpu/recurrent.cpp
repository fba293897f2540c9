// The recurrent ops' cache layout (shared with the CUDA entry points) and the
// CPU entry points, which pick the cell (contract in fusednn/recurrent.h).
#include <cstdint>

#include "fusednn/recurrent.h"
#include "recurrent_cells.h"

namespace fusednn {

std::int64_t gate_count(RecurrentCell cell) {
  switch (cell) {
    case RecurrentCell::kLstm:
      return 4;
    case RecurrentCell::kGru:
      return 3;
    default:
      return 1;
  }
}

RecurrentCacheLayout cache_layout(const RecurrentSpec& spec, const RecurrentShape& shape,
                                  bool training, bool recurrent_masked) {
  const std::int64_t sequence = shape.N * shape.T * shape.U;  // one (N, T, U) array
  RecurrentCacheLayout layout;
  std::int64_t end = gate_count(spec.cell) * sequence;  // gates first
  const auto add = [&](std::int64_t& offset) {
    offset = end;
    end += sequence;
  };
  if (training) {
    add(layout.h_in);
    if (spec.cell == RecurrentCell::kLstm) add(layout.cell);
    if (spec.cell == RecurrentCell::kGru) {
      add(layout.recurrent_h);
      if (recurrent_masked) add(layout.h_prev);
    }
  }
  layout.elements = end;
  return layout;
}

std::int64_t backward_workspace_elements(const RecurrentSpec& spec, const RecurrentShape& shape) {
  // dgates, and for the GRU with reset_after dgates_recurrent.
  const bool two = spec.cell == RecurrentCell::kGru && spec.reset_after;
  return (two ? 2 : 1) * gate_count(spec.cell) * shape.N * shape.T * shape.U;
}

namespace cpu {

using namespace recurrent_detail;

template <typename Real>
void recurrent_forward(const RecurrentSpec& spec, const RecurrentShape& shape,
                       const RecurrentInputs<Real>& inputs, const RecurrentWeights<Real>& weights,
                       const RecurrentOutputs<Real>& outputs, bool training, Real* cache) {
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

}  // namespace cpu

}  // namespace fusednn
