// The phases of the tiled SGEMM kernel (gemm.cu), as functions of the thread
// index: stage a BK-deep slice of op(A) and op(B) into shared memory, multiply
// the staged slices into a thread's registers, write a thread's sub-tile of C.
// The kernel runs them between barriers; they are host code too, so a test can
// replay a launch thread by thread on the CPU (tests/test_ops_recurrent.py).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

// Full unrolling in device code; the host compiler (the test's replay) does
// not know the pragma.
#ifdef __CUDA_ARCH__
#define FUSEDNN_DEVICE_UNROLL _Pragma("unroll")
#else
#define FUSEDNN_DEVICE_UNROLL
#endif

namespace fusednn::cuda::gemm_detail {

using Index = std::int64_t;

// A tile configuration: a block computes BM x BN of C from BK-deep slices;
// each of its (BM/TM) * (BN/TN) threads owns TM rows and TN columns of the tile,
// strided (row ty + i * BM/TM, column tx + j * BN/TN) so that a warp's shared
// memory reads and global writes touch consecutive columns.
template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kThreadsX = BN / TN;
  static constexpr int kThreadsY = BM / TM;
  static constexpr int kThreads = kThreadsX * kThreadsY;
  static_assert(BM % TM == 0 && BN % TN == 0, "tile must split evenly into thread sub-tiles");
};

using LargeTile = Tile<64, 64, 16, 4, 4>;   // 256 threads
using NarrowTile = Tile<16, 64, 32, 2, 4>;  // 128 threads: few rows, e.g. one recurrent step
using SkinnyTile = Tile<8, 32, 32, 1, 2>;   // 128 threads: few rows and too few narrow tiles

// C = alpha * op(A) * op(B) + beta * C (see fusednn/cuda_gemm.h).
struct Problem {
  Index M, N, K;
  float alpha;
  const float* A;
  Index lda;
  const float* B;
  Index ldb;
  float beta;
  float* C;
  Index ldc;
};

// k-major slices; one padding column keeps the transposing stores free of
// bank conflicts.
template <typename Cfg>
struct SharedSlices {
  float a[Cfg::BK][Cfg::BM + 1];
  float b[Cfg::BK][Cfg::BN + 1];
};

template <typename Cfg>
struct Accumulators {
  float c[Cfg::TM][Cfg::TN];
};

template <typename Cfg>
__host__ __device__ __forceinline__ void clear(Accumulators<Cfg>& acc) {
  for (int i = 0; i < Cfg::TM; ++i) {
    for (int j = 0; j < Cfg::TN; ++j) acc.c[i][j] = 0.f;
  }
}

// Thread tid's share of staging op(A)[row0 : row0 + BM, k0 : k0 + BK] and
// op(B)[k0 : k0 + BK, col0 : col0 + BN], zeros past the edges. Consecutive
// threads read consecutive addresses of each operand's stored layout.
template <typename Cfg, bool kTransA, bool kTransB>
__host__ __device__ __forceinline__ void stage_slice(const Problem& p, SharedSlices<Cfg>& s,
                                                     int tid, Index row0, Index col0, Index k0) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK;
  for (int e = tid; e < BM * BK; e += Cfg::kThreads) {
    const int m = kTransA ? e % BM : e / BK;
    const int k = kTransA ? e / BM : e % BK;
    const Index gm = row0 + m, gk = k0 + k;
    float v = 0.f;
    if (gm < p.M && gk < p.K) v = kTransA ? p.A[gk * p.lda + gm] : p.A[gm * p.lda + gk];
    s.a[k][m] = v;
  }
  for (int e = tid; e < BK * BN; e += Cfg::kThreads) {
    const int n = kTransB ? e / BK : e % BN;
    const int k = kTransB ? e % BK : e / BN;
    const Index gn = col0 + n, gk = k0 + k;
    float v = 0.f;
    if (gn < p.N && gk < p.K) v = kTransB ? p.B[gn * p.ldb + gk] : p.B[gk * p.ldb + gn];
    s.b[k][n] = v;
  }
}

// Thread tid's products of the staged slices, added to its accumulators.
template <typename Cfg>
__host__ __device__ __forceinline__ void multiply_slice(const SharedSlices<Cfg>& s, int tid,
                                                        Accumulators<Cfg>& acc) {
  const int tx = tid % Cfg::kThreadsX, ty = tid / Cfg::kThreadsX;
FUSEDNN_DEVICE_UNROLL
  for (int k = 0; k < Cfg::BK; ++k) {
    float a[Cfg::TM], b[Cfg::TN];
FUSEDNN_DEVICE_UNROLL
    for (int i = 0; i < Cfg::TM; ++i) a[i] = s.a[k][ty + i * Cfg::kThreadsY];
FUSEDNN_DEVICE_UNROLL
    for (int j = 0; j < Cfg::TN; ++j) b[j] = s.b[k][tx + j * Cfg::kThreadsX];
FUSEDNN_DEVICE_UNROLL
    for (int i = 0; i < Cfg::TM; ++i) {
FUSEDNN_DEVICE_UNROLL
      for (int j = 0; j < Cfg::TN; ++j) acc.c[i][j] = fmaf(a[i], b[j], acc.c[i][j]);
    }
  }
}

// Thread tid's sub-tile of C = alpha * acc + beta * C (C never read when kBetaZero).
template <typename Cfg, bool kBetaZero>
__host__ __device__ __forceinline__ void store_tile(const Problem& p, int tid, Index row0,
                                                    Index col0, const Accumulators<Cfg>& acc) {
  const int tx = tid % Cfg::kThreadsX, ty = tid / Cfg::kThreadsX;
FUSEDNN_DEVICE_UNROLL
  for (int i = 0; i < Cfg::TM; ++i) {
    const Index gm = row0 + ty + i * Cfg::kThreadsY;
    if (gm >= p.M) continue;
FUSEDNN_DEVICE_UNROLL
    for (int j = 0; j < Cfg::TN; ++j) {
      const Index gn = col0 + tx + j * Cfg::kThreadsX;
      if (gn >= p.N) continue;
      float* c = p.C + gm * p.ldc + gn;
      *c = kBetaZero ? p.alpha * acc.c[i][j] : fmaf(p.beta, *c, p.alpha * acc.c[i][j]);
    }
  }
}

}  // namespace fusednn::cuda::gemm_detail
