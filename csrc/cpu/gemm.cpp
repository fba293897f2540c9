// CPU GEMM: packing, the blocked loop nest (GotoBLAS / BLIS) and threading.
// The micro-kernel and the block sizes live in gemm_kernels.h.
#include "fusednn/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

#include "gemm_kernels.h"

namespace fusednn::cpu {
namespace gemm_detail {
namespace {

using Index = std::int64_t;

Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }
Index round_up(Index a, Index b) { return ceil_div(a, b) * b; }

// Largest block <= max_block (a multiple of `align`) that splits `extent` into
// equal blocks, so 1040 rows with MC = 1008 become two blocks of 520, not 1008 + 32.
Index even_block(Index extent, Index max_block, Index align) {
  const Index blocks = ceil_div(extent, max_block);
  return std::min(max_block, round_up(ceil_div(extent, blocks), align));
}

// A growable, 64-byte aligned scratch buffer. One per thread and element type
// (thread_local), kept between calls so that small GEMMs never pay for
// allocation and first-touch page faults.
template <typename T>
class PackBuffer {
 public:
  T* get(Index elements) {
    if (elements > capacity_) {
      const std::size_t bytes = round_up(elements * Index(sizeof(T)), 64);
      data_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      if (!data_) throw std::bad_alloc();
      capacity_ = elements;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  Index capacity_ = 0;
};

// The calling thread's workspace, which holds every thread's packed blocks.
template <typename T>
T* thread_workspace(Index elements) {
  thread_local PackBuffer<T> buffer;
  return buffer.get(elements);
}

// Elements of T in one 64-byte cache line.
template <typename T>
constexpr Index kLineElems = 64 / Index(sizeof(T));

// op(A) rows [i0, i0 + mc), columns [p0, p0 + kc) into MR-row slivers:
// sliver s holds dst[s * MR * kc + k * MR + r] = op(A)(i0 + s * MR + r, p0 + k),
// rows past the edge zero-filled so the micro-kernel never branches.
template <typename T>
void pack_a(bool trans_a, const T* A, Index lda, Index i0, Index mc, Index p0, Index kc, T* dst) {
  constexpr int MR = Blocking<T>::MR;
  for (Index is = 0; is < mc; is += MR, dst += MR * kc) {
    const Index rows = std::min<Index>(MR, mc - is);
    if (trans_a) {
      // Stored (K, M): the MR values of one k are contiguous.
      const T* src = A + p0 * lda + (i0 + is);
      for (Index k = 0; k < kc; ++k) {
        T* out = dst + k * MR;
        for (Index r = 0; r < rows; ++r) out[r] = src[k * lda + r];
        for (Index r = rows; r < MR; ++r) out[r] = T(0);
      }
    } else {
      // Stored (M, K): read each row contiguously, write with stride MR.
      const T* src = A + (i0 + is) * lda + p0;
      if (rows == MR) {
        for (Index k = 0; k < kc; ++k) {
#pragma GCC unroll 16
          for (int r = 0; r < MR; ++r) dst[k * MR + r] = src[r * lda + k];
        }
      } else {
        for (Index k = 0; k < kc; ++k) {
          for (Index r = 0; r < rows; ++r) dst[k * MR + r] = src[r * lda + k];
          for (Index r = rows; r < MR; ++r) dst[k * MR + r] = T(0);
        }
      }
    }
  }
}

// op(B) rows [p0, p0 + kc), columns [j0, j0 + nc) into NR-column slivers:
// sliver s holds dst[s * NR * kc + k * NR + c] = op(B)(p0 + k, j0 + s * NR + c),
// columns past the edge zero-filled.
template <typename T>
void pack_b(bool trans_b, const T* B, Index ldb, Index p0, Index kc, Index j0, Index nc, T* dst) {
  constexpr int NR = Blocking<T>::NR;
  constexpr int NV = Blocking<T>::NV;
  constexpr int L = Vec<T>::kLanes;
  for (Index s = 0; s * NR < nc; ++s) {
    const Index js = s * NR;
    const Index cols = std::min<Index>(NR, nc - js);
    T* out = dst + s * NR * kc;
    if (trans_b) {
      // Stored (N, K): a transpose, done in L x L register blocks (L SIMD lanes)
      // that read one run of L values from each of L stored rows.
      const T* src = B + (j0 + js) * ldb + p0;
      const Index k_vec_end = cols == NR ? kc / L * L : 0;
      for (Index k0 = 0; k0 < k_vec_end; k0 += L) {
        for (int v = 0; v < NV; ++v) {
          typename Vec<T>::Reg block[L];
          for (int c = 0; c < L; ++c) block[c] = Vec<T>::load(src + (v * L + c) * ldb + k0);
          Vec<T>::transpose(block);
          for (int k = 0; k < L; ++k) Vec<T>::store(out + (k0 + k) * NR + v * L, block[k]);
        }
      }
      for (Index k = k_vec_end; k < kc; ++k) {
        for (Index c = 0; c < cols; ++c) out[k * NR + c] = src[c * ldb + k];
        for (Index c = cols; c < NR; ++c) out[k * NR + c] = T(0);
      }
    } else {
      // Stored (K, N): the NR values of one k are contiguous.
      const T* src = B + p0 * ldb + (j0 + js);
      if (cols == NR) {
        for (Index k = 0; k < kc; ++k) std::memcpy(out + k * NR, src + k * ldb, NR * sizeof(T));
      } else {
        for (Index k = 0; k < kc; ++k) {
          std::memcpy(out + k * NR, src + k * ldb, cols * sizeof(T));
          for (Index c = cols; c < NR; ++c) out[k * NR + c] = T(0);
        }
      }
    }
  }
}

// One MR x NR tile of C from packed slivers; tiles cut by the edge of C go
// through a local buffer so the micro-kernel always sees a full tile.
template <typename T>
void tile(Index kc, const T* a, const T* b, T alpha, T beta, T* c, Index ldc, Index rows,
          Index cols) {
  constexpr int MR = Blocking<T>::MR;
  constexpr int NR = Blocking<T>::NR;
  if (rows == MR && cols == NR) {
    micro_kernel<T>(kc, a, b, alpha, beta, c, ldc);
    return;
  }
  alignas(64) T partial[MR * NR];
  micro_kernel<T>(kc, a, b, alpha, T(0), partial, NR);
  for (Index i = 0; i < rows; ++i) {
    T* crow = c + i * ldc;
    const T* prow = partial + i * NR;
    if (beta == T(0)) {
      for (Index j = 0; j < cols; ++j) crow[j] = prow[j];
    } else {
      for (Index j = 0; j < cols; ++j) crow[j] = prow[j] + beta * crow[j];
    }
  }
}

// C = beta * C, for alpha == 0 or K == 0 (beta == 0 writes zeros without reading).
template <typename T>
void scale_c(Index M, Index N, T beta, T* C, Index ldc) {
  for (Index i = 0; i < M; ++i) {
    T* row = C + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + N, T(0));
    } else if (beta != T(1)) {
      for (Index j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

// Below this many multiply-adds per thread, forking costs more than it saves.
constexpr Index kMinWorkPerThread = Index(48) * 48 * 48;

int thread_count(Index M, Index N, Index K) {
#ifdef FUSEDNN_OPENMP
  if (omp_in_parallel()) return 1;
  const Index by_work = std::max<Index>(1, M * N * K / kMinWorkPerThread);
  return int(std::min<Index>(omp_get_max_threads(), by_work));
#else
  (void)M, (void)N, (void)K;
  return 1;
#endif
}

// How the threads split C: a tm x tn grid of rectangles, tm ways over the
// MR-row slivers of M and tn ways over the NR-column slivers of N. Each thread
// then runs the whole blocked loop nest on its rectangle with its own packed
// copies of A and B, so threads never wait for each other (a shared B panel
// would need two barriers per K block, and one descheduled thread would stall
// all the others at every one of them).
struct ThreadGrid {
  int tm = 1;
  int tn = 1;
};

// Packing one element of A or B costs about as much as this many
// multiply-adds in the micro-kernel (a load and a store against 32 FMA lanes).
constexpr Index kPackCostInMacs = 16;

// The factorisation of `threads` that minimises one thread's work: its
// rectangle of C (padded to whole tiles) plus the rows of A and columns of B
// it packs, all per step of K. Ties go to splitting M.
template <typename T>
ThreadGrid choose_grid(int threads, Index M, Index N) {
  constexpr Index MR = Blocking<T>::MR;
  constexpr Index NR = Blocking<T>::NR;
  const Index m_slivers = ceil_div(M, MR);
  const Index n_slivers = ceil_div(N, NR);
  ThreadGrid best;
  Index best_cost = -1;
  for (int tm = threads; tm >= 1; --tm) {
    if (threads % tm != 0) continue;
    const int tn = threads / tm;
    const Index rows = ceil_div(m_slivers, tm) * MR;
    const Index cols = ceil_div(n_slivers, tn) * NR;
    const Index cost = rows * cols + kPackCostInMacs * (rows + cols);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best = {tm, tn};
    }
  }
  return best;
}

// [begin, end) of part `part` when `count` items are split `parts` ways.
inline Index split_point(Index count, int parts, int part) { return count * part / parts; }

// The blocked loop nest on one thread: C (M, N) from op(A) (M, K) and op(B)
// (K, N), packing into a_pack (room for MC x KC) and b_pack (KC x NC).
template <typename T>
void gemm_serial(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A,
                 Index lda, const T* B, Index ldb, T beta, T* C, Index ldc, T* a_pack,
                 T* b_pack) {
  using Blk = Blocking<T>;
  constexpr Index MR = Blk::MR;
  constexpr Index NR = Blk::NR;
  const Index nc_max = even_block(N, Blk::NC, NR);
  const Index kc_max = even_block(K, Blk::KC, 1);
  const Index mc_max = even_block(M, Blk::MC, MR);

  for (Index jc = 0; jc < N; jc += nc_max) {
    const Index nc = std::min(nc_max, N - jc);
    for (Index pc = 0; pc < K; pc += kc_max) {
      const Index kc = std::min(kc_max, K - pc);
      // Later K blocks accumulate onto what the first one wrote.
      const T beta_block = pc == 0 ? beta : T(1);
      pack_b(trans_b, B, ldb, pc, kc, jc, nc, b_pack);
      for (Index ic = 0; ic < M; ic += mc_max) {
        const Index mc = std::min(mc_max, M - ic);
        pack_a(trans_a, A, lda, ic, mc, pc, kc, a_pack);
        for (Index jr = 0; jr < nc; jr += NR) {
          const T* b_sliver = b_pack + jr * kc;
          const Index cols = std::min(NR, nc - jr);
          for (Index ir = 0; ir < mc; ir += MR) {
            tile<T>(kc, a_pack + ir * kc, b_sliver, alpha, beta_block,
                    C + (ic + ir) * ldc + jc + jr, ldc, std::min(MR, mc - ir), cols);
          }
        }
      }
    }
  }
}

template <typename T>
void gemm_blocked(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A,
                  Index lda, const T* B, Index ldb, T beta, T* C, Index ldc) {
  using Blk = Blocking<T>;
  constexpr Index MR = Blk::MR;
  constexpr Index NR = Blk::NR;
  const int threads = thread_count(M, N, K);
  const ThreadGrid grid = choose_grid<T>(threads, M, N);
  const Index m_slivers = ceil_div(M, MR);
  const Index n_slivers = ceil_div(N, NR);

  // Room for the packed blocks of the largest rectangle, per thread, taken
  // here so that nothing can fail inside the parallel region.
  const Index kc_max = even_block(K, Blk::KC, 1);
  const Index rows_max = ceil_div(m_slivers, grid.tm) * MR;
  const Index cols_max = ceil_div(n_slivers, grid.tn) * NR;
  const Index a_elems = round_up(std::min(Blk::MC, rows_max) * kc_max, kLineElems<T>);
  const Index b_elems = round_up(kc_max * std::min(Blk::NC, cols_max), kLineElems<T>);
  T* workspace = thread_workspace<T>((a_elems + b_elems) * threads);

  auto run_rectangle = [&](int thread) {
    const int part_m = thread / grid.tn;
    const int part_n = thread % grid.tn;
    const Index i0 = split_point(m_slivers, grid.tm, part_m) * MR;
    const Index i1 = std::min(M, split_point(m_slivers, grid.tm, part_m + 1) * MR);
    const Index j0 = split_point(n_slivers, grid.tn, part_n) * NR;
    const Index j1 = std::min(N, split_point(n_slivers, grid.tn, part_n + 1) * NR);
    if (i1 <= i0 || j1 <= j0) return;
    // Row i0 of op(A) and column j0 of op(B) in their stored layouts.
    const T* A0 = trans_a ? A + i0 : A + i0 * lda;
    const T* B0 = trans_b ? B + j0 * ldb : B + j0;
    T* a_pack = workspace + thread * (a_elems + b_elems);
    gemm_serial(trans_a, trans_b, i1 - i0, j1 - j0, K, alpha, A0, lda, B0, ldb, beta,
                C + i0 * ldc + j0, ldc, a_pack, a_pack + a_elems);
  };

#ifdef FUSEDNN_OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    run_rectangle(omp_get_thread_num());
    return;
  }
#endif
  run_rectangle(0);
}

}  // namespace
}  // namespace gemm_detail

template <typename T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha,
          const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C,
          std::int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == T(0)) {
    gemm_detail::scale_c(M, N, beta, C, ldc);
    return;
  }
  gemm_detail::gemm_blocked(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <typename T>
void gemm_strided_batched(bool trans_a, bool trans_b, std::int64_t batch, std::int64_t M,
                          std::int64_t N, std::int64_t K, T alpha, const T* A, std::int64_t lda,
                          std::int64_t stride_a, const T* B, std::int64_t ldb,
                          std::int64_t stride_b, T beta, T* C, std::int64_t ldc,
                          std::int64_t stride_c) {
  for (std::int64_t b = 0; b < batch; ++b) {
    gemm<T>(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
            C + b * stride_c, ldc);
  }
}

const char* gemm_simd_path() { return gemm_detail::kSimdPath; }

template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, float,
                          const float*, std::int64_t, const float*, std::int64_t, float, float*,
                          std::int64_t);
template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, double,
                           const double*, std::int64_t, const double*, std::int64_t, double,
                           double*, std::int64_t);
template void gemm_strided_batched<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t,
                                          std::int64_t, float, const float*, std::int64_t,
                                          std::int64_t, const float*, std::int64_t, std::int64_t,
                                          float, float*, std::int64_t, std::int64_t);
template void gemm_strided_batched<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t,
                                           std::int64_t, double, const double*, std::int64_t,
                                           std::int64_t, const double*, std::int64_t,
                                           std::int64_t, double, double*, std::int64_t,
                                           std::int64_t);

}  // namespace fusednn::cpu
