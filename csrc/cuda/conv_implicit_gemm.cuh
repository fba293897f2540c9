// The implicit-GEMM kernel behind every convolution product (conv.cu) and the
// fused convolution + max pooling (conv_pool.cu).
//
// conv2d on the GPU as implicit GEMM: the im2col matrix is never stored in
// global memory; each block gathers its tiles of it straight into shared
// memory, with the padding, strides and dilation resolved by the loaders.
//
// Every product runs on one kernel, implicit_gemm_kernel<Problem, kTF32>,
// C (M, N) = A (M, K) @ B (K, N), where the Problem says what A, B and the
// epilogue are (conv.cu has the first three, conv_pool.cu the last):
//   forward       A = im2col(x) (N*OH*OW, KH*KW*C), B = w (KH*KW*C, F),
//                 y = act(C + bias)
//   data grad     A (N*H*W, KH*KW*F): the dz value that tap (kh, kw) of each
//                 input pixel feeds (0 where the stride skips it), B = w read
//                 as (KH*KW*F, C); out = act(C + bias). Also the
//                 Conv2DTranspose forward. First version: with stride s a
//                 fraction 1 - 1/s^2 of A is structural zeros that are still
//                 multiplied (a stride-phase split would remove them).
//   kernel grad   A = im2col(x)^T (KH*KW*C, N*OH*OW), B = dz (N*OH*OW, F);
//                 the long K is split across blocks (grid z) whose partial
//                 tiles are either atomically added into dw (the summation
//                 order, and the last bits of dw, vary from run to run) or,
//                 in deterministic mode (fusednn/determinism.h), written to
//                 one slice per split (for_split) and summed in split order.
//   pooled forward  the forward with the rows ordered window by window (max
//                 pooling, window = strides, 'valid'); the epilogue reduces
//                 each window and writes only the pooled output.
// dz is dy gated by relu at the forward output y when the activation is
// fused. The bias gradient is a separate column-sum kernel.
//
// A block computes a kBM x kBN tile of C with kThreads threads, stepping K by
// kBK: the tile of A is stored k-major (As[k][m]) and that of B as Bs[k][n].
// Each thread loads fixed elements of the next tile into registers while the
// current one is multiplied from shared memory. Per-row and per-k decodings of
// the indices (pixel -> image offset and padded origin, k -> tap and channel)
// are computed once into small shared tables, so the loaders only add.
//   kTF32 = false: exact float32 FMAs, an 8 x 4 register tile per thread.
//   kTF32 = true:  tensor cores (wmma m16n16k8, TF32 inputs, float32
//                  accumulation), a 32 x 32 warp tile, staged through shared
//                  memory for the epilogue.
// A problem with kStagedEpilogue gets the whole C tile in shared memory on
// both paths and writes it out itself (store_tile), so it can reduce rows.
// Index arithmetic is 64-bit for offsets into x, y, w and the GEMM rows;
// spatial coordinates are int (the launcher checks that they fit).
//
// The block's phases (table set-up, register loads, shared stores, FMA tile,
// epilogue) are __host__ __device__ functions of the thread index, so that a
// test can run the whole float32 kernel on the CPU, thread by thread and
// phase by phase (tests/test_ops_conv.py and tests/test_ops_conv_pool.py compile
// conv.cu and conv_pool.cu with nvcc as host code).
#pragma once

#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "fusednn/conv.h"
#include "device_facts.cuh"
#include "fusednn/cuda_check.h"
#include "launch.cuh"

