// General matrix multiply on the CPU: the core under Dense, convolution
// (im2col / implicit GEMM) and the LSTM/GRU input and recurrent projections.
//
//   C = alpha * op(A) * op(B) + beta * C          op(X) = X or X^T
//
// Shape letters for this header only (GEMM convention, not the op letters of
// common.h): op(A) is (M, K), op(B) is (K, N), C is (M, N).
// Every matrix is row-major with a leading dimension (the distance, in
// elements, between the starts of two consecutive stored rows), so a
// sub-matrix of a larger row-major array is passed as a pointer plus the
// parent's row length. Sizes and strides are 64-bit.
//
// Algorithm (GotoBLAS / BLIS): the loops over N, K and M are blocked by NC, KC
// and MC so that a packed KC x NC panel of op(B) stays in L3 and a packed
// MC x KC block of op(A) stays in the core's L2; a register-blocked MR x NR
// micro-kernel streams both through L1. Packing copies the blocks into
// contiguous, zero-padded buffers, which is also where the transposes are
// absorbed; where a sliver would be used only a few times (small N or M, as in
// convolutions and per-step recurrent products) it is read in place instead.
// OpenMP threads split C into a grid of rectangles (over M, over N,
// or both, whichever gives the least work per thread including packing) and
// each runs the blocked loops on its own rectangle without synchronising.
// Block sizes follow the caches read at run time (fusednn/cpu_caches.h);
// their reasons: csrc/cpu/gemm_kernels.h.
//
// SIMD: each instruction set compiled (fusednn/cpu_isa.h; one, -march=native,
// with FUSEDNN_NATIVE=ON) gets the micro-kernel of its widest vectors:
//   __AVX512F__  float 8x32, double 8x16 micro-kernel on 512-bit FMA
//   __AVX2__     float  6x16, double  6x8  micro-kernel on 256-bit FMA
//   else SSE2 (x86-64) or 64-bit ARM, with GCC or Clang:
//                float  6x8,  double  6x4  micro-kernel on 128-bit vectors
//   otherwise    portable C++ 4x8 micro-kernel left to the auto-vectoriser
// gemm_simd_path() names the chosen path's micro-kernel.
//
// Threads: omp_get_max_threads() (OMP_NUM_THREADS), reduced for small
// products; a call made from inside an OpenMP parallel region runs on the
// calling thread only. Packing buffers are per thread and reused between calls.
#pragma once

#include <cstdint>
#include <memory>

#include "fusednn/cpu_isa.h"

namespace fusednn::cpu {

FUSEDNN_CPU_KERNELS(

// C = alpha * op(A) * op(B) + beta * C for T = float or double.
//   trans_a      false: A is stored (M, K), row i at A + i * lda   (lda >= K)
//                true:  A is stored (K, M), row k at A + k * lda   (lda >= M)
//   trans_b      false: B is stored (K, N), row k at B + k * ldb   (ldb >= N)
//                true:  B is stored (N, K), row j at B + j * ldb   (ldb >= K)
//   M, N, K      >= 0; M == 0 or N == 0 is a no-op
//   C            (M, N), row i at C + i * ldc (ldc >= N); must not alias A or B
// beta == 0 never reads C (NaN or uninitialised memory in C is overwritten);
// alpha == 0 or K == 0 never reads A or B (C becomes beta * C).
template <typename T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
          T alpha, const T* A, std::int64_t lda, const T* B, std::int64_t ldb,
          T beta, T* C, std::int64_t ldc);

// `batch` independent products with the same shapes, matrix b at A + b * stride_a,
// B + b * stride_b, C + b * stride_c (e.g. per sample or per group). A stride of 0
// reuses one matrix for every product (the same weights for every batch item).
// Products too small to occupy all threads alone run side by side, one thread
// each; larger ones run one after another on all threads. The C matrices must
// not overlap each other.
template <typename T>
void gemm_strided_batched(bool trans_a, bool trans_b, std::int64_t batch,
                          std::int64_t M, std::int64_t N, std::int64_t K,
                          T alpha, const T* A, std::int64_t lda, std::int64_t stride_a,
                          const T* B, std::int64_t ldb, std::int64_t stride_b,
                          T beta, T* C, std::int64_t ldc, std::int64_t stride_c);

// "avx512", "avx2", "vec128" or "portable": the chosen path's micro-kernel.
const char* gemm_simd_path();

extern template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, float,
                                 const float*, std::int64_t, const float*, std::int64_t, float,
                                 float*, std::int64_t);
