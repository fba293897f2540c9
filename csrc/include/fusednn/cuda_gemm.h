// General matrix multiply on the GPU (float32), hand-written (this project does
// not use cuBLAS): the recurrent kernels' input projections, per-step
// recurrent products and whole-sequence weight gradients.
//
//   C = alpha * op(A) * op(B) + beta * C          op(X) = X or X^T
//
// Same conventions as the CPU core (fusednn/gemm.h): shape letters local to
// this header, op(A) (M, K), op(B) (K, N), C (M, N); every matrix row-major
// with a leading dimension, so sub-matrices of larger arrays are passed as a
// pointer plus the parent's row length; sizes and strides 64-bit.
//
// Algorithm: shared-memory tiling. A block computes a BM x BN tile of C,
// walking K in steps of BK: the block stages the BM x BK slice of op(A) and
// the BK x BN slice of op(B) in shared memory (coalesced global reads in
// whichever layout the operand is stored, transposes absorbed there), then
// every thread accumulates a TM x TN sub-tile in registers. Edges are
// zero-padded in the staging, so any M, N, K works. Two tile shapes: a large
// one, and a narrow one for the few-row products of a recurrent step.
//
// beta == 0 never reads C; alpha == 0 or K == 0 never reads A or B.
// Queued on `stream` (a cudaStream_t as an integer); throws fusednn::CudaError.
#pragma once

#include <cstdint>

namespace fusednn::cuda {

//   trans_a   false: A stored (M, K), lda >= K; true: A stored (K, M), lda >= M
//   trans_b   false: B stored (K, N), ldb >= N; true: B stored (N, K), ldb >= K
//   M, N, K   >= 0; M == 0 or N == 0 is a no-op
//   C         (M, N), ldc >= N; must not alias A or B
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
          const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
          std::int64_t ldc, std::uintptr_t stream);

}  // namespace fusednn::cuda