namespace fusednn::cuda {

namespace conv_detail {

using Index = std::int64_t;

// A block tile: kBM rows x kBN columns of C with kThreads threads, stepping K
// by kBK; each thread owns kTM x kTN of C on the float32 path.
template <int BM, int BN, int BK, int Threads>
struct TileShape {
  static constexpr int kBM = BM;
  static constexpr int kBN = BN;
  static constexpr int kBK = BK;
  static constexpr int kThreads = Threads;
  // Row pitches of the shared tiles, padded by 4 floats against bank conflicts
  // (still multiples of 4 floats, as float4 reads and wmma loads need).
  static constexpr int kLdA = kBM + 4;
  static constexpr int kLdB = kBN + 4;
  static constexpr int kLdC = kBN + 4;
  static constexpr int kTileFloats = kBK * kLdA + kBK * kLdB;
  static constexpr int kStageFloats = kBM * kLdC;
  static constexpr int kSharedFloats = kTileFloats > kStageFloats ? kTileFloats : kStageFloats;
  // Each thread's share of a tile load and of the float32 result tile.
  static constexpr int kALoads = kBM * kBK / kThreads;
  static constexpr int kBLoads = kBK * kBN / kThreads;
  static constexpr int kTM = 8;
  static constexpr int kTN = 4;
  static_assert(kALoads * kThreads == kBM * kBK && kBLoads * kThreads == kBK * kBN,
                "every thread loads the same number of tile elements");
  static_assert(kBM * kBN == kThreads * kTM * kTN, "the thread tiles must cover the block tile");
  static_assert((kBM / kTM) * (kBN / kTN) == kThreads, "one thread per thread tile");
  static_assert(kThreads % kBK == 0 && kThreads >= kBK, "the k-fast loads cover whole k tiles");
};

// The general tile (and the only one of the tensor-core path and of the
// staged epilogues)...
using WideTile = TileShape<128, 64, 16, 256>;
// ...and one for products with at most 8 columns (F <= 8 forward, C <= 8 data
// gradient and Conv2DTranspose, F <= 8 kernel gradient), where 64 columns
// would leave 87-98 % of the work padding: 256 x 8, two warps, 8-deep k steps
// (32 + 1 loads per thread per step, as many FMAs per load as the wide tile).
using NarrowTile = TileShape<256, 8, 8, 64>;

// The wide tile's sizes by their short names (conv_pool.cu's staged epilogue,
// and the CPU replays of tests/test_ops_conv*.py, are written for it).
constexpr int kBM = WideTile::kBM;
constexpr int kBN = WideTile::kBN;
constexpr int kBK = WideTile::kBK;
constexpr int kThreads = WideTile::kThreads;
constexpr int kLdA = WideTile::kLdA;
constexpr int kLdB = WideTile::kLdB;
constexpr int kLdC = WideTile::kLdC;
constexpr int kSharedFloats = WideTile::kSharedFloats;
constexpr int kTM = WideTile::kTM;
constexpr int kTN = WideTile::kTN;
// The tensor-core path: 8 warps as 4 (m) x 2 (n), each 32 x 32 = 2 x 2 wmma tiles.
constexpr int kWarpM = 32;
constexpr int kWarpN = 32;
static_assert((kBM / kWarpM) * (kBN / kWarpN) * 32 == kThreads, "one warp per warp tile");

// `#pragma unroll` for the device compiler only: the host compiler, which also
// compiles the __host__ __device__ phases, does not know it.
#ifdef __CUDA_ARCH__
#define FUSEDNN_CONV_UNROLL _Pragma("unroll")
#else
#define FUSEDNN_CONV_UNROLL
#endif

__host__ __device__ inline Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }

template <Epilogue E>
__host__ __device__ inline float activate(float v) {
  if constexpr (E == Epilogue::kRelu) {
    return v < 0.f ? 0.f : v;  // NaN passes through, as in max(v, 0)
  } else {
    return v;
  }
}

// dy where the fused relu passed its input (y > 0), else 0.
template <bool kGate>
__host__ __device__ inline float gated(const float* dy, const float* y, Index offset) {
  if constexpr (kGate) {
    return y[offset] > 0.f ? dy[offset] : 0.f;
  } else {
    return dy[offset];
  }
}

// dst += v from many blocks at once on the device; a plain add on the host.
__host__ __device__ inline void accumulate(float* dst, float v) {
#ifdef __CUDA_ARCH__
  atomicAdd(dst, v);
#else
  *dst += v;
#endif
}

// Sizes copied from Conv2dShape; spatial ones as int.
struct Geometry {
  int H, W, C, OH, OW, F, KH, KW, sh, sw, dh, dw, pt, pl;
};

// Where the input pixel (n, ih0 + dh_off, iw0 + dw_off) lies, for an output
// pixel's padded origin (ih0, iw0): the row decoding of the forward and the
// k decoding of the kernel gradient.
struct PixelOrigin {
  Index base;  // offset of image n in an (N, H, W, C) array
  int ih0, iw0;
};

// One kernel tap and channel: the k decoding of the forward, the row decoding
// of the kernel gradient.
struct TapChannel {
  int dh_off, dw_off;  // kh * dilation_h, kw * dilation_w
  int c;
};

__host__ __device__ inline PixelOrigin pixel_origin(const Geometry& g, Index pixel) {
  const Index per_image = Index(g.OH) * g.OW;
  const Index n = pixel / per_image;
  const Index rest = pixel - n * per_image;
  const int oh = int(rest / g.OW);
  const int ow = int(rest - Index(oh) * g.OW);
  return {n * g.H * g.W * g.C, oh * g.sh - g.pt, ow * g.sw - g.pl};
}

__host__ __device__ inline TapChannel tap_channel(const Geometry& g, Index k) {
  const int c = int(k % g.C);
  const int tap = int(k / g.C);
  const int kw = tap % g.KW;
  return {(tap / g.KW) * g.dh, kw * g.dw, c};
}

// x at input pixel origin + tap, channel tc.c; 0 in the padding.
__host__ __device__ inline float im2col_value(const Geometry& g, const float* x,
                                              const PixelOrigin& o, const TapChannel& tc) {
  const int ih = o.ih0 + tc.dh_off;
  const int iw = o.iw0 + tc.dw_off;
  if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) return 0.f;
  return x[o.base + (Index(ih) * g.W + iw) * g.C + tc.c];
}

