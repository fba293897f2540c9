// 2-D convolution (cross-correlation, as in Keras) on NHWC images, forward and
// backward; conv1d is the H = 1 case and Conv2DTranspose is the adjoint of
// conv2d, so every convolution layer runs on these entry points.
//
// Shapes (letters of common.h):
//   x    (N, H, W, C)       input images
//   w    (KH, KW, C, F)     kernel, Keras layout: F output channels (filters)
//   bias (F,)
//   y    (N, OH, OW, F)     output
// Output pixel (oh, ow) reads input pixel (ih, iw) = (oh * stride_h - pad_top +
// kh * dilation_h, ow * stride_w - pad_left + kw * dilation_w); reads outside
// the image are zeros. Only the top/left padding is needed: the bottom/right
// padding is whatever the output size implies (Keras's 'same' puts the odd
// extra row there). The caller chooses OH and OW (from 'valid' / 'same' /
// 'causal' or the transpose's output size); the kernels bounds-check every
// input access, so any sizes are memory-safe.
//
// As a matrix product: y (N*OH*OW, F) = im2col(x) (N*OH*OW, KH*KW*C) @
// w (KH*KW*C, F), im2col row order (kh, kw, c) — the kernel's own layout.
//
// Conv2DTranspose (Keras kernel (KH, KW, Cout, Cin)) is the adjoint of the
// conv2d whose input is the transpose's output: with that conv2d's geometry,
//   transpose forward      = conv2d_backward_data (plus bias and activation)
//   transpose data grad    = conv2d_forward
//   transpose kernel grad  = conv2d's kernel gradient with x and dy swapped.
//
// Epilogue: the activation fused into the kernel. Forward: y = act(conv + bias).
// Backward: dy is first gated by the activation's derivative, read from the
// forward output y (relu: dy where y > 0, else 0).
//
// Outputs are allocated by the caller (on the GPU from CuPy's pool); nothing is
// read from them first. The CUDA launchers take the stream as an integer handle
// (cudaStream_t) so this header needs no CUDA include; they throw
// fusednn::CudaError.
#pragma once

#include <cstdint>

#include "fusednn/cpu_isa.h"

namespace fusednn {

enum class Epilogue { kLinear, kRelu };

// Geometry of one conv2d; sizes and strides are 64-bit.
struct Conv2dShape {
  std::int64_t N, H, W, C;        // input
  std::int64_t OH, OW, F;         // output
  std::int64_t KH, KW;            // kernel extent (undilated)
  std::int64_t stride_h, stride_w;
  std::int64_t dilation_h, dilation_w;
  std::int64_t pad_top, pad_left; // >= 0
};

namespace cpu {

FUSEDNN_CPU_KERNELS(

// Tiles of the output rows are im2col'ed into a bounded per-thread workspace
// and multiplied on fusednn::cpu::gemm; 1x1 stride-1 unpadded convolutions
// multiply x directly; the forward, where a pixel's im2col row is a few runs
// of 3+ values contiguous in x, runs the GEMM micro-kernel on x in place (an
// implicit GEMM). T = float or double.

// y = act(conv(x, w) + bias)
//   x (N, H, W, C), w (KH, KW, C, F), bias (F,) or nullptr, y (N, OH, OW, F) out
template <typename T, Epilogue E>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);

// Gradients of y = act(conv(x, w) + bias), given dL/dy; any output may be
// nullptr (not computed). dz = dy gated by act'(y).
//   x  (N, H, W, C)      needed for dw, else may be nullptr
//   y  (N, OH, OW, F)    the forward output; needed when E != kLinear
//   dy (N, OH, OW, F)
//   w  (KH, KW, C, F)    needed for dx
//   dx (N, H, W, C)      out: conv's data gradient of dz (col2im of dz @ w^T)
//   dw (KH, KW, C, F)    out: im2col(x)^T @ dz
//   db (F,)              out: sum of dz over N, OH, OW
template <typename T, Epilogue E>
void conv2d_backward(const Conv2dShape& s, const T* x, const T* y, const T* dy, const T* w, T* dx,
                     T* dw, T* db);

// out = act(conv2d's data gradient of g + bias): the Conv2DTranspose forward.
//   g    (N, OH, OW, F)   the transpose's input
//   w    (KH, KW, C, F)
//   bias (C,) or nullptr
//   out  (N, H, W, C)     out: the transpose's output
template <typename T, Epilogue E>
void conv2d_backward_data(const Conv2dShape& s, const T* g, const T* w, const T* bias, T* out);
)  // FUSEDNN_CPU_KERNELS

}  // namespace cpu

namespace cuda {

// Same contracts as fusednn::cpu, float32 device arrays, queued on `stream`.
// Implicit GEMM: tiles of the virtual im2col matrix are gathered straight into
// shared memory, never stored in global memory. kTF32: multiply on the tensor
// cores in TF32 (10-bit mantissa inputs, float32 accumulation) instead of
// exact float32 FMAs.
template <Epilogue E, bool kTF32>
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    float* y, std::uintptr_t stream);

template <Epilogue E, bool kTF32>
void conv2d_backward(const Conv2dShape& s, const float* x, const float* y, const float* dy,
                     const float* w, float* dx, float* dw, float* db, std::uintptr_t stream);

template <Epilogue E, bool kTF32>
void conv2d_backward_data(const Conv2dShape& s, const float* g, const float* w,
                          const float* bias, float* out, std::uintptr_t stream);

}  // namespace cuda

}  // namespace fusednn
