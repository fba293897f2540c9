// conv2d + bias + activation + max pooling (window = strides, 'valid') as one
// implicit GEMM (conv_implicit_gemm.cuh). The GEMM rows are the conv output
// pixels ordered window by window: a block's kBM rows hold kBM / (PH * PW)
// whole windows (the rows after the last whole one are padding rows that
// read zeros and are never written), so the block reduces its windows from
// the staged C tile in the epilogue and writes only the pooled output, with
// consecutive threads on consecutive filters (coalesced over F). Conv output
// pixels outside every window (the floor of OH / PH) are not rows at all.
#include "conv_implicit_gemm.cuh"

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "fusednn/conv_pool.h"
#include "fusednn/cuda_check.h"

namespace fusednn::cuda {

namespace conv_detail {

// Far enough before the image that every tap of a padding row reads a zero.
constexpr int kOutsideImage = -(std::numeric_limits<int>::max() / 2);

// Which pooled pixel q and which element j of its window (row-major) GEMM row m is.
struct WindowElement {
  Index q;
  int j;
};

// y = max over each window of act(im2col(x) @ w + bias), and where that max is.
template <Epilogue E>
struct PooledForwardProblem {
  using Row = PixelOrigin;
  using Col = TapChannel;
  static constexpr bool kAKFast = true;   // consecutive k: consecutive channels of x
  static constexpr bool kBKFast = false;  // consecutive n: consecutive filters of w
  static constexpr bool kStagedEpilogue = true;
  Geometry g;
  Index M, N, K;          // M = blocks * kBM (padding rows included), N = F
  int PH, PW, POH, POW;   // window and pooled output size
  int windows_per_block;  // kBM / (PH * PW)
  Index pooled;           // N * POH * POW
  const float* x;
  const float* w;
  const float* bias;      // may be null
  float* y;               // (N, POH, POW, F)
  std::int32_t* argmax;   // (N, POH, POW, F), may be null

  // q = pooled for the padding rows after a block's last whole window.
  __host__ __device__ WindowElement window_element(Index m) const {
    const Index block = m / kBM;
    const int r = int(m - block * kBM);
    const int window = r / (PH * PW);
    if (window >= windows_per_block) return {pooled, 0};
    return {block * windows_per_block + window, r - window * PH * PW};
  }

  // (oh, ow) of element j of pooled pixel q's window, as oh * OW + ow, and its image n.
  __host__ __device__ Index conv_pixel(Index q, int j, Index* n) const {
    const Index per_image = Index(POH) * POW;
    *n = q / per_image;
    const Index rest = q - *n * per_image;
    const int ph = int(rest / POW);
    const int pw = int(rest - Index(ph) * POW);
    return Index(ph * PH + j / PW) * g.OW + (pw * PW + j % PW);
  }

  __host__ __device__ Row row(Index m) const {
    const WindowElement e = window_element(m);
    if (e.q >= pooled) return {0, kOutsideImage, kOutsideImage};
    Index n = 0;
    const Index pixel = conv_pixel(e.q, e.j, &n);
    return pixel_origin(g, n * g.OH * g.OW + pixel);
  }
  __host__ __device__ Col col(Index k) const { return tap_channel(g, k); }
  __host__ __device__ float a(const Row& r, const Col& c) const {
    return im2col_value(g, x, r, c);
  }
  __host__ __device__ float b(const Col&, Index k, Index n) const { return w[k * N + n]; }