// ----- the block's phases -----------------------------------------------------

// Views of one block's shared memory (sizes of the tile Tl).
template <class P, class Tl = WideTile>
struct Shared {
  float* a;                 // [kBK][kLdA]   A tile, k-major
  float* b;                 // [kBK][kLdB]   B tile
  float* stage;             // [kBM][kLdC]   C tile for the staged epilogues (aliases a, b)
  typename P::Row* rows;    // [kBM]         decodings of the block's rows
  typename P::Col* cols;    // [2][kBK]      decodings of the current and next k tile
};

// Which element of a tile a thread's i-th load is: (row or k, column or n).
struct Slot {
  int major, minor;
};

// A tile (kBM x kBK): a thread covers one k column (k-fast) or one row (m-fast).
template <bool kKFast, class Tl>
__host__ __device__ inline Slot a_slot(int tid, int i) {
  if constexpr (kKFast) {
    return {tid / Tl::kBK + (Tl::kThreads / Tl::kBK) * i, tid % Tl::kBK};  // {m, k}
  } else if constexpr (Tl::kThreads >= Tl::kBM) {
    return {tid % Tl::kBM, tid / Tl::kBM + (Tl::kThreads / Tl::kBM) * i};  // {m, k}
  } else {  // more rows than threads: i steps through rows first
    constexpr int kPerK = Tl::kBM / Tl::kThreads;
    return {tid + Tl::kThreads * (i % kPerK), i / kPerK};  // {m, k}
  }
}

// B tile (kBK x kBN).
template <bool kKFast, class Tl>
__host__ __device__ inline Slot b_slot(int tid, int i) {
  if constexpr (kKFast) {
    return {tid % Tl::kBK, tid / Tl::kBK + (Tl::kThreads / Tl::kBK) * i};  // {k, n}
  } else {
    return {tid / Tl::kBN + (Tl::kThreads / Tl::kBN) * i, tid % Tl::kBN};  // {k, n}
  }
}

