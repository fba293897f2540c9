// Pooling and nearest-neighbour upsampling on the GPU (NHWC).
//
// One thread per output element in the forward passes and per input element
// in the (gathering) backward passes, with the channel index fastest, so
// consecutive threads of a warp touch consecutive addresses: every load and
// store of x, y, dy, dx and argmax is coalesced. Flat indices are 64-bit and
// grid-stride loops cover any size with a bounded grid.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fusednn/cuda_check.h"
#include "fusednn/pooling.h"
#include "launch.cuh"

namespace fusednn::cuda {

namespace {

constexpr int kThreadsPerBlock = 256;
constexpr std::int64_t kMaxBlocks = 1 << 20;

struct Span {
  std::int64_t begin, end;
};

// Input positions [begin, end) of window `o` along one axis, clipped to the input.
__device__ __forceinline__ Span window_inputs(std::int64_t o, std::int64_t pad, std::int64_t K,
                                              std::int64_t S, std::int64_t I) {
  const std::int64_t start = o * S - pad;
  return {start > 0 ? start : 0, start + K < I ? start + K : I};
}

// Windows [begin, end) along one axis that cover input position `i`.
__device__ __forceinline__ Span covering_windows(std::int64_t i, std::int64_t pad,
                                                 std::int64_t K, std::int64_t S,
                                                 std::int64_t O) {
  const std::int64_t padded = i + pad;
  const std::int64_t lowest_start = padded - K + 1;
  const std::int64_t begin = lowest_start <= 0 ? 0 : (lowest_start + S - 1) / S;
  const std::int64_t end = padded / S + 1;
  return {begin, end < O ? end : O};
}

__device__ __forceinline__ std::int64_t first_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ std::int64_t grid_stride() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

template <typename T, typename Index>
__global__ void __launch_bounds__(kThreadsPerBlock)
    max_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                              Index* __restrict__ argmax, Pool2dGeometry g) {
  const std::int64_t total = g.N * g.OH * g.OW * g.C;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t c = i % g.C;
    const std::int64_t pixel = i / g.C;
    const std::int64_t ow = pixel % g.OW;
    const std::int64_t oh = (pixel / g.OW) % g.OH;
    const std::int64_t n = pixel / (g.OW * g.OH);
    const Span rows = window_inputs(oh, g.pad_top, g.KH, g.SH, g.H);
    const Span cols = window_inputs(ow, g.pad_left, g.KW, g.SW, g.W);
    const T* x_nc = x + n * g.H * g.W * g.C + c;
    std::int64_t best_at = rows.begin * g.W + cols.begin;
    T best = x_nc[best_at * g.C];
    for (std::int64_t h = rows.begin; h < rows.end; ++h) {
      for (std::int64_t w = cols.begin; w < cols.end; ++w) {
        const std::int64_t pos = h * g.W + w;
        const T v = x_nc[pos * g.C];
        // Strictly greater keeps the first of equal maxima; a NaN replaces a number.
        if (v > best || (v != v && best == best)) {
          best = v;
          best_at = pos;
        }
      }
    }
    y[i] = best;
    argmax[i] = static_cast<Index>(best_at);
  }
}

