// GEMM with a right operand packed once (PackedMatrix, gemm_packed in
// fusednn/gemm.h): the per-step recurrent products, where one kernel R meets
// a new, small left operand (the batch's states) at every step. Whole MR-row
// slivers of A go through gemm_kernels.h's micro-kernel, read in place; the
// rows left over (all of them for a batch of one) through a kernel sized to
// them, not a zero-padded MR-row tile that would multiply mostly zeros.
#include <algorithm>

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

#include "fusednn/gemm.h"
#include "gemm_kernels.h"

FUSEDNN_CPU_BEGIN
namespace gemm_detail {
namespace {

using Index = std::int64_t;

Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }

// The kernels' helpers must be inlined for their accumulators to stay in registers.
#if defined(__GNUC__)
#define FUSEDNN_GEMM_INLINE inline __attribute__((always_inline))
#else
#define FUSEDNN_GEMM_INLINE inline
#endif

// acc (Rows x NR) += A[0:Rows, k] x sliver row k, a at A(0, k), b at the sliver's row k.
template <typename T, int Rows>
FUSEDNN_GEMM_INLINE void accumulate_row_block(typename Vec<T>::Reg (&acc)[Rows][Blocking<T>::NV],
                                              const T* a, Index lda, const T* b) {
  using V = Vec<T>;
  using Reg = typename V::Reg;
  constexpr int NV = Blocking<T>::NV;
  Reg bv[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) bv[v] = in_register(V::load(b + v * V::kLanes));
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) {
    const Reg ai = V::broadcast(a[i * lda]);
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(ai, bv[v], acc[i][v]);
  }
}

// C[0:Rows, 0:NR] = A[0:Rows, 0:kc] x sliver + beta * C for Rows < MR, the
// sliver packed (b[k * NR + c]). Few rows give few independent FMA chains, so
// k is split into KS interleaved partial sums that keep about as many in
// flight as the MR-row micro-kernel has, enough to cover the FMA latency (one
// row stops at 4: it is bound by reading B, which it uses once).
template <typename T, int Rows>
void few_rows_kernel(Index kc, const T* __restrict a, Index lda, const T* __restrict b, T beta,
                     T* __restrict c, Index ldc) {
  using V = Vec<T>;
  using Reg = typename V::Reg;
  constexpr int NV = Blocking<T>::NV;
  constexpr int NR = Blocking<T>::NR;
  constexpr int L = V::kLanes;
  constexpr int KS = std::min(4, std::max(1, Blocking<T>::MR / Rows));

  Reg acc[KS][Rows][NV];
#pragma GCC unroll 4
  for (int q = 0; q < KS; ++q) {
#pragma GCC unroll 16
    for (int i = 0; i < Rows; ++i) {
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[q][i][v] = V::zero();
    }
  }
  const Index k_groups_end = kc / KS * KS;
  for (Index k0 = 0; k0 < k_groups_end; k0 += KS) {
#pragma GCC unroll 4
    for (int q = 0; q < KS; ++q) {
      accumulate_row_block<T, Rows>(acc[q], a + k0 + q, lda, b + (k0 + q) * NR);
    }
  }
  for (Index k = k_groups_end; k < kc; ++k) {
    accumulate_row_block<T, Rows>(acc[0], a + k, lda, b + k * NR);
  }

  const Reg beta_v = V::broadcast(beta);
#pragma GCC unroll 16
  for (int i = 0; i < Rows; ++i) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      Reg sum = acc[0][i][v];
      // The partial sums added (as fma by 1: Vec has no add).
#pragma GCC unroll 4
      for (int q = 1; q < KS; ++q) sum = V::fma(V::broadcast(T(1)), acc[q][i][v], sum);
      T* cp = c + i * ldc + v * L;
      V::store(cp, beta == T(0) ? sum : V::fma(beta_v, V::load(cp), sum));
    }
  }
}

// The kernel for `rows` (1 <= rows <= MR) rows of A read in place.
template <typename T, int Rows = 1>
void rows_kernel(int rows, Index kc, const T* a, Index lda, const T* b, T beta, T* c, Index ldc) {
  constexpr int MR = Blocking<T>::MR;
  if constexpr (Rows == MR) {
    micro_kernel<T, ASource::kStoredMK, BSource::kPacked>(kc, a, lda, b, 0, T(1), beta, c, ldc);
  } else {
    if (rows == Rows) return few_rows_kernel<T, Rows>(kc, a, lda, b, beta, c, ldc);
    rows_kernel<T, Rows + 1>(rows, kc, a, lda, b, beta, c, ldc);
  }
}

