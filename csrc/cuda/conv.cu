// conv2d's three products (forward, data gradient, kernel gradient) as
// problems for implicit_gemm_kernel (conv_implicit_gemm.cuh, whose header
// comment describes them and the kernel), the bias gradient, and the launchers.
#include "conv_implicit_gemm.cuh"

#include <algorithm>
#include <cstdint>

#include "fusednn/conv.h"
#include "fusednn/cuda_check.h"
#include "fusednn/determinism.h"
#include "split_sums.cuh"
#include "stream_buffer.cuh"

namespace fusednn::cuda {

namespace conv_detail {

// ----- the three problems -----------------------------------------------------

// y = act(im2col(x) @ w + bias)
template <Epilogue E>
struct ForwardProblem {
  using Row = PixelOrigin;
  using Col = TapChannel;
  static constexpr bool kAKFast = true;   // consecutive k: consecutive channels of x
  static constexpr bool kBKFast = false;  // consecutive n: consecutive filters of w
  static constexpr bool kStagedEpilogue = false;
  Geometry g;
  Index M, N, K;
  const float* x;
  const float* w;
  const float* bias;  // may be null
  float* y;

  __host__ __device__ Row row(Index m) const { return pixel_origin(g, m); }
  __host__ __device__ Col col(Index k) const { return tap_channel(g, k); }
  __host__ __device__ float a(const Row& r, const Col& c) const {
    return im2col_value(g, x, r, c);
  }
  __host__ __device__ float b(const Col&, Index k, Index n) const { return w[k * N + n]; }
  __host__ __device__ void store(Index m, Index n, float v) const {
    y[m * N + n] = activate<E>(bias != nullptr ? v + bias[n] : v);
  }
};

// out = act(data gradient of dz + bias); rows are input pixels, k = (tap, f).
template <bool kGate, Epilogue E>
struct DataGradProblem {
  struct Row {
    Index base;  // offset of image n in an (N, OH, OW, F) array
    int th, tw;  // the input pixel's position in the padded input
  };
  struct Col {
    int dh_off, dw_off;
    int tap, f;
  };
  static constexpr bool kAKFast = true;  // consecutive k: consecutive channels f of dz
  static constexpr bool kBKFast = true;  // consecutive k: consecutive f of w[tap, c, :]
  static constexpr bool kStagedEpilogue = false;
  Geometry g;
  Index M, N, K;
  const float* dy;
  const float* y;     // the forward output when kGate
  const float* w;
  const float* bias;  // (C,), may be null
  float* out;

  __host__ __device__ Row row(Index m) const {
    const Index per_image = Index(g.H) * g.W;
    const Index n = m / per_image;
    const Index rest = m - n * per_image;
    const int ih = int(rest / g.W);
    const int iw = int(rest - Index(ih) * g.W);
    return {n * g.OH * g.OW * g.F, ih + g.pt, iw + g.pl};
  }
  __host__ __device__ Col col(Index k) const {
    const int f = int(k % g.F);
    const int tap = int(k / g.F);
    return {(tap / g.KW) * g.dh, (tap % g.KW) * g.dw, tap, f};
  }
  // The output pixel whose tap (kh, kw) reads this input pixel, if any.
  __host__ __device__ float a(const Row& r, const Col& c) const {
    const int th = r.th - c.dh_off;
    const int tw = r.tw - c.dw_off;
    if (th < 0 || tw < 0 || th % g.sh != 0 || tw % g.sw != 0) return 0.f;
    const int oh = th / g.sh;
    const int ow = tw / g.sw;
    if (oh >= g.OH || ow >= g.OW) return 0.f;
    return gated<kGate>(dy, y, r.base + (Index(oh) * g.OW + ow) * g.F + c.f);
  }
  __host__ __device__ float b(const Col& c, Index, Index n) const {
    return w[(Index(c.tap) * g.C + n) * g.F + c.f];
  }
  __host__ __device__ void store(Index m, Index n, float v) const {
    out[m * N + n] = activate<E>(bias != nullptr ? v + bias[n] : v);
  }
};

// dw += im2col(x)^T @ dz over a range of pixels; rows are (tap, c), k pixels.
// split_stride 0: every split adds into dw atomically; else split z writes its
// sums to dw + z * split_stride (see for_split below).
template <bool kGate>
struct FilterGradProblem {
  using Row = TapChannel;
  using Col = PixelOrigin;
  static constexpr bool kAKFast = false;  // consecutive m: consecutive channels of x
  static constexpr bool kBKFast = false;  // consecutive n: consecutive channels of dz
  static constexpr bool kStagedEpilogue = false;
  Geometry g;
  Index M, N, K;
  const float* x;
  const float* dy;
  const float* y;  // the forward output when kGate
  float* dw;
  Index split_stride;

