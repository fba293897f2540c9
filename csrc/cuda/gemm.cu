// Tiled shared-memory SGEMM (contract in fusednn/cuda_gemm.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "device_facts.cuh"
#include "fusednn/cuda_check.h"
#include "fusednn/cuda_gemm.h"
#include "gemm_tiles.cuh"
#include "launch.cuh"

namespace fusednn::cuda {

namespace {

using namespace gemm_detail;

// Tiles of C are walked grid-stride in both directions, so any M and N fit
// the grid limits (65535 in y).
constexpr Index kMaxGridY = 65535;
constexpr Index kMaxGridX = 1 << 20;

template <typename Cfg, bool kTransA, bool kTransB, bool kBetaZero>
__global__ void __launch_bounds__(Cfg::kThreads) sgemm_kernel(Problem p) {
  __shared__ SharedSlices<Cfg> slices;
  const int tid = threadIdx.x;
  const Index tiles_m = (p.M + Cfg::BM - 1) / Cfg::BM;
  const Index tiles_n = (p.N + Cfg::BN - 1) / Cfg::BN;
  for (Index tile_m = blockIdx.y; tile_m < tiles_m; tile_m += gridDim.y) {
    for (Index tile_n = blockIdx.x; tile_n < tiles_n; tile_n += gridDim.x) {
      const Index row0 = tile_m * Cfg::BM, col0 = tile_n * Cfg::BN;
      Accumulators<Cfg> acc;
      clear(acc);
      for (Index k0 = 0; k0 < p.K; k0 += Cfg::BK) {
        stage_slice<Cfg, kTransA, kTransB>(p, slices, tid, row0, col0, k0);
        __syncthreads();
        multiply_slice(slices, tid, acc);
        __syncthreads();  // the slices are overwritten next
      }
      store_tile<Cfg, kBetaZero>(p, tid, row0, col0, acc);
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
void launch_tiled(const Problem& p, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(std::min((p.N + Cfg::BN - 1) / Cfg::BN, kMaxGridX)),
                  static_cast<unsigned>(std::min((p.M + Cfg::BM - 1) / Cfg::BM, kMaxGridY)));
  if (p.beta == 0.f) {
    launch_kernel(sgemm_kernel<Cfg, kTransA, kTransB, true>, grid, Cfg::kThreads, 0, s, p);
  } else {
    launch_kernel(sgemm_kernel<Cfg, kTransA, kTransB, false>, grid, Cfg::kThreads, 0, s, p);
  }
}

template <typename Cfg>
Index tiles_of(const Problem& p) {
  return (p.M + Cfg::BM - 1) / Cfg::BM * ((p.N + Cfg::BN - 1) / Cfg::BN);
}

template <bool kTransA, bool kTransB>
void launch(const Problem& p, cudaStream_t s) {
  // Few rows (one recurrent step of a small batch): narrow tiles give more
  // blocks along N instead of mostly empty 64-row tiles; where even those
  // leave SMs idle (N = 32, U = 256: 32 narrow tiles on 132 SMs) the skinny
  // 8 x 32 tiles give four times as many (a rule from the block count alone:
  // no GPU has timed the tiles yet).
  if (p.M <= NarrowTile::BM * 2) {
    if (tiles_of<NarrowTile>(p) < current_device_facts().multiprocessors) {
      launch_tiled<SkinnyTile, kTransA, kTransB>(p, s);
    } else {
      launch_tiled<NarrowTile, kTransA, kTransB>(p, s);
    }
  } else {
    launch_tiled<LargeTile, kTransA, kTransB>(p, s);
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
    launch_kernel(scale_kernel, static_cast<unsigned>(blocks), kThreads, 0, s, M, N, beta, C,
                  ldc);
    return;
  }
  const Problem p{M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  if (trans_a) {
    trans_b ? launch<true, true>(p, s) : launch<true, false>(p, s);
  } else {
    trans_b ? launch<false, true>(p, s) : launch<false, false>(p, s);
  }
}

}  // namespace fusednn::cuda
