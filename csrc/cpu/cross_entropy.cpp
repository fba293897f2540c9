// Fused softmax cross-entropy on the CPU: rows in parallel (OpenMP), each row
// in three vectorised sweeps — max; exp, sum and target sums; scaled gradient.
// exp() is an inline polynomial so that the sweeps vectorise (libm's exp only
// vectorises under -ffast-math, which this library does not use).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "exp_traits.h"
#include "fusednn/cross_entropy.h"

FUSEDNN_CPU_BEGIN

namespace {

// Rows are split across threads only when there is enough work to pay for it.
constexpr std::int64_t kParallelElements = 1 << 15;

// exp(x) for x <= 0 (the only arguments softmax produces after subtracting
// the row max). -inf gives 0; NaN gives NaN. Branch-free so loops vectorise.
template <typename T>
inline T exp_nonpositive(T x) {
  using E = ExpTraits<T>;
  using Bits = typename E::Bits;
  const T shifted = x * E::kLog2e + E::kRoundMagic;
  const T n = shifted - E::kRoundMagic;
  const T r = (x - n * E::kLn2Hi) - n * E::kLn2Lo;
  T poly = E::kInverseFactorials[E::kDegree];
  for (int k = E::kDegree - 1; k >= 0; --k) poly = poly * r + E::kInverseFactorials[k];
  // The low bits of `shifted` hold n (offset by the magic constant's bits).
  Bits shifted_bits, magic_bits;
  const T magic = E::kRoundMagic;
  std::memcpy(&shifted_bits, &shifted, sizeof(T));
  std::memcpy(&magic_bits, &magic, sizeof(T));
  const Bits scale_bits = (shifted_bits - magic_bits + E::kExponentBias) << E::kMantissaBits;
  T scale;
  std::memcpy(&scale, &scale_bits, sizeof(T));
  // exp below the bound is subnormal; flushed to 0.
  constexpr T kMinArg = sizeof(T) == 4 ? T(-87.3f) : T(-708.0);
  return x < kMinArg ? T(0) : poly * scale;
}

template <typename T>
inline T row_max(const T* x, std::int64_t C) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (std::int64_t c = 0; c < C; ++c) m = x[c] > m ? x[c] : m;
  return m;
}

template <typename T>
inline void fill_nan(T* loss, T* dx, std::int64_t C) {
  const T nan = std::numeric_limits<T>::quiet_NaN();
  *loss = nan;
  for (std::int64_t c = 0; c < C; ++c) dx[c] = nan;
}

// Row sums: SIMD partial sums in T over blocks of kSumBlock elements, blocks
// added in double. A plain float sum over C terms (16 lanes) would carry a
// relative error up to C/16 ulp (1e-5 at C = 4096); blocked, it stays under
// kSumBlock/16 ulp whatever C is. (A double accumulator inside the SIMD loop
// would mix vector widths and makes GCC fall back to scalar code.)
constexpr std::int64_t kSumBlock = 256;

template <typename T>
void sparse_row(const T* x, std::int64_t label, T* loss, T* dx, std::int64_t C, T grad_scale) {
  if (label < 0 || label >= C) {
    fill_nan(loss, dx, C);
    return;
  }
  const T m = row_max(x, C);
  double sum = 0;
  for (std::int64_t begin = 0; begin < C; begin += kSumBlock) {
    const std::int64_t end = std::min(begin + kSumBlock, C);
    T block_sum = 0;
#pragma omp simd reduction(+ : block_sum)
    for (std::int64_t c = begin; c < end; ++c) {
      const T e = exp_nonpositive(x[c] - m);
      dx[c] = e;
      block_sum += e;
    }
    sum += block_sum;
  }
  const T scale_over_sum = static_cast<T>(grad_scale / sum);
#pragma omp simd
  for (std::int64_t c = 0; c < C; ++c) dx[c] *= scale_over_sum;
  dx[label] -= grad_scale;
  *loss = static_cast<T>(std::log(sum)) - (x[label] - m);
}

// loss = sum_c t_c (log s - (x_c - m)) with s = sum_c exp(x_c - m): both terms
// are non-negative, so nothing cancels even for large logits.
template <typename T>
void dense_row(const T* x, const T* t, T* loss, T* dx, std::int64_t C, T grad_scale) {
  const T m = row_max(x, C);
  double sum = 0, target_sum = 0, target_dot_shifted = 0;
  for (std::int64_t begin = 0; begin < C; begin += kSumBlock) {
    const std::int64_t end = std::min(begin + kSumBlock, C);
    T block_sum = 0, block_target_sum = 0, block_target_dot = 0;
#pragma omp simd reduction(+ : block_sum, block_target_sum, block_target_dot)
    for (std::int64_t c = begin; c < end; ++c) {
      const T shifted = x[c] - m;
      const T e = exp_nonpositive(shifted);
      dx[c] = e;
      block_sum += e;
      block_target_sum += t[c];
      // A zero target on a masked (-inf) logit contributes 0, not 0 * -inf.
      block_target_dot += t[c] == T(0) ? T(0) : t[c] * shifted;
    }
    sum += block_sum;
    target_sum += block_target_sum;
    target_dot_shifted += block_target_dot;
  }
  const T softmax_factor = static_cast<T>(grad_scale * target_sum / sum);
#pragma omp simd
  for (std::int64_t c = 0; c < C; ++c) dx[c] = dx[c] * softmax_factor - t[c] * grad_scale;
  *loss = static_cast<T>(std::log(sum) * target_sum - target_dot_shifted);
}

}  // namespace

template <typename T>
void sparse_softmax_cross_entropy(const T* logits, const std::int64_t* labels, T* losses,
                                  T* dlogits, std::int64_t N, std::int64_t C, T grad_scale) {
  FUSEDNN_DISPATCH(sparse_softmax_cross_entropy<T>(logits, labels, losses, dlogits, N, C,
                                                   grad_scale));
#pragma omp parallel for schedule(static) if (N * C >= kParallelElements)
  for (std::int64_t n = 0; n < N; ++n) {
    sparse_row(logits + n * C, labels[n], losses + n, dlogits + n * C, C, grad_scale);
  }
}

template <typename T>
void softmax_cross_entropy(const T* logits, const T* targets, T* losses, T* dlogits,
                           std::int64_t N, std::int64_t C, T grad_scale) {
  FUSEDNN_DISPATCH(softmax_cross_entropy<T>(logits, targets, losses, dlogits, N, C, grad_scale));
#pragma omp parallel for schedule(static) if (N * C >= kParallelElements)
  for (std::int64_t n = 0; n < N; ++n) {
    dense_row(logits + n * C, targets + n * C, losses + n, dlogits + n * C, C, grad_scale);
  }
}

template void sparse_softmax_cross_entropy<float>(const float*, const std::int64_t*, float*,
                                                  float*, std::int64_t, std::int64_t, float);
template void sparse_softmax_cross_entropy<double>(const double*, const std::int64_t*, double*,
                                                   double*, std::int64_t, std::int64_t, double);
template void softmax_cross_entropy<float>(const float*, const float*, float*, float*,
                                           std::int64_t, std::int64_t, float);
template void softmax_cross_entropy<double>(const double*, const double*, double*, double*,
                                            std::int64_t, std::int64_t, double);

FUSEDNN_CPU_END