  __host__ __device__ Row row(Index m) const { return tap_channel(g, m); }
  __host__ __device__ Col col(Index k) const { return pixel_origin(g, k); }
  __host__ __device__ float a(const Row& r, const Col& c) const {
    return im2col_value(g, x, c, r);
  }
  __host__ __device__ float b(const Col&, Index k, Index n) const {
    return gated<kGate>(dy, y, k * N + n);
  }
  __host__ __device__ void store(Index m, Index n, float v) const {
    if (split_stride == 0) {
      accumulate(dw + m * N + n, v);
    } else {
      dw[m * N + n] = v;
    }
  }
};

template <bool kGate>
__host__ __device__ inline FilterGradProblem<kGate> for_split(const FilterGradProblem<kGate>& p,
                                                             Index split) {
  FilterGradProblem<kGate> own = p;
  own.dw += split * p.split_stride;
  return own;
}

// ----- bias gradient ----------------------------------------------------------

constexpr int kBiasColumns = 32;  // one warp across 32 consecutive channels
constexpr int kBiasRowLanes = 8;

// Sum of gated dy over rows [row_begin, row_end) with stride `step`, column f.
template <bool kGate>
__host__ __device__ inline float column_sum(const float* dy, const float* y, Index F, Index f,
                                            Index row_begin, Index row_end, Index step) {
  float sum = 0.f;
  for (Index r = row_begin; r < row_end; r += step) sum += gated<kGate>(dy, y, r * F + f);
  return sum;
}

// Block (x: kBiasColumns channels, y: a range of rows_per_block rows). Adds
// into db (zeroed first) atomically, or with `partials` writes its sums to
// row db[blockIdx.y * F ...] for sum_splits.
template <bool kGate>
__global__ void __launch_bounds__(kBiasColumns* kBiasRowLanes)
    bias_grad_kernel(const float* __restrict__ dy, const float* __restrict__ y,
                     float* __restrict__ db, Index rows, Index F, Index rows_per_block,
                     bool partials) {
  __shared__ float partial[kBiasRowLanes][kBiasColumns + 1];
  const Index f = static_cast<Index>(blockIdx.x) * kBiasColumns + threadIdx.x;
  const Index row_begin = static_cast<Index>(blockIdx.y) * rows_per_block;
  const Index row_end = row_begin + rows_per_block < rows ? row_begin + rows_per_block : rows;
  partial[threadIdx.y][threadIdx.x] =
      f < F ? column_sum<kGate>(dy, y, F, f, row_begin + threadIdx.y, row_end, kBiasRowLanes)
            : 0.f;
  __syncthreads();
  if (threadIdx.y == 0 && f < F) {
    float sum = 0.f;
    for (int lane = 0; lane < kBiasRowLanes; ++lane) sum += partial[lane][threadIdx.x];
    if (partials) {
      db[static_cast<Index>(blockIdx.y) * F + f] = sum;
    } else {
      atomicAdd(db + f, sum);
    }
  }
}

// K per block for the kernel gradient: enough blocks to fill the GPU's
// `multiprocessors` a few times over, each still looping over several k tiles.
Index filter_k_chunk(Index M, Index N, Index K, int multiprocessors) {
  const Index tiles_mn = ceil_div(M, kBM) * ceil_div(N, kBN);
  const Index wanted = 4 * Index(multiprocessors);
  const Index max_splits = std::max<Index>(1, std::min<Index>(ceil_div(K, 8 * kBK), 65535));
  const Index splits = std::min(max_splits, std::max<Index>(1, ceil_div(wanted, tiles_mn)));
  return ceil_div(ceil_div(K, splits), kBK) * kBK;
}

}  // namespace conv_detail

using namespace conv_detail;

template <Epilogue E, bool kTF32>
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    float* y, std::uintptr_t stream) {
  const Geometry g = geometry_of(s);
  const Index K = s.KH * s.KW * s.C;
  const ForwardProblem<E> p{g, s.N * s.OH * s.OW, s.F, K, x, w, bias, y};
  launch_gemm<kTF32>(p, K, reinterpret_cast<cudaStream_t>(stream));
}

