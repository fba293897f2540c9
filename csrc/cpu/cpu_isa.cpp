// Which instruction set the CPU kernels run (fusednn/cpu_isa.h): detected once
// from cpuid, or forced lower with FUSEDNN_CPU_ISA. Compiled for the baseline only.
#include "fusednn/cpu_isa.h"

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace fusednn::cpu {
namespace {

#if defined(FUSEDNN_ISA_VARIANTS)
constexpr Isa kCompiled[] = {Isa::kBaseline, Isa::kAvx2, Isa::kAvx512};
#else
constexpr Isa kCompiled[] = {Isa::kBaseline};
#endif

// Whether this CPU (and its operating system, which must save the wider
// registers: libgcc's cpu model checks XGETBV) runs `isa`.
bool cpu_runs(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::kBaseline:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  }
  return false;
#else
  return isa == Isa::kBaseline;
#endif
}

// The compiled paths (all, or those the CPU runs), comma separated.
std::string listed(bool runnable_only) {
  std::string out;
  for (Isa isa : kCompiled) {
    if (runnable_only && !cpu_runs(isa)) continue;
    out += (out.empty() ? "" : ", ") + std::string(isa_name(isa));
  }
  return out;
}

Isa choose() {
  Isa widest = Isa::kBaseline;
  for (Isa isa : kCompiled) {
    if (cpu_runs(isa)) widest = isa;
  }
  const char* forced = std::getenv("FUSEDNN_CPU_ISA");
  if (forced == nullptr || *forced == '\0') return widest;
  for (Isa isa : kCompiled) {
    if (forced != std::string(isa_name(isa))) continue;
    if (!cpu_runs(isa)) {
      throw std::invalid_argument("FUSEDNN_CPU_ISA=" + std::string(forced) +
                                  ": this CPU cannot run that path; it runs " + listed(true));
    }
    return isa;
  }
  throw std::invalid_argument("FUSEDNN_CPU_ISA: expected one of the paths this build compiled (" +
                              listed(false) + "), got '" + forced + "'");
}

}  // namespace

Isa chosen_isa() {
  static const Isa isa = choose();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kBaseline:
      break;
  }
#if FUSEDNN_NATIVE_FLAG
  return "native";
#elif defined(__x86_64__)
  return "sse2";
#elif defined(__aarch64__)
  return "neon";
#else
  return "portable";
#endif
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> names;
  for (Isa isa : kCompiled) names.push_back(isa_name(isa));
  return names;
}

}  // namespace fusednn::cpu
