// PackedMatrix (fusednn/gemm.h): the packed copy of a right operand in the
// chosen path's sliver width, and how gemm_packed splits its columns among
// threads. Compiled for the baseline only: packing is a copy, done once per
// sequence, and the layout needs only the width (packed_sliver_width).
#include <algorithm>
#include <cstdlib>
#include <new>

#ifdef FUSEDNN_OPENMP
#include <omp.h>
#endif

#include "fusednn/gemm.h"

namespace fusednn::cpu {
namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Below this many multiply-adds per thread a fork costs more than it saves
// (a step of a small recurrent layer runs in a few microseconds).
constexpr double kMinWorkPerThread = 64.0 * 1024;
// Packing fewer elements than this stays on one thread.
constexpr std::int64_t kMinParallelPackElements = std::int64_t(1) << 16;

}  // namespace

template <typename T>
void PackedMatrix<T>::Free::operator()(T* p) const {
  std::free(p);
}

template <typename T>
PackedMatrix<T>::PackedMatrix(bool trans_b, std::int64_t K, std::int64_t N, const T* B,
                              std::int64_t ldb)
    : rows_(K), cols_(N), sliver_(packed_sliver_width<T>()) {
  const std::int64_t NR = sliver_;
  const std::int64_t slivers = ceil_div(N, NR);
  const std::int64_t elements = std::max<std::int64_t>(slivers * K * NR, 1);
  const std::int64_t bytes = (elements * std::int64_t(sizeof(T)) + 63) / 64 * 64;
  data_.reset(static_cast<T*>(std::aligned_alloc(64, std::size_t(bytes))));
  if (!data_) throw std::bad_alloc();
  // The threads pack in parallel (a copy of R^T for a 512-unit LSTM took 1 ms
  // on one thread), each roughly the slivers it reads in gemm_packed.
  T* const packed = data_.get();
#pragma omp parallel for schedule(static) if (elements >= kMinParallelPackElements)
  for (std::int64_t s = 0; s < slivers; ++s) {
    const std::int64_t j0 = s * NR;
    const std::int64_t cols = std::min(NR, N - j0);
    T* out = packed + s * K * NR;
    if (trans_b) {
      // Blocks of kTransposeRows k: each stored row's block is read once (one
      // cache line of floats, so the NR rows ldb apart need not stay in L1 even
      // where they share a cache set), and the block of the sliver they fill
      // (2 KiB of floats at NR = 32) stays in L1 while the NR rows pass. Down
      // each whole row instead, every row touched all K lines of the sliver
      // (128 KiB for an LSTM's R^T with U = 256), from L2: packing that R^T took
      // 3.6% of the lecture LSTM's first-layer backward (perf, 2 threads).
      constexpr std::int64_t kTransposeRows = 64 / sizeof(T);
      for (std::int64_t k0 = 0; k0 < K; k0 += kTransposeRows) {
        const std::int64_t k1 = std::min(K, k0 + kTransposeRows);
        for (std::int64_t c = 0; c < cols; ++c) {
          const T* row = B + (j0 + c) * ldb;
          for (std::int64_t k = k0; k < k1; ++k) out[k * NR + c] = row[k];
        }
        for (std::int64_t c = cols; c < NR; ++c) {
          for (std::int64_t k = k0; k < k1; ++k) out[k * NR + c] = T(0);
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
  const double by_work = std::max(1.0, macs / kMinWorkPerThread);
  const double slivers = double(ceil_div(cols_, sliver_));
  return int(std::min<double>({double(omp_get_max_threads()), by_work, std::max(1.0, slivers)}));
#else
  (void)M;
  return 1;
#endif
}

template <typename T>
typename PackedMatrix<T>::Columns PackedMatrix<T>::part_columns(int part, int parts) const {
  const std::int64_t slivers = ceil_div(cols_, sliver_);
  return {std::min(cols_, slivers * part / parts * sliver_),
          std::min(cols_, slivers * (part + 1) / parts * sliver_)};
}

template class PackedMatrix<float>;
template class PackedMatrix<double>;

}  // namespace fusednn::cpu
