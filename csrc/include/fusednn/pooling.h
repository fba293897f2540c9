// Max and average pooling and nearest-neighbour upsampling on NHWC images,
// forward and backward (1-D pooling and global pooling are these with H = 1
// or with one window covering the whole image).
//
// Shapes: x (N, H, W, C) input, y (N, OH, OW, C) output, windows KH x KW
// moved by strides SH, SW. Window (oh, ow) covers input rows
// [oh * SH - pad_top, oh * SH - pad_top + KH) and the matching columns; the
// parts outside the input are padding, which is never read: max pooling
// ignores it, average pooling divides by the number of input elements inside
// the window (Keras / TensorFlow "same"). Padding below and to the right is
// whatever the last window overhangs, so Keras's asymmetric "same" padding
// (extra row/column at the bottom/right) needs only pad_top and pad_left.
// Every window must hold at least one input element (the bindings check).
//
// Max pooling keeps, per output element, the spatial index h * W + w of the
// maximum inside its sample (argmax, int32 or int64 as Index); ties go to the
// first maximum in row-major window order, a NaN in the window wins (and the
// first NaN is kept), as in PyTorch. Backward routes each output gradient to
// that position and adds where windows overlap.
//
// Backward passes gather: each dx element sums the gradients of the windows
// that cover it (no atomics on the GPU, no zero fill). On the CPU, max pooling
// with overlapping windows (stride < window) scatters from each output instead,
// which reads each argmax once rather than once per covered input.
//
// Outputs are allocated by the caller. The CUDA launchers take the stream as
// an integer handle (cudaStream_t) and throw fusednn::CudaError.
#pragma once

#include <cstdint>

#include "fusednn/cpu_isa.h"

namespace fusednn {

struct Pool2dGeometry {
  std::int64_t N, H, W, C;         // input (N, H, W, C)
  std::int64_t OH, OW;             // output (N, OH, OW, C)
  std::int64_t KH, KW;             // window size
  std::int64_t SH, SW;             // strides
  std::int64_t pad_top, pad_left;  // padding before the first row / column (< KH / < KW)
};

namespace cpu {

FUSEDNN_CPU_KERNELS(

// x       (N, H, W, C)
// y       (N, OH, OW, C)  out: maximum of each window
// argmax  (N, OH, OW, C)  out: h * W + w of that maximum
template <typename T, typename Index>
void max_pool2d_forward(const T* x, T* y, Index* argmax, const Pool2dGeometry& g);

// dy      (N, OH, OW, C)
// argmax  (N, OH, OW, C)  from max_pool2d_forward
// dx      (N, H, W, C)    out: sum of dy over the windows whose argmax is this element
template <typename T, typename Index>
void max_pool2d_backward(const T* dy, const Index* argmax, T* dx, const Pool2dGeometry& g);

// x  (N, H, W, C)
// y  (N, OH, OW, C)  out: mean of the input elements inside each window
template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g);

// dy  (N, OH, OW, C)
// dx  (N, H, W, C)   out: sum over covering windows of dy / (elements in that window)
template <typename T>
void avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g);

// x  (N, H, W, C)
// y  (N, H * SH, W * SW, C)  out: y[n, h, w] = x[n, h / SH, w / SW]
template <typename T>
void upsample_nearest2d_forward(const T* x, T* y, std::int64_t N, std::int64_t H,
                                std::int64_t W, std::int64_t C, std::int64_t SH,
                                std::int64_t SW);

// dy  (N, H * SH, W * SW, C)
// dx  (N, H, W, C)            out: sum of dy over each SH x SW block
template <typename T>
void upsample_nearest2d_backward(const T* dy, T* dx, std::int64_t N, std::int64_t H,
                                 std::int64_t W, std::int64_t C, std::int64_t SH,
                                 std::int64_t SW);
)  // FUSEDNN_CPU_KERNELS

}  // namespace cpu

namespace cuda {

// Same contracts as fusednn::cpu (float and double, int32 and int64 argmax),
// device arrays, queued on `stream`.
template <typename T, typename Index>
void max_pool2d_forward(const T* x, T* y, Index* argmax, const Pool2dGeometry& g,
                        std::uintptr_t stream);

template <typename T, typename Index>
void max_pool2d_backward(const T* dy, const Index* argmax, T* dx, const Pool2dGeometry& g,
                         std::uintptr_t stream);

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, std::uintptr_t stream);

template <typename T>
void avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g, std::uintptr_t stream);

template <typename T>
void upsample_nearest2d_forward(const T* x, T* y, std::int64_t N, std::int64_t H,
                                std::int64_t W, std::int64_t C, std::int64_t SH,
                                std::int64_t SW, std::uintptr_t stream);

template <typename T>
void upsample_nearest2d_backward(const T* dy, T* dx, std::int64_t N, std::int64_t H,
                                 std::int64_t W, std::int64_t C, std::int64_t SH,
                                 std::int64_t SW, std::uintptr_t stream);

}  // namespace cuda

}  // namespace fusednn
