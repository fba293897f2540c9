// Conv2D (+ bias, + relu or linear) directly followed by max pooling whose
// strides equal its window and whose padding is 'valid' (Keras MaxPooling2D's
// defaults), as one CUDA kernel: the un-pooled convolution output never
// reaches global memory. Other poolings run unfused (python/fusednn/ops/conv_pool.py).
//
// Shapes (conv.h's letters; the pooling window is PH x PW, POH = OH / PH and
// POW = OW / PW, rounded down):
//   x      (N, H, W, C)           input images
//   w      (KH, KW, C, F)         kernel
//   bias   (F,) or nullptr
//   y      (N, POH, POW, F)       out: max over each window of act(conv + bias)
//   argmax (N, POH, POW, F)       out, or nullptr when not training: oh * OW + ow
//                                 of that maximum in the (N, OH, OW, F) conv
//                                 output, as max_pool2d_forward (pooling.h) keeps it
// Conv output rows and columns past the last whole window are not computed.
// Ties go to the first maximum in row-major window order and a NaN wins (the
// first NaN is kept): pooling.h's rule, so the result is that of conv2d_forward
// then max_pool2d_forward.
//
// The backward needs no kernel of its own: dy gated by y > 0 (relu), routed
// through argmax by max_pool2d_backward, then conv2d_backward with a linear
// epilogue.
#pragma once

#include <cstdint>

#include "fusednn/conv.h"

namespace fusednn {

// The largest window (PH * PW) the fused kernel takes: a window's conv rows
// must fit in one block tile of the implicit GEMM.
constexpr std::int64_t kMaxFusedPoolWindow = 128;

namespace cuda {

// float32 device arrays, queued on `stream` (cudaStream_t as an integer);
// throws std::invalid_argument for a window over kMaxFusedPoolWindow or
// OH * OW past int32 (argmax), fusednn::CudaError for CUDA failures.
template <Epilogue E, bool kTF32>
void conv2d_max_pool2d_forward(const Conv2dShape& s, std::int64_t PH, std::int64_t PW,
                               const float* x, const float* w, const float* bias, float* y,
                               std::int32_t* argmax, std::uintptr_t stream);

}  // namespace cuda

}  // namespace fusednn
