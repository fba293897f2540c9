// gemm.cu (with gemm_tiles.cuh) in the emulator against a float64 product: all
// four transpositions, the skinny and narrow (M <= 32) and the large tile, beta 0 (C is
// poisoned and must not be read) and beta != 0, leading dimensions larger than
// the rows, sizes that leave partial tiles in M, N and K, and the scale-only
// kernel (alpha = 0, K = 0).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "cuda_emu.h"
#include "fusednn/cuda_gemm.h"

namespace {

using Index = std::int64_t;

// A float32 sum of K products plus beta * C: within (K + 2) u of the sum of
// magnitudes |alpha| sum |a b| + |beta c| (u = 2^-24).
void gemm_case(bool ta, bool tb, Index M, Index N, Index K, float alpha, float beta) {
  const std::string name = std::string("gemm ") + (ta ? "T" : "N") + (tb ? "T" : "N") +
                           " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                           " K=" + std::to_string(K) + " alpha=" + std::to_string(alpha) +
                           " beta=" + std::to_string(beta);
  const Index a_rows = ta ? K : M, a_cols = ta ? M : K;
  const Index b_rows = tb ? N : K, b_cols = tb ? K : N;
  const Index lda = a_cols + 3, ldb = b_cols + 1, ldc = N + 2;
  const auto A = driver::uniform<float>(a_rows * lda, -1, 1);
  const auto B = driver::uniform<float>(b_rows * ldb, -1, 1);
  auto C = beta == 0.f ? driver::poisoned<float>(M * ldc) : driver::uniform<float>(M * ldc, -1, 1);
  const auto C0 = C;
  fusednn::cuda::gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc,
                      0);
  std::vector<float> got;
  std::vector<double> want, bound;
  const double u = std::ldexp(1.0, -24);
  for (Index i = 0; i < M; ++i) {
    for (Index j = 0; j < N; ++j) {
      double sum = 0, magnitude = 0;
      for (Index k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        sum += a * b;
        magnitude += std::fabs(a * b);
      }
      const double c = beta == 0.f ? 0.0 : static_cast<double>(C0[i * ldc + j]);
      got.push_back(C[i * ldc + j]);
      want.push_back(alpha * sum + beta * c);
      bound.push_back((K + 2) * u * (std::fabs(alpha) * magnitude + std::fabs(beta * c)));
    }
  }
  driver::expect_within(name, got, want, bound);
  // The padding between rows of C is never written.
  std::vector<float> padding, padding_before;
  for (Index i = 0; i < M; ++i) {
    for (Index j = N; j < ldc; ++j) {
      padding.push_back(C[i * ldc + j]);
      padding_before.push_back(C0[i * ldc + j]);
    }
  }
  driver::expect_equal(name + " padding untouched", padding, padding_before);
}

// Few rows and few narrow tiles (2 for M = 5, N = 70, fewer than the
// emulator's 4 SMs): the skinny tiles give 3 blocks.
void skinny_tile_case() {
  const long long before = cuda_emu::blocks_launched();
  gemm_case(false, false, 5, 70, 37, 1.f, 0.f);
  const long long blocks = cuda_emu::blocks_launched() - before;
  driver::expect_true("M=5 N=70: 3 skinny tiles, not 2 narrow ones", blocks == 3,
                      std::to_string(blocks) + " blocks");
}

}  // namespace

int main(int argc, char** argv) {
  const bool small = argc > 1 && std::string(argv[1]) == "--small";
  gemm_case(false, false, 1, 5, 3, 1.f, 0.f);      // narrow tile, one row
  gemm_case(true, false, 33, 70, 37, 0.5f, 1.f);   // large tile, partial tiles everywhere
  gemm_case(false, false, 4, 3, 0, 1.f, 0.5f);     // K = 0: C = beta * C
  skinny_tile_case();
  if (!small) {
    gemm_case(false, true, 17, 65, 33, -1.f, 0.25f);
    gemm_case(true, true, 70, 9, 18, 2.f, 0.f);
    gemm_case(true, true, 20, 90, 40, 1.f, 0.5f);  // skinny: 3 row tiles, the last partial
    gemm_case(false, false, 65, 66, 17, 1.f, 0.f);
    gemm_case(true, false, 7, 3, 5, 0.f, 0.f);     // alpha = 0, beta = 0: zeros, C unread
  }
  return driver::result();
}
