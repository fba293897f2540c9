// Dropout masks from a counter-based generator: element i's draw depends only
// on (key, i), so threads split the array freely, every thread count and
// instruction set gives the same mask, and one key repeats a mask exactly.
//
// The draw of element i is the 64-bit SplitMix64 output for the state
// key + (i + 1) * 0x9E3779B97F4A7C15 (the generator's Weyl sequence started at
// key, so a mask is one stretch of a SplitMix64 stream); its upper 32 bits u
// keep the element when u >= ceil(rate * 2^32), which happens with probability
// 1 - rate to within 2^-32.
#pragma once

#include <cstdint>

#include "fusednn/cpu_isa.h"

namespace fusednn::cpu {

FUSEDNN_CPU_KERNELS(

// mask (n,) out: 1 / (1 - rate) where element i is kept, else 0; 0 <= rate < 1
// (the bindings check it).
template <typename T>
void dropout_mask(T* mask, std::int64_t n, std::uint64_t key, double rate);

extern template void dropout_mask<float>(float*, std::int64_t, std::uint64_t, double);
extern template void dropout_mask<double>(double*, std::int64_t, std::uint64_t, double);

// out (n,) = x (n,) * the mask dropout_mask writes for (n, key, rate), without
// forming the mask: a dropout layer's forward and backward in one pass each
// (out may be x).
template <typename T>
void dropout_times_mask(const T* x, T* out, std::int64_t n, std::uint64_t key, double rate);

extern template void dropout_times_mask<float>(const float*, float*, std::int64_t,
                                               std::uint64_t, double);
extern template void dropout_times_mask<double>(const double*, double*, std::int64_t,
                                                std::uint64_t, double);
)  // FUSEDNN_CPU_KERNELS

}  // namespace fusednn::cpu
