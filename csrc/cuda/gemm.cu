// Tiled shared-memory SGEMM (contract in fusednn/cuda_gemm.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "fusednn/cuda_check.h"
#include "fusednn/cuda_gemm.h"

namespace fusednn::cuda {

namespace {

using Index = std::int64_t;

// Tiles of C are walked grid-stride in both directions, so any M and N fit
// the grid limits (65535 in y).
constexpr Index kMaxGridY = 65535;
constexpr Index kMaxGridX = 1 << 20;

// A tile configuration: the block computes BM x BN of C from BK-deep slices;
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

template <typename Cfg, bool kTransA, bool kTransB, bool kBetaZero>
__global__ void __launch_bounds__(Cfg::kThreads)
    sgemm_kernel(Index M, Index N, Index K, float alpha, const float* __restrict__ A, Index lda,
                 const float* __restrict__ B, Index ldb, float beta, float* __restrict__ C,
                 Index ldc) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  constexpr int kThreads = Cfg::kThreads;
  // k-major tiles; one padding column keeps the transposing stores of op(A)
  // free of bank conflicts.
  __shared__ float a_tile[BK][BM + 1];
  __shared__ float b_tile[BK][BN + 1];
  const int tid = threadIdx.x;
  const int tx = tid % Cfg::kThreadsX;
  const int ty = tid / Cfg::kThreadsX;
  const Index tiles_m = (M + BM - 1) / BM;
  const Index tiles_n = (N + BN - 1) / BN;

  for (Index tile_m = blockIdx.y; tile_m < tiles_m; tile_m += gridDim.y) {
    for (Index tile_n = blockIdx.x; tile_n < tiles_n; tile_n += gridDim.x) {
      const Index row0 = tile_m * BM;
      const Index col0 = tile_n * BN;
      float acc[TM][TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
      }

      for (Index k0 = 0; k0 < K; k0 += BK) {
        // Consecutive threads read consecutive addresses of the stored layout.
        for (int e = tid; e < BM * BK; e += kThreads) {
          const int m = kTransA ? e % BM : e / BK;
          const int k = kTransA ? e / BM : e % BK;
          const Index gm = row0 + m, gk = k0 + k;
          float v = 0.f;
          if (gm < M && gk < K) v = kTransA ? A[gk * lda + gm] : A[gm * lda + gk];
          a_tile[k][m] = v;
        }
        for (int e = tid; e < BK * BN; e += kThreads) {
          const int n = kTransB ? e / BK : e % BN;
          const int k = kTransB ? e % BK : e / BN;
          const Index gn = col0 + n, gk = k0 + k;
          float v = 0.f;
          if (gn < N && gk < K) v = kTransB ? B[gn * ldb + gk] : B[gk * ldb + gn];
          b_tile[k][n] = v;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
          float a[TM], b[TN];
#pragma unroll
          for (int i = 0; i < TM; ++i) a[i] = a_tile[k][ty + i * Cfg::kThreadsY];
#pragma unroll
          for (int j = 0; j < TN; ++j) b[j] = b_tile[k][tx + j * Cfg::kThreadsX];
#pragma unroll
          for (int i = 0; i < TM; ++i) {
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
          }
        }
        __syncthreads();  // the tiles are overwritten by the next slice
      }

#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const Index gm = row0 + ty + i * Cfg::kThreadsY;
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const Index gn = col0 + tx + j * Cfg::kThreadsX;
          if (gn >= N) continue;
          float* c = C + gm * ldc + gn;
          *c = kBetaZero ? alpha * acc[i][j] : fmaf(beta, *c, alpha * acc[i][j]);
        }
      }
    }
  }
}

// C = beta * C (alpha == 0 or K == 0); beta == 0 writes zeros without reading.
__global__ void scale_kernel(Index M, Index N, float beta, float* __restrict__ C, Index ldc) {
  const Index total = M * N;
  for (Index e = blockIdx.x * Index(blockDim.x) + threadIdx.x; e < total;
       e += Index(gridDim.x) * blockDim.x) {
    float* c = C + (e / N) * ldc + e % N;
    *c = beta == 0.f ? 0.f : beta * *c;
  }
}

template <typename Cfg, bool kTransA, bool kTransB>
void launch_tiled(Index M, Index N, Index K, float alpha, const float* A, Index lda,
                  const float* B, Index ldb, float beta, float* C, Index ldc, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(std::min((N + Cfg::BN - 1) / Cfg::BN, kMaxGridX)),
                  static_cast<unsigned>(std::min((M + Cfg::BM - 1) / Cfg::BM, kMaxGridY)));
  if (beta == 0.f) {
    sgemm_kernel<Cfg, kTransA, kTransB, true>
        <<<grid, Cfg::kThreads, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    sgemm_kernel<Cfg, kTransA, kTransB, false>
        <<<grid, Cfg::kThreads, 0, s>>>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  FUSEDNN_CUDA_CHECK_LAUNCH();
}

template <bool kTransA, bool kTransB>
void launch(Index M, Index N, Index K, float alpha, const float* A, Index lda, const float* B,
            Index ldb, float beta, float* C, Index ldc, cudaStream_t s) {
  // Few rows (one recurrent step of a small batch): narrow tiles give more
  // blocks along N instead of mostly empty 64-row tiles.
  if (M <= NarrowTile::BM * 2) {
    launch_tiled<NarrowTile, kTransA, kTransB>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, s);
  } else {
    launch_tiled<LargeTile, kTransA, kTransB>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, s);
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
          const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
          std::int64_t ldc, std::uintptr_t stream) {
  if (M <= 0 || N <= 0) return;
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  if (K <= 0 || alpha == 0.f) {
    constexpr int kThreads = 256;
    const Index blocks = std::min<Index>((M * N + kThreads - 1) / kThreads, 4096);
    scale_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(M, N, beta, C, ldc);
    FUSEDNN_CUDA_CHECK_LAUNCH();
    return;
  }
  if (trans_a) {
    trans_b ? launch<true, true>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, s)
            : launch<true, false>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, s);
  } else {
    trans_b ? launch<false, true>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, s)
            : launch<false, false>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, s);
  }
}

}  // namespace fusednn::cuda