// One tile of C, `rows` x `cols`; a tile cut by the right edge of C is
// computed into a local buffer (its sliver is zero-padded) and copied out.
template <typename T>
void packed_tile(int rows, Index cols, Index kc, const T* a, Index lda, const T* b, T beta, T* c,
                 Index ldc) {
  constexpr int MR = Blocking<T>::MR;
  constexpr int NR = Blocking<T>::NR;
  if (cols == NR) return rows_kernel<T>(rows, kc, a, lda, b, beta, c, ldc);
  alignas(64) T partial[MR * NR];
  rows_kernel<T>(rows, kc, a, lda, b, T(0), partial, NR);
  for (int i = 0; i < rows; ++i) {
    T* crow = c + i * ldc;
    const T* prow = partial + i * NR;
    for (Index j = 0; j < cols; ++j) crow[j] = beta == T(0) ? prow[j] : prow[j] + beta * crow[j];
  }
}

// Slivers [s0, s1) of C on the calling thread: K in blocks of at most KC, so
// that a block of a sliver stays in L1 while the row blocks of A pass over it.
template <typename T>
void packed_columns(Index M, Index N, Index K, const T* A, Index lda, const T* packed, T beta,
                    T* C, Index ldc, Index s0, Index s1) {
  constexpr int MR = Blocking<T>::MR;
  constexpr Index NR = Blocking<T>::NR;
  // K is blocked only when several row blocks reuse each block of a sliver; a
  // single one reads the packed slivers straight through, in memory order.
  const Index k_blocks = M > MR ? ceil_div(K, cache_blocks<T>().kc) : 1;
  for (Index kb = 0; kb < k_blocks; ++kb) {
    const Index p0 = K * kb / k_blocks;
    const Index kc = K * (kb + 1) / k_blocks - p0;
    const T beta_block = kb == 0 ? beta : T(1);  // later blocks accumulate
    for (Index s = s0; s < s1; ++s) {
      const T* b = packed + s * K * NR + p0 * NR;
      const Index cols = std::min(NR, N - s * NR);
      for (Index i = 0; i < M; i += MR) {
        const int rows = int(std::min<Index>(MR, M - i));
        packed_tile(rows, cols, kc, A + i * lda + p0, lda, b, beta_block, C + i * ldc + s * NR,
                    ldc);
      }
    }
  }
}

}  // namespace
}  // namespace gemm_detail

template <typename T>
std::int64_t packed_sliver_width() {
  FUSEDNN_DISPATCH(packed_sliver_width<T>());
  return gemm_detail::Blocking<T>::NR;
}

template <typename T>
void gemm_packed_columns(std::int64_t M, const T* A, std::int64_t lda, const PackedMatrix<T>& B,
                         T beta, T* C, std::int64_t ldc, typename PackedMatrix<T>::Columns cols) {
  FUSEDNN_DISPATCH(gemm_packed_columns<T>(M, A, lda, B, beta, C, ldc, cols));
  using gemm_detail::Index;
  constexpr Index NR = gemm_detail::Blocking<T>::NR;
  if (M <= 0 || cols.end <= cols.begin) return;
  if (B.rows() == 0) {  // C = beta * C, reading C only when beta != 0
    for (Index i = 0; i < M; ++i) {
      T* row = C + i * ldc;
      for (Index j = cols.begin; j < cols.end; ++j) row[j] = beta == T(0) ? T(0) : beta * row[j];
    }
    return;
  }
  gemm_detail::packed_columns(M, B.cols(), B.rows(), A, lda, B.data(), beta, C, ldc,
                              cols.begin / NR, gemm_detail::ceil_div(cols.end, NR));
}

template <typename T>
void gemm_packed(std::int64_t M, const T* A, std::int64_t lda, const PackedMatrix<T>& B, T beta,
                 T* C, std::int64_t ldc) {
  FUSEDNN_DISPATCH(gemm_packed<T>(M, A, lda, B, beta, C, ldc));
#ifdef FUSEDNN_OPENMP
  const int threads = B.useful_threads(M);
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    gemm_packed_columns(M, A, lda, B, beta, C, ldc,
                        B.part_columns(omp_get_thread_num(), omp_get_num_threads()));
    return;
  }
#endif
  gemm_packed_columns(M, A, lda, B, beta, C, ldc, B.part_columns(0, 1));
}

template std::int64_t packed_sliver_width<float>();
template std::int64_t packed_sliver_width<double>();
template void gemm_packed<float>(std::int64_t, const float*, std::int64_t,
                                 const PackedMatrix<float>&, float, float*, std::int64_t);
template void gemm_packed<double>(std::int64_t, const double*, std::int64_t,
                                  const PackedMatrix<double>&, double, double*, std::int64_t);
template void gemm_packed_columns<float>(std::int64_t, const float*, std::int64_t,
                                         const PackedMatrix<float>&, float, float*, std::int64_t,
                                         PackedMatrix<float>::Columns);
template void gemm_packed_columns<double>(std::int64_t, const double*, std::int64_t,
                                          const PackedMatrix<double>&, double, double*,
                                          std::int64_t, PackedMatrix<double>::Columns);

FUSEDNN_CPU_END