extern template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, double,
                                  const double*, std::int64_t, const double*, std::int64_t, double,
                                  double*, std::int64_t);
extern template void gemm_strided_batched<float>(bool, bool, std::int64_t, std::int64_t,
                                                 std::int64_t, std::int64_t, float, const float*,
                                                 std::int64_t, std::int64_t, const float*,
                                                 std::int64_t, std::int64_t, float, float*,
                                                 std::int64_t, std::int64_t);
extern template void gemm_strided_batched<double>(bool, bool, std::int64_t, std::int64_t,
                                                  std::int64_t, std::int64_t, double,
                                                  const double*, std::int64_t, std::int64_t,
                                                  const double*, std::int64_t, std::int64_t,
                                                  double, double*, std::int64_t, std::int64_t);

)  // FUSEDNN_CPU_KERNELS

// ---------------------------------------------------------------------------
// A right operand packed once for many products (csrc/cpu/gemm_packed.cpp):
// the recurrent kernel meets new states at every step of a sequence, and
// gemm() would copy it (or read it with a large stride) at every one.

// op(B) (K, N) in the chosen path's micro-kernel layout: NR-column slivers
// over all K rows, the last one zero-padded (packed once, by any thread).
//   trans_b  false: B stored (K, N), row k at B + k * ldb (ldb >= N)
//            true:  B stored (N, K), row j at B + j * ldb (ldb >= K)
template <typename T>
class PackedMatrix {
 public:
  PackedMatrix(bool trans_b, std::int64_t K, std::int64_t N, const T* B, std::int64_t ldb);
  std::int64_t rows() const { return rows_; }  // K
  std::int64_t cols() const { return cols_; }  // N
  std::int64_t sliver() const { return sliver_; }  // NR
  const T* data() const { return data_.get(); }

  // Threads worth using for a product with M rows (1 inside a parallel
  // region): enough work for each, and at most one per sliver.
  int useful_threads(std::int64_t M) const;

  // The columns [begin, end) of part `part` of `parts`: whole slivers, as even
  // as possible (what gemm_packed gives each of `parts` threads).
  struct Columns {
    std::int64_t begin;
    std::int64_t end;
  };
  Columns part_columns(int part, int parts) const;

 private:
  struct Free {
    void operator()(T* p) const;
  };
  std::int64_t rows_;
  std::int64_t cols_;
  std::int64_t sliver_;
  std::unique_ptr<T, Free> data_;
};

extern template class PackedMatrix<float>;
extern template class PackedMatrix<double>;

FUSEDNN_CPU_KERNELS(

// NR: the width of the slivers of a PackedMatrix<T>.
template <typename T>
std::int64_t packed_sliver_width();

// C (M, N) = A (M, K) x B (K, N) + beta * C, B packed, for products with few
// rows (a batch of states): A row i at A + i * lda (lda >= K), C row i at
// C + i * ldc (ldc >= N), C must not alias A. beta == 0 never reads C.
// Threads split the columns of C into fixed parts, so that at every call the
// same thread reads the same part of B, which stays in its core's cache.
template <typename T>
void gemm_packed(std::int64_t M, const T* A, std::int64_t lda, const PackedMatrix<T>& B, T beta,
                 T* C, std::int64_t ldc);

// gemm_packed's columns `cols` of C only (from B.part_columns), on the calling
// thread: for callers that run their own team of threads. C points at column
// 0 of C, as for gemm_packed.
template <typename T>
void gemm_packed_columns(std::int64_t M, const T* A, std::int64_t lda, const PackedMatrix<T>& B,
                         T beta, T* C, std::int64_t ldc,
                         typename PackedMatrix<T>::Columns cols);

extern template std::int64_t packed_sliver_width<float>();
extern template std::int64_t packed_sliver_width<double>();
extern template void gemm_packed<float>(std::int64_t, const float*, std::int64_t,
                                        const PackedMatrix<float>&, float, float*, std::int64_t);
extern template void gemm_packed<double>(std::int64_t, const double*, std::int64_t,
                                         const PackedMatrix<double>&, double, double*,
                                         std::int64_t);
extern template void gemm_packed_columns<float>(std::int64_t, const float*, std::int64_t,
                                                const PackedMatrix<float>&, float, float*,
                                                std::int64_t, PackedMatrix<float>::Columns);
extern template void gemm_packed_columns<double>(std::int64_t, const double*, std::int64_t,
                                                 const PackedMatrix<double>&, double, double*,
                                                 std::int64_t, PackedMatrix<double>::Columns);
)  // FUSEDNN_CPU_KERNELS

}  // namespace fusednn::cpu
