// The CUDA recurrent entry points (contract in fusednn/recurrent.h): the cache
// and the gate-gradient workspace split into their arrays, then the cell's
// launcher (recurrent_launchers.h), once the shape is checked.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "recurrent_launchers.h"

namespace fusednn::cuda {

namespace {

// The launchers' shape contract (fusednn/recurrent.h), checked where they are
// entered rather than trusted to the Python bindings: U = 0 would divide by zero
// in the persistent planner (units per block) and, like T = 0 or F = 0, launch
// grids over zero gate columns; N = 0 (an empty batch) is valid.
void check_shape(const char* entry, const RecurrentShape& s) {
  if (s.N >= 0 && s.T >= 1 && s.F >= 1 && s.U >= 1) return;
  throw std::invalid_argument(std::string(entry) +
                              ": expected N >= 0 and T, F, U >= 1, got N=" + std::to_string(s.N) +
                              " T=" + std::to_string(s.T) + " F=" + std::to_string(s.F) +
                              " U=" + std::to_string(s.U));
}

}  // namespace

RecurrentAlgorithm recurrent_forward(const RecurrentSpec& spec, const RecurrentShape& shape,
                                     RecurrentAlgorithm requested,
                                     const RecurrentInputs<float>& in,
                                     const RecurrentWeights<float>& w,
                                     const RecurrentOutputs<float>& out, bool training,
                                     float* cache, float* workspace, std::uintptr_t stream) {
  check_shape("recurrent_forward (CUDA)", shape);
  const RecurrentCache<float> c(
      cache_layout(spec, shape, training, in.recurrent_mask != nullptr), cache);
  switch (spec.cell) {
    case RecurrentCell::kLstm:
      return lstm_forward(shape, requested, in.x, in.h0, in.c0, w.kernel, w.recurrent_kernel,
                          w.bias, in.mask, in.recurrent_mask, out.y, out.h_T, out.c_T, c.gates,
                          c.cell, c.h_in, workspace, stream);
    case RecurrentCell::kGru:
      return gru_forward(shape, requested, spec.reset_after, in.x, in.h0, w.kernel,
                         w.recurrent_kernel, w.bias, in.mask, in.recurrent_mask, out.y, out.h_T,
                         c.gates, c.h_in, c.h_prev, c.recurrent_h, workspace, stream);
    default:
      return simple_rnn_forward(shape, requested, spec.activation, in.x, in.h0, w.kernel,
                                w.recurrent_kernel, w.bias, in.mask, in.recurrent_mask, out.y,
                                out.h_T, c.gates, c.h_in, workspace, stream);
  }
}

void recurrent_backward(const RecurrentSpec& spec, const RecurrentShape& shape,
                        const RecurrentInputs<float>& in, const RecurrentWeights<float>& w,
                        const float* cache, const RecurrentOutputGradients<float>& og,
                        const RecurrentGradients<float>& g, float* backward_workspace,
                        float* workspace, std::uintptr_t stream) {
  check_shape("recurrent_backward (CUDA)", shape);
  const RecurrentCache<const float> c(
      cache_layout(spec, shape, true, in.recurrent_mask != nullptr), cache);
  float* dgates = backward_workspace;
  switch (spec.cell) {
    case RecurrentCell::kLstm:
      return lstm_backward(shape, in.x, in.c0, w.kernel, w.recurrent_kernel, in.mask,
                           in.recurrent_mask, c.gates, c.cell, c.h_in, og.dy, og.dh_T, og.dc_T,
                           g.dx, g.dh0, g.dc0, g.dkernel, g.drecurrent_kernel, g.dbias, dgates,
                           workspace, stream);
    case RecurrentCell::kGru: {
      float* dgates_recurrent =
          spec.reset_after ? dgates + gate_count(spec.cell) * shape.N * shape.T * shape.U
                           : nullptr;
      return gru_backward(shape, spec.reset_after, in.x, w.kernel, w.recurrent_kernel, in.mask,
                          in.recurrent_mask, c.gates, c.h_in, c.h_prev, c.recurrent_h, og.dy,
                          og.dh_T, g.dx, g.dh0, g.dkernel, g.drecurrent_kernel, g.dbias, dgates,
                          dgates_recurrent, workspace, stream);
    }
    default:
      return simple_rnn_backward(shape, spec.activation, in.x, w.kernel, w.recurrent_kernel,
                                 in.mask, in.recurrent_mask, c.gates, c.h_in, og.dy, og.dh_T,
                                 g.dx, g.dh0, g.dkernel, g.drecurrent_kernel, g.dbias, dgates,
                                 workspace, stream);
  }
}

}  // namespace fusednn::cuda