template <Epilogue E, bool kTF32>
void conv2d_backward_data(const Conv2dShape& s, const float* g, const float* w,
                          const float* bias, float* out, std::uintptr_t stream) {
  const Geometry geo = geometry_of(s);
  const Index K = s.KH * s.KW * s.F;
  const DataGradProblem<false, E> p{geo, s.N * s.H * s.W, s.C, K, g, nullptr, w, bias, out};
  launch_gemm<kTF32>(p, K, reinterpret_cast<cudaStream_t>(stream));
}

template <Epilogue E, bool kTF32>
void conv2d_backward(const Conv2dShape& s, const float* x, const float* y, const float* dy,
                     const float* w, float* dx, float* dw, float* db, std::uintptr_t stream) {
  constexpr bool kGate = E != Epilogue::kLinear;
  const auto st = reinterpret_cast<cudaStream_t>(stream);
  const Geometry g = geometry_of(s);
  const Index pixels = s.N * s.OH * s.OW;
  if (dx != nullptr) {
    const Index K = s.KH * s.KW * s.F;
    const DataGradProblem<kGate, Epilogue::kLinear> p{g, s.N * s.H * s.W, s.C, K, dy, y, w,
                                                      nullptr, dx};
    launch_gemm<kTF32>(p, K, st);
  }
  // One split (or row block) adds onto zeros alone: deterministic already.
  const bool deterministic = deterministic_reductions().load();
  const Index M = s.KH * s.KW * s.C;
  if (dw != nullptr && M * s.F > 0) {
    const Index k_chunk = pixels > 0 ? filter_k_chunk(M, s.F, pixels, multiprocessors()) : 1;
    const Index splits = ceil_div(pixels, k_chunk);
    if (deterministic && splits > 1) {
      const StreamBuffer<float> partials(splits * M * s.F, st);
      const FilterGradProblem<kGate> p{g, M, s.F, pixels, x, dy, y, partials.get(), M * s.F};
      launch_gemm<kTF32>(p, k_chunk, st);
      sum_splits(partials.get(), splits, M * s.F, dw, st);
    } else {
      FUSEDNN_CUDA_CHECK(cudaMemsetAsync(dw, 0, sizeof(float) * M * s.F, st));
      const FilterGradProblem<kGate> p{g, M, s.F, pixels, x, dy, y, dw, 0};
      launch_gemm<kTF32>(p, k_chunk, st);
    }
  }
  if (db != nullptr && s.F > 0) {
    const Index column_blocks = ceil_div(s.F, kBiasColumns);
    const Index wanted_row_blocks = ceil_div(4 * Index(multiprocessors()), column_blocks);
    const Index rows_per_block = std::max<Index>(
        kBiasRowLanes * 64, ceil_div(pixels, std::min<Index>(wanted_row_blocks, 65535)));
    const Index row_blocks = ceil_div(pixels, rows_per_block);
    const dim3 grid(static_cast<unsigned>(column_blocks), static_cast<unsigned>(row_blocks));
    const dim3 block(kBiasColumns, kBiasRowLanes);
    if (deterministic && row_blocks > 1) {
      const StreamBuffer<float> partials(row_blocks * s.F, st);
      launch_kernel(bias_grad_kernel<kGate>, grid, block, 0, st, dy, y, partials.get(), pixels,
                    s.F, rows_per_block, true);
      sum_splits(partials.get(), row_blocks, s.F, db, st);
    } else {
      FUSEDNN_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * s.F, st));
      if (pixels > 0) {
        launch_kernel(bias_grad_kernel<kGate>, grid, block, 0, st, dy, y, db, pixels, s.F,
                      rows_per_block, false);
      }
    }
  }
}

#define FUSEDNN_INSTANTIATE_CONV(E, TF32)                                                         \
  template void conv2d_forward<E, TF32>(const Conv2dShape&, const float*, const float*,           \
                                        const float*, float*, std::uintptr_t);                    \
  template void conv2d_backward<E, TF32>(const Conv2dShape&, const float*, const float*,          \
                                         const float*, const float*, float*, float*, float*,      \
                                         std::uintptr_t);                                         \
  template void conv2d_backward_data<E, TF32>(const Conv2dShape&, const float*, const float*,     \
                                              const float*, float*, std::uintptr_t);

FUSEDNN_INSTANTIATE_CONV(Epilogue::kLinear, false)
FUSEDNN_INSTANTIATE_CONV(Epilogue::kLinear, true)
FUSEDNN_INSTANTIATE_CONV(Epilogue::kRelu, false)
FUSEDNN_INSTANTIATE_CONV(Epilogue::kRelu, true)
#undef FUSEDNN_INSTANTIATE_CONV
#undef FUSEDNN_CONV_UNROLL

}  // namespace fusednn::cuda
