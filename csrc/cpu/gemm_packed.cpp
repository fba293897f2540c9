// GEMM with a right operand packed once (PackedMatrix, gemm_packed in
// fusednn/gemm.h): the per-step recurrent products, where one kernel R meets
// a new, small left operand (the batch's states) at every step. Whole MR-row
// slivers of A go through gemm_kernels.h's micro-kernel, read in place; the
// rows left over (all of them for a batch of one) through a kernel sized to
// them, not a zero-padded MR-row tile that would multiply mostly zeros.
#include <algorithm>
#include <cstdlib>
#include <new>

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

#include "fusednn/gemm.h"
#include "gemm_kernels.h"

namespace fusednn::cpu {
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

// Below this many multiply-adds per thread a fork costs more than it saves
// (a step of a small recurrent layer runs in a few microseconds).
constexpr double kMinWorkPerThread = 64.0 * 1024;
// Packing fewer elements than this stays on one thread.
constexpr std::int64_t kMinParallelPackElements = std::int64_t(1) << 16;

// Slivers [s0, s1) of C on the calling thread: K in blocks of at most KC, so
// that a block of a sliver stays in L1 while the row blocks of A pass over it.
template <typename T>
void packed_columns(Index M, Index N, Index K, const T* A, Index lda, const T* packed, T beta,
                    T* C, Index ldc, Index s0, Index s1) {
  constexpr int MR = Blocking<T>::MR;
  constexpr Index NR = Blocking<T>::NR;
  // K is blocked only when several row blocks reuse each block of a sliver; a
  // single one reads the packed slivers straight through, in memory order.
  const Index k_blocks = M > MR ? ceil_div(K, Blocking<T>::KC) : 1;
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
void PackedMatrix<T>::Free::operator()(T* p) const {
  std::free(p);
}

template <typename T>
PackedMatrix<T>::PackedMatrix(bool trans_b, std::int64_t K, std::int64_t N, const T* B,
                              std::int64_t ldb)
    : rows_(K), cols_(N) {
  constexpr std::int64_t NR = gemm_detail::Blocking<T>::NR;
  const std::int64_t slivers = gemm_detail::ceil_div(N, NR);
  const std::int64_t elements = std::max<std::int64_t>(slivers * K * NR, 1);
  const std::int64_t bytes = (elements * std::int64_t(sizeof(T)) + 63) / 64 * 64;
  data_.reset(static_cast<T*>(std::aligned_alloc(64, std::size_t(bytes))));
  if (!data_) throw std::bad_alloc();
  // The threads pack in parallel (a copy of R^T for a 512-unit LSTM took 1 ms
  // on one thread), each roughly the slivers it reads in gemm_packed.
  T* const packed = data_.get();
#pragma omp parallel for schedule(static) if (elements >= gemm_detail::kMinParallelPackElements)
  for (std::int64_t s = 0; s < slivers; ++s) {
    const std::int64_t j0 = s * NR;
    const std::int64_t cols = std::min(NR, N - j0);
    T* out = packed + s * K * NR;
    if (trans_b) {
      // Down each stored row: reading all NR rows at every k would keep NR
      // lines ldb apart in use, which share a cache set when ldb is a power of 2.
      for (std::int64_t c = 0; c < NR; ++c) {
        if (c < cols) {
          const T* row = B + (j0 + c) * ldb;
          for (std::int64_t k = 0; k < K; ++k) out[k * NR + c] = row[k];
        } else {
          for (std::int64_t k = 0; k < K; ++k) out[k * NR + c] = T(0);
        }
      }
    } else {
      for (std::int64_t k = 0; k < K; ++k, out += NR) {
        std::copy(B + k * ldb + j0, B + k * ldb + j0 + cols, out);
        std::fill(out + cols, out + NR, T(0));
      }
    }
  }
}

template <typename T>
int PackedMatrix<T>::useful_threads(std::int64_t M) const {
#ifdef FUSEDNN_OPENMP
  if (omp_in_parallel()) return 1;
  const double macs = double(M) * double(cols_) * double(rows_);
  const double by_work = std::max(1.0, macs / gemm_detail::kMinWorkPerThread);
  const double slivers = double(gemm_detail::ceil_div(cols_, gemm_detail::Blocking<T>::NR));
  return int(std::min<double>({double(omp_get_max_threads()), by_work, std::max(1.0, slivers)}));
#else
  (void)M;
  return 1;
#endif
}

template <typename T>
typename PackedMatrix<T>::Columns PackedMatrix<T>::part_columns(int part, int parts) const {
  constexpr std::int64_t NR = gemm_detail::Blocking<T>::NR;
  const std::int64_t slivers = gemm_detail::ceil_div(cols_, NR);
  return {std::min(cols_, slivers * part / parts * NR),
          std::min(cols_, slivers * (part + 1) / parts * NR)};
}

template <typename T>
void gemm_packed_columns(std::int64_t M, const T* A, std::int64_t lda, const PackedMatrix<T>& B,
                         T beta, T* C, std::int64_t ldc, typename PackedMatrix<T>::Columns cols) {
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

template class PackedMatrix<float>;
template class PackedMatrix<double>;
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

}  // namespace fusednn::cpu
