// The CPU cells' entry points (one file each: recurrent_lstm.cpp,
// recurrent_gru.cpp, recurrent_simple_rnn.cpp), which fusednn::cpu::recurrent_forward
// and recurrent_backward (recurrent.cpp) dispatch to. They take the public
// argument structs with the cache already split into its arrays.
#pragma once

#include "fusednn/recurrent.h"

FUSEDNN_CPU_BEGIN namespace recurrent_detail {

#define FUSEDNN_DECLARE_RECURRENT_CELL(name)                                                    \
  template <typename Real>                                                                      \
  void name##_forward(const RecurrentSpec& spec, const RecurrentShape& s,                       \
                      const RecurrentInputs<Real>& in, const RecurrentWeights<Real>& w,         \
                      const RecurrentOutputs<Real>& out, const RecurrentCache<Real>& cache);    \
  template <typename Real>                                                                      \
  void name##_backward(const RecurrentSpec& spec, const RecurrentShape& s,                      \
                       const RecurrentInputs<Real>& in, const RecurrentWeights<Real>& w,        \
                       const RecurrentCache<const Real>& cache,                                 \
                       const RecurrentOutputGradients<Real>& out_grads,                         \
                       const RecurrentGradients<Real>& grads, Real* workspace);

FUSEDNN_DECLARE_RECURRENT_CELL(lstm)
FUSEDNN_DECLARE_RECURRENT_CELL(gru)
FUSEDNN_DECLARE_RECURRENT_CELL(simple_rnn)
#undef FUSEDNN_DECLARE_RECURRENT_CELL

// The float and double instances of a cell's two entry points, in its file.
#define FUSEDNN_RECURRENT_CELL_INSTANCE(name, Real)                                              \
  template void name##_forward<Real>(const RecurrentSpec&, const RecurrentShape&,               \
                                     const RecurrentInputs<Real>&, const RecurrentWeights<Real>&, \
                                     const RecurrentOutputs<Real>&, const RecurrentCache<Real>&); \
  template void name##_backward<Real>(                                                          \
      const RecurrentSpec&, const RecurrentShape&, const RecurrentInputs<Real>&,               \
      const RecurrentWeights<Real>&, const RecurrentCache<const Real>&,                         \
      const RecurrentOutputGradients<Real>&, const RecurrentGradients<Real>&, Real*);
#define FUSEDNN_RECURRENT_CELL_INSTANCES(name)   \
  FUSEDNN_RECURRENT_CELL_INSTANCE(name, float)   \
  FUSEDNN_RECURRENT_CELL_INSTANCE(name, double)

}  // namespace recurrent_detail
FUSEDNN_CPU_END
