// LSTM launchers on the GPU (contract in fusednn/recurrent.h), plus the
// workspace size and algorithm names shared by all recurrent launchers.
#include <cuda_runtime.h>

#include <cstdint>

#include "fusednn/cuda_check.h"
#include "recurrent_launchers.h"
#include "recurrent_sequence.cuh"

namespace fusednn::cuda {

using namespace recurrent_detail;
using fusednn::recurrent_detail::with_flags;

const char* algorithm_name(RecurrentAlgorithm algorithm) {
  switch (algorithm) {
    case RecurrentAlgorithm::kPerStep:
      return "per_step";
    case RecurrentAlgorithm::kPersistent:
      return "persistent";
    default:
      return "auto";
  }
}

std::int64_t workspace_elements(RecurrentKernel kernel, const RecurrentShape& shape) {
  const Index units = kernel == RecurrentKernel::kForward ? kForwardWorkspaceUnits
                                                          : kBackwardWorkspaceUnits;
  return units * shape.N * shape.U;
}

RecurrentAlgorithm lstm_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                                const float* x, const float* h0, const float* c0,
                                const float* kernel, const float* recurrent_kernel,
                                const float* bias, const std::uint8_t* mask,
                                const float* recurrent_mask, float* y, float* h_T, float* c_T,
                                float* gates, float* cell, float* h_in, float* workspace,
                                std::uintptr_t stream) {
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  copy_async(h_T, h0, shape.N * shape.U, s);
  copy_async(c_T, c0, shape.N * shape.U, s);
  const ForwardArgs args{shape.N, shape.T, shape.U, bias, mask, recurrent_mask, gates, h_T, c_T,
                         y, cell, nullptr, nullptr};
  RecurrentAlgorithm ran = RecurrentAlgorithm::kPerStep;
  with_flags(
      [&](auto training, auto masked, auto recurrent_masked) {
        ran = forward_sequence<LstmCell, decltype(training)::value, decltype(masked)::value,
                               decltype(recurrent_masked)::value>(
            shape, requested, args, x, kernel, recurrent_kernel, h_in, workspace, s);
      },
      cell != nullptr, mask != nullptr, recurrent_mask != nullptr);
  return ran;
}

void lstm_backward(const RecurrentShape& shape, const float* x, const float* c0,
                   const float* kernel, const float* recurrent_kernel, const std::uint8_t* mask,
                   const float* recurrent_mask, const float* gates, const float* cell,
                   const float* h_in, const float* dy, const float* dh_T, const float* dc_T,
                   float* dx, float* dh0, float* dc0, float* dkernel, float* drecurrent_kernel,
                   float* dbias, float* dgates, float* workspace, std::uintptr_t stream) {
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  // dc0 carries the running cell-state gradient.
  copy_or_zero(dc0, dc_T, shape.N * shape.U, s);
  BackwardArgs args{};
  args.N = shape.N;
  args.T = shape.T;
  args.U = shape.U;
  args.mask = mask;
  args.recurrent_mask = recurrent_mask;
  args.gates = gates;
  args.cell = cell;
  args.c0 = c0;
  args.h_in = h_in;
  args.dy = dy;
  args.dgates = dgates;
  args.dc = dc0;
  with_flags(
      [&](auto masked, auto recurrent_masked) {
        backward_sequence<LstmCell, decltype(masked)::value, decltype(recurrent_masked)::value>(
            shape, args, x, kernel, recurrent_kernel, dh_T, dx, dh0, dkernel, drecurrent_kernel,
            dbias, workspace, s);
      },
      mask != nullptr, recurrent_mask != nullptr);
}

}  // namespace fusednn::cuda
