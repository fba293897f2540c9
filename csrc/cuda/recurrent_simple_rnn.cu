// SimpleRNN launchers on the GPU (contract in fusednn/recurrent.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "fusednn/cuda_check.h"
#include "recurrent_launchers.h"
#include "recurrent_sequence.cuh"

namespace fusednn::cuda {

using namespace recurrent_detail;
using fusednn::recurrent_detail::with_flags;

RecurrentAlgorithm simple_rnn_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                                      RnnActivation activation, const float* x, const float* h0,
                                      const float* kernel, const float* recurrent_kernel,
                                      const float* bias, const std::uint8_t* mask,
                                      const float* recurrent_mask, float* y, float* h_T,
                                      float* gates, float* h_in, float* workspace,
                                      std::uintptr_t stream) {
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  copy_async(h_T, h0, shape.N * shape.U, s);
  const ForwardArgs args{shape.N, shape.T, shape.U, bias, mask, recurrent_mask, gates, h_T,
                         nullptr, y, nullptr, nullptr, nullptr};
  RecurrentAlgorithm ran = RecurrentAlgorithm::kPerStep;
  with_flags(
      [&](auto relu, auto training, auto masked, auto recurrent_masked) {
        using Cell = SimpleRnnCell<decltype(relu)::value ? RnnActivation::kRelu
                                                         : RnnActivation::kTanh>;
        ran = forward_sequence<Cell, decltype(training)::value, decltype(masked)::value,
                               decltype(recurrent_masked)::value>(
            shape, requested, args, x, kernel, recurrent_kernel, h_in, workspace, s);
      },
      activation == RnnActivation::kRelu, h_in != nullptr, mask != nullptr,
      recurrent_mask != nullptr);
  return ran;
}

void simple_rnn_backward(const RecurrentShape& shape, RnnActivation activation, const float* x,
                         const float* kernel, const float* recurrent_kernel,
                         const std::uint8_t* mask, const float* recurrent_mask,
                         const float* gates, const float* h_in, const float* dy,
                         const float* dh_T, float* dx, float* dh0, float* dkernel,
                         float* drecurrent_kernel, float* dbias, float* dgates, float* workspace,
                         std::uintptr_t stream) {
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  BackwardArgs args{};
  args.N = shape.N;
  args.T = shape.T;
  args.U = shape.U;
  args.mask = mask;
  args.recurrent_mask = recurrent_mask;
  args.gates = gates;
  args.h_in = h_in;
  args.dy = dy;
  args.dgates = dgates;
  with_flags(
      [&](auto relu, auto masked, auto recurrent_masked) {
        using Cell = SimpleRnnCell<decltype(relu)::value ? RnnActivation::kRelu
                                                         : RnnActivation::kTanh>;
        backward_sequence<Cell, decltype(masked)::value, decltype(recurrent_masked)::value>(
            shape, args, x, kernel, recurrent_kernel, dh_T, dx, dh0, dkernel, drecurrent_kernel,
            dbias, workspace, s);
      },
      activation == RnnActivation::kRelu, mask != nullptr, recurrent_mask != nullptr);
}

}  // namespace fusednn::cuda
