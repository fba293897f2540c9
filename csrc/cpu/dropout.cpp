// Dropout masks and their products (fusednn/dropout.h). The loop has no branch
// and no carried state, so it vectorises (64-bit multiplies: AVX-512DQ's
// vpmullq, emulated with 32-bit ones on AVX2 and SSE2).
#include "fusednn/dropout.h"

#include <cmath>

FUSEDNN_CPU_BEGIN

namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// SplitMix64's output function of one state.
inline std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Below this many elements one thread is faster than a fork (a 64 KiB mask
// takes a few microseconds).
constexpr std::int64_t kParallelElements = std::int64_t(1) << 16;

// out[i] = mask[i], or x[i] * mask[i] with kTimesX.
template <bool kTimesX, typename T>
void fill(const T* x, T* out, std::int64_t n, std::uint64_t key, double rate) {
  // Kept when the upper 32 bits reach ceil(rate * 2^32) (exact in double: rate < 1).
  const std::uint64_t threshold = static_cast<std::uint64_t>(std::ceil(rate * 4294967296.0));
  const T scale = static_cast<T>(1.0 / (1.0 - rate));
#pragma omp parallel for simd schedule(static) if (n >= kParallelElements)
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint64_t draw = mix(key + std::uint64_t(i + 1) * kGolden) >> 32;
    const T m = draw >= threshold ? scale : T(0);
    if constexpr (kTimesX) {
      out[i] = x[i] * m;
    } else {
      out[i] = m;
    }
  }
}

}  // namespace

template <typename T>
void dropout_mask(T* mask, std::int64_t n, std::uint64_t key, double rate) {
  FUSEDNN_DISPATCH(dropout_mask<T>(mask, n, key, rate));
  fill<false, T>(nullptr, mask, n, key, rate);
}

template <typename T>
void dropout_times_mask(const T* x, T* out, std::int64_t n, std::uint64_t key, double rate) {
  FUSEDNN_DISPATCH(dropout_times_mask<T>(x, out, n, key, rate));
  fill<true, T>(x, out, n, key, rate);
}

template void dropout_mask<float>(float*, std::int64_t, std::uint64_t, double);
template void dropout_mask<double>(double*, std::int64_t, std::uint64_t, double);
template void dropout_times_mask<float>(const float*, float*, std::int64_t, std::uint64_t,
                                        double);
template void dropout_times_mask<double>(const double*, double*, std::int64_t, std::uint64_t,
                                         double);

FUSEDNN_CPU_END
