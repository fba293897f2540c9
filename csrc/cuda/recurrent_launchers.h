// The CUDA recurrent launchers of each cell (recurrent_lstm.cu,
// recurrent_gru.cu, recurrent_simple_rnn.cu), which the entry points in
// recurrent_entry.cu call with the argument structs of fusednn/recurrent.h
// unpacked: the cache split into its arrays, the gate-gradient workspace into
// dgates (and dgates_recurrent), workspace the launchers' own.
#pragma once

#include <cstdint>

#include "fusednn/recurrent.h"

namespace fusednn::cuda {

RecurrentAlgorithm lstm_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                                const float* x, const float* h0, const float* c0,
                                const float* kernel, const float* recurrent_kernel,
                                const float* bias, const std::uint8_t* mask,
                                const float* recurrent_mask, float* y, float* h_T, float* c_T,
                                float* gates, float* cell, float* h_in, float* workspace,
                                std::uintptr_t stream);

void lstm_backward(const RecurrentShape& shape, const float* x, const float* c0,
                   const float* kernel, const float* recurrent_kernel, const std::uint8_t* mask,
                   const float* recurrent_mask, const float* gates, const float* cell,
                   const float* h_in, const float* dy, const float* dh_T, const float* dc_T,
                   float* dx, float* dh0, float* dc0, float* dkernel, float* drecurrent_kernel,
                   float* dbias, float* dgates, float* workspace, std::uintptr_t stream);

RecurrentAlgorithm gru_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                               bool reset_after, const float* x, const float* h0,
                               const float* kernel, const float* recurrent_kernel,
                               const float* bias, const std::uint8_t* mask,
                               const float* recurrent_mask, float* y, float* h_T, float* gates,
                               float* h_in, float* h_prev, float* recurrent_h, float* workspace,
                               std::uintptr_t stream);

void gru_backward(const RecurrentShape& shape, bool reset_after, const float* x,
                  const float* kernel, const float* recurrent_kernel, const std::uint8_t* mask,
                  const float* recurrent_mask, const float* gates, const float* h_in,
                  const float* h_prev, const float* recurrent_h, const float* dy,
                  const float* dh_T, float* dx, float* dh0, float* dkernel,
                  float* drecurrent_kernel, float* dbias, float* dgates, float* dgates_recurrent,
                  float* workspace, std::uintptr_t stream);

RecurrentAlgorithm simple_rnn_forward(const RecurrentShape& shape, RecurrentAlgorithm requested,
                                      RnnActivation activation, const float* x, const float* h0,
                                      const float* kernel, const float* recurrent_kernel,
                                      const float* bias, const std::uint8_t* mask,
                                      const float* recurrent_mask, float* y, float* h_T,
                                      float* gates, float* h_in, float* workspace,
                                      std::uintptr_t stream);

void simple_rnn_backward(const RecurrentShape& shape, RnnActivation activation, const float* x,
                         const float* kernel, const float* recurrent_kernel,
                         const std::uint8_t* mask, const float* recurrent_mask,
                         const float* gates, const float* h_in, const float* dy,
                         const float* dh_T, float* dx, float* dh0, float* dkernel,
                         float* drecurrent_kernel, float* dbias, float* dgates, float* workspace,
                         std::uintptr_t stream);

}  // namespace fusednn::cuda
