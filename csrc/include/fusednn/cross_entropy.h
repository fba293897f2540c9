// Fused softmax cross-entropy: the loss and its gradient for each row in one
// pass over the row, max-subtracted, with the softmax itself never written.
//
// Shapes: N rows (the batch), C classes. grad_scale multiplies the gradient
// (1/N for the gradient of the batch mean). Logits of -inf are allowed (masked
// classes); a logit of +inf or NaN makes its row NaN, as in PyTorch.
//
// Outputs are allocated by the caller (on the GPU they come from CuPy's pool).
// The CUDA launchers take the stream as an integer handle (cudaStream_t) so
// that this header needs no CUDA include; they throw fusednn::CudaError.
#pragma once

#include <cstdint>

#include "fusednn/cpu_isa.h"

namespace fusednn {

namespace cpu {

FUSEDNN_CPU_KERNELS(

// logits   (N, C) scores
// labels   (N,)   class of each row; a label outside [0, C) makes its row NaN
//                 (the bindings reject such labels before calling)
// losses   (N,)   out: -log softmax(logits)[label]
// dlogits  (N, C) out: (softmax(logits) - onehot(label)) * grad_scale
template <typename T>
void sparse_softmax_cross_entropy(const T* logits, const std::int64_t* labels, T* losses,
                                  T* dlogits, std::int64_t N, std::int64_t C, T grad_scale);

// logits   (N, C) scores
// targets  (N, C) target weights per class (probabilities; rows need not sum to 1)
// losses   (N,)   out: -sum_c targets[c] * log softmax(logits)[c]
// dlogits  (N, C) out: (softmax(logits) * sum_c targets[c] - targets) * grad_scale
template <typename T>
void softmax_cross_entropy(const T* logits, const T* targets, T* losses, T* dlogits,
                           std::int64_t N, std::int64_t C, T grad_scale);
)  // FUSEDNN_CPU_KERNELS

}  // namespace cpu

namespace cuda {

// Same contracts as fusednn::cpu, float32 device arrays, queued on `stream`.
void sparse_softmax_cross_entropy(const float* logits, const std::int64_t* labels, float* losses,
                                  float* dlogits, std::int64_t N, std::int64_t C,
                                  float grad_scale, std::uintptr_t stream);

void softmax_cross_entropy(const float* logits, const float* targets, float* losses,
                           float* dlogits, std::int64_t N, std::int64_t C, float grad_scale,
                           std::uintptr_t stream);

}  // namespace cuda

}  // namespace fusednn