template <class P, class Tl>
__host__ __device__ inline void set_up_rows(const P& p, const Shared<P, Tl>& s, int tid,
                                            Index m0) {
  for (int r = tid; r < Tl::kBM; r += Tl::kThreads) {
    if (m0 + r < p.M) s.rows[r] = p.row(m0 + r);
  }
}

template <class P, class Tl>
__host__ __device__ inline void set_up_cols(const P& p, const Shared<P, Tl>& s, int tid, Index k0,
                                            Index k_end, int buffer) {
  if (tid < Tl::kBK && k0 + tid < k_end) s.cols[buffer * Tl::kBK + tid] = p.col(k0 + tid);
}

template <class Tl>
struct TileRegisters {
  float a[Tl::kALoads];
  float b[Tl::kBLoads];
};
using Registers = TileRegisters<WideTile>;

// The thread's elements of the k tile starting at k0 into registers (0 outside C).
template <class P, class Tl>
__host__ __device__ inline void load_tile(const P& p, const Shared<P, Tl>& s, int tid, Index m0,
                                          Index n0, Index k0, Index k_end, int buffer,
                                          TileRegisters<Tl>& r) {
  const typename P::Col* cols = s.cols + buffer * Tl::kBK;
FUSEDNN_CONV_UNROLL
  for (int i = 0; i < Tl::kALoads; ++i) {
    const Slot slot = a_slot<P::kAKFast, Tl>(tid, i);
    const bool inside = m0 + slot.major < p.M && k0 + slot.minor < k_end;
    r.a[i] = inside ? p.a(s.rows[slot.major], cols[slot.minor]) : 0.f;
  }
FUSEDNN_CONV_UNROLL
  for (int i = 0; i < Tl::kBLoads; ++i) {
    const Slot slot = b_slot<P::kBKFast, Tl>(tid, i);
    const Index k = k0 + slot.major;
    const Index n = n0 + slot.minor;
    r.b[i] = k < k_end && n < p.N ? p.b(cols[slot.major], k, n) : 0.f;
  }
}

template <class P, class Tl>
__host__ __device__ inline void store_tile(const Shared<P, Tl>& s, int tid,
                                           const TileRegisters<Tl>& r) {
FUSEDNN_CONV_UNROLL
  for (int i = 0; i < Tl::kALoads; ++i) {
    const Slot slot = a_slot<P::kAKFast, Tl>(tid, i);
    s.a[slot.minor * Tl::kLdA + slot.major] = r.a[i];
  }
FUSEDNN_CONV_UNROLL
  for (int i = 0; i < Tl::kBLoads; ++i) {
    const Slot slot = b_slot<P::kBKFast, Tl>(tid, i);
    s.b[slot.major * Tl::kLdB + slot.minor] = r.b[i];
  }
}

// The float32 path: thread (ty, tx) owns rows ty*kTM.. and columns tx*kTN.. of C.
template <class Tl>
struct TileAccumulators {
  float c[Tl::kTM][Tl::kTN];
};
using Accumulators = TileAccumulators<WideTile>;

template <class Tl>
__host__ __device__ inline void fma_tile(const float* a, const float* b, int tid,
                                         TileAccumulators<Tl>& acc) {
  constexpr int kTM = Tl::kTM, kTN = Tl::kTN, kLdA = Tl::kLdA, kLdB = Tl::kLdB;
  const int ty = tid / (Tl::kBN / kTN);
  const int tx = tid % (Tl::kBN / kTN);
FUSEDNN_CONV_UNROLL
  for (int k = 0; k < Tl::kBK; ++k) {
    // 16-byte shared loads: the pitches and offsets are multiples of 4 floats.
    const float4 a_lo = *reinterpret_cast<const float4*>(a + k * kLdA + ty * kTM);
    const float4 a_hi = *reinterpret_cast<const float4*>(a + k * kLdA + ty * kTM + 4);
    const float4 b4 = *reinterpret_cast<const float4*>(b + k * kLdB + tx * kTN);
    const float av[kTM] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
    const float bv[kTN] = {b4.x, b4.y, b4.z, b4.w};
FUSEDNN_CONV_UNROLL
    for (int i = 0; i < kTM; ++i) {
FUSEDNN_CONV_UNROLL
      for (int j = 0; j < kTN; ++j) acc.c[i][j] = fmaf(av[i], bv[j], acc.c[i][j]);
    }
  }
}

