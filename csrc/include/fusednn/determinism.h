// The switch behind fd.utils.set_deterministic: whether the CUDA reductions
// that would otherwise add float partial sums with atomics, in whatever order
// the blocks finish (conv's kernel gradient split over K, conv's bias
// gradient), write each block's partial sums apart and reduce them in a fixed
// order instead, so that a gradient is bitwise the same from run to run. The
// CPU kernels are deterministic either way.
//
// On by default: the partial sums cost one extra write and read of
// splits x (gradient size) floats and one small kernel per gradient, against
// the same number of atomic additions they replace (an estimate: no GPU has
// measured it yet: benchmarks/NOTES.md asks a GPU session to time both).
#pragma once

#include <atomic>

namespace fusednn {

inline std::atomic<bool>& deterministic_reductions() {
  static std::atomic<bool> enabled{true};
  return enabled;
}

}  // namespace fusednn
