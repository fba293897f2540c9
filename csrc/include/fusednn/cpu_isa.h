// Run-time choice of the CPU kernels' instruction set (one build for every CPU).
//
// The sources with SIMD hot loops (CMake's FUSEDNN_ISA_SOURCES) are compiled
// more than once on x86-64: as part of the extension for the baseline (SSE2),
// and again with FUSEDNN_ISA=avx2 (AVX2 + FMA) and FUSEDNN_ISA=avx512 (AVX-512
// F/VL/BW/DQ), each of these into its own namespace, fusednn::cpu::avx2 or
// fusednn::cpu::avx512. The baseline compile is the API: each public kernel
// starts with FUSEDNN_DISPATCH, which hands the call to the same kernel of the
// instruction set chosen once per process (chosen_isa()).
//
// A source opts in by
//   - wrapping its code in FUSEDNN_CPU_BEGIN ... FUSEDNN_CPU_END instead of
//     namespace fusednn::cpu { ... },
//   - starting each kernel declared in a header with FUSEDNN_DISPATCH(call),
//   - declaring those kernels in FUSEDNN_CPU_KERNELS(...) in their header
//     (types stay outside it: every instruction set shares them),
//   - and being listed in FUSEDNN_ISA_SOURCES (CMakeLists.txt).
//
// Inline functions, templates and std:: code that several compiles share are
// emitted as weak symbols in each of them, and the linker keeps one copy of
// each: it could keep an AVX-512 copy and call it from the baseline path.
// CMake (cmake/FusednnIsa.cmake) therefore links each extra instruction set's
// objects into one object, drops their COMDAT groups and makes every symbol
// local except those in that set's namespace, so that the final link cannot
// take any of its code for another path.
#pragma once

#include <string>
#include <vector>

#if defined(FUSEDNN_ISA)  // an extra compile: everything in its namespace
#define FUSEDNN_CPU_KERNELS(...) \
  inline namespace FUSEDNN_ISA { \
  __VA_ARGS__                    \
  }
#define FUSEDNN_CPU_BEGIN \
  namespace fusednn::cpu { \
  inline namespace FUSEDNN_ISA {
#define FUSEDNN_CPU_END \
  }                     \
  }
#define FUSEDNN_DISPATCH(...)

#elif defined(FUSEDNN_ISA_VARIANTS)  // the baseline compile, with AVX2 and AVX-512 beside it
#define FUSEDNN_CPU_KERNELS(...) \
  __VA_ARGS__                    \
  namespace avx2 {               \
  __VA_ARGS__                    \
  }                              \
  namespace avx512 {             \
  __VA_ARGS__                    \
  }
#define FUSEDNN_CPU_BEGIN namespace fusednn::cpu {
#define FUSEDNN_CPU_END }
// The chosen path's copy of the kernel call `...` (e.g. gemm<T>(a, b)), from a
// kernel in fusednn::cpu; the baseline's own code follows it.
#define FUSEDNN_DISPATCH(...)                                                       \
  switch (::fusednn::cpu::chosen_isa()) {                                           \
    case ::fusednn::cpu::Isa::kAvx512:                                              \
      return avx512::__VA_ARGS__;                                                   \
    case ::fusednn::cpu::Isa::kAvx2:                                                \
      return avx2::__VA_ARGS__;                                                     \
    case ::fusednn::cpu::Isa::kBaseline:                                            \
      break;                                                                        \
  }

#else  // one path only: -march=native, or a target without extra instruction sets
#define FUSEDNN_CPU_KERNELS(...) __VA_ARGS__
#define FUSEDNN_CPU_BEGIN namespace fusednn::cpu {
#define FUSEDNN_CPU_END }
#define FUSEDNN_DISPATCH(...)
#endif

namespace fusednn::cpu {

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The instruction set of the CPU kernels: the widest one that this build
// compiled and this CPU runs, or the one FUSEDNN_CPU_ISA names. Decided at the
// first call; throws std::invalid_argument (then and at every later call) when
// FUSEDNN_CPU_ISA names a path the build lacks or the CPU cannot run.
Isa chosen_isa();

// "sse2" (x86-64), "neon" (64-bit ARM), "native" (-march=native), "portable"
// (other targets), "avx2" or "avx512": the names FUSEDNN_CPU_ISA takes.
const char* isa_name(Isa isa);

// The paths this build holds, narrowest first.
std::vector<std::string> compiled_isas();

}  // namespace fusednn::cpu