template <class P, class Tl>
__host__ __device__ inline void store_accumulators(const P& p, int tid, Index m0, Index n0,
                                                   const TileAccumulators<Tl>& acc) {
  constexpr int kTM = Tl::kTM, kTN = Tl::kTN;
  const int ty = tid / (Tl::kBN / kTN);
  const int tx = tid % (Tl::kBN / kTN);
FUSEDNN_CONV_UNROLL
  for (int i = 0; i < kTM; ++i) {
    const Index m = m0 + ty * kTM + i;
    if (m >= p.M) continue;
FUSEDNN_CONV_UNROLL
    for (int j = 0; j < kTN; ++j) {
      const Index n = n0 + tx * kTN + j;
      if (n < p.N) p.store(m, n, acc.c[i][j]);
    }
  }
}

// The float32 sums into the staging area, for problems whose epilogue reads
// the whole C tile (P::kStagedEpilogue).
template <class Tl>
__host__ __device__ inline void stage_accumulators(float* stage, int tid,
                                                   const TileAccumulators<Tl>& acc) {
  static_assert(std::is_same_v<Tl, WideTile>, "staged epilogues use the wide tile");
  const int ty = tid / (kBN / kTN);
  const int tx = tid % (kBN / kTN);
FUSEDNN_CONV_UNROLL
  for (int i = 0; i < kTM; ++i) {
FUSEDNN_CONV_UNROLL
    for (int j = 0; j < kTN; ++j) stage[(ty * kTM + i) * kLdC + tx * kTN + j] = acc.c[i][j];
  }
}

// C staged in shared memory, written out: per element, n fastest across
// threads, or by the problem's own tile epilogue (P::kStagedEpilogue).
// (The wide tile's sizes: the staging area is the wide tile's.)
template <class P>
__host__ __device__ inline void store_staged(const P& p, const float* stage, int tid, Index m0,
                                             Index n0) {
  if constexpr (P::kStagedEpilogue) {
    p.store_tile(stage, tid, m0, n0);
  } else {
    for (int e = tid; e < kBM * kBN; e += kThreads) {
      const int row = e / kBN;
      const int col = e % kBN;
      if (m0 + row < p.M && n0 + col < p.N) p.store(m0 + row, n0 + col, stage[row * kLdC + col]);
    }
  }
}

// ----- the kernel -------------------------------------------------------------

// The problem as the blocks of split z (grid z) see it: the same for every
// split, unless a problem overloads this to write each split's sums apart
// (conv.cu's kernel gradient in deterministic mode).
template <class P>
__host__ __device__ inline const P& for_split(const P& p, Index) {
  return p;
}

// How a block multiplies its tiles and writes C: exact float32 FMAs...
template <class Tl>
struct FmaMath {
  TileAccumulators<Tl> acc{};

  __device__ void multiply(const float* a, const float* b, int tid) { fma_tile(a, b, tid, acc); }

  // The staging area aliases the A and B tiles, whose last reads ended at the
  // main loop's final barrier.
  template <class P>
  __device__ void finish(const P& p, const Shared<P, Tl>& s, int tid, Index m0, Index n0) const {
    if constexpr (P::kStagedEpilogue) {
      stage_accumulators(s.stage, tid, acc);
      __syncthreads();
      store_staged(p, s.stage, tid, m0, n0);
    } else {
      store_accumulators(p, tid, m0, n0, acc);
    }
  }
};

// ...or the tensor cores (TF32 inputs, float32 sums). Pre-Ampere devices have
// no TF32, so there a TF32 request runs the exact float32 path instead.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
constexpr bool kDeviceHasTF32 = true;

