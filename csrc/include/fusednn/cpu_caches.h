// The data cache sizes of the CPU this process runs on, which the CPU GEMM's
// block sizes follow (gemm_kernels.h), read once at the first call.
#pragma once

#include <cstdint>

namespace fusednn::cpu {

struct CacheSizes {
  std::int64_t l1d;           // bytes of L1 data cache per core
  std::int64_t l2;            // bytes of L2 per core
  std::int64_t l3_per_core;   // bytes of L3 divided by the cores that share it
  bool measured;              // false: the system said nothing, typical sizes stand in
};

// From Linux's /sys/devices/system/cpu/cpu0/cache (sizes and sharing), else glibc's
// sysconf, else 32 KiB / 1 MiB / 2 MiB per core (a common x86 and ARM server core).
const CacheSizes& cache_sizes();

}  // namespace fusednn::cpu
