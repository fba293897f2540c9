// CPU GEMM: packing, the blocked loop nest (GotoBLAS / BLIS) and threading.
// The micro-kernel and the block sizes live in gemm_kernels.h.
#include "fusednn/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <type_traits>

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

#include "gemm_kernels.h"

FUSEDNN_CPU_BEGIN
namespace gemm_detail {
namespace {

using Index = std::int64_t;

Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }
Index round_up(Index a, Index b) { return ceil_div(a, b) * b; }

// Largest block <= max_block (a multiple of `align`) that splits `extent` into
// equal blocks: 300 rows with MC = 256 and MR = 8 become blocks of 152 and 148,
// not 256 and 44.
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
      if (rows == MR) {
        for (Index k = 0; k < kc; ++k) std::memcpy(dst + k * MR, src + k * lda, MR * sizeof(T));
      } else {
        for (Index k = 0; k < kc; ++k) {
          T* out = dst + k * MR;
          for (Index r = 0; r < rows; ++r) out[r] = src[k * lda + r];
          for (Index r = rows; r < MR; ++r) out[r] = T(0);
        }
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

// One MR x NR tile of C. Tiles cut by the edge of C go through a local buffer
// so that the micro-kernel always computes a whole tile; their slivers are
// packed (zero-padded), so that never reads outside A or B.
template <typename T, ASource AS, BSource BS>
void tile(Index kc, const T* a, Index lda, const T* b, Index ldb, T alpha, T beta, T* c,
          Index ldc, Index rows, Index cols) {
  constexpr int MR = Blocking<T>::MR;
  constexpr int NR = Blocking<T>::NR;
  if (rows == MR && cols == NR) {
    micro_kernel<T, AS, BS>(kc, a, lda, b, ldb, alpha, beta, c, ldc);
    return;
  }
  alignas(64) T partial[MR * NR];
  micro_kernel<T, AS, BS>(kc, a, lda, b, ldb, alpha, T(0), partial, NR);
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

// The tiles of count_a x count_b slivers whose sources are the same: A sliver
// is at a + is * a_next, B sliver js at b + js * b_next, and tile (is, js) at
// c + is * MR * ldc + js * NR; the last row of tiles has last_rows rows and the
// last column last_cols columns. rows_outer walks along the rows of C first.
template <typename T, ASource AS, BSource BS>
void tile_block(bool rows_outer, Index kc, Index count_a, const T* a, Index a_next, Index lda,
                Index count_b, const T* b, Index b_next, Index ldb, T alpha, T beta, T* c,
                Index ldc, Index last_rows, Index last_cols) {
  constexpr int MR = Blocking<T>::MR;
  constexpr int NR = Blocking<T>::NR;
  auto one = [&](Index is, Index js) {
    tile<T, AS, BS>(kc, a + is * a_next, lda, b + js * b_next, ldb, alpha, beta,
                    c + is * MR * ldc + js * NR, ldc, is + 1 == count_a ? last_rows : MR,
                    js + 1 == count_b ? last_cols : NR);
  };
  if (rows_outer) {
    for (Index is = 0; is < count_a; ++is) {
      for (Index js = 0; js < count_b; ++js) one(is, js);
    }
  } else {
    for (Index js = 0; js < count_b; ++js) {
      for (Index is = 0; is < count_a; ++is) one(is, js);
    }
  }
}

// tile_block with the sources chosen at run time (once per block of tiles).
template <typename T, ASource AS>
void tile_block(BSource bs, bool rows_outer, Index kc, Index count_a, const T* a, Index a_next,
                Index lda, Index count_b, const T* b, Index b_next, Index ldb, T alpha, T beta,
                T* c, Index ldc, Index last_rows, Index last_cols) {
  if (bs == BSource::kPacked) {
    tile_block<T, AS, BSource::kPacked>(rows_outer, kc, count_a, a, a_next, lda, count_b, b,
                                        b_next, ldb, alpha, beta, c, ldc, last_rows, last_cols);
  } else {
    tile_block<T, AS, BSource::kStoredKN>(rows_outer, kc, count_a, a, a_next, lda, count_b, b,
                                          b_next, ldb, alpha, beta, c, ldc, last_rows, last_cols);
  }
}

template <typename T>
void tile_block(ASource as, BSource bs, bool rows_outer, Index kc, Index count_a, const T* a,
                Index a_next, Index lda, Index count_b, const T* b, Index b_next, Index ldb,
                T alpha, T beta, T* c, Index ldc, Index last_rows, Index last_cols) {
  if (count_a == 0 || count_b == 0) return;
  switch (as) {
    case ASource::kPacked:
      return tile_block<T, ASource::kPacked>(bs, rows_outer, kc, count_a, a, a_next, lda, count_b,
                                             b, b_next, ldb, alpha, beta, c, ldc, last_rows,
                                             last_cols);
    case ASource::kStoredMK:
      return tile_block<T, ASource::kStoredMK>(bs, rows_outer, kc, count_a, a, a_next, lda,
                                               count_b, b, b_next, ldb, alpha, beta, c, ldc,
                                               last_rows, last_cols);
    case ASource::kStoredKM:
      return tile_block<T, ASource::kStoredKM>(bs, rows_outer, kc, count_a, a, a_next, lda,
                                               count_b, b, b_next, ldb, alpha, beta, c, ldc,
                                               last_rows, last_cols);
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
constexpr double kMinWorkPerThread = 48.0 * 48 * 48;

// Threads worth using for `macs` multiply-adds: 1 inside a parallel region.
int thread_count(double macs) {
#ifdef FUSEDNN_OPENMP
  if (omp_in_parallel()) return 1;
  const double by_work = std::max(1.0, macs / kMinWorkPerThread);
  return int(std::min<double>(omp_get_max_threads(), by_work));
#else
  (void)macs;
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

// A sliver of one operand is used once per sliver of the other (in a block).
// Up to this many uses, reading whole slivers of A or B in place costs less
// than copying them into a packed buffer first (the copy of A is a transpose,
// and a small M or N leaves nothing to amortise a copy over); measured on Zen 5.
constexpr Index kMaxUsesInPlaceA = 16;
constexpr Index kMaxUsesInPlaceB = 8;
// Read in place, successive k of a sliver of op(B) lie one leading dimension
// apart. When that is a multiple of 4 KiB (the "critical stride") they all
// fall into one L1 set and evict each other before the next use, so then only
// very few uses go without packing. (op(A) stored (K, M): aliases_in_l1 below.)
constexpr Index kMaxUsesInPlaceCriticalStride = 4;

template <typename T>
bool critical_stride(Index ld) {
  return ld * Index(sizeof(T)) % 4096 == 0;
}

// op(A) stored (K, M) and read in place walks kc steps lda apart. Where that
// walk piles more lines onto one L1 set (64 sets of 64 bytes) than the set has
// ways (12 in a 48 KiB L1, 8 in a 32 KiB one), the A sliver cannot stay in L1
// while the B slivers reuse it, so it is packed from kMinUsesToPackAliasedA
// uses on. Quiet A/B pairs, 2 threads, Xeon AVX-512 (in place against packed):
// float64 1152x128x12544 +43%, 1152x128x139 (a ResNet 28x28x128 weight-gradient
// tile, 4 uses, 17 lines per set) +16%, 1152x128x69 +9%; float32 1152x128x139
// +2-4%; 576x64x278 (2 uses) lost 10% packed, 576x128x139 (4 uses) even. A
// bound of 8 lines instead of the ways also packed the AVX2 path's lecture
// conv2 weight gradient (288x64, 4 uses, 9 lines per set): its backward 5% slower.
constexpr Index kMinUsesToPackAliasedA = 4;

template <typename T>
bool aliases_in_l1(Index ld, Index kc) {
  const Index ways = std::max<Index>(cache_sizes().l1d / (64 * 64), 4);
  Index lines[64] = {};
  const Index stride = ld * Index(sizeof(T));
  for (Index k = 0; k < kc; ++k) {
    if (++lines[(k * stride >> 6) & 63] > ways) return true;
  }
  return false;
}

// K blocks up to this deep take the tiles row by row (see gemm_serial).
constexpr Index kShallowK = 32;
constexpr Index kShallowPanelBytes = Index(256) << 10;

// The blocked loop nest on one thread: C (M, N) from op(A) (M, K) and op(B)
// (K, N), packing into a_pack (room for MC x KC) and b_pack (KC x NC).
template <typename T>
void gemm_serial(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A,
                 Index lda, const T* B, Index ldb, T beta, T* C, Index ldc, T* a_pack,
                 T* b_pack) {
  constexpr Index MR = Blocking<T>::MR;
  constexpr Index NR = Blocking<T>::NR;
  const CacheBlocks& blk = cache_blocks<T>();
  const Index kc_max = even_block(K, blk.kc, 1);
  const Index nc_max = even_block(N, panel_columns<T>(kc_max), NR);
  const Index mc_max = even_block(M, blk.mc, MR);
  // Whole slivers are read in place when they would be used only a few times;
  // a partial last sliver is always packed (zero-padded). op(B) stored (N, K)
  // has no contiguous rows to read, so it is always packed.
  const Index max_uses_a = trans_a && aliases_in_l1<T>(lda, kc_max)
                               ? kMinUsesToPackAliasedA - 1
                               : kMaxUsesInPlaceA;
  const Index max_uses_b = critical_stride<T>(ldb) ? kMaxUsesInPlaceCriticalStride
                                                   : kMaxUsesInPlaceB;
  const bool a_in_place = ceil_div(N, NR) <= max_uses_a;
  const bool b_in_place = !trans_b && ceil_div(M, MR) <= max_uses_b;

  for (Index jc = 0; jc < N; jc += nc_max) {
    const Index nc = std::min(nc_max, N - jc);
    const Index b_whole = b_in_place ? nc / NR : 0;  // slivers of B read in place
    for (Index pc = 0; pc < K; pc += kc_max) {
      const Index kc = std::min(kc_max, K - pc);
      // Later K blocks accumulate onto what the first one wrote.
      const T beta_block = pc == 0 ? beta : T(1);
      // Along the rows of C where the B panel stays in L2 (cache_blocks), and
      // for shallow blocks, which do little work per tile of C they load and
      // store (whole rows stream through memory) with a small B panel; else
      // down the columns, each B sliver in L1 while the A block streams past it.
      const bool rows_outer =
          blk.panel_in_l2() ||
          (kc <= kShallowK && kc * round_up(nc, NR) * Index(sizeof(T)) <= kShallowPanelBytes);
      pack_b(trans_b, B, ldb, pc, kc, jc + b_whole * NR, nc - b_whole * NR, b_pack);
      for (Index ic = 0; ic < M; ic += mc_max) {
        const Index mc = std::min(mc_max, M - ic);
        const Index a_whole = a_in_place ? mc / MR : 0;  // slivers of A read in place
        const Index a_slivers = ceil_div(mc, MR);
        pack_a(trans_a, A, lda, ic + a_whole * MR, mc - a_whole * MR, pc, kc, a_pack);
        const Index b_slivers = ceil_div(nc, NR);
        const Index last_rows = mc - (a_slivers - 1) * MR;
        const Index last_cols = nc - (b_slivers - 1) * NR;

        // Slivers [0, a_whole) of A and [0, b_whole) of B (all whole) are read
        // in place, the rest (the partial last one, or all) from the packed
        // buffers: up to four blocks of tiles, each with fixed sources.
        const ASource a_stored = trans_a ? ASource::kStoredKM : ASource::kStoredMK;
        const T* a_origin = trans_a ? A + pc * lda + ic : A + ic * lda + pc;
        const Index a_next = trans_a ? MR : MR * lda;
        const T* b_origin = B + pc * ldb + jc;
        const Index a_rest = a_slivers - a_whole;
        const Index b_rest = b_slivers - b_whole;
        T* c_origin = C + ic * ldc + jc;
        T* c_rest_rows = c_origin + a_whole * MR * ldc;
        tile_block<T>(a_stored, BSource::kStoredKN, rows_outer, kc, a_whole, a_origin, a_next,
                      lda, b_whole, b_origin, NR, ldb, alpha, beta_block, c_origin, ldc, MR, NR);
        tile_block<T>(a_stored, BSource::kPacked, rows_outer, kc, a_whole, a_origin, a_next, lda,
                      b_rest, b_pack, NR * kc, 0, alpha, beta_block, c_origin + b_whole * NR,
                      ldc, MR, last_cols);
        tile_block<T>(ASource::kPacked, BSource::kStoredKN, rows_outer, kc, a_rest, a_pack,
                      MR * kc, 0, b_whole, b_origin, NR, ldb, alpha, beta_block, c_rest_rows, ldc,
                      last_rows, NR);
        tile_block<T>(ASource::kPacked, BSource::kPacked, rows_outer, kc, a_rest, a_pack,
                      MR * kc, 0, b_rest, b_pack, NR * kc, 0, alpha, beta_block,
                      c_rest_rows + b_whole * NR, ldc, last_rows, last_cols);
      }
    }
  }
}

template <typename T>
void gemm_blocked(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A,
                  Index lda, const T* B, Index ldb, T beta, T* C, Index ldc) {
  constexpr Index MR = Blocking<T>::MR;
  constexpr Index NR = Blocking<T>::NR;
  const CacheBlocks& blk = cache_blocks<T>();
  const int threads = thread_count(double(M) * double(N) * double(K));
  const ThreadGrid grid = choose_grid<T>(threads, M, N);
  const Index m_slivers = ceil_div(M, MR);
  const Index n_slivers = ceil_div(N, NR);

  // Room for the packed blocks of the largest rectangle, per thread, taken
  // here so that nothing can fail inside the parallel region.
  const Index kc_max = even_block(K, blk.kc, 1);
  const Index rows_max = ceil_div(m_slivers, grid.tm) * MR;
  const Index cols_max = ceil_div(n_slivers, grid.tn) * NR;
  const Index a_elems = round_up(std::min(blk.mc, rows_max) * kc_max, kLineElems<T>);
  const Index b_elems = round_up(kc_max * std::min(panel_columns<T>(kc_max), cols_max),
                                 kLineElems<T>);
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
  FUSEDNN_DISPATCH(gemm<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
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
  FUSEDNN_DISPATCH(gemm_strided_batched<T>(trans_a, trans_b, batch, M, N, K, alpha, A, lda,
                                           stride_a, B, ldb, stride_b, beta, C, ldc, stride_c));
  if (batch <= 0 || M <= 0 || N <= 0) return;
  auto product = [&](std::int64_t b) {
    gemm<T>(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
            C + b * stride_c, ldc);
  };
  const double macs = double(M) * double(N) * double(std::max<std::int64_t>(K, 1));
  const int threads = gemm_detail::thread_count(macs * double(batch));
  // Products too small to keep every thread busy on their own run side by side,
  // one thread each (gemm sees it is inside a parallel region).
  if (threads > 1 && gemm_detail::thread_count(macs) < threads) {
#ifdef FUSEDNN_OPENMP
    std::exception_ptr failure;  // an exception must not leave the parallel region
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (std::int64_t b = 0; b < batch; ++b) {
      try {
        product(b);
      } catch (...) {
#pragma omp critical(fusednn_gemm_batched_failure)
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    return;
#endif
  }
  for (std::int64_t b = 0; b < batch; ++b) product(b);
}

const char* gemm_simd_path() {
  FUSEDNN_DISPATCH(gemm_simd_path());
  return gemm_detail::kSimdPath;
}

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

FUSEDNN_CPU_END