struct TensorCoreMath {
  using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 8,
                                       nvcuda::wmma::precision::tf32, nvcuda::wmma::col_major>;
  using FragB = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 8,
                                       nvcuda::wmma::precision::tf32, nvcuda::wmma::row_major>;
  using FragC = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 8, float>;
  FragC c[kWarpM / 16][kWarpN / 16];

  __device__ TensorCoreMath() {
    for (auto& row : c) {
      for (auto& frag : row) nvcuda::wmma::fill_fragment(frag, 0.f);
    }
  }

  // This warp's corner of the block tile: 4 (m) x 2 (n) warps.
  __device__ static int warp_m(int tid) { return (tid / 32) % (kBM / kWarpM) * kWarpM; }
  __device__ static int warp_n(int tid) { return (tid / 32) / (kBM / kWarpM) * kWarpN; }

  __device__ void multiply(const float* a, const float* b, int tid) {
    const int wm = warp_m(tid);
    const int wn = warp_n(tid);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 8) {
      FragA fa[kWarpM / 16];
      FragB fb[kWarpN / 16];
#pragma unroll
      for (int i = 0; i < kWarpM / 16; ++i) {
        // A is stored k-major, which is column-major as an (m, k) matrix.
        nvcuda::wmma::load_matrix_sync(fa[i], a + kk * kLdA + wm + 16 * i, kLdA);
#pragma unroll
        for (int t = 0; t < fa[i].num_elements; ++t) {
          fa[i].x[t] = nvcuda::wmma::__float_to_tf32(fa[i].x[t]);
        }
      }
#pragma unroll
      for (int j = 0; j < kWarpN / 16; ++j) {
        nvcuda::wmma::load_matrix_sync(fb[j], b + kk * kLdB + wn + 16 * j, kLdB);
#pragma unroll
        for (int t = 0; t < fb[j].num_elements; ++t) {
          fb[j].x[t] = nvcuda::wmma::__float_to_tf32(fb[j].x[t]);
        }
      }
#pragma unroll
      for (int i = 0; i < kWarpM / 16; ++i) {
#pragma unroll
        for (int j = 0; j < kWarpN / 16; ++j) {
          nvcuda::wmma::mma_sync(c[i][j], fa[i], fb[j], c[i][j]);
        }
      }
    }
  }

  // The staging area aliases the A and B tiles, whose last reads ended at the
  // main loop's final barrier.
  template <class P>
  __device__ void finish(const P& p, const Shared<P>& s, int tid, Index m0, Index n0) const {
    const int wm = warp_m(tid);
    const int wn = warp_n(tid);
#pragma unroll
    for (int i = 0; i < kWarpM / 16; ++i) {
#pragma unroll
      for (int j = 0; j < kWarpN / 16; ++j) {
        nvcuda::wmma::store_matrix_sync(s.stage + (wm + 16 * i) * kLdC + wn + 16 * j, c[i][j],
                                        kLdC, nvcuda::wmma::mem_row_major);
      }
    }
    __syncthreads();
    store_staged(p, s.stage, tid, m0, n0);
  }
};

// The tensor cores only on the wide tile (its warp tiles are 32 x 32).
template <bool kTensorCores, class Tl>
struct MathFor {
  using type = FmaMath<Tl>;
};
template <>
struct MathFor<true, WideTile> {
  using type = TensorCoreMath;
};
#else
constexpr bool kDeviceHasTF32 = false;

template <bool kTensorCores, class Tl>
struct MathFor {
  using type = FmaMath<Tl>;
};
#endif