template <typename T, typename Index>
__global__ void __launch_bounds__(kThreadsPerBlock)
    max_pool2d_backward_kernel(const T* __restrict__ dy, const Index* __restrict__ argmax,
                               T* __restrict__ dx, Pool2dGeometry g) {
  const std::int64_t total = g.N * g.H * g.W * g.C;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t c = i % g.C;
    const std::int64_t pixel = i / g.C;
    const std::int64_t w = pixel % g.W;
    const std::int64_t h = (pixel / g.W) % g.H;
    const std::int64_t n = pixel / (g.W * g.H);
    const Span out_rows = covering_windows(h, g.pad_top, g.KH, g.SH, g.OH);
    const Span out_cols = covering_windows(w, g.pad_left, g.KW, g.SW, g.OW);
    const Index pos = static_cast<Index>(h * g.W + w);
    T sum = T(0);
    for (std::int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
      for (std::int64_t ow = out_cols.begin; ow < out_cols.end; ++ow) {
        const std::int64_t o = ((n * g.OH + oh) * g.OW + ow) * g.C + c;
        if (argmax[o] == pos) sum += dy[o];
      }
    }
    dx[i] = sum;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    avg_pool2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y, Pool2dGeometry g) {
  const std::int64_t total = g.N * g.OH * g.OW * g.C;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t c = i % g.C;
    const std::int64_t pixel = i / g.C;
    const std::int64_t ow = pixel % g.OW;
    const std::int64_t oh = (pixel / g.OW) % g.OH;
    const std::int64_t n = pixel / (g.OW * g.OH);
    const Span rows = window_inputs(oh, g.pad_top, g.KH, g.SH, g.H);
    const Span cols = window_inputs(ow, g.pad_left, g.KW, g.SW, g.W);
    const T* x_nc = x + n * g.H * g.W * g.C + c;
    T sum = T(0);
    for (std::int64_t h = rows.begin; h < rows.end; ++h) {
      for (std::int64_t w = cols.begin; w < cols.end; ++w) sum += x_nc[(h * g.W + w) * g.C];
    }
    y[i] = sum / static_cast<T>((rows.end - rows.begin) * (cols.end - cols.begin));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    avg_pool2d_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, Pool2dGeometry g) {
  const std::int64_t total = g.N * g.H * g.W * g.C;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t c = i % g.C;
    const std::int64_t pixel = i / g.C;
    const std::int64_t w = pixel % g.W;
    const std::int64_t h = (pixel / g.W) % g.H;
    const std::int64_t n = pixel / (g.W * g.H);
    const Span out_rows = covering_windows(h, g.pad_top, g.KH, g.SH, g.OH);
    const Span out_cols = covering_windows(w, g.pad_left, g.KW, g.SW, g.OW);
    T sum = T(0);
    for (std::int64_t oh = out_rows.begin; oh < out_rows.end; ++oh) {
      const Span rows = window_inputs(oh, g.pad_top, g.KH, g.SH, g.H);
      for (std::int64_t ow = out_cols.begin; ow < out_cols.end; ++ow) {
        const Span cols = window_inputs(ow, g.pad_left, g.KW, g.SW, g.W);
        const T count = static_cast<T>((rows.end - rows.begin) * (cols.end - cols.begin));
        sum += dy[((n * g.OH + oh) * g.OW + ow) * g.C + c] / count;
      }
    }
    dx[i] = sum;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    upsample_nearest2d_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                                      std::int64_t N, std::int64_t H, std::int64_t W,
                                      std::int64_t C, std::int64_t SH, std::int64_t SW) {
  const std::int64_t OH = H * SH, OW = W * SW;
  const std::int64_t total = N * OH * OW * C;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t c = i % C;
    const std::int64_t pixel = i / C;
    const std::int64_t w = (pixel % OW) / SW;
    const std::int64_t h = ((pixel / OW) % OH) / SH;
    const std::int64_t n = pixel / (OW * OH);
    y[i] = x[((n * H + h) * W + w) * C + c];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    upsample_nearest2d_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx,
                                       std::int64_t N, std::int64_t H, std::int64_t W,
                                       std::int64_t C, std::int64_t SH, std::int64_t SW) {
  const std::int64_t OH = H * SH, OW = W * SW;
  const std::int64_t total = N * H * W * C;
  for (std::int64_t i = first_index(); i < total; i += grid_stride()) {
    const std::int64_t c = i % C;
    const std::int64_t pixel = i / C;
    const std::int64_t w = pixel % W;
    const std::int64_t h = (pixel / W) % H;
    const std::int64_t n = pixel / (W * H);
    T sum = T(0);
    for (std::int64_t a = 0; a < SH; ++a) {
      const T* dy_row = dy + ((n * OH + h * SH + a) * OW + w * SW) * C + c;
      for (std::int64_t b = 0; b < SW; ++b) sum += dy_row[b * C];
    }
    dx[i] = sum;
  }
}