  // The block's windows from the staged C tile: element e is filter
  // n0 + e % columns of window e / columns (columns = the tile's filters, so no
  // thread idles on F < kBN).
  __host__ __device__ void store_tile(const float* stage, int tid, Index m0, Index n0) const {
    const Index first = (m0 / kBM) * windows_per_block;
    const int size = PH * PW;
    const int columns = N - n0 < kBN ? int(N - n0) : kBN;
    for (int e = tid; e < windows_per_block * columns; e += kThreads) {
      const int window = e / columns;
      const int col = e - window * columns;
      const Index q = first + window;
      const Index f = n0 + col;
      if (q >= pooled) break;  // e only grows, and so does q
      const float* sums = stage + window * size * kLdC + col;
      float best = 0.f;
      int best_j = 0;
      for (int j = 0; j < size; ++j) {
        const float v = activate<E>(bias != nullptr ? sums[j * kLdC] + bias[f] : sums[j * kLdC]);
        // Strictly greater keeps the first of equal maxima; a NaN replaces a number.
        if (j == 0 || v > best || (v != v && best == best)) {
          best = v;
          best_j = j;
        }
      }
      y[q * N + f] = best;
      if (argmax != nullptr) {
        Index n = 0;
        argmax[q * N + f] = static_cast<std::int32_t>(conv_pixel(q, best_j, &n));
      }
    }
  }
};

template <Epilogue E>
PooledForwardProblem<E> pooled_forward_problem(const Conv2dShape& s, std::int64_t PH,
                                               std::int64_t PW, const float* x, const float* w,
                                               const float* bias, float* y,
                                               std::int32_t* argmax) {
  if (PH < 1 || PW < 1 || PH > kMaxFusedPoolWindow || PW > kMaxFusedPoolWindow ||
      PH * PW > kMaxFusedPoolWindow) {
    throw std::invalid_argument(
        "conv2d_max_pool2d (CUDA): the pooling window must hold 1 to " +
        std::to_string(kMaxFusedPoolWindow) + " elements, got " + std::to_string(PH) + " x " +
        std::to_string(PW));
  }
  if (s.OH * s.OW > std::numeric_limits<std::int32_t>::max()) {
    throw std::invalid_argument("conv2d_max_pool2d (CUDA): the conv output has " +
                                std::to_string(s.OH * s.OW) +
                                " pixels per image, past the int32 argmax");
  }
  const Geometry g = geometry_of(s);
  const int windows_per_block = int(kBM / (PH * PW));
  const Index POH = s.OH / PH;
  const Index POW = s.OW / PW;
  const Index pooled = s.N * POH * POW;
  const Index M = ceil_div(pooled, windows_per_block) * kBM;
  return {g,        M,         s.F,       s.KH * s.KW * s.C,  int(PH), int(PW), int(POH),
          int(POW), windows_per_block, pooled, x, w, bias, y, argmax};
}

}  // namespace conv_detail

using namespace conv_detail;

template <Epilogue E, bool kTF32>
void conv2d_max_pool2d_forward(const Conv2dShape& s, std::int64_t PH, std::int64_t PW,
                               const float* x, const float* w, const float* bias, float* y,
                               std::int32_t* argmax, std::uintptr_t stream) {
  const PooledForwardProblem<E> p = pooled_forward_problem<E>(s, PH, PW, x, w, bias, y, argmax);
  launch_gemm<kTF32>(p, p.K, reinterpret_cast<cudaStream_t>(stream));
}

#define FUSEDNN_INSTANTIATE_CONV_POOL(E, TF32)                                                \
  template void conv2d_max_pool2d_forward<E, TF32>(const Conv2dShape&, std::int64_t,          \
                                                   std::int64_t, const float*, const float*,  \
                                                   const float*, float*, std::int32_t*,       \
                                                   std::uintptr_t);

FUSEDNN_INSTANTIATE_CONV_POOL(Epilogue::kLinear, false)
FUSEDNN_INSTANTIATE_CONV_POOL(Epilogue::kLinear, true)
FUSEDNN_INSTANTIATE_CONV_POOL(Epilogue::kRelu, false)
FUSEDNN_INSTANTIATE_CONV_POOL(Epilogue::kRelu, true)
#undef FUSEDNN_INSTANTIATE_CONV_POOL
#undef FUSEDNN_CONV_UNROLL

}  // namespace fusednn::cuda