// Block (x: kBM rows of C, y: kBN columns, z: a range of k_chunk values of K).
template <class P, bool kTF32, class Tl>
__global__ void __launch_bounds__(Tl::kThreads)
    implicit_gemm_kernel(const P problem, const Index k_chunk) {
  const P p = for_split(problem, static_cast<Index>(blockIdx.z));
  __shared__ __align__(128) float tile_memory[Tl::kSharedFloats];
  __shared__ typename P::Row rows[Tl::kBM];
  __shared__ typename P::Col cols[2 * Tl::kBK];
  const Shared<P, Tl> s{tile_memory, tile_memory + Tl::kBK * Tl::kLdA, tile_memory, rows, cols};
  const int tid = static_cast<int>(threadIdx.x);
  const Index m0 = static_cast<Index>(blockIdx.x) * Tl::kBM;
  const Index n0 = static_cast<Index>(blockIdx.y) * Tl::kBN;
  const Index k_begin = static_cast<Index>(blockIdx.z) * k_chunk;
  const Index k_end = k_begin + k_chunk < p.K ? k_begin + k_chunk : p.K;
  const Index tiles = ceil_div(k_end - k_begin, Tl::kBK);

  set_up_rows(p, s, tid, m0);
  set_up_cols(p, s, tid, k_begin, k_end, 0);
  __syncthreads();
  TileRegisters<Tl> regs;
  load_tile(p, s, tid, m0, n0, k_begin, k_end, 0, regs);
  typename MathFor<kTF32 && kDeviceHasTF32, Tl>::type math;

  for (Index t = 0; t < tiles; ++t) {
    store_tile(s, tid, regs);
    const Index k_next = k_begin + (t + 1) * Tl::kBK;
    const int next_buffer = static_cast<int>((t + 1) & 1);
    if (t + 1 < tiles) set_up_cols(p, s, tid, k_next, k_end, next_buffer);
    __syncthreads();
    // The next tile's loads are in flight while this one is multiplied.
    if (t + 1 < tiles) load_tile(p, s, tid, m0, n0, k_next, k_end, next_buffer, regs);
    math.multiply(s.a, s.b, tid);
    __syncthreads();
  }
  math.finish(p, s, tid, m0, n0);
}

// ----- launching ------------------------------------------------------------

inline Geometry geometry_of(const Conv2dShape& s) {
  // Spatial coordinates (and their strided, dilated and padded forms) are int.
  constexpr Index kLimit = std::numeric_limits<int>::max() / 4;
  const Index extents[] = {s.H, s.W, s.C, s.F, s.OH * s.stride_h, s.OW * s.stride_w,
                           s.KH * s.dilation_h, s.KW * s.dilation_w, s.pad_top, s.pad_left};
  for (Index e : extents) {
    if (e > kLimit) {
      throw std::invalid_argument("conv2d (CUDA): a spatial or channel extent (" +
                                  std::to_string(e) + ") is too large for the kernels (limit " +
                                  std::to_string(kLimit) + ")");
    }
  }
  return {int(s.H),        int(s.W),        int(s.C),          int(s.OH),
          int(s.OW),       int(s.F),        int(s.KH),         int(s.KW),
          int(s.stride_h), int(s.stride_w), int(s.dilation_h), int(s.dilation_w),
          int(s.pad_top),  int(s.pad_left)};
}

inline int multiprocessors() { return current_device_facts().multiprocessors; }

// The narrow tile where C has at most its 8 columns (and the problem's
// epilogue is not staged), the wide one otherwise. k_chunk: a multiple of
// both tiles' kBK.
template <bool kTF32, class P>
void launch_gemm(const P& p, Index k_chunk, cudaStream_t stream) {
  if (p.M == 0 || p.N == 0 || p.K == 0) return;
  const Index splits = ceil_div(p.K, k_chunk);
  auto launch = [&](auto tile) {
    using Tl = decltype(tile);
    const dim3 grid(static_cast<unsigned>(ceil_div(p.M, Tl::kBM)),
                    static_cast<unsigned>(ceil_div(p.N, Tl::kBN)), static_cast<unsigned>(splits));
    launch_kernel(implicit_gemm_kernel<P, kTF32, Tl>, grid, Tl::kThreads, 0, stream, p, k_chunk);
  };
  if constexpr (P::kStagedEpilogue) {
    launch(WideTile{});
  } else if (p.N <= NarrowTile::kBN) {
    launch(NarrowTile{});
  } else {
    launch(WideTile{});
  }
}

}  // namespace conv_detail

}  // namespace fusednn::cuda