// Blocks for `total` threads' worth of elements, at least one (callers skip
// empty launches), at most kMaxBlocks (the grid-stride loops do the rest).
unsigned blocks_for(std::int64_t total) {
  return static_cast<unsigned>(
      std::min((total + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks));
}

cudaStream_t as_stream(std::uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// Every window must hold an input element: an empty one would make max pooling
// read outside x and average pooling divide by zero. The Python layer checks
// this too; the launchers must not rely on it.
void check_windows(const Pool2dGeometry& g, const char* op) {
  const auto axis_ok = [](std::int64_t I, std::int64_t O, std::int64_t K, std::int64_t S,
                          std::int64_t pad) {
    return K >= 1 && S >= 1 && pad >= 0 && pad < K && O >= 0 && (O == 0 || (O - 1) * S - pad < I);
  };
  if (!axis_ok(g.H, g.OH, g.KH, g.SH, g.pad_top) || !axis_ok(g.W, g.OW, g.KW, g.SW, g.pad_left)) {
    throw std::invalid_argument(
        std::string(op) + " (CUDA): every pooling window must overlap the input; got input " +
        std::to_string(g.H) + "x" + std::to_string(g.W) + ", output " + std::to_string(g.OH) +
        "x" + std::to_string(g.OW) + ", window " + std::to_string(g.KH) + "x" +
        std::to_string(g.KW) + ", strides " + std::to_string(g.SH) + "x" + std::to_string(g.SW) +
        ", padding " + std::to_string(g.pad_top) + "," + std::to_string(g.pad_left));
  }
}

}  // namespace

template <typename T, typename Index>
void max_pool2d_forward(const T* x, T* y, Index* argmax, const Pool2dGeometry& g,
                        std::uintptr_t stream) {
  const std::int64_t total = g.N * g.OH * g.OW * g.C;
  check_windows(g, "max_pool2d_forward");
  if (total == 0) return;
  launch_kernel(max_pool2d_forward_kernel<T, Index>, blocks_for(total), kThreadsPerBlock, 0,
                as_stream(stream), x, y, argmax, g);
}

template <typename T, typename Index>
void max_pool2d_backward(const T* dy, const Index* argmax, T* dx, const Pool2dGeometry& g,
                         std::uintptr_t stream) {
  const std::int64_t total = g.N * g.H * g.W * g.C;
  check_windows(g, "max_pool2d_backward");
  if (total == 0) return;
  launch_kernel(max_pool2d_backward_kernel<T, Index>, blocks_for(total), kThreadsPerBlock, 0,
                as_stream(stream), dy, argmax, dx, g);
}

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, std::uintptr_t stream) {
  const std::int64_t total = g.N * g.OH * g.OW * g.C;
  check_windows(g, "avg_pool2d_forward");
  if (total == 0) return;
  launch_kernel(avg_pool2d_forward_kernel<T>, blocks_for(total), kThreadsPerBlock, 0,
                as_stream(stream), x, y, g);
}

template <typename T>
void avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g, std::uintptr_t stream) {
  const std::int64_t total = g.N * g.H * g.W * g.C;
  check_windows(g, "avg_pool2d_backward");
  if (total == 0) return;
  launch_kernel(avg_pool2d_backward_kernel<T>, blocks_for(total), kThreadsPerBlock, 0,
                as_stream(stream), dy, dx, g);
}

template <typename T>
void upsample_nearest2d_forward(const T* x, T* y, std::int64_t N, std::int64_t H,
                                std::int64_t W, std::int64_t C, std::int64_t SH,
                                std::int64_t SW, std::uintptr_t stream) {
  const std::int64_t total = N * H * SH * W * SW * C;
  if (total == 0) return;
  launch_kernel(upsample_nearest2d_forward_kernel<T>, blocks_for(total), kThreadsPerBlock, 0,
                as_stream(stream), x, y, N, H, W, C, SH, SW);
}

template <typename T>
void upsample_nearest2d_backward(const T* dy, T* dx, std::int64_t N, std::int64_t H,
                                 std::int64_t W, std::int64_t C, std::int64_t SH,
                                 std::int64_t SW, std::uintptr_t stream) {
  const std::int64_t total = N * H * W * C;
  if (total == 0) return;
  launch_kernel(upsample_nearest2d_backward_kernel<T>, blocks_for(total), kThreadsPerBlock, 0,
                as_stream(stream), dy, dx, N, H, W, C, SH, SW);
}

#define FUSEDNN_INSTANTIATE_MAX_POOL(T, Index)                                            \
  template void max_pool2d_forward<T, Index>(const T*, T*, Index*, const Pool2dGeometry&, \
                                             std::uintptr_t);                             \
  template void max_pool2d_backward<T, Index>(const T*, const Index*, T*,                 \
                                              const Pool2dGeometry&, std::uintptr_t);
FUSEDNN_INSTANTIATE_MAX_POOL(float, std::int32_t)
FUSEDNN_INSTANTIATE_MAX_POOL(float, std::int64_t)
FUSEDNN_INSTANTIATE_MAX_POOL(double, std::int32_t)
FUSEDNN_INSTANTIATE_MAX_POOL(double, std::int64_t)
#undef FUSEDNN_INSTANTIATE_MAX_POOL

#define FUSEDNN_INSTANTIATE(T)                                                                \
  template void avg_pool2d_forward<T>(const T*, T*, const Pool2dGeometry&, std::uintptr_t);   \
  template void avg_pool2d_backward<T>(const T*, T*, const Pool2dGeometry&, std::uintptr_t);  \
  template void upsample_nearest2d_forward<T>(const T*, T*, std::int64_t, std::int64_t,       \
                                              std::int64_t, std::int64_t, std::int64_t,       \
                                              std::int64_t, std::uintptr_t);                  \
  template void upsample_nearest2d_backward<T>(const T*, T*, std::int64_t, std::int64_t,      \
                                               std::int64_t, std::int64_t, std::int64_t,      \
                                               std::int64_t, std::uintptr_t);
FUSEDNN_INSTANTIATE(float)
FUSEDNN_INSTANTIATE(double)
#undef FUSEDNN_INSTANTIATE

}  // namespace fusednn::cuda
